"""Training past one device: data parallelism with `jax.sharding`, and what it costs to talk.

A `Mesh` over the devices with one axis, "data" (`config.sharding.data_parallel`): parameters and
optimizer state are replicated, each step's batch is split along the mesh, and each process
gathers on the host only the rows its own devices hold, so that a run takes the same batches in
the same order whatever its process count. `initialize_distributed` joins the processes of a
multi-host run (`python -m fgjax.main --distributed`, or `python -m fgjax.launch` on one machine).

The estimators differentiate through `data_parallel_loss` unchanged, and what crosses devices
follows from the mode of differentiation:

- backprop (`jax.grad`): the transpose of the replicated parameters' broadcast is a `psum` of
  every device's parameter cotangent, an all-reduce of the full gradient (P floats per step);
- forward gradient (`jax.jvp`): every device draws the same tangent v from the replicated step
  key, and the JVP of `pmean` is the `pmean` of the directional derivatives, so only the loss and
  the K derivatives are all-reduced (K + 1 floats per step) and every device rebuilds the same
  update. A clip binds on the global batch's derivative, so a sharded run equals a single-device
  run up to float summation order.

Evaluation is split the same way: only the sums of the losses and correct predictions cross
devices (`collectives` reads what crosses devices out of a compiled program).
"""

import os
import re
import sys
import threading
from typing import Callable, Optional, Sequence

from absl import logging
import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from fgjax import workdir as files
from fgjax.config_loading import ConfigError

DATA_AXIS = "data"
# JAX's own initialization timeout is this much later than ours, so that ours reports a failure.
_JAX_TIMEOUT_MARGIN = 30


def initialize_distributed(coordinator_address: Optional[str] = None,
                           num_processes: Optional[int] = None,
                           process_id: Optional[int] = None,
                           timeout_seconds: int = 30) -> None:
  """Joins this process to a multi-host run; must run before any other JAX call.

  On Cloud TPU VMs, Slurm and Open MPI every argument may stay None (JAX detects them); elsewhere
  give all three, the same coordinator address ("host:port" of process 0) on every process.

  A run that cannot form (the coordinator unreachable, fewer processes than process 0 expects,
  an id out of range) ends each waiting process after `timeout_seconds` with one line on stderr
  and status 2: JAX itself would abort with a C++ stack trace, later. Processes started with
  different `num_processes` raise ConfigError on every process.
  """
  timer = threading.Timer(timeout_seconds, _exit_with, [_join_failure(
      coordinator_address, num_processes, process_id, timeout_seconds)])
  timer.daemon = True
  timer.start()
  try:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id,
                               initialization_timeout=timeout_seconds + _JAX_TIMEOUT_MARGIN)
  except ValueError as error:  # arguments JAX checks itself, such as process_id >= num_processes
    raise ConfigError(" ".join(str(error).split())) from None
  finally:
    timer.cancel()
  _check_process_counts(num_processes)
  logging.info("process %d of %d: %d local devices, %d in all", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def _join_failure(coordinator_address, num_processes, process_id, timeout_seconds) -> str:
  """The line of a process that could not join its run in time."""
  known = lambda value: "?" if value is None else value
  return (f"error: process {known(process_id)} could not join a run of {known(num_processes)} "
          f"processes at {coordinator_address or 'the detected coordinator'} within "
          f"{timeout_seconds} s: start every process with the same --coordinator_address and "
          "--num_processes, and distinct --process_id from 0")


def _exit_with(message: str) -> None:
  """Prints `message` and ends the process at once (from a timer thread, while JAX waits)."""
  print(message, file=sys.stderr, flush=True)
  os._exit(2)  # pylint: disable=protected-access


def _check_process_counts(num_processes: Optional[int]) -> None:
  """ConfigError on every process unless all were given the run's process count (or None).

  The coordinator takes process 0's count: a process that was given another one joins anyway.
  """
  counts = files.on_every_process(jax.process_count() if num_processes is None else num_processes)
  if set(counts) != {jax.process_count()}:
    raise ConfigError(f"--num_processes differs between the processes: {counts} for "
                      f"processes 0 to {jax.process_count() - 1}; the run has "
                      f"{jax.process_count()} processes")


def make_mesh(num_devices: Optional[int] = None) -> Mesh:
  """A one-axis ("data") mesh over the first `num_devices` devices (None: all, of all hosts).

  The axis is of type Auto: `jax.jit` then propagates shardings from its inputs, so the training
  loop needs no mesh context around it.
  """
  devices = jax.devices()
  if num_devices is not None:
    if not 1 <= num_devices <= len(devices):
      raise ConfigError(f"sharding.num_devices must be in [1, {len(devices)}], got {num_devices}")
    if jax.process_count() > 1 and num_devices != len(devices):
      raise ConfigError("sharding.num_devices must be None (all devices) in a multi-host run")
    devices = devices[:num_devices]
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,),
                       devices=devices)


def data_parallel_loss(loss_fn: Callable, mesh: Mesh) -> Callable:
  """Runs `loss_fn(params, images, labels) -> (mean loss, logits)` data-parallel over `mesh`.

  The returned function has the same signature and values: params are replicated, images and
  labels are split along their first axis, the per-shard mean losses are averaged with
  `lax.pmean` (equal shards, so this is the global batch's mean) and the logits stay split.
  """

  def per_device(params, images, labels):
    loss, logits = loss_fn(params, images, labels)
    return jax.lax.pmean(loss, DATA_AXIS), logits

  return jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(DATA_AXIS), P(DATA_AXIS)),
                       out_specs=(P(), P(DATA_AXIS)))


def replicate(tree, mesh: Mesh):
  """Copies a pytree of arrays onto every device of `mesh`.

  Leaves go through host memory (numpy), which is what `jax.device_put` accepts for a sharding
  that spans other hosts' devices (every process must pass the same values).
  """
  return jax.device_put(jax.tree.map(np.asarray, tree), NamedSharding(mesh, P()))


def process_rows(device_processes: Sequence[int], batch_size: int, process: int) -> np.ndarray:
  """The rows of a batch that `process`'s devices hold when the batch is split over a mesh.

  Split on the "data" axis, a batch gives the k-th device of the mesh the k-th of equal blocks
  of rows; `device_processes` is the process index of each device in the mesh's order. The rows
  come in increasing order, the layout `jax.make_array_from_process_local_data` takes a
  process's data in.
  """
  per_device = batch_size // len(device_processes)
  return np.concatenate([np.arange(k * per_device, (k + 1) * per_device)
                         for k, owner in enumerate(device_processes) if owner == process])


def own_rows(mesh: Mesh, batch_size: int) -> np.ndarray:
  """The rows of each batch of `batch_size` that this process's devices hold on `mesh`."""
  return process_rows([device.process_index for device in mesh.devices.flat], batch_size,
                      jax.process_index())


def global_batches(mesh: Mesh, own: np.ndarray, batch_size: int) -> jax.Array:
  """One array of shape (num_batches, batch_size, ...) sharded over `mesh` on its batch axis,
  made of every process's `own` rows of each batch, (num_batches, own_rows(...), ...): no
  process needs the others' rows."""
  return jax.make_array_from_process_local_data(
      NamedSharding(mesh, P(None, DATA_AXIS)), own, (own.shape[0], batch_size) + own.shape[2:])


def gather_batches(mesh: Mesh, arrays: Sequence[np.ndarray],
                   indices: np.ndarray) -> tuple[jax.Array, ...]:
  """Each host array of `arrays` gathered at `indices`, (num_batches, batch_size) example
  indices, as one array (num_batches, batch_size, ...) sharded over `mesh` on its batch axis, of
  which this process gathers only the rows its own devices hold (`global_batches`)."""
  own = indices[:, own_rows(mesh, indices.shape[1])]
  return tuple(global_batches(mesh, array[own], indices.shape[1]) for array in arrays)


def data_parallel(config, loss_fn: Callable) -> tuple[Callable, Callable, Optional[Mesh]]:
  """`(train_loss_fn, place, mesh)` for `config.sharding`: the train loop's sharding hook.

  `train_loss_fn` is the loss the train step differentiates, `place(tree)` puts arrays (the
  train state) where the step expects them, and `mesh` is the data-parallel mesh that the
  batches are split over (`global_batches`). With `data_parallel` off they are `loss_fn`
  itself, `jax.device_put` (the default device) and None, so the loop runs as before. Raises
  ConfigError if the batch does not split evenly over the devices.
  """
  if not config.sharding.data_parallel:
    return loss_fn, jax.device_put, None
  mesh = make_mesh(config.sharding.num_devices)
  num_devices = mesh.shape[DATA_AXIS]
  if config.batch_size % num_devices:
    raise ConfigError(f"batch_size {config.batch_size} must be a multiple of the {num_devices} "
                      "devices of the data-parallel mesh")
  logging.info("data parallel over %d devices (%s): %d examples per device and step",
               num_devices, jax.devices()[0].platform, config.batch_size // num_devices)
  logging.info("process %d of %d gathers %d of the %d examples of each batch",
               jax.process_index(), jax.process_count(),
               len(own_rows(mesh, config.batch_size)), config.batch_size)
  return data_parallel_loss(loss_fn, mesh), lambda tree: replicate(tree, mesh), mesh


_COLLECTIVE = re.compile(
    r"=\s*(?P<shape>.*?)\s+(?P<op>all-reduce|all-gather|reduce-scatter|all-to-all|"
    r"collective-permute)(?:-start)?\(")
_ARRAY = re.compile(r"\b(?P<dtype>pred|[a-z]+(?P<bits>\d+)[a-z\d]*)\[(?P<dims>[\d,]*)\]")


def _num_bytes(shape_text: str) -> int:
  """Bytes of an HLO shape such as `f32[784,1024]{1,0}` or a tuple `(f32[2]{0}, f32[])`."""
  total = 0
  for array in _ARRAY.finditer(shape_text):
    bits = 8 if array["dtype"] == "pred" else int(array["bits"])  # bf16: 16, f8e4m3fn: 8
    size = int(np.prod([int(d) for d in array["dims"].split(",") if d]))
    total += size * bits // 8
  return total


def collectives(hlo_text: str) -> list[tuple[str, str, int]]:
  """`(op, shape, bytes)` of each cross-device operation in a compiled HLO module's text.

  `hlo_text` is `jax.jit(f).lower(...).compile().as_text()`. Ops: all-reduce, all-gather,
  reduce-scatter, all-to-all and collective-permute (async `-start` forms counted once). The
  bytes are those of the op's result on one device; for an all-reduce that is its operand, the
  data each device contributes (an async all-gather's result also holds its operand).
  """
  matches = filter(None, map(_COLLECTIVE.search, hlo_text.splitlines()))
  return [(match["op"], match["shape"], _num_bytes(match["shape"])) for match in matches]

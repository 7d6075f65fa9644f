"""What the benchmarks share: the machine's description, synthetic data, the benchmarked
configs, and an interleaved timer.

Synthetic data has the real datasets' shapes (MNIST 28x28x1 for the MLP and CNN, CIFAR-10 32x32x3
for the VGG network) and dtypes (uint8 pixels, int32 labels): step time does not depend on pixel
values, and the benchmarks then need no download.
"""

import json
import os
import platform
import statistics
import time
from typing import Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fgjax import models
from fgjax import optimizers
from fgjax import paper
from fgjax import programs

MODEL_DATA = {"mlp": ("mnist", (28, 28, 1)), "cnn": ("mnist", (28, 28, 1)),
              "vgg": ("cifar10", (32, 32, 3))}
NUM_CLASSES = 10


def machine_info() -> dict:
  """CPU model, core counts, accelerator, library versions and load: what a timing depends on."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return {
      "cpu": cpu, "cpu_count": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
      "device": str(jax.devices()[0].device_kind), "platform": jax.default_backend(),
      "jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
      "python": platform.python_version(), "load_average_at_start": os.getloadavg()[0],
  }


def describe_machine(info: dict) -> str:
  return (f"{info['cpu']} ({info['usable_cores']} usable cores), {info['platform']}: "
          f"{info['device']}; jax {info['jax']}, flax {info['flax']}, optax {info['optax']}; "
          f"load average {info['load_average_at_start']:.1f} at start")


def synthetic_batches(model: str, num_batches: int, batch_size: int, seed: int = 0):
  """`(images, labels)` shaped (num_batches, batch_size, H, W, C) uint8 and (num_batches,
  batch_size) int32, on the device."""
  shape = MODEL_DATA[model][1]
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (num_batches, batch_size) + shape, dtype=np.uint8)
  labels = rng.integers(0, NUM_CLASSES, (num_batches, batch_size), dtype=np.int32)
  return jax.device_put(images), jax.device_put(labels)


def step_config(model: str, estimator: str, num_directions: int = 1, tangent: str = "normal"):
  """Table I's setup for `model` with SGD: batch 64 and, for forward gradients, the directional
  derivative clipped to [-1, 1]. The small learning rate keeps long timing runs finite."""
  config = paper.row_config(MODEL_DATA[model][0], model, "sgd", estimator)
  config.learning_rate = 1e-4
  config.num_directions = num_directions
  config.tangent = tangent
  return config


def loss_and_params(model: str, seed: int = 0):
  """`(loss_fn, params)`: the package's `loss_fn(params, images, labels)` and initial params."""
  net = models.create_model(model, MODEL_DATA[model][1], NUM_CLASSES, seed)
  return programs.make_loss_fn(net.apply, 127.5, 64.0), net.params


def build(model: str, config, seed: int = 0):
  """`(train_step, state)`: the package's own step for `config` and a fresh state."""
  loss_fn, params = loss_and_params(model, seed)
  tx = optimizers.build_optimizer(config)
  state = programs.init_state(params, tx, jax.random.PRNGKey(seed + 1))
  return programs.make_train_step(loss_fn, tx, config), state


def make_runner(train_step: Callable, mode: str = "scan") -> Callable:
  """`run(state, images, labels, *extra) -> (state, losses)`: one step per leading index of
  `images`/`labels`, `train_step(state, images[i], labels[i], *extra)`, input state donated.

  mode "scan": all steps in one jitted `lax.scan` call, as `make_train_chunk` runs them (without
  its batch gather): the bare step. mode "jit": one jitted call per step from Python, for
  comparison (XLA:CPU compiles some convolution gradients inside a loop body into a much slower
  kernel than outside one).
  """
  if mode == "scan":
    def run(state, images, labels, *extra):
      return jax.lax.scan(lambda s, batch: train_step(s, *batch, *extra), state, (images, labels))

    return jax.jit(run, donate_argnums=0)
  if mode == "jit":
    step = jax.jit(train_step, donate_argnums=0)

    def run_steps(state, images, labels, *extra):
      losses = []
      for i in range(images.shape[0]):
        state, loss = step(state, images[i], labels[i], *extra)
        losses.append(loss)
      return state, jnp.stack(losses)

    return run_steps
  raise ValueError(f"unknown mode {mode!r}; choose scan or jit")


def copy_state(state):
  """A copy with its own buffers, for a second runner whose calls donate them."""
  return jax.tree.map(jnp.copy, state)


def time_interleaved(calls: dict[str, Callable[[], None]], repeats: int) -> dict[str, list]:
  """Seconds per call of each `calls[name]()` (which must block until done), `repeats` times.

  The variants take turns within each repeat, and the order rotates between repeats, so that a
  change of machine load touches every variant alike.
  """
  names = list(calls)
  seconds = {name: [] for name in names}
  for r in range(repeats):
    for name in names[r % len(names):] + names[:r % len(names)]:
      start = time.perf_counter()
      calls[name]()
      seconds[name].append(time.perf_counter() - start)
  return seconds


def paired_ratio(numerator: list, denominator: list) -> float:
  """Median over repeats of the per-repeat ratio: robust to load that drifts between repeats."""
  return statistics.median(a / b for a, b in zip(numerator, denominator))


def publish(report: dict, table: str, json_path) -> None:
  """Prints `table` and, if `json_path` is given, writes `report` there as JSON."""
  print(table)
  if json_path:
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w", encoding="utf-8") as f:
      json.dump(report, f, indent=2)
      f.write("\n")

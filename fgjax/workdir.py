"""A workdir's files: their names, atomic strict-JSON writes, reading a run back, the lock that
makes one run its only writer, and the description of the machine results ran on.

Layout of a run (`python -m fgjax.main`), for each trial directory (the workdir itself when it
trains one trial, `<workdir>/seed_<s>` for each seed of several):
  config.json      the trial's config
  metrics.jsonl    a row per chunk of steps and per epoch
  tensorboard/     the same rows as TensorBoard scalars
  summary.json     the trial's result, when it has ended
  test_losses.npz  per-example test losses at the end (plain and clamped cross-entropy)
and, in the workdir: `checkpoints/` (all trials' states together), `checkpoints.log` (orbax's
warnings and errors, if it had any), `summary.json` (with several seeds: their aggregate) and
`.lock` (held while a run writes).

A workdir is a local directory or a gs:// prefix; `fgjax.storage` reads and writes either.
Only process 0 of a multi-host run writes files (`is_writer`); orbax coordinates checkpoints.
"""

import contextlib
import json
import math
import os
import platform
from typing import Callable, Optional

import jax
from jax.experimental import multihost_utils
import numpy as np

from fgjax import storage
from fgjax.errors import WorkdirError

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
TENSORBOARD_DIR = "tensorboard"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_LOG = CHECKPOINT_DIR + ".log"
TEST_LOSSES_FILE = "test_losses.npz"
LOCK_FILE = ".lock"


def is_writer() -> bool:
  """Whether this process writes the workdir's files: process 0 of a multi-host run (asked
  without starting a backend, which a single process need not have yet)."""
  return not jax.distributed.is_initialized() or jax.process_index() == 0


def on_writer(check: Callable[[], None]) -> None:
  """Runs `check`, which may raise WorkdirError, on the writer alone (process 0 of a multi-host
  run): the others wait for it and raise too if it raised, so that all of them stop or none does
  and none goes on before it is done. Every process must call it."""
  error = None
  if is_writer():
    try:
      check()
    except WorkdirError as raised:
      error = raised
  if jax.distributed.is_initialized() and jax.process_count() > 1:
    if not multihost_utils.broadcast_one_to_all(np.int32(error is None)):
      raise error or WorkdirError("process 0 cannot use the workdir; its output says why")
  elif error:
    raise error


def on_every_process(value: int) -> list[int]:
  """`value` of each process of a multi-host run, in process order (`[value]` in any other run).
  Every process must call it."""
  if not jax.distributed.is_initialized() or jax.process_count() == 1:
    return [value]
  return multihost_utils.process_allgather(np.int32(value)).tolist()


def json_safe(obj):
  """`obj` with every non-finite float replaced by None: JSON has no NaN or infinity."""
  if isinstance(obj, float):
    return obj if math.isfinite(obj) else None
  if isinstance(obj, dict):
    return {key: json_safe(value) for key, value in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [json_safe(value) for value in obj]
  return obj


def write_json(path: str, obj) -> None:
  """Writes `obj` as strict JSON, atomically (see `fgjax.storage.write_bytes`), on the writer."""
  if is_writer():
    write_text(path, json.dumps(json_safe(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


write_text = storage.write_text  # atomic (see `fgjax.storage.write_bytes`)


def read_json(path: str) -> Optional[dict]:
  """The JSON object in `path`, None if there is no such file; WorkdirError if it is damaged."""
  try:
    text = storage.read_text(path)
    return None if text is None else json.loads(text)
  except ValueError as error:  # not JSON, or not UTF-8
    raise WorkdirError(f"cannot read {path} ({error})") from None


def metrics_row(line: str) -> Optional[dict]:
  """The row in a line of `metrics.jsonl`; None if the line is damaged or cut short by a kill."""
  try:
    row = json.loads(line)
  except ValueError:
    return None
  return row if isinstance(row, dict) and isinstance(row.get("step"), int) else None


def read_metrics(run_dir: str) -> list[dict]:
  """All rows of a trial's `metrics.jsonl`, in order (lines that are not rows are skipped)."""
  text = storage.read_text(os.path.join(run_dir, METRICS_FILE)) or ""
  return [row for row in map(metrics_row, text.splitlines()) if row is not None]


class Lock(storage.Lock):
  """The lock of `workdir` (see `fgjax.storage.Lock`), which only the writer takes."""

  def __init__(self, workdir: str):
    super().__init__(os.path.join(workdir, LOCK_FILE))

  def acquire(self) -> None:
    if is_writer():
      super().acquire()


def describe_machine() -> dict:
  """CPU model, CPU counts, accelerator and library versions: what a timing depends on."""
  cpu = platform.processor() or platform.machine()
  with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
    cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
  import flax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  return {"cpu": cpu, "cpus_on_machine": os.cpu_count(),
          "cpus_used": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
          else os.cpu_count(),
          "backend": jax.default_backend(), "device": str(jax.devices()[0].device_kind),
          "device_count": jax.device_count(), "jax": jax.__version__,
          "flax": flax.__version__, "optax": optax.__version__,
          "python": platform.python_version()}


def format_machine(machine: Optional[dict]) -> str:
  """One line naming the machine of `describe_machine()`."""
  if not machine:
    return "unknown machine"
  text = f"{machine['cpu']}, {machine['cpus_used']} of {machine['cpus_on_machine']} CPUs"
  if machine.get("backend") not in (None, "cpu"):
    text += f", {machine.get('device_count', 1)} x {machine['device']}"
  return text + f", jax {machine['jax']}"

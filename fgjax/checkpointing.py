"""A run's checkpoints in `<workdir>/checkpoints`: orbax saves, verified restores, safe fallback.

A checkpoint holds two orbax items:
- "state": the `TrainState` of every trial of the run, stacked along a leading trial axis
  (parameters, optimizer state with its injected hyperparameters, step, tangent key, skip and
  divergence counters) as host numpy copies;
- "progress": JSON with what the training loop carries between chunks (see `train.py`) and a
  CRC-32 of the state's bytes and of that JSON, so that a change to either is caught.

Data order depends only on (seed, epoch) and tangents on (seed, step), so the step inside the state
is all a resumed run needs to continue exactly where the checkpoint was taken.

Saves are asynchronous: the state is copied to host memory (the training step donates its device
buffers, so orbax must not hold them) and written by orbax in the background while training goes
on; orbax writes each checkpoint into a temporary directory and renames it when complete (on
gs://, which cannot rename, it marks it complete with a last `commit_success.txt` object), so a
killed run never leaves a half-written checkpoint under a step's name. A state holding a non-finite
value, or one whose every trial the divergence guard stopped, is never saved. A write that fails
(a full disk, no permission) ends in a one-line WorkdirError; earlier checkpoints stay.

Restores verify what they read: a checkpoint that orbax cannot read, whose CRC-32 differs from the
one saved with it, or whose step differs from its directory's name, is reported with a warning and
the next older one is tried.

Orbax's INFO records (about twenty per save) are silenced only while a `Checkpoints` is open; a
program importing fgjax keeps its logging. The tracebacks a failed restore leaves behind are
dropped from the first failed restore on (they arrive after it, at no predictable time).
"""

import json
import logging as std_logging
import os
import sys
import zlib
from typing import NamedTuple, Optional

from absl import logging
from etils import epath
import jax
import numpy as np
import orbax.checkpoint as ocp

from fgjax import storage
from fgjax.errors import CheckpointError, WorkdirError


class Restored(NamedTuple):
  step: int
  state: object  # the TrainState, with numpy leaves
  progress: dict


class _DropOrbaxInfo(std_logging.Filter):
  """Drops orbax's INFO records (about twenty per save); its warnings and errors pass."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return (record.levelno >= std_logging.WARNING
            or f"{os.sep}orbax{os.sep}" not in record.pathname)


def _drop_abandoned_restore_callbacks() -> None:
  """Installs an unraisable-exception hook that drops the tracebacks a failed orbax restore leaves
  behind (idempotent).

  When one read of a restore fails, orbax closes its asyncio event loop while tensorstore's other
  reads are still in flight; as they finish, their callbacks find the loop closed and Python
  prints each `RuntimeError: Event loop is closed` as an unraisable exception, a page of stack
  traces after our one-line warning. Only those are dropped; every other unraisable exception
  reaches the previous hook.
  """
  previous = sys.unraisablehook
  if getattr(previous, "drops_abandoned_restore_callbacks", False):
    return

  def hook(unraisable):
    if not (isinstance(unraisable.exc_value, RuntimeError)
            and str(unraisable.exc_value) == "Event loop is closed"):
      previous(unraisable)

  hook.drops_abandoned_restore_callbacks = True
  sys.unraisablehook = hook


def _to_host(state):
  """A host copy of every leaf: a numpy view of a CPU array would see the buffer donated next."""
  return jax.tree.map(lambda leaf: np.array(leaf, copy=True), state)


def _crc32(host_state, progress: dict) -> int:
  """CRC-32 of the state's leaves (dtype, shape and bytes) in tree order, then of `progress`."""
  crc = 0
  for leaf in jax.tree.leaves(host_state):
    crc = zlib.crc32(f"{leaf.dtype.str}{leaf.shape}".encode(), crc)
    crc = zlib.crc32(np.ascontiguousarray(leaf), crc)
  return zlib.crc32(json.dumps(progress, sort_keys=True).encode(), crc)


def _nonfinite_leaves(host_state) -> list[str]:
  """Key paths of the floating-point leaves that hold a NaN or an infinity."""
  return [jax.tree_util.keystr(path)
          for path, leaf in jax.tree_util.tree_leaves_with_path(host_state)
          if np.issubdtype(leaf.dtype, np.inexact) and not np.isfinite(leaf).all()]


class Checkpoints:
  """The checkpoints of one run directory, through an `ocp.CheckpointManager`.

  Use as a context manager: leaving it waits for the last asynchronous save to finish. The
  directory is created and tried with a small file first, so that a path that is not a writable
  directory is reported before any training.
  """

  def __init__(self, directory: str, keep: int):
    self.directory = storage.absolute(directory)
    with storage.reported("write checkpoints in", self.directory):
      directory = epath.Path(self.directory)
      directory.mkdir(parents=True, exist_ok=True)
      (directory / ".write_test").write_text("")
      (directory / ".write_test").unlink()
    if storage.is_remote(self.directory):
      storage.point_tensorstore_at_emulator()
    self._filter = _DropOrbaxInfo()
    std_logging.getLogger("absl").addFilter(self._filter)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, cleanup_tmp_directories=True,
                                           enable_async_checkpointing=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def __enter__(self) -> "Checkpoints":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def close(self) -> None:
    """Waits for the last save; a save that failed is a WorkdirError (earlier ones are intact)."""
    try:
      self._wait()
    finally:
      self._manager.close()
      std_logging.getLogger("absl").removeFilter(self._filter)

  def _wait(self) -> None:
    try:
      self._manager.wait_until_finished()
    except Exception as error:  # pylint: disable=broad-except
      # orbax re-raises what tensorstore or the file system said, in its own types.
      raise WorkdirError(f"cannot write a checkpoint in {self.directory} "
                         f"({storage.first_line(error)}); the earlier ones are kept") from None

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, state, progress: dict) -> bool:
    """Starts saving `state` (TrainStates stacked over trials) and `progress` (JSON) under the
    trials' step.

    Both are copied first, so the caller may go on changing them (and donating the state's
    buffers). Returns False, saving nothing, if every trial diverged or the state holds a
    non-finite value.
    """
    host = _to_host(state)
    step = int(np.max(host.step))
    bad = _nonfinite_leaves(host)
    if np.all(host.diverged_at >= 0) or bad:
      logging.error("not saving the state of step %d: %s", step,
                    f"non-finite values in {', '.join(bad)}" if bad else "it diverged")
      return False
    progress = json.loads(json.dumps(progress))
    self._wait()  # a failed earlier save is reported before the next one starts
    try:
      self._manager.save(step, force=True, args=ocp.args.Composite(
          state=ocp.args.StandardSave(host),
          progress=ocp.args.JsonSave({"progress": progress,
                                      "crc32": _crc32(host, progress)})))
    except Exception as error:  # pylint: disable=broad-except
      raise WorkdirError(f"cannot write the checkpoint of step {step} in {self.directory} "
                         f"({storage.first_line(error)}); the earlier ones are kept") from None
    logging.info("checkpoint of step %d started in %s", step, self.directory)
    return True

  def restore(self, template) -> Optional[Restored]:
    """The newest valid checkpoint, restored into the structure of `template` (a TrainState).

    Returns None when there is no checkpoint. Invalid checkpoints newer than the one restored are
    deleted with a warning (the resumed run writes them again, identically). If none is valid,
    raises CheckpointError and deletes nothing.
    """
    target = jax.tree.map(np.asarray, template)
    invalid = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        restored = self._restore_step(step, target)
      except Exception as error:  # pylint: disable=broad-except
        # Whatever a damaged checkpoint makes orbax or tensorstore raise, the answer is the same:
        # report it in one line and fall back to the next older checkpoint.
        _drop_abandoned_restore_callbacks()
        logging.warning("checkpoint %d in %s is unreadable or corrupted (%s)", step,
                        self.directory, storage.first_line(error))
        invalid.append(step)
        continue
      for bad in invalid:
        logging.warning("deleting the invalid checkpoint %d; resuming from step %d", bad, step)
        self._manager.delete(bad)
      return restored
    if invalid:
      raise CheckpointError(
          f"no valid checkpoint in {self.directory}: steps {sorted(invalid)} are unreadable or "
          "corrupted; start over with --restart")
    return None

  def _restore_step(self, step: int, target) -> Restored:
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), progress=ocp.args.JsonRestore()))
    state, saved = restored.state, restored.progress
    if not isinstance(saved, dict) or "crc32" not in saved or "progress" not in saved:
      raise ValueError("its progress item lacks the CRC-32 or the progress record")
    if _crc32(state, saved["progress"]) != saved["crc32"]:
      raise ValueError("the CRC-32 of its state and progress differs from the one saved with it")
    if int(np.max(state.step)) != step:
      raise ValueError(f"it holds the state of step {int(np.max(state.step))}")
    return Restored(step=step, state=state, progress=saved["progress"])

"""A run's checkpoints in `<workdir>/checkpoints`: orbax saves, verified restores, safe fallback.

A checkpoint holds two orbax items:
- "state": the `TrainState` of every trial of the run, stacked along a leading trial axis, as
  host numpy copies (optimizer state, tangent key and counters included);
- "progress": JSON with what the training loop carries between chunks (`fgjax.progress`) and a
  CRC-32 of the state's bytes and of that JSON, so that a change to either is caught.

Data order depends only on (seed, epoch) and tangents on (seed, step), so the step inside the state
is all a resumed run needs to continue exactly where the checkpoint was taken.

Saves are asynchronous: orbax writes a host copy of the state in the background while training
goes on, into a temporary directory that it renames when complete (on gs://, which cannot rename,
it marks it complete with a last `commit_success.txt` object), so a killed run never leaves a
half-written checkpoint under a step's name. A save that fails (a full disk, no permission) is
one line, and earlier checkpoints stay; a restore falls back past checkpoints that are unreadable
or fail their CRC-32.
"""

import contextlib
import errno
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
from fgjax import workdir as files
from fgjax.errors import CheckpointError, WorkdirError


class Restored(NamedTuple):
  step: int
  state: object  # the TrainState, with numpy leaves
  progress: dict


def _orbax_to_file(path: Optional[str]):
  """A logging filter that keeps orbax's records from the terminal: it appends their warnings and
  errors (a failed save logs a page of tracebacks from each of its threads) to the file `path`
  (if not None) and drops the rest (about twenty INFO records per save); other records pass, so a
  program importing fgjax keeps its logging."""
  formatter = std_logging.Formatter("%(asctime)s %(levelname)s %(filename)s:%(lineno)d] "
                                    "%(message)s")

  def keep(record: std_logging.LogRecord) -> bool:
    if f"{os.sep}orbax{os.sep}" not in record.pathname:
      return True
    if path is not None and record.levelno >= std_logging.WARNING:
      # a record that cannot be written (a full disk) is dropped: the save's own error says why
      with contextlib.suppress(OSError), open(path, "a", encoding="utf-8") as f:
        f.write(formatter.format(record) + "\n")
    return False

  return keep


def _no_space(error: BaseException) -> bool:
  """Whether `error`, or an exception it was raised from, says that the disk is full."""
  while error is not None:
    if getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in str(error):
      return True
    error = error.__cause__ or error.__context__
  return False


def _not_a_directory(path: str) -> Optional[str]:
  """Why `path` cannot be a directory of checkpoints, if it is a file or a dangling link."""
  if os.path.islink(path) and not os.path.exists(path):
    return f"it is a link to {os.readlink(path)}, which does not exist"
  if os.path.exists(path) and not os.path.isdir(path):
    return "it is a file, not a directory"
  return None


def _drop_abandoned_callbacks() -> None:
  """Installs (once, for good) an unraisable-exception hook that drops each `RuntimeError: Event
  loop is closed` a failed orbax restore or save leaves behind, at no predictable time: when one
  read or write fails, orbax closes its asyncio event loop while tensorstore's others are still in
  flight, and their callbacks would print pages of stack traces after our one-line message. Every
  other unraisable exception reaches the previous hook."""
  previous = sys.unraisablehook
  if getattr(previous, "drops_abandoned_callbacks", False):
    return

  def hook(unraisable):
    if not (isinstance(unraisable.exc_value, RuntimeError)
            and str(unraisable.exc_value) == "Event loop is closed"):
      previous(unraisable)

  hook.drops_abandoned_callbacks = True
  sys.unraisablehook = hook


def _crc32(host_state, progress: dict) -> int:
  """CRC-32 of the state's leaves (dtype, shape and bytes) in tree order, then of `progress`."""
  crc = 0
  for leaf in jax.tree.leaves(host_state):
    crc = zlib.crc32(f"{leaf.dtype.str}{leaf.shape}".encode(), crc)
    crc = zlib.crc32(np.ascontiguousarray(leaf), crc)
  return zlib.crc32(json.dumps(progress, sort_keys=True).encode(), crc)


def _check_writable(directory: str) -> None:
  """Creates `directory` and writes a small file in it; WorkdirError if that fails. Only the writer
  tries (the processes' probes of a shared directory would collide); the others wait for it."""

  def probe():
    why = not storage.is_remote(directory) and _not_a_directory(directory)
    if why:
      raise WorkdirError(f"cannot write checkpoints in {directory}: {why}; move it away or use "
                         "another workdir")
    with storage.reported("write checkpoints in", directory):
      path = epath.Path(directory)
      path.mkdir(parents=True, exist_ok=True)
      (path / ".write_test").write_text("")
      (path / ".write_test").unlink()

  files.on_writer(probe)


class Checkpoints(contextlib.AbstractContextManager):
  """The checkpoints of one run directory, through an `ocp.CheckpointManager`.

  Use as a context manager: leaving it waits for the last asynchronous save to finish. The
  directory is tried first, so that one that cannot be written is reported before any training.
  Orbax's warnings and errors go to `log_path`.
  """

  def __init__(self, directory: str, keep: int, log_path: Optional[str] = None):
    self.directory = directory if storage.is_remote(directory) else os.path.abspath(directory)
    _check_writable(self.directory)
    if storage.is_remote(self.directory):
      storage.point_tensorstore_at_emulator()
    self._saving = None  # the step of the last save started
    _drop_abandoned_callbacks()
    self._filter = _orbax_to_file(log_path)
    std_logging.getLogger("absl").addFilter(self._filter)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, cleanup_tmp_directories=True,
                                           enable_async_checkpointing=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def __exit__(self, *exc_info) -> None:
    self.close()

  def close(self) -> None:
    """Waits for the last save (see `wait`) and closes orbax's manager; a save that failed is a
    WorkdirError."""
    failed = None
    try:
      self.wait()
    except WorkdirError as error:
      failed = error
    try:
      self._manager.close()
    except Exception as error:  # pylint: disable=broad-except
      # orbax may raise a failed save's error again here, from another of its threads
      failed = failed or WorkdirError(self._failure(error))
    if failed is not None:
      # orbax's threads may still log the failed save after this (with a traceback, after the
      # caller's one-line error): their records stay off the terminal for the rest of the process
      raise failed
    std_logging.getLogger("absl").removeFilter(self._filter)

  def wait(self) -> None:
    """Waits for the save in flight; one that failed is a WorkdirError (see `_failure`)."""
    try:
      self._manager.wait_until_finished()
    except Exception as error:  # pylint: disable=broad-except
      # orbax re-raises what tensorstore or the file system said, in its own types.
      raise WorkdirError(self._failure(error)) from None

  def _failure(self, error: Exception) -> str:
    """One line for the failed save of step `self._saving`: the cause, and what is kept."""
    kept = [step for step in self._manager.all_steps() if step != self._saving]
    kept = f"checkpoints up to step {max(kept)} are kept" if kept else "no checkpoint is kept"
    if _no_space(error):
      return (f"no space left on device while saving checkpoint {self._saving} in "
              f"{self.directory}; {kept}")
    return (f"cannot write checkpoint {self._saving} in {self.directory} "
            f"({storage.first_line(error)}); {kept}")

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, state, progress: dict) -> bool:
    """Starts saving `state` (TrainStates stacked over trials) and `progress` (JSON) under the
    trials' step; both are copied first, so the caller may go on changing them and donating the
    state's buffers. Returns False, saving nothing, if every trial diverged or the state holds a
    non-finite value."""
    host = jax.tree.map(lambda leaf: np.array(leaf, copy=True), state)
    step = int(np.max(host.step))
    bad = [jax.tree_util.keystr(path) for path, leaf in jax.tree_util.tree_leaves_with_path(host)
           if np.issubdtype(leaf.dtype, np.inexact) and not np.isfinite(leaf).all()]
    if np.all(host.diverged_at >= 0) or bad:
      logging.error("not saving the state of step %d: %s", step,
                    f"non-finite values in {', '.join(bad)}" if bad else "it diverged")
      return False
    progress = json.loads(json.dumps(progress))
    self.wait()  # a failed earlier save is reported before the next one starts
    self._saving = step
    try:
      self._manager.save(step, force=True, args=ocp.args.Composite(
          state=ocp.args.StandardSave(host),
          progress=ocp.args.JsonSave({"progress": progress,
                                      "crc32": _crc32(host, progress)})))
    except Exception as error:  # pylint: disable=broad-except
      raise WorkdirError(self._failure(error)) from None
    logging.info("checkpoint of step %d started in %s", step, self.directory)
    return True

  def restore(self, template) -> Optional[Restored]:
    """The newest valid checkpoint, restored into the structure of `template` (a TrainState).

    Returns None when there is no checkpoint. Invalid checkpoints newer than the one restored are
    deleted with a warning (the resumed run writes them again, identically). If none is valid,
    raises CheckpointError and deletes nothing. The processes of a multi-host run must restore
    the same step (they share the workdir), else each raises WorkdirError.
    """
    restored = self._restore_newest(template)
    steps = files.on_every_process(-1 if restored is None else restored.step)
    if len(set(steps)) > 1:
      raise WorkdirError(f"the processes found different checkpoints in {self.directory} (newest "
                         f"steps {steps}, -1: none): give them one workdir that all of them share")
    return restored

  def _restore_newest(self, template) -> Optional[Restored]:
    """`restore` on this process alone."""
    target = jax.tree.map(np.asarray, template)
    invalid = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        restored = self._restore_step(step, target)
      except Exception as error:  # pylint: disable=broad-except
        # whatever orbax or tensorstore raise for a damaged checkpoint: one line, then an older one
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
    """Checkpoint `step`, verified: ValueError if its CRC-32 or its step is not the one saved."""
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

"""Stopping a run cleanly when it is told to: SIGTERM (preemption) and Ctrl-C (SIGINT).

Schedulers send SIGTERM some time before they kill a job (Colab, preemptible TPU VMs, Kubernetes,
SLURM). While `handle_signals()` is active, the first SIGTERM or SIGINT only asks the training
loop to stop: it finishes its current chunk of steps, saves a checkpoint, waits for every save in
flight and raises `Stopped`. A second signal stops the process at once (as a kill does, which a
run also survives).

A multi-process run must stop all its processes at the same step, since they save a checkpoint
together. There Ctrl-C is not intercepted and SIGTERM is left to jax's preemption service (started
by `jax.distributed.initialize`, which catches SIGTERM itself): when any process is told to stop,
the service tells the others; each reports the last number it passed to
`multihost_utils.reached_preemption_sync_point`, and all stop at the largest plus one. The numbers
must thus count up by one identically everywhere: the loop passes the number of the chunk since
this process started training, and chunks depend on the restored step alone, so chunk n ends at the
same step in every process.
"""

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator, Optional

from absl import logging
import jax
from jax.experimental import multihost_utils

# Exit statuses of a stopped run, as a shell reports a process the signal ended: 128 + its number.
EXIT_PREEMPTED = 128 + signal.SIGTERM  # 143
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130
_EXIT_STATUS = {signal.SIGTERM: EXIT_PREEMPTED, signal.SIGINT: EXIT_INTERRUPTED}

_received: Optional[int] = None  # the first signal received while handle_signals() is active


class Stopped(BaseException):
  """A run that a signal stopped after saving its checkpoint; the same command resumes it. A
  BaseException, like KeyboardInterrupt, so that handlers of a failed run (a script that logs it
  and goes on with the next) let it through: the signal stops the whole command."""

  def __init__(self, signum: int, step: Optional[int], directory: str):
    self.exit_status = _EXIT_STATUS[signum]
    kept = (f"checkpoint of step {step} saved in {directory}" if step is not None
            else "no checkpoint was saved")
    what = "preempted (SIGTERM)" if signum == signal.SIGTERM else "interrupted (Ctrl-C)"
    super().__init__(f"{what}: {kept}; rerun the same command to resume")


def _handle(signum, frame) -> None:
  """The first signal asks the loop to stop; a second one ends the process now."""
  del frame
  global _received
  if _received is None:
    _received = signum
    logging.warning("%s received: stopping after this chunk of steps and its checkpoint (send it "
                    "again to stop at once)", signal.Signals(signum).name)
    return
  print(f"stopped at once by a second {signal.Signals(signum).name}: rerun the same command to "
        "resume from the last checkpoint", file=sys.stderr, flush=True)
  os._exit(_EXIT_STATUS[signum])  # pylint: disable=protected-access


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
  """Turns SIGTERM and SIGINT into stop requests while active, except off the main thread (Python
  delivers signals there only) and in a multi-process run."""
  global _received
  previous = {}
  if (threading.current_thread() is threading.main_thread()
      and not jax.distributed.is_initialized()):
    previous = {signum: signal.signal(signum, _handle) for signum in _EXIT_STATUS}
  try:
    yield
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)
    _received = None


def stop_requested(chunk: int) -> Optional[int]:
  """The signal that asks the run to stop at the end of its `chunk`-th chunk since this process
  started training (counted from 1), None to go on. Every process calls it at every chunk end."""
  if jax.distributed.is_initialized():
    try:
      return signal.SIGTERM if multihost_utils.reached_preemption_sync_point(chunk) else None
    except RuntimeError:  # jax's preemption service is switched off (jax_enable_preemption_service)
      return None
  return _received

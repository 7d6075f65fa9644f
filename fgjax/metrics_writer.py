"""A trial's metrics as JSON lines (`metrics.jsonl`) and TensorBoard events, side by side.

TensorBoard events are written with tensorboardX's protocol buffers, without TensorFlow (clu's
default writer imports TensorFlow, which fgjax does not otherwise need), synchronously and by one
writer: each session of a run writes its own event file (named with its start time), so no two
writers ever share a file and a kill can cut only the last record of the file it was writing,
which TensorBoard's reader skips. Only process 0 of a multi-host run writes.
"""

import io
import json
import os
import time
import types
from typing import Optional

from absl import logging
from tensorboardX import summary as tb_summary
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX import record_writer
from tensorboardX.proto.event_pb2 import Event, SessionLog

from fgjax import storage
from fgjax import workdir as workdir_files


class _ObjectEventsFile:
  """A TensorBoard events file on gs://: its records are held in memory and the whole object is
  uploaded at each flush (`MetricWriter.flush`: every FLUSH_SECONDS, before each checkpoint and on
  close). tensorboardX's own gs:// writer uploads its file again when garbage-collected after
  closing, at interpreter exit if need be (an error then, or a hang while the service is
  unreachable)."""

  def __init__(self, path: str):
    self._path, self._buffer = path, io.BytesIO()

  def write(self, data: bytes) -> None:
    self._buffer.write(data)

  def flush(self) -> None:
    storage.write_bytes(self._path, self._buffer.getvalue())

  close = flush


# What tensorboardX asks of a writer factory for a scheme; an object store needs no directory.
record_writer.register_writer_factory("gs", types.SimpleNamespace(
    open=_ObjectEventsFile, directory_check=lambda path: None))

# TensorBoard events are written through this often (and at checkpoints), for a live TensorBoard.
FLUSH_SECONDS = 10.0
# The metrics TensorBoard's HParams dashboard shows beside each run's config.
HPARAMS_METRICS = ("validation_loss", "validation_accuracy", "test_loss", "test_accuracy",
                   "epoch_train_loss")


class MetricWriter:
  """Appends one JSON object per call to `<run_dir>/metrics.jsonl` and logs its scalars to
  TensorBoard, with `hparams` (flat, of numbers, strings and bools) as the run's hyperparameters.

  A run that resumes at `start_step` first drops the rows past that step, which a killed run
  wrote after its last checkpoint and will write again: from the JSON lines, and from TensorBoard
  by a purge event (TensorBoard's reader discards the earlier events from that step on). Rows at
  `start_step` itself are kept. `last_step` is the step of the last row kept (None if there is
  none), which the caller checks against its checkpoint. `flush()` before each checkpoint makes
  every row up to its step durable.
  """

  def __init__(self, run_dir: str, start_step: int = 0, hparams: Optional[dict] = None):
    self._path = os.path.join(run_dir, workdir_files.METRICS_FILE)
    self._jsonl = self._events = self.last_step = None
    self._flushed = time.time()
    if not workdir_files.is_writer():
      return
    self.last_step = _drop_rows_after(self._path, start_step)
    events_dir = os.path.join(run_dir, workdir_files.TENSORBOARD_DIR)
    self._jsonl = storage.AppendFile(self._path)
    storage.makedirs(events_dir)
    with storage.reported("write", events_dir):
      # tensorboardX names the file with its start second; the nanoseconds keep two sessions
      # apart and in order within one second
      self._events = EventsWriter(os.path.join(events_dir, "events"), f".{time.time_ns()}")
    # Also at step 0: a run killed before its first checkpoint starts over after its rows.
    self._write_event(Event(step=start_step + 1, session_log=SessionLog(status=SessionLog.START)))
    if hparams and not start_step:
      experiment, session_start, _ = tb_summary.hparams(hparams, dict.fromkeys(HPARAMS_METRICS))
      self._write_event(Event(step=0, summary=experiment))
      self._write_event(Event(step=0, summary=session_start))

  def write(self, row: dict) -> None:
    """Writes `row`, which must hold an integer "step"; numbers become TensorBoard scalars."""
    if self._jsonl is None:
      return
    self._jsonl.write(json.dumps(workdir_files.json_safe(row)) + "\n")
    for name, value in row.items():
      if name != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
        self._write_event(Event(step=row["step"], summary=tb_summary.scalar(name, value)))
    if time.time() - self._flushed > FLUSH_SECONDS:
      self.flush()

  def _write_event(self, event: Event) -> None:
    event.wall_time = time.time()
    with storage.reported("write TensorBoard events in", os.path.dirname(self._path)):
      self._events.write_event(event)

  def flush(self) -> None:
    """Makes every row written so far durable: the buffered TensorBoard events written through,
    and on gs:// the JSON lines uploaded."""
    if self._events is not None:
      self._flushed = time.time()
      self._jsonl.flush()
      with storage.reported("write TensorBoard events in", os.path.dirname(self._path)):
        self._events.flush()

  def close(self) -> None:
    if self._jsonl is not None:
      self.flush()
      self._jsonl.close()
      self._events.close()
      self._jsonl = self._events = None


def _drop_rows_after(path: str, step: int) -> Optional[int]:
  """Rewrites `path` (atomically) without its rows past `step`, any partly written line and any
  line that is not a row; returns the step of the last row kept."""
  text = storage.read_text(path)
  if text is None:
    return None
  rows = [workdir_files.metrics_row(line) for line in text.splitlines()]
  damaged = rows[:-1].count(None)  # the last line may just have been cut by a kill
  if damaged:
    logging.warning("%s: dropped %d damaged line(s) that were not metrics rows", path, damaged)
  kept = [row for row in rows if row is not None and row["step"] <= step]
  workdir_files.write_text(path, "".join(json.dumps(row) + "\n" for row in kept))
  return kept[-1]["step"] if kept else None

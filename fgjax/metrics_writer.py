"""A trial's metrics as JSON lines (`metrics.jsonl`) and TensorBoard events, side by side.

TensorBoard files come from tensorboardX, which writes them without TensorFlow (clu's default
writer imports TensorFlow, which fgjax does not otherwise need). On gs:// they are written through
fgjax.storage (`_ObjectEventsFile`), not through tensorboardX's own google-cloud-storage writer,
which uploads its file again when garbage-collected after closing, at interpreter exit if need be
(an error then, or a hang while the service is unreachable). Only process 0 of a multi-host run
writes.
"""

import io
import json
import os
from typing import Optional

from absl import logging
import tensorboardX
from tensorboardX import record_writer
from tensorboardX import SummaryWriter

from fgjax import storage
from fgjax import workdir as workdir_files


class _ObjectEventsFile:
  """A TensorBoard events file on gs://: its records are held in memory and the whole object is
  uploaded at each flush (tensorboardX flushes every 2 minutes and on close; `MetricWriter.flush`
  before each checkpoint)."""

  def __init__(self, path: str):
    self._path, self._buffer = path, io.BytesIO()

  def write(self, data: bytes) -> None:
    self._buffer.write(data)

  def flush(self) -> None:
    storage.write_bytes(self._path, self._buffer.getvalue())

  def close(self) -> None:
    self.flush()


class _ObjectEventsFactory:
  """What tensorboardX asks of a writer for a path prefix; an object store needs no directory."""

  def open(self, path: str) -> _ObjectEventsFile:
    return _ObjectEventsFile(path)

  def directory_check(self, path: str) -> None:
    del path


record_writer.register_writer_factory("gs", _ObjectEventsFactory())


class MetricWriter:
  """Appends one JSON object per call to `<run_dir>/metrics.jsonl` and logs its scalars.

  A run that resumes at `start_step` first drops the rows past that step, which a killed run
  wrote after its last checkpoint and will write again: from the JSON lines, and from TensorBoard
  through its purge step. Rows at `start_step` itself are kept. `last_step` is the step of the
  last row kept (None if there is none), which the caller checks against its checkpoint.

  `flush()` makes the rows written so far durable; call it before saving a checkpoint, so that
  the files never end before the checkpoint a resumed run starts from (on gs://, rows are
  uploaded at flushes and at most every 30 s, see fgjax.storage.AppendFile).
  """

  def __init__(self, run_dir: str, start_step: int = 0, hparams: Optional[dict] = None):
    self._path = os.path.join(run_dir, workdir_files.METRICS_FILE)
    self._jsonl = self._tensorboard = None
    self.last_step = None
    if not workdir_files.is_writer():
      return
    self.last_step = _drop_rows_after(self._path, start_step)
    self._jsonl = storage.AppendFile(self._path)
    self._tensorboard = SummaryWriter(os.path.join(run_dir, workdir_files.TENSORBOARD_DIR),
                                      purge_step=start_step + 1)
    if hparams and start_step == 0:
      # Into this writer's own events file: `add_hparams` would open a second writer on a file of
      # the same name (same second, same host), which on gs:// replaces this one's object.
      for summary in tensorboardX.summary.hparams(hparams, {}):
        self._tensorboard.file_writer.add_summary(summary, global_step=0)

  def write(self, row: dict) -> None:
    """Writes `row`, which must hold an integer "step"; numbers become TensorBoard scalars."""
    if self._jsonl is None:
      return
    self._jsonl.write(json.dumps(workdir_files.json_safe(row)) + "\n")
    for name, value in row.items():
      if name != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
        self._tensorboard.add_scalar(name, value, row["step"])

  def flush(self) -> None:
    if self._jsonl is not None:
      self._jsonl.flush()
      self._tensorboard.flush()

  def close(self) -> None:
    if self._jsonl is not None:
      self._jsonl.close()
      self._tensorboard.close()


def _drop_rows_after(path: str, step: int) -> Optional[int]:
  """Rewrites `path` (atomically) without its rows past `step`, any partly written line and any
  line that is not a row; returns the step of the last row kept."""
  text = storage.read_text(path)
  if text is None:
    return None
  kept, last, damaged = [], None, 0
  lines = text.splitlines(keepends=True)
  for number, line in enumerate(lines):
    try:
      row = json.loads(line)
    except ValueError:
      row = None
    if not (isinstance(row, dict) and isinstance(row.get("step"), int)):
      damaged += number < len(lines) - 1  # the last line may just have been cut by a kill
    elif row["step"] <= step:
      kept.append(json.dumps(row) + "\n")
      last = row["step"]
  if damaged:
    logging.warning("%s: dropped %d damaged line(s) that were not metrics rows", path, damaged)
  workdir_files.write_text(path, "".join(kept))
  return last

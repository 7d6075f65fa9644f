"""A trial's metrics as JSON lines (`metrics.jsonl`) and TensorBoard events, side by side.

TensorBoard files come from tensorboardX, which writes them without TensorFlow (clu's default
writer imports TensorFlow, which fgjax does not otherwise need). Only process 0 of a multi-host
run writes.
"""

import json
import os
from typing import Optional

from absl import logging
from tensorboardX import SummaryWriter

from fgjax import workdir as workdir_files
from fgjax.errors import WorkdirError


class MetricWriter:
  """Appends one JSON object per call to `<run_dir>/metrics.jsonl` and logs its scalars.

  A run that resumes at `start_step` first drops the rows past that step, which a killed run
  wrote after its last checkpoint and will write again: from the JSON lines, and from TensorBoard
  through its purge step. Rows at `start_step` itself are kept. `last_step` is the step of the
  last row kept (None if there is none), which the caller checks against its checkpoint.
  """

  def __init__(self, run_dir: str, start_step: int = 0, hparams: Optional[dict] = None):
    self._path = os.path.join(run_dir, workdir_files.METRICS_FILE)
    self._jsonl = self._tensorboard = None
    self.last_step = None
    if not workdir_files.is_writer():
      return
    self.last_step = _drop_rows_after(self._path, start_step)
    try:
      self._jsonl = open(self._path, "a", encoding="utf-8")
    except OSError as error:
      raise WorkdirError(f"cannot write {self._path}: {error.strerror or error}") from None
    self._tensorboard = SummaryWriter(os.path.join(run_dir, workdir_files.TENSORBOARD_DIR),
                                      purge_step=start_step + 1)
    if hparams and start_step == 0:
      self._tensorboard.add_hparams(hparams, {}, name=".", global_step=0)

  def write(self, row: dict) -> None:
    """Writes `row`, which must hold an integer "step"; numbers become TensorBoard scalars."""
    if self._jsonl is None:
      return
    try:
      self._jsonl.write(json.dumps(workdir_files.json_safe(row)) + "\n")
      self._jsonl.flush()
    except OSError as error:
      raise WorkdirError(f"cannot write {self._path}: {error.strerror or error}") from None
    for name, value in row.items():
      if name != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
        self._tensorboard.add_scalar(name, value, row["step"])

  def close(self) -> None:
    if self._jsonl is not None:
      self._jsonl.close()
      self._tensorboard.close()


def _drop_rows_after(path: str, step: int) -> Optional[int]:
  """Rewrites `path` (atomically) without its rows past `step`, any partly written line and any
  line that is not a row; returns the step of the last row kept."""
  if not os.path.exists(path):
    return None
  kept, last, damaged = [], None, 0
  with open(path, encoding="utf-8") as f:
    lines = f.readlines()
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

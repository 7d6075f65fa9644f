"""Run metrics as JSON lines (`metrics.jsonl`) and TensorBoard events, side by side.

TensorBoard files come from tensorboardX, which writes them without TensorFlow (clu's default
writer imports TensorFlow, which fgjax does not otherwise need).
"""

import json
import os

from tensorboardX import SummaryWriter

METRICS_FILE = "metrics.jsonl"


class MetricWriter:
  """Appends one JSON object per call to `<workdir>/metrics.jsonl` and logs its scalars.

  A run that resumes at `start_step` first drops the rows past that step, which a killed run
  wrote after its last checkpoint and will write again: from the JSON lines, and from TensorBoard
  through its purge step. Rows at `start_step` itself are kept.
  """

  def __init__(self, workdir: str, start_step: int = 0):
    self._path = os.path.join(workdir, METRICS_FILE)
    _drop_rows_after(self._path, start_step)
    self._jsonl = open(self._path, "a", encoding="utf-8")
    self._tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"),
                                      purge_step=start_step + 1)

  def write(self, row: dict) -> None:
    """Writes `row`, which must hold an integer "step"; numbers become TensorBoard scalars."""
    self._jsonl.write(json.dumps(row) + "\n")
    self._jsonl.flush()
    for name, value in row.items():
      if name != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
        self._tensorboard.add_scalar(name, value, row["step"])

  def close(self) -> None:
    self._jsonl.close()
    self._tensorboard.close()


def _drop_rows_after(path: str, step: int) -> None:
  """Rewrites `path` (atomically) without its rows past `step` and any partly written line."""
  if not os.path.exists(path):
    return
  kept = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      try:
        row = json.loads(line)
      except json.JSONDecodeError:
        continue  # a line cut short by a kill
      if row["step"] <= step:
        kept.append(line if line.endswith("\n") else line + "\n")
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.writelines(kept)
  os.replace(tmp, path)


def read_metrics(workdir: str) -> list[dict]:
  """All rows of a run's `metrics.jsonl`, in order."""
  with open(os.path.join(workdir, METRICS_FILE), encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]

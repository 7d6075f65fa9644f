"""Run metrics as JSON lines (`metrics.jsonl`) and TensorBoard events, side by side.

TensorBoard files come from tensorboardX, which writes them without TensorFlow (clu's default
writer imports TensorFlow, which fgjax does not otherwise need).
"""

import json
import os

from tensorboardX import SummaryWriter

METRICS_FILE = "metrics.jsonl"


class MetricWriter:
  """Appends one JSON object per call to `<workdir>/metrics.jsonl` and logs its scalars."""

  def __init__(self, workdir: str):
    self._path = os.path.join(workdir, METRICS_FILE)
    self._jsonl = open(self._path, "a", encoding="utf-8")
    self._tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"))

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


def read_metrics(workdir: str) -> list[dict]:
  """All rows of a run's `metrics.jsonl`, in order."""
  with open(os.path.join(workdir, METRICS_FILE), encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]

"""How long a Table I row takes, from its own training command's speed over one epoch.

  python -m benchmarks.row_time --configs=configs/mnist_cnn_sgd_bp.py,configs/mnist_cnn_sgd_fwd.py \
      -- --config.data.source=npz --config.data.path=mnist.npz

Runs `python -m fgjax.main --config=C --config.num_epochs=1` for each config in a temporary
workdir (the `--config.<field>=<value>` arguments, after `--` or not, go to every run, e.g.
where the data is), reads the run's own `steps_per_second` from its metrics rows (the first
row, which includes compilation, left out when there are more), and projects the config's full
run: its epochs x steps per epoch at that speed, evaluation left out. Runs one after another,
each in its own process, as a user would start them.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

from absl import flags

from benchmarks import common

from fgjax import cli
from fgjax import config_loading

FLAGS = flags.FLAGS
common.define_flags(model=False)
flags.DEFINE_list("configs", None, "Config files to time.")
flags.mark_flag_as_required("configs")


def one_epoch(config_path: str, extra: list[str], workdir: str) -> dict:
  """Trains one epoch of `config_path` in `workdir`; its steps per second and epoch length."""
  command = [sys.executable, "-m", "fgjax.main", f"--config={config_path}",
             f"--workdir={workdir}", "--config.num_epochs=1", *extra]
  common.progress("running: " + " ".join(command))
  subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  speeds = [row["steps_per_second"] for row in rows if "steps_per_second" in row]
  speeds = speeds[1:] or speeds  # the first row includes compilation
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  return {"steps_per_second": statistics.median(speeds), "steps_per_epoch": summary["steps"]}


def main(argv, overrides):
  del argv  # cli.run refuses positional arguments
  rows = []
  with tempfile.TemporaryDirectory() as root:
    for i, path in enumerate(FLAGS.configs):
      measured = one_epoch(path, overrides, os.path.join(root, str(i)))
      epochs = int(config_loading.load_config(path).num_epochs)
      hours = epochs * measured["steps_per_epoch"] / measured["steps_per_second"] / 3600
      rows.append({"config": path, **measured, "epochs": epochs, "projected_hours": hours})
  report = {"machine": common.machine_info(), "rows": rows}
  table = [common.machine_line(report["machine"]), ""] + common.markdown_table(
      ["config", "steps/s", "steps per epoch", "epochs", "projected hours"],
      [[row["config"], f"{row['steps_per_second']:.2f}", str(row["steps_per_epoch"]),
        str(row["epochs"]), f"{row['projected_hours']:.2f}"] for row in rows])
  common.publish(report, "\n".join(table), FLAGS.json)


if __name__ == "__main__":
  cli.run(main, separate_overrides=True)

"""Command line: train several configs and print their results side by side.

  python -m fgjax.compare --workdir=runs/default
  python -m fgjax.compare --workdir=runs/mlp_sgd \
      --configs=configs/mnist_mlp_sgd_fwd.py,configs/mnist_mlp_sgd_bp.py

Each config trains into `<workdir>/<name>`, where name is the config file's stem (plus its
argument), and the table compares test loss, test accuracy and wall-clock time.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging

from fgjax import config_loading
from fgjax import train
from fgjax.data import DataError

FLAGS = flags.FLAGS
flags.DEFINE_list("configs", ["configs/default.py:forward", "configs/default.py:backprop"],
                  "Config files (path.py[:arg]) to train and compare.")
flags.DEFINE_string("workdir", "runs/default", "Parent directory of the runs' workdirs.")


def run_name(spec: str) -> str:
  path, _, argument = spec.partition(":")
  stem = os.path.splitext(os.path.basename(path))[0]
  return f"{stem}_{argument}" if argument else stem


def format_table(rows: list[tuple[str, dict]]) -> str:
  """A fixed-width table of the summaries, one line per run."""
  header = ("run", "estimator", "status", "steps", "test loss", "test acc", "wall-clock s")
  lines = [header]
  for name, s in rows:
    fmt = lambda v, spec: "-" if v is None else format(v, spec)
    lines.append((name, s["estimator"], s["status"], str(s["steps"]), fmt(s["test_loss"], ".4f"),
                  fmt(s["test_accuracy"], ".4f"), fmt(s["wall_clock_seconds"], ".1f")))
  widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
  return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  try:
    configs = [(run_name(spec), config_loading.load_config(spec)) for spec in FLAGS.configs]
    rows = []
    for name, config in configs:
      logging.info("=== %s ===", name)
      rows.append((name, train.train_and_evaluate(config, os.path.join(FLAGS.workdir, name))))
  except (config_loading.ConfigError, DataError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  print(format_table(rows))
  return 0


if __name__ == "__main__":
  app.run(main)

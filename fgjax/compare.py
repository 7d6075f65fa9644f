"""Command line: train several configs and print their results side by side.

  python -m fgjax.compare --workdir=runs/default
  python -m fgjax.compare --workdir=runs/mlp_sgd \
      --configs=configs/mnist_mlp_sgd_fwd.py,configs/mnist_mlp_sgd_bp.py \
      --config.data.source=npz --config.data.path=data/mnist.npz --config.num_seeds=3

Each config trains into `<workdir>/<name>`, where name is the config file's stem (plus its
argument); `--config.<field>=<value>` arguments (as for `fgjax.main`) apply to every config. The
table compares test loss, test accuracy and wall-clock time (mean ± std over seeds).
"""

import os

from absl import flags
from absl import logging

from fgjax import cli
from fgjax import config_loading
from fgjax import train

FLAGS = flags.FLAGS
flags.DEFINE_list("configs", ["configs/default.py:forward", "configs/default.py:backprop"],
                  "Config files (path.py[:arg]) to train and compare.")
flags.DEFINE_string("workdir", "runs/default", "Parent directory of the runs' workdirs.")


def format_table(rows: list[tuple[str, dict]]) -> str:
  """A fixed-width table of the summaries, one line per run."""
  header = ("run", "estimator", "status", "seeds", "test loss", "test acc", "wall-clock s")
  lines = [header]
  for name, s in rows:
    lines.append((name, s["estimator"], s["status"], str(s.get("num_seeds", 1)),
                  cli.result_cell(s, "test_loss"), cli.result_cell(s, "test_accuracy"),
                  f"{s['wall_clock_seconds']:.1f}"))
  widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
  return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in lines)


def main(argv, overrides):
  del argv
  configs = []
  for spec in FLAGS.configs:
    config = config_loading.load_config(spec)
    cli.apply_overrides(config, overrides)
    configs.append((config_loading.run_name(spec), config))
  rows = []
  for name, config in configs:
    logging.info("=== %s ===", name)
    rows.append((name, train.train_and_evaluate(config, os.path.join(FLAGS.workdir, name))))
  print(format_table(rows))
  return 0


if __name__ == "__main__":
  cli.run(main, separate_overrides=True)

"""Command line: train one config into a workdir.

  python -m fgjax.main --config=configs/mnist_mlp_sgd_fwd.py --workdir=runs/mlp_sgd_fwd \
      [--config.learning_rate=1e-3 ...]
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from fgjax import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file (configs/*.py[:arg]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for metrics, checkpoints and the summary.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  summary = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  print(f"{summary['status']}: test loss {summary['test_loss']}, test accuracy "
        f"{summary['test_accuracy']} after {summary['steps']} steps; "
        f"summary in {FLAGS.workdir}/summary.json")
  return 0 if summary["status"] == "completed" else 1


if __name__ == "__main__":
  sys.exit(app.run(main))

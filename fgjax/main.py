"""Command line: train one config into a workdir.

  python -m fgjax.main --config=configs/mnist_mlp_sgd_fwd.py --workdir=runs/mlp_sgd_fwd \
      [--config.learning_rate=1e-3 ...] [--restart] [--distributed]

Rerunning the same command resumes the run from its newest checkpoint (or does nothing if it has
finished); --restart deletes the workdir's run files and trains from the start. A mistake in the
config, the data or the workdir prints one line `error: ...` and exits with status 2; a diverged
run exits with status 1.
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from fgjax import sharding
from fgjax import train
from fgjax.config_loading import ConfigError
from fgjax.data import DataError

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file (configs/*.py[:arg]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for metrics, checkpoints and the summary.")
flags.DEFINE_bool("restart", False, "Delete the workdir's run files (config, metrics, checkpoints, "
                  "summary) and train from the start instead of resuming.")
flags.DEFINE_bool("distributed", False, "Join a multi-host run (jax.distributed.initialize) "
                  "first; Cloud TPU, Slurm and Open MPI clusters are detected.")
flags.DEFINE_string("coordinator_address", None, "--distributed elsewhere: host:port of process 0.")
flags.DEFINE_integer("num_processes", None, "--distributed elsewhere: the number of processes.")
flags.DEFINE_integer("process_id", None, "--distributed elsewhere: this process's index.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  if FLAGS.distributed:
    sharding.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                    FLAGS.process_id)
  try:
    summary = train.train_and_evaluate(FLAGS.config, FLAGS.workdir, restart=FLAGS.restart)
  except (ConfigError, DataError) as error:  # CheckpointError included
    print(f"error: {error}", file=sys.stderr)
    return 2
  if summary["status"] == "diverged":
    kept = summary["last_checkpoint_step"]
    kept = "no checkpoint before it" if kept is None else f"last good checkpoint: step {kept}"
    print(f"diverged: non-finite loss or gradient at step {summary['diverged_at_step']} (last "
          f"finite loss {summary['last_finite_loss']}); {kept}; "
          f"summary in {FLAGS.workdir}/summary.json")
  else:
    print(f"{summary['status']}: test loss {summary['test_loss']}, test accuracy "
          f"{summary['test_accuracy']} after {summary['steps']} steps; "
          f"summary in {FLAGS.workdir}/summary.json")
  return 0 if summary["status"] == "completed" else 1


if __name__ == "__main__":
  sys.exit(app.run(main))

"""Command line: train one config into a workdir.

  python -m fgjax.main --config=configs/mnist_mlp_sgd_fwd.py --workdir=runs/mlp_sgd_fwd \
      [--config.learning_rate=1e-3 ...] [--config.num_seeds=5] [--restart] [--distributed]

Rerunning the same command resumes the run from its newest checkpoint (or does nothing if it has
finished); --restart deletes the workdir's run files and trains from the start. With
`--config.num_seeds=N`, seeds seed..seed+N-1 train together; each writes `<workdir>/seed_<s>/` and
`<workdir>/summary.json` holds their aggregate. A mistake in the config, the data or the workdir
prints one line `error: ...` and exits with status 2; a run that diverged, or skipped steps,
exits with status 1. SIGTERM (a preemption) or Ctrl-C stops a run after a checkpoint of its current
chunk, with one line and status 143 or 130; the same command resumes it.
"""

from absl import flags
from ml_collections import config_flags

from fgjax import cli
from fgjax import sharding
from fgjax import train

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
flags.DEFINE_integer("initialization_timeout", 30, "--distributed: seconds to wait for every "
                     "process to join before giving up with one line.")
flags.mark_flags_as_required(["config", "workdir"])


def describe(summary: dict) -> str:
  """One line for a run's summary: its status and results (a trial's, or several seeds')."""
  if "aggregate" in summary:
    return (f"{summary['status']}: {summary['num_seeds']} seeds ({summary['num_diverged']} "
            f"diverged), test loss {cli.result_cell(summary, 'test_loss')}, test accuracy "
            f"{cli.result_cell(summary, 'test_accuracy')}")
  if summary["status"] == "diverged":
    kept = summary["last_checkpoint_step"]
    kept = "no checkpoint before it" if kept is None else f"last good checkpoint: step {kept}"
    last = summary["last_finite_loss"]
    return (f"diverged: {summary['diverged_reason']} at step {summary['diverged_at_step']} "
            f"(last finite loss {'-' if last is None else f'{last:.4f}'}); {kept}")
  number = lambda v: "nan" if v is None else f"{v:.4f}"
  skipped = summary["num_skipped_steps"]
  return (f"{summary['status']}: test loss {number(summary['test_loss'])}, test accuracy "
          f"{number(summary['test_accuracy'])} after {summary['steps']} steps"
          + (f"; {skipped} steps skipped (non-finite)" if skipped else ""))


def exit_status(summary: dict) -> int:
  """0 for a run that completed with every step applied, 1 otherwise."""
  seeds = summary["per_seed"].values() if "aggregate" in summary else [summary]
  return 0 if all(s["status"] == "completed" and not s["num_skipped_steps"] for s in seeds) else 1


def main(argv):
  del argv
  if FLAGS.distributed:
    sharding.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                    FLAGS.process_id, FLAGS.initialization_timeout)
  summary = train.train_and_evaluate(FLAGS.config, FLAGS.workdir, restart=FLAGS.restart)
  print(f"{describe(summary)}; summary in {FLAGS.workdir}/summary.json")
  return exit_status(summary)


if __name__ == "__main__":
  cli.run(main)

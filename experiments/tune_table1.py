"""Tunes Table I's rows at the full budget: a learning-rate sweep per row, every trial 50 epochs.

  MNIST="--data_source=npz --data_path=<data dir>/mnist.npz"
  python -m experiments.tune_table1 --rows=mnist_mlp_sgd_fwd,mnist_mlp_sgd_bp $MNIST
  python -m experiments.table1 --tuned --num_seeds=5 --rows=mnist_mlp_sgd_fwd,mnist_mlp_sgd_bp $MNIST

The paper tuned each method's learning rate on its own; a fair comparison tunes both methods the
same way, on the validation split, at the budget the table reports. For each row of `--rows`
this sweeps (`fgjax.sweep`, one vmapped program where the machine allows) the learning rates
`factor x` the paper's, for every factor of `--factors` (so the paper's own rate is one of them),
one seed, each trial trained for the row's full length (`--epochs` shortens it), and ranks them by
the final validation loss. The sweep lands in `<sweep_root>/<row>_<E>ep`, where
`experiments.table1 --tuned` finds it (the sweep of most epochs per trial wins) and trains the
best rate with seeds. Finished sweeps are read, not run again; a killed one resumes.
"""

import os

from absl import flags
from absl import logging

from experiments import runs
from fgjax import cli
from fgjax import paper
from fgjax import sweep

FLAGS = flags.FLAGS


def row_sweep(row: str, factors: list[float], args) -> dict:
  """Sweeps `row`'s learning rate over `factors` x the paper's; returns the sweep's results."""
  config = runs.row_config(row)
  overrides = {}
  if args.epochs:
    overrides["num_epochs"] = args.epochs
  if args.data_source:
    overrides["data.source"] = args.data_source
  if args.data_path:
    overrides["data.path"] = args.data_path
  for name, value in overrides.items():
    section, _, field = name.rpartition(".")
    (config[section] if section else config)[field] = value
  rates = tuple(sorted(sweep.parse_spec(
      "learning_rate", ",".join(f"{factor * config.learning_rate:.6g}" for factor in factors))))
  workdir = os.path.join(args.sweep_root, f"{row}_{config.num_epochs}ep")
  logging.info("sweeping %s: learning rates %s, %d epochs each, in %s", row,
               ", ".join(f"{rate:g}" for rate in rates), config.num_epochs, workdir)
  return sweep.sweep(config, workdir, space={"learning_rate": rates},
                     epochs=config.num_epochs, config_spec=f"configs/{row}.py",
                     config_overrides=overrides)


def main(argv):
  if len(argv) > 1:
    raise cli.UserError(f"unexpected arguments: {argv[1:]}")
  unknown = [row for row in FLAGS.rows if not os.path.isfile(
      os.path.join(runs.CONFIG_DIR, f"{row}.py"))]
  if unknown:
    raise cli.UserError(f"--rows: no config for {', '.join(unknown)} under configs/")
  try:
    factors = [float(factor) for factor in FLAGS.factors]
  except ValueError:
    raise cli.UserError(f"--factors={','.join(FLAGS.factors)}: expected numbers") from None
  if not factors or min(factors) <= 0:
    raise cli.UserError(f"--factors={','.join(FLAGS.factors)}: expected positive numbers")
  logging.set_verbosity(logging.INFO)
  for i, row in enumerate(FLAGS.rows, 1):
    results = row_sweep(row, factors, FLAGS)
    best = results["best"]
    print(f"[{i}/{len(FLAGS.rows)}] {row}: "
          + (f"best learning rate {best['hyperparameters']['learning_rate']:g}, validation loss "
             f"{best['validation_loss']:.4f}" if best else "every rate diverged"), flush=True)


def _define_flags():
  flags.DEFINE_list("rows", [row for row in paper.TABLE_I_ROWS if row.startswith("mnist")],
                    "Table I rows (config names) to tune.")
  flags.DEFINE_list("factors", ["0.125", "0.25", "0.5", "1", "2", "4", "8"],
                    "Learning rates tried, as multiples of the paper's.")
  flags.DEFINE_integer("epochs", None, "Epochs per trial (default: the row's own, 50).")
  flags.DEFINE_string("data_source", None, "Override data.source: tfds or npz.")
  flags.DEFINE_string("data_path", None, "Override data.path (the .npz file of data_source=npz).")
  flags.DEFINE_string("sweep_root", os.path.join(runs.REPO, "runs", "sweeps"),
                      "Parent of the sweeps' workdirs (experiments.table1 --sweep_root).")


if __name__ == "__main__":
  _define_flags()
  cli.run(main)

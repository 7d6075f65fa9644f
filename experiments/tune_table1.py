"""Tunes Table I's rows at the full budget: a learning-rate sweep per row, every trial 50 epochs,
then (`--refine`) the other hyperparameters the paper tuned.

  MNIST="--data_source=npz --data_path=<data dir>/mnist.npz"
  python -m experiments.tune_table1 --rows=mnist_mlp_sgd_fwd,mnist_mlp_sgd_bp $MNIST
  python -m experiments.tune_table1 --refine --rows=mnist_mlp_sgd_fwd,mnist_mlp_sgd_bp $MNIST
  python -m experiments.table1 --tuned --num_seeds=5 --rows=mnist_mlp_sgd_fwd,mnist_mlp_sgd_bp $MNIST

The paper tuned each method's learning rate on its own; a fair comparison tunes both methods the
same way, on the validation split, at the budget the table reports. For each row of `--rows`
this sweeps (`fgjax.sweep`, one vmapped program where the machine allows) the learning rates
`factor x` the paper's, for every factor of `--factors` (so the paper's own rate is one of them),
one seed, each trial trained for the row's full length (`--epochs` shortens it), and ranks them by
the final validation loss. The sweep lands in `<sweep_root>/<row>_<E>ep`, where
`experiments.table1 --tuned` finds it (the sweep of most epochs per trial wins) and trains the
best rate with seeds. Finished sweeps are read, not run again; a killed one resumes.

The paper's code grid-searched more than the learning rate: the decay of the SGD rows, the
momentum of the Nesterov rows, beta1 and beta2 of the forward Adam rows (`REFINED_AXES`).
`--refine` follows the learning-rate sweep with a second one per row: the learning rates
`--refine_factors` x the first sweep's best, crossed with those hyperparameters' values (each
row's own value added, so the paper's setting stays a trial), for both methods alike. It lands in
`<sweep_root>/<row>_<E>ep_<names>`, which `experiments.table1 --tuned` prefers to the first.
"""

import os

from absl import flags
from absl import logging

from experiments import runs
from fgjax import cli
from fgjax import paper
from fgjax import sweep
from fgjax import workdir as workdir_files

FLAGS = flags.FLAGS

# Per optimizer, the hyperparameters besides the learning rate that the paper's code searched, and
# the values `--refine` tries (each row's own value is added).
REFINED_AXES = {"sgd": {"decay": (0.0, 1e-6, 1e-5, 1e-4)},
                "nesterov": {"momentum": (0.1, 0.5, 0.9)},
                "adam": {"b1": (0.9, 0.95, 0.99), "b2": (0.999, 0.9995, 0.9999)}}


def _values(name: str, values) -> tuple:
  """`values` as a sweep's spec of `name`: learning rates (multiples of a row's) rounded to 3
  significant digits, as a sweep rounds its ranges, the others as they are."""
  spec = "%.3g" if name == "learning_rate" else "%r"
  return sweep.parse_spec(name, ",".join(spec % value for value in sorted(set(values))))


def _row_config(row: str, args):
  """The row's config with the command line's epochs and data, and those overrides by name."""
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
  return config, overrides


def finished(workdir: str, space: dict, epochs: int):
  """The results.json in `workdir` if it is that of a finished sweep over `space` at `epochs` per
  trial, else None. Read as it is, so that a sweep made before a config field changed (e.g. where
  a Nesterov row evaluates its model) still serves the next stage."""
  results = workdir_files.read_json(os.path.join(workdir, sweep.RESULTS_FILE))
  if results is None or results["epochs_per_trial"] != epochs:
    return None
  return results if results["space"] == {n: list(v) for n, v in space.items()} else None


def _sweep(row: str, config, overrides: dict, space: dict, suffix: str, args) -> dict:
  workdir = os.path.join(args.sweep_root, f"{row}_{config.num_epochs}ep{suffix}")
  results = finished(workdir, space, config.num_epochs)
  if results is not None:
    logging.info("%s: the sweep in %s has finished; read, not run again", row, workdir)
    return results
  logging.info("sweeping %s: %s, %d epochs each, in %s", row, "; ".join(
      f"{name} {', '.join(f'{value:g}' for value in values)}" for name, values in space.items()),
               config.num_epochs, workdir)
  return sweep.sweep(config, workdir, space=space, epochs=config.num_epochs,
                     config_spec=f"configs/{row}.py", config_overrides=overrides)


def row_sweep(row: str, factors: list[float], args) -> dict:
  """Sweeps `row`'s learning rate over `factors` x the paper's; returns the sweep's results."""
  config, overrides = _row_config(row, args)
  space = {"learning_rate": _values("learning_rate",
                                    [factor * config.learning_rate for factor in factors])}
  return _sweep(row, config, overrides, space, "", args)


def refined_space(config, best_rate: float, factors: list[float]) -> dict:
  """The second sweep's space: learning rates `factors` x `best_rate`, crossed with the values of
  REFINED_AXES for the config's optimizer and the config's own."""
  space = {"learning_rate": _values("learning_rate", [f * best_rate for f in factors])}
  for name, values in REFINED_AXES[config.optimizer].items():
    space[name] = _values(name, [*values, float(config[name])])
  return space


def refine_sweep(row: str, first: dict, factors: list[float], args) -> dict:
  """The second sweep of `row`, around `first`'s (the learning-rate sweep's) best rate."""
  config, overrides = _row_config(row, args)
  space = refined_space(config, first["best"]["hyperparameters"]["learning_rate"], factors)
  suffix = "".join(f"_{name}" for name in space if name != "learning_rate")
  return _sweep(row, config, overrides, space, suffix, args)


def main(argv):
  if len(argv) > 1:
    raise cli.UserError(f"unexpected arguments: {argv[1:]}")
  unknown = [row for row in FLAGS.rows if not os.path.isfile(
      os.path.join(runs.CONFIG_DIR, f"{row}.py"))]
  if unknown:
    raise cli.UserError(f"--rows: no config for {', '.join(unknown)} under configs/")
  factors = parse_factors("factors", FLAGS.factors)
  refine_factors = parse_factors("refine_factors", FLAGS.refine_factors)
  logging.set_verbosity(logging.INFO)
  for i, row in enumerate(FLAGS.rows, 1):
    results = row_sweep(row, factors, FLAGS)
    if FLAGS.refine and results["best"]:
      results = refine_sweep(row, results, refine_factors, FLAGS)
    best = results["best"]
    print(f"[{i}/{len(FLAGS.rows)}] {row}: "
          + (f"best {_describe(best['hyperparameters'])}, validation loss "
             f"{best['validation_loss']:.4f}" if best else "every setting diverged"), flush=True)


def parse_factors(flag: str, texts: list[str]) -> list[float]:
  """The numbers of the list flag `--<flag>`; UserError unless they are positive numbers."""
  try:
    factors = [float(factor) for factor in texts]
  except ValueError:
    raise cli.UserError(f"--{flag}={','.join(texts)}: expected numbers") from None
  if not factors or min(factors) <= 0:
    raise cli.UserError(f"--{flag}={','.join(texts)}: expected positive numbers")
  return factors


def _describe(hyperparameters: dict) -> str:
  return ", ".join(f"{name} {value:g}" for name, value in hyperparameters.items())


def _define_flags():
  flags.DEFINE_list("rows", [row for row in paper.TABLE_I_ROWS if row.startswith("mnist")],
                    "Table I rows (config names) to tune.")
  flags.DEFINE_list("factors", ["0.125", "0.25", "0.5", "1", "2", "4", "8"],
                    "Learning rates tried, as multiples of the paper's.")
  flags.DEFINE_bool("refine", False, "After the learning-rate sweep, sweep the learning rate "
                    "around its best crossed with the other hyperparameters the paper tuned.")
  flags.DEFINE_list("refine_factors", ["0.25", "0.5", "1", "2", "4"],
                    "The refining sweep's learning rates, as multiples of the first sweep's best.")
  flags.DEFINE_integer("epochs", None, "Epochs per trial (default: the row's own, 50).")
  runs.define_data_flags()
  flags.DEFINE_string("sweep_root", os.path.join(runs.REPO, "runs", "sweeps"),
                      "Parent of the sweeps' workdirs (experiments.table1 --sweep_root).")


if __name__ == "__main__":
  _define_flags()
  cli.run(main)

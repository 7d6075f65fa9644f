"""Gradient estimators on MNIST, each against backprop: tuned on validation, trained with seeds.

  python -m experiments.estimators_mnist --data_source=npz --data_path=<data dir>/mnist.npz

For each optimizer (SGD, Adam) on the MNIST MLP (Table I's model, data, batch 64 and epochs):

1. the activity estimators (ESTIMATORS below: activity perturbation with one tangent, and with
   local losses, one tangent and a derivative per group of 32 units, a step about 1.3x
   backprop's, benchmarks/estimator_step_time.py) start from the backprop row's config
   (`configs/mnist_mlp_<optimizer>_bp.py`: PyTorch initialisation, the plain cross-entropy, no
   clip), and their learning rate is tuned on the validation split by `fgjax.sweep`
   (`--tune_epochs` epochs per trial, `--grid[optimizer]`, one seed), in
   `<workdir>/sweeps/<optimizer>_<estimator>`;
2. the best learning rate trains `--num_seeds` seeds at the full 50 epochs, in
   `<workdir>/<optimizer>_<estimator>_<N>seeds`;
3. the weight-perturbation forward gradient and backprop are Table I's rows
   (`mnist_mlp_<optimizer>_{fwd,bp}`, their paper settings, the learning rates the paper tuned),
   read from `--table1_root` where a run of at least `--num_seeds` seeds is there, else trained
   with `--num_seeds` seeds in `<workdir>/<row>_<N>seeds`.

Reported (`--out`, a markdown table, and a figure beside it): test loss and accuracy, mean +- std
over the seeds; the steps until the validation loss (evaluated at every epoch's end, 781 steps)
first reaches each of TARGETS, the median over seeds ("-" if a seed never does); and the step time
relative to backprop's from `--step_times` (benchmarks/estimator_step_time.py's JSON, measured
side by side in one process on the machine it names). The figure draws the validation loss
against steps, the mean over seeds and their range. Finished sweeps and runs are read, not
trained again; a killed run resumes. Neither output is replaced unless `--overwrite`.
"""

import os
import sys

from absl import flags
from absl import logging
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from experiments import runs  # pylint: disable=g-import-not-at-top,wrong-import-position
from fgjax import cli  # pylint: disable=g-import-not-at-top,wrong-import-position
from fgjax import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position
from fgjax import workdir as workdir_files  # pylint: disable=g-import-not-at-top,wrong-import-position

OPTIMIZERS = ("sgd", "adam")
# name -> (estimator, tangents per example K, unit groups G)
ESTIMATORS = {"activity_k1": ("activity", 1, 1),
              "local_activity_k1_g32": ("local_activity", 1, 32)}
GRIDS = {"sgd": "1e-3:0.3:6", "adam": "1e-5:3e-3:6"}  # learning rates tried, low:high:num
TARGETS = (0.5, 0.2, 0.1)  # validation losses for "steps to target"
STEP_TIME_NAMES = {"activity_k1": "activity K=1",
                   "local_activity_k1_g32": "local_activity K=1 G=32", "forward": "forward K=1", "backprop": "backprop"}

def _with_data(config, args):
  """`config` with the data options and `args.epochs` applied."""
  if args.epochs:
    config.num_epochs = args.epochs
  if args.data_source:
    config.data.source = args.data_source
  if args.data_path:
    config.data.path = args.data_path
  return config


def _suffix(args) -> str:
  """A final run's name ends in `_<E>ep` when shortened, then `_<N>seeds`."""
  return (f"_{args.epochs}ep" if args.epochs else "") + f"_{args.num_seeds}seeds"


def tuned_run(optimizer: str, name: str, args) -> str:
  """Tunes the learning rate of estimator `name` (step 1), trains the best with seeds (step 2);
  returns the run's workdir."""
  estimator, num_directions, unit_groups = ESTIMATORS[name]
  row = f"mnist_mlp_{optimizer}_bp"
  config = _with_data(runs.row_config(row), args)
  overrides = {"estimator": estimator, "num_directions": num_directions}
  if unit_groups > 1:
    overrides["unit_groups"] = unit_groups
  config.update(overrides)
  logging.info("tuning %s with %s", name, optimizer)
  results = sweep.sweep(
      config, os.path.join(args.workdir, "sweeps", f"{optimizer}_{name}"),
      space={"learning_rate": sweep.parse_spec("learning_rate", GRIDS[optimizer])},
      epochs=args.tune_epochs, config_spec=f"configs/{row}.py", config_overrides=overrides)
  if results["best"] is None:
    raise cli.UserError(f"every learning rate of {optimizer} {name} diverged; widen GRIDS")
  config.learning_rate = results["best"]["hyperparameters"]["learning_rate"]
  config.num_seeds = args.num_seeds
  run_dir = os.path.join(args.workdir, f"{optimizer}_{name}{_suffix(args)}")
  logging.info("training %s with %s, learning rate %g, %d seeds", name, optimizer,
               config.learning_rate, args.num_seeds)
  runs.train_run(config, run_dir)
  return run_dir


def table1_run(optimizer: str, side: str, args) -> str:
  """Table I's row of `side` (fwd or bp) for `optimizer` with at least --num_seeds seeds (step
  3): the one in --table1_root, or trained here."""
  row = f"mnist_mlp_{optimizer}_{side}"
  found = None if args.epochs else runs.find_run(args.table1_root, row, "paper")
  if found and (runs.load_run(found)["aggregate"] or {}).get("num_seeds", 1) >= args.num_seeds:
    return found
  config = _with_data(runs.row_config(row), args)
  config.num_seeds = args.num_seeds
  run_dir = os.path.join(args.workdir, f"{row}{_suffix(args)}")
  logging.info("training Table I's %s, %d seeds", row, args.num_seeds)
  runs.train_run(config, run_dir)
  return run_dir


def validation_curves(run: dict) -> tuple[np.ndarray, np.ndarray]:
  """`(steps, losses)`: the validation loss at every epoch's end, losses shaped (seeds, epochs)."""
  curves = []
  for trial_dir in runs.trial_dirs(run).values():
    rows = [r for r in workdir_files.read_metrics(trial_dir) if "validation_loss" in r]
    curves.append(([r["step"] for r in rows], [r["validation_loss"] for r in rows]))
  steps = curves[0][0]
  return np.array(steps), np.array([losses for _, losses in curves], np.float64)


def steps_to(steps: np.ndarray, losses: np.ndarray, target: float):
  """The median over seeds of the first step whose validation loss is <= target; None if a seed
  never reaches it."""
  firsts = []
  for curve in losses:
    reached = np.flatnonzero(curve <= target)
    if not reached.size:
      return None
    firsts.append(steps[reached[0]])
  return int(np.median(firsts))


def report(results: dict, step_times) -> str:
  """The markdown report: one table row per (optimizer, estimator)."""
  ratios = {row["name"]: row["ratio"] for row in step_times["rows"]} if step_times else {}
  lines = ["| optimizer | estimator | learning rate | seeds | test loss | test accuracy | "
           + " | ".join(f"steps to val. loss {t}" for t in TARGETS) + " | step time vs backprop |",
           "|---|---|---:|---:|---:|---:|" + "---:|" * len(TARGETS) + "---:|"]
  for (optimizer, name), run in results.items():
    stats = run["aggregate"]["aggregate"]
    steps, losses = validation_curves(run)
    cell = lambda s: "-" if s is None else f"{s:,}"
    ratio = ratios.get(STEP_TIME_NAMES[name])
    lines.append(
        f"| {optimizer} | {name} | {run['config']['learning_rate']:g} | "
        f"{run['aggregate']['num_seeds']} | "
        f"{stats['test_loss']['mean']:.4f} +- {stats['test_loss']['std']:.4f} | "
        f"{stats['test_accuracy']['mean']:.4f} +- {stats['test_accuracy']['std']:.4f} | "
        + " | ".join(cell(steps_to(steps, losses, t)) for t in TARGETS)
        + f" | {'-' if ratio is None else f'{ratio:.2f}x'} |")
  return "\n".join(lines)


def plot(results: dict, path: str) -> None:
  """Validation loss against steps, one panel per optimizer: the seeds' mean and range."""
  optimizers = sorted({optimizer for optimizer, _ in results}, key=OPTIMIZERS.index)
  figure, axes = plt.subplots(1, len(optimizers), figsize=(5.5 * len(optimizers), 4.2),
                              squeeze=False)
  for axis, optimizer in zip(axes[0], optimizers):
    for (opt, name), run in results.items():
      if opt != optimizer:
        continue
      steps, losses = validation_curves(run)
      line, = axis.plot(steps, losses.mean(0), label=name)
      axis.fill_between(steps, losses.min(0), losses.max(0), color=line.get_color(), alpha=0.2)
    axis.set(yscale="log", xlabel="training step", ylabel="validation loss",
             title=f"MNIST MLP, {runs.LABELS[optimizer]}")
    axis.grid(True, which="major", alpha=0.3)
    axis.legend()
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)


def run_all(args) -> str:
  """Steps 1-3 for every optimizer of `args.optimizers`, then the report and its figure, written
  to `args.out` (refused if there, unless `args.overwrite`); returns the report."""
  unknown = set(args.optimizers) - set(OPTIMIZERS)
  if unknown:
    raise cli.UserError(f"--optimizers: unknown {sorted(unknown)}; choose from {OPTIMIZERS}")
  figure_path = os.path.splitext(args.out)[0] + ".png"
  existing = [p for p in (args.out, figure_path) if os.path.exists(p)]
  if existing and not args.overwrite:
    raise cli.UserError(f"{', '.join(existing)}: already there; pass --overwrite to replace")
  step_times = workdir_files.read_json(args.step_times) if os.path.isfile(
      args.step_times) else None
  results = {}
  dirs = {(optimizer, name): tuned_run(optimizer, name, args)
          for optimizer in args.optimizers for name in ESTIMATORS}
  for optimizer in args.optimizers:
    dirs[(optimizer, "forward")] = table1_run(optimizer, "fwd", args)
    dirs[(optimizer, "backprop")] = table1_run(optimizer, "bp", args)
  for optimizer in args.optimizers:
    for name in ("forward", *ESTIMATORS, "backprop"):
      results[(optimizer, name)] = runs.load_run(dirs[(optimizer, name)])
  machines = sorted({workdir_files.format_machine(run["machine"]) for run in results.values()
                     if run["machine"]})
  options = f"--num_seeds={args.num_seeds} --tune_epochs={args.tune_epochs}" + (
      f" --epochs={args.epochs}" if args.epochs else "")
  text = ["# Gradient estimators on MNIST against backprop", "",
          f"Made by `python -m experiments.estimators_mnist {options}`; the module's docstring "
          f"says what each row is. Trained on: {'; '.join(machines) or 'unrecorded'}.", "",
          report(results, step_times), ""]
  if step_times:
    text += [f"Step times: `benchmarks/estimator_step_time.py` "
             f"({os.path.relpath(args.step_times, runs.REPO)}), on "
             f"{workdir_files.format_machine(step_times['machine'])}, load average "
             f"{step_times['machine']['load_average_at_start']:.1f} at start.", ""]
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  plot(results, figure_path)
  workdir_files.write_text(args.out, "\n".join(text))
  return "\n".join(text)


def main(argv):
  if len(argv) > 1:
    raise cli.UserError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  print(run_all(FLAGS))
  print(f"wrote {FLAGS.out} and its figure", file=sys.stderr)


def _define_flags():
  """The command line (defined only when run, so that tests can import this)."""
  flags.DEFINE_string("data_source", None, "Override data.source: tfds or npz.")
  flags.DEFINE_string("data_path", None, "Override data.path (the .npz file of data_source=npz).")
  flags.DEFINE_string("workdir", os.path.join(runs.REPO, "runs", "estimators_mnist"),
                      "Where the sweeps and runs go.")
  flags.DEFINE_string("table1_root", os.path.join(runs.REPO, "runs", "table1"),
                      "Where Table I's runs are (experiments.table1 --workdir_root).")
  flags.DEFINE_integer("num_seeds", 3, "Seeds of every final run.")
  flags.DEFINE_integer("tune_epochs", 2, "Epochs of every tuning trial.")
  flags.DEFINE_integer("epochs", None, "Shorten every final run to this many epochs (then Table I's "
                       "runs are not read but trained, as short).")
  flags.DEFINE_list("optimizers", list(OPTIMIZERS), "Optimizers to run, in this order.")
  flags.DEFINE_string("step_times", os.path.join(
      runs.REPO, "benchmarks", "results", "estimator_step_time_mlp.json"),
      "benchmarks/estimator_step_time.py's JSON report for the step-time column.")
  flags.DEFINE_string("out", os.path.join(runs.REPO, "experiments", "results",
                                          "estimators_mnist.md"), "The markdown report.")
  flags.DEFINE_bool("overwrite", False, "Replace --out and its figure if they exist.")


FLAGS = flags.FLAGS

if __name__ == "__main__":
  _define_flags()
  cli.run(main)

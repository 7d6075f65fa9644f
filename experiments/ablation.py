"""Which of the authors' settings moves a forward-gradient row: initialisation, loss, JVP clip.

  python -m experiments.ablation --row=mnist_mlp_sgd_fwd --data_source=npz --data_path=<data dir>/mnist.npz
  python -m experiments.ablation --row=mnist_mlp_sgd_fwd --report_only

Table I's forward-gradient configs carry three of the paper's code's settings that fgjax's
defaults do not (`configs/<row>.py`): PyTorch's initialisation (`init="torch"`), the clamped
cross-entropy (`loss="clamped_cross_entropy"`) and the code's JVP clip (`jvp_clip`: 1 for SGD and
Nesterov, off for Adam). This flips one of them at a time (`flipped`: to Flax's initialisation, the
plain cross-entropy, the clip turned off or, where it is off, to 1), trains each flipped config
with `--num_seeds` seeds at the row's full length in `<workdir_root>/<row>_<factor>_<N>seeds`,
and reports each against the row's own run in `--table1_root` (Table I's, at least as many
seeds): test loss and accuracy, mean ± std over seeds, and the change from the row's own run,
difference of the means ± its standard error, flagged where it exceeds 2 standard errors.
One factor at a time shows each setting's own effect, not their interactions: `--combinations`
also flips every set of two or more of them together (`<row>_<f1>-<f2>..._<N>seeds`), the full
factorial with the row's own run as its corner. `--factors` trains a subset; the report shows
every flip that has run. Finished runs are read, not trained again; `--report_only` trains
nothing.
"""

import itertools
import os

from absl import flags
from absl import logging

from experiments import runs
from fgjax import cli
from fgjax import workdir as workdir_files

FLAGS = flags.FLAGS
FACTORS = ("init", "loss", "jvp_clip")
MARGIN = 2.0  # standard errors a change must exceed to count


def flipped(factor: str, value):
  """The other setting of `factor` from `value`, the row's own."""
  if factor == "init":
    return "flax" if value == "torch" else "torch"
  if factor == "loss":
    return "cross_entropy" if value == "clamped_cross_entropy" else "clamped_cross_entropy"
  return None if value is not None else 1.0


def flip_sets(factors, combinations: bool) -> list[tuple]:
  """The sets of `factors` flipped together in a run: each alone, then (`combinations`) every set
  of two or more, in FACTORS' order."""
  chosen = [factor for factor in FACTORS if factor in factors]
  sizes = range(1, len(chosen) + 1) if combinations else (1,)
  return [flips for size in sizes for flips in itertools.combinations(chosen, size)]


def flip_config(row: str, factors: tuple, args):
  """The row's config with `factors` flipped and the command line's data and seeds applied."""
  config = runs.with_data(runs.row_config(row), args)
  for factor in factors:
    config[factor] = flipped(factor, config[factor])
  config.num_seeds = args.num_seeds
  return config


def flip_dir(row: str, factors: tuple, args) -> str:
  return os.path.join(args.workdir_root, f"{row}_{'-'.join(factors)}_{args.num_seeds}seeds")


def baseline_run(row: str, args):
  """The row's own finished run of at least --num_seeds seeds at full length, or None."""
  found = runs.full_run_with_seeds(args.table1_root, row, args.num_seeds)
  return found and runs.load_run(found)


def _stats(run: dict, metric: str):
  return run["aggregate"]["aggregate"][metric]


def _change(run: dict, baseline: dict, metric: str) -> str:
  """`run`'s mean of `metric` minus the baseline's, ± the standard error of that difference."""
  ran, base = _stats(run, metric), _stats(baseline, metric)
  if ran is None or base is None:
    return "-"
  change, error = runs.mean_difference(ran, base)
  flag = " **" if abs(change) > MARGIN * error else ""
  return f"{change:+.4f} ± {error:.4f}{flag}"


def _cell(run: dict, metric: str) -> str:
  """Mean ± std (seeds) of `metric`; for a run whose seeds diverged, the test loss cell says where
  (a diverged seed has no final metrics)."""
  stats = _stats(run, metric)
  if stats is None:
    return runs.divergence(run["aggregate"]) if metric == "test_loss" else "-"
  return f"{stats['mean']:.4f} ± {stats['std']:.4f} ({stats['n']})"


def report(row: str, baseline: dict, flips: dict) -> str:
  """The markdown report: the row's own run, then one line per set of flipped factors that ran
  (`flips`: a loaded run by the tuple of its factors)."""
  own = runs.row_config(row)
  lines = [f"# Ablation of {row}: the paper's code's settings flipped", "",
           "Made by `python -m experiments.ablation`; its docstring says what each line is. "
           "Test loss and accuracy on the 10,000 test images after the last epoch: mean ± std "
           "(seeds); change: difference of the means from the row's own run ± its standard "
           f"error, ** where it exceeds {MARGIN:g} standard errors.", "",
           "| config | test loss | change | test accuracy | change | machine |",
           "|---|---|---|---|---|---|",
           f"| the row's own (init {own.init}, loss {own.loss}, jvp_clip {own.jvp_clip}) | "
           f"{_cell(baseline, 'test_loss')} | | {_cell(baseline, 'test_accuracy')} | | "
           f"{workdir_files.format_machine(baseline['machine'])} |"]
  for factors, run in flips.items():
    lines.append(
        f"| {', '.join(f'{factor} {flipped(factor, own[factor])}' for factor in factors)} | "
        f"{_cell(run, 'test_loss')} | "
        f"{_change(run, baseline, 'test_loss')} | {_cell(run, 'test_accuracy')} | "
        f"{_change(run, baseline, 'test_accuracy')} | "
        f"{workdir_files.format_machine(run['machine'])} |")
  missing = [" + ".join(factors) for factors in flip_sets(FACTORS, any(
      len(factors) > 1 for factors in flips)) if factors not in flips]
  return "\n".join(lines + ([f"\nNot run yet: {', '.join(missing)}."] if missing else [])) + "\n"


def run_all(args) -> str:
  """Trains the flips that have not run (unless --report_only) and writes the report."""
  if not os.path.isfile(os.path.join(runs.CONFIG_DIR, f"{args.row}.py")) or not (
      args.row.endswith("_fwd")):
    raise cli.UserError(f"--row={args.row}: expected a forward-gradient row of Table I, e.g. "
                        "mnist_mlp_sgd_fwd")
  if args.num_seeds < 2:
    raise cli.UserError(f"--num_seeds={args.num_seeds}: the report gives mean ± std; use at "
                        "least 2")
  if set(args.factors) - set(FACTORS) or not args.factors:
    raise cli.UserError(f"--factors={','.join(args.factors)}: choose from {','.join(FACTORS)}")
  baseline = baseline_run(args.row, args)
  if baseline is None:
    raise cli.UserError(f"{args.row}: no full-length run of at least {args.num_seeds} seeds in "
                        f"{args.table1_root}; train it first: python -m experiments.table1 "
                        f"--rows={args.row} --num_seeds=5 ...")
  flips = {}
  wanted = flip_sets(args.factors, args.combinations)
  for factors in flip_sets(FACTORS, combinations=True):
    workdir = flip_dir(args.row, factors, args)
    finished = os.path.isfile(os.path.join(workdir, workdir_files.SUMMARY_FILE))
    if factors in wanted and not args.report_only and not finished:
      logging.info("%s with %s flipped, %d seeds", args.row, " + ".join(factors), args.num_seeds)
      runs.train_run(flip_config(args.row, factors, args), workdir)
    if os.path.isfile(os.path.join(workdir, workdir_files.SUMMARY_FILE)):
      flips[factors] = runs.load_run(workdir)
  text = report(args.row, baseline, flips)
  out = args.out or os.path.join(runs.REPO, "experiments", "results",
                                 f"ablation_{args.row}.md")
  workdir_files.write_text(out, text)
  return text


def main(argv):
  if len(argv) > 1:
    raise cli.UserError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  print(run_all(FLAGS))


def _define_flags():
  flags.DEFINE_string("row", "mnist_mlp_sgd_fwd", "The forward-gradient Table I row to ablate.")
  flags.DEFINE_integer("num_seeds", 3, "Seeds of every flipped run.")
  flags.DEFINE_list("factors", list(FACTORS), "The settings to flip (each in a run of its own); "
                    "the report shows every flip that has run.")
  flags.DEFINE_bool("combinations", False, "Also flip every set of two or more of --factors "
                    "together (the full factorial).")
  runs.define_data_flags()
  flags.DEFINE_string("workdir_root", os.path.join(runs.REPO, "runs", "ablation"),
                      "Parent of the flipped runs' workdirs.")
  flags.DEFINE_string("table1_root", os.path.join(runs.REPO, "runs", "table1"),
                      "Where Table I's runs are (experiments.table1 --workdir_root).")
  flags.DEFINE_string("out", None, "The report (default experiments/results/ablation_<row>.md).")
  flags.DEFINE_bool("report_only", False, "Train nothing; report the runs there are.")


if __name__ == "__main__":
  _define_flags()
  cli.run(main)

"""The work still to run for Table I and the CNN estimator study, as one resumable command.

  MNIST="--data_source=npz --data_path=<data dir>/mnist.npz"
  python -m experiments.backlog --budget_s=540 $MNIST   # the next pieces, within 9 minutes
  python -m experiments.backlog --status_only $MNIST    # what is done, and what is left

The items, in the order they run (each one the command it prints):

1. Table I's MNIST rows with the paper's settings and 5 seeds (TABLE_ROWS; `experiments.table1`),
   the MLP's first, where no run or record of them is there: the published table shows them,
   and its records are what let a fresh clone rebuild and audit it;
2. the 50-epoch learning-rate sweeps the Table I tuning still lacks (LR_SWEEP_ROWS;
   `experiments.tune_table1`);
3. the refining sweeps (`tune_table1 --refine`: the learning rate crossed with the other
   hyperparameters the paper tuned) of the six CNN rows and of MLP + Adam backprop
   (REFINE_ROWS), each after its row's learning-rate sweep;
4. the tuned MNIST rows with 5 seeds (TABLE_ROWS; `experiments.table1 --tuned`), each after its
   refining sweep;
5. the CNN estimator study (STUDY_ESTIMATORS against Table I's CNN rows;
   `experiments.estimators_mnist`), reported in `--study_out`.

Each call runs the items that are not done, in order, until `--budget_s` is spent: a piece that
would train past the budget checkpoints at a chunk's end and stops (`fgjax.train.stopping_by`), and
a new item starts only while a quarter of the budget is left (the call's first always starts).
Everything finished stays on disk, and sweeps and runs resume where they stopped, so the same
command, run again on this or a copied workdir on any machine, goes on. Every call starts by
copying the published records of Table I's sweeps and runs (`experiments.records`) to the roots
where they are looked for, so that a fresh clone skips what they hold, and ends by printing one
line per item: done, partial or to do, and its command. A call that trained anything exports Table
I's runs and sweeps to the records (as `experiments.table1` does), so that a workdir that is not
kept loses nothing; once items 1-4 are done, `python -m experiments.table1 --report_only` writes
the table from them.
"""

import dataclasses
import os
import time
import types
from typing import Callable

from absl import flags
from absl import logging

from experiments import estimators_mnist
from experiments import records
from experiments import runs
from experiments import table1
from experiments import tune_table1
from fgjax import cli
from fgjax import paper
from fgjax import sweep
from fgjax import train

FLAGS = flags.FLAGS

TABLE_ROWS = tuple(row for row in paper.TABLE_I_ROWS if row.startswith("mnist_"))
CNN_ROWS = tuple(row for row in TABLE_ROWS if row.startswith("mnist_cnn_"))
LR_SWEEP_ROWS = ("mnist_cnn_nesterov_bp", "mnist_cnn_adam_fwd", "mnist_cnn_adam_bp")
REFINE_ROWS = CNN_ROWS + ("mnist_mlp_adam_bp",)
TABLE_SEEDS = 5
# The per-layer estimators of the 2-epoch CNN studies (experiments/results/
# estimators_mnist_cnn_2ep.md, and estimators_mnist_cnn_exact_heads_2ep.md's best forward-mode
# one, a derivative per unit, first, with its exact local gradients), here at the full 50 epochs
# with the study's defaults.
STUDY_ESTIMATORS = ("local_activity_k1_layer_units_xh", "local_backprop_layer_units",
                    "local_activity_k1_layer_s64", "local_backprop_layer",
                    "local_activity_k1_layer_p2_s256", "local_backprop_layer_p2",
                    "local_activity_k1_layer_p2_s256_xh_c1")
STUDY_MODELS = ("cnn",)
STUDY_OPTIMIZERS = estimators_mnist.OPTIMIZERS
STUDY_OPTIONS = {"num_seeds": 3, "tune_epochs": 2}
# A new item starts only while at least this share of the budget is left.
START_SHARE = 0.25
# The default places of the command's outputs.
ROOTS = {"sweep_root": os.path.join(runs.REPO, "runs", "sweeps"),
         "workdir_root": os.path.join(runs.REPO, "runs", "table1"),
         "study_workdir": os.path.join(runs.REPO, "runs", "estimators_mnist"),
         "study_out": os.path.join(runs.REPO, "experiments", "results",
                                   "estimators_mnist_cnn.md")}
DATA = ("data_source", "data_path")
STATES = ("done", "partial", "to do")


@dataclasses.dataclass(frozen=True)
class Item:
  """One piece of the backlog: what it is, the command that runs it alone, where it stands
  (`state()`, one of STATES) and how to run it (`run()`)."""
  name: str
  command: str
  state: Callable[[], str]
  run: Callable[[], object]


def _path(path: str) -> str:
  """`path` as a command names it: relative to the repository when inside it."""
  relative = os.path.relpath(os.path.abspath(path), runs.REPO)
  return path if relative.startswith("..") else relative


def _flags(args, *names) -> str:
  """The command-line flags `--<name>=<value>` of `names` set in `args`, roots only where they
  are not the default (ROOTS), and `--epochs` where given."""
  given = []
  for name in names + ("epochs",):
    value = getattr(args, name)
    if value and value != ROOTS.get(name):
      given.append(f"--{name}={_path(value) if name in ROOTS else value}")
  return " ".join(given)


def _tune_args(args):
  """The namespace `experiments.tune_table1` reads."""
  return types.SimpleNamespace(epochs=args.epochs, data_source=args.data_source,
                               data_path=args.data_path, sweep_root=args.sweep_root)


def _sweep_state(workdir: str) -> str:
  if os.path.isfile(os.path.join(workdir, sweep.RESULTS_FILE)):
    return "done"
  return "partial" if os.path.isdir(workdir) else "to do"


def _epochs(row: str, args) -> int:
  return args.epochs or runs.row_config(row).num_epochs


def _lr_sweep_dir(row: str, args) -> str:
  return os.path.join(args.sweep_root, f"{row}_{_epochs(row, args)}ep")


def _refine_dir(row: str, args) -> str:
  names = tune_table1.REFINED_AXES[runs.row_config(row).optimizer]
  return _lr_sweep_dir(row, args) + "".join(f"_{name}" for name in names)


def lr_sweep_item(row: str, args) -> Item:
  return Item(f"{row}: learning-rate sweep, {_epochs(row, args)}-epoch trials",
              f"python -m experiments.tune_table1 --rows={row} "
              + _flags(args, "sweep_root", *DATA),
              lambda: _sweep_state(_lr_sweep_dir(row, args)),
              lambda: tune_table1.row_sweep(row, _factors(args, "factors"), _tune_args(args)))


def refine_item(row: str, args) -> Item:
  """The refining sweep, which first runs the row's learning-rate sweep if that is not done."""
  def run():
    first = tune_table1.row_sweep(row, _factors(args, "factors"), _tune_args(args))
    if first["best"]:
      tune_table1.refine_sweep(row, first, _factors(args, "refine_factors"), _tune_args(args))

  return Item(f"{row}: refining sweep", f"python -m experiments.tune_table1 --refine "
              f"--rows={row} " + _flags(args, "sweep_root", *DATA),
              lambda: _sweep_state(_refine_dir(row, args)), run)


def _factors(args, flag: str) -> list[float]:
  return tune_table1.parse_factors(flag, getattr(args, flag))


def _table1_args(args, num_seeds: int):
  """The namespace `experiments.table1.run_rows` reads."""
  return types.SimpleNamespace(
      sweep_root=args.sweep_root, workdir_root=args.workdir_root, data_source=args.data_source,
      data_path=args.data_path, tfds_data_dir=None, epochs=args.epochs, num_seeds=num_seeds)


def _row_state(row: str, variant: str, args) -> str:
  """Whether the row's `variant` run of its length (`_epochs`) with TABLE_SEEDS seeds is
  finished, under way or not begun."""
  found = runs.find_variant_run(args.workdir_root, args.sweep_root, row, variant)
  run = found and runs.load_run(found)
  if (run and run["config"]["num_epochs"] == _epochs(row, args)
      and (run["aggregate"] or {}).get("num_seeds", 1) >= TABLE_SEEDS):
    return "done"
  config, workdir = table1.configure(row, variant, _table1_args(args, TABLE_SEEDS))
  return "partial" if config is not None and os.path.isdir(workdir) else "to do"


def paper_item(row: str, args) -> Item:
  """The row with the paper's setting and TABLE_SEEDS seeds."""
  return Item(f"{row}: the paper's setting, {TABLE_SEEDS} seeds",
              f"python -m experiments.table1 --rows={row} --num_seeds={TABLE_SEEDS} "
              + _flags(args, "workdir_root", *DATA), lambda: _row_state(row, "paper", args),
              lambda: table1.run_rows([row], "paper", _table1_args(args, TABLE_SEEDS)))


def tuned_item(row: str, args) -> Item:
  """The row with its refining sweep's best setting and TABLE_SEEDS seeds (the paper's run
  with as many seeds, where the sweep chose the paper's setting)."""
  def variant():
    return "paper" if runs.tuned_is_paper(args.sweep_root, row) else "tuned"

  def state():
    if _sweep_state(_refine_dir(row, args)) != "done":
      return "to do"
    return _row_state(row, variant(), args)

  return Item(f"{row}: tuned, {TABLE_SEEDS} seeds (after its refining sweep)",
              f"python -m experiments.table1 --tuned --rows={row} --num_seeds={TABLE_SEEDS} "
              + _flags(args, "sweep_root", "workdir_root", *DATA), state,
              lambda: table1.run_rows([row], variant(), _table1_args(args, TABLE_SEEDS)))


def _study_args(args):
  """The namespace `experiments.estimators_mnist.run_all` reads."""
  return types.SimpleNamespace(
      models=list(STUDY_MODELS), optimizers=list(STUDY_OPTIMIZERS),
      estimators=list(STUDY_ESTIMATORS), epochs=args.epochs, data_source=args.data_source,
      data_path=args.data_path, workdir=args.study_workdir, table1_root=args.workdir_root,
      step_times=estimators_mnist.STEP_TIMES, records=records.ESTIMATOR_RUNS_RECORDS,
      out=args.study_out, report_only=False, overwrite=False, **STUDY_OPTIONS)


def study_item(args) -> Item:
  def state():
    if os.path.isfile(args.study_out):
      return "done"
    return "partial" if os.path.isdir(args.study_workdir) else "to do"

  study = _study_args(args)
  options = " ".join(f"--{name}={value}" for name, value in STUDY_OPTIONS.items())
  roots = f"--workdir={_path(args.study_workdir)} --out={_path(args.study_out)}"
  if args.workdir_root != ROOTS["workdir_root"]:
    roots += f" --table1_root={_path(args.workdir_root)}"
  return Item(
      "CNN estimator study", f"python -m experiments.estimators_mnist "
      f"--models={','.join(study.models)} --optimizers={','.join(study.optimizers)} "
      f"--estimators={','.join(study.estimators)} {options} {roots} " + _flags(args, *DATA),
      state, lambda: estimators_mnist.run_all(study))


def items(args) -> list[Item]:
  """The backlog in the order it runs."""
  return ([paper_item(row, args) for row in TABLE_ROWS]
          + [lr_sweep_item(row, args) for row in LR_SWEEP_ROWS]
          + [refine_item(row, args) for row in REFINE_ROWS]
          + [tuned_item(row, args) for row in TABLE_ROWS] + [study_item(args)])


def status_lines(backlog: list[Item]) -> list[str]:
  """One line per item: its state, what it is, and its command."""
  width = max(len(state) for state in STATES)
  return [f"{item.state():<{width}}  {item.name}: {item.command.strip()}" for item in backlog]


def run_backlog(args) -> list[str]:
  """Runs the items not done, in order, within `args.budget_s` seconds (module docstring);
  returns the status lines after it. An item that ends without being done (a failure the
  item's own command logged) is left for a later call, and the next one goes on."""
  backlog = items(args)
  deadline = time.time() + args.budget_s
  trained = False
  for item in backlog:
    if item.state() == "done":
      continue
    left = deadline - time.time()
    if trained and left < START_SHARE * args.budget_s:
      logging.info("%.0f s of the budget left: %s waits for the next call", left, item.name)
      break
    logging.info("backlog: %s (%.0f s left)", item.name, left)
    trained = True
    try:
      with train.stopping_by(deadline):
        item.run()
    except train.Stopped:
      logging.info("backlog: %s stopped at the budget; the same command goes on", item.name)
      break
  if trained:
    export_records(args)
  return status_lines(backlog)


def export_records(args) -> None:
  """Exports Table I's finished sweeps and runs to the records (`experiments.records`)."""
  records.export_sweeps(args.sweep_root, args.sweep_records)
  exported = records.export_runs(args.workdir_root, args.sweep_root, args.runs_records)
  logging.info("records of Table I's runs in %s: %s", args.runs_records,
               ", ".join(exported) or "none yet")


def restore_records(args) -> None:
  """Copies the published records of Table I's sweeps and runs to the roots where the items look
  for finished work (`experiments.records.import_records`), so that nothing they hold runs again."""
  restored = records.import_records(args.sweep_records, args.runs_records, args.sweep_root,
                                    args.workdir_root)
  if restored:
    logging.info("from the records: %s", ", ".join(restored))


def main(argv):
  del argv  # cli.run refuses extra arguments
  if FLAGS.budget_s <= 0:
    raise cli.UserError(f"--budget_s={FLAGS.budget_s}: expected a positive number of seconds")
  for flag in ("factors", "refine_factors"):
    _factors(FLAGS, flag)  # a bad list stops here, before any training
  restore_records(FLAGS)
  lines = status_lines(items(FLAGS)) if FLAGS.status_only else run_backlog(FLAGS)
  print("\n".join(lines))


def _define_flags():
  """The command line (defined only when run, so that tests can import this)."""
  flags.DEFINE_float("budget_s", 540, "Seconds this call may train for.")
  flags.DEFINE_bool("status_only", False, "Run nothing: print where each item stands.")
  runs.define_data_flags()
  flags.DEFINE_integer("epochs", None, "Shorten every trial and run to this many epochs "
                       "(a smoke test; the results are then labelled as shortened).")
  flags.DEFINE_list("factors", ["0.125", "0.25", "0.5", "1", "2", "4", "8"],
                    "The learning-rate sweeps' multiples of the paper's rate (tune_table1).")
  flags.DEFINE_list("refine_factors", ["0.25", "0.5", "1", "2", "4"],
                    "The refining sweeps' multiples of the first sweep's best (tune_table1).")
  flags.DEFINE_string("sweep_root", ROOTS["sweep_root"], "Parent of the sweeps' workdirs.")
  flags.DEFINE_string("workdir_root", ROOTS["workdir_root"], "Parent of Table I's runs.")
  flags.DEFINE_string("study_workdir", ROOTS["study_workdir"],
                      "Where the estimator study's sweeps and runs go.")
  flags.DEFINE_string("study_out", ROOTS["study_out"], "The estimator study's report.")
  flags.DEFINE_string("sweep_records", records.SWEEP_RECORDS,
                      "The sweeps' records: copied to --sweep_root first, and where the finished "
                      "sweeps go.")
  flags.DEFINE_string("runs_records", records.RUNS_RECORDS,
                      "The runs' records: copied to --workdir_root first, and where the finished "
                      "runs go.")


if __name__ == "__main__":
  _define_flags()
  cli.run(main)

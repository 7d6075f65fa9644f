"""Where the Table I runs live and how to read them back, for `table1` (which trains and reports
them) and `plot` (which draws them).

Under a workdir root (`--workdir_root`, default runs/table1), a row's run is in
  <row>                   at the paper's length
  <row>_<E>ep             shortened to E epochs
  <row>[_<E>ep]_<N>seeds  N seeds trained together (config.num_seeds = N): its summary.json is
                          their aggregate, each seed's own files are in seed_<s>/
and the tuned variant's under `tuned/` the same way; each holds `machine.json`, the machine it ran
on, and each of its trial directories (the workdir, or each seed_<s>/) a `test_losses.npz` with
every test example's final loss (runs from before fgjax wrote it have none). The tuned variant
takes its hyperparameters from the row's sweep (`python -m fgjax.sweep`,
`experiments.tune_table1`): `<sweep_root>/<row>`, `<sweep_root>/<row>_<E>ep` or
`<sweep_root>/<row>_<E>ep_<names>`, each with its results.json (load_sweep says which counts).
"""

import math
import os
import re
import sys
from typing import Optional

from absl import flags
import numpy as np

from fgjax import config_loading
from fgjax import data
from fgjax import sweep
from fgjax import train
from fgjax import workdir as workdir_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, "configs")
MACHINE_FILE = "machine.json"
VARIANTS = ("paper", "tuned")
LABELS = {"fwd": "forward gradient", "bp": "backprop", "mlp": "MLP", "cnn": "CNN",
          "vgg": "VGG CNN", "sgd": "SGD", "nesterov": "Nesterov", "adam": "Adam",
          "mnist": "MNIST", "cifar10": "CIFAR-10"}


def row_config(row: str):
  """The row's config as the paper sets it (`configs/<row>.py`)."""
  return config_loading.load_config(os.path.join(CONFIG_DIR, f"{row}.py"))


def define_data_flags():
  """The command line's data options, which `with_data` applies: --data_source, --data_path."""
  flags.DEFINE_string("data_source", None,
                      f"Override data.source: {', '.join(data.SOURCES)}.")
  flags.DEFINE_string("data_path", None, "Override data.path (the .npz file of data_source=npz).")


def with_data(config, args):
  """`config` with the command line's data options applied: `args.data_source` and
  `args.data_path`, where given."""
  if args.data_source:
    config.data.source = args.data_source
  if args.data_path:
    config.data.path = args.data_path
  return config


def mean_difference(stats: dict, reference: dict) -> tuple[float, float]:
  """`stats`' mean minus `reference`'s, and the standard error of that difference, from two
  several-seed summaries' statistics of one metric (mean, std, n)."""
  return (stats["mean"] - reference["mean"],
          math.sqrt(stats["std"] ** 2 / stats["n"] + reference["std"] ** 2 / reference["n"]))


def divergence(aggregate: dict) -> str:
  """Where a several-seed run's diverged seeds stopped, from its summary.json: `diverged: N of M
  seeds, at step A-B`."""
  steps = sorted(s["steps"] for s in aggregate["per_seed"].values() if s["status"] != "completed")
  where = f"at step {steps[0]:,}" + (f"-{steps[-1]:,}" if len(steps) > 1 else "")
  return f"diverged: {len(steps)} of {aggregate['num_seeds']} seeds, {where}"


def full_run_with_seeds(root: str, row: str, num_seeds: int) -> Optional[str]:
  """The row's finished paper-setting run under `root` at the row's full length with at least
  `num_seeds` seeds, or None."""
  found = find_run(root, row, "paper")
  if found is None:
    return None
  run = load_run(found)
  full = run["config"]["num_epochs"] == row_config(row).num_epochs
  return found if full and (run["aggregate"] or {}).get("num_seeds", 1) >= num_seeds else None


def run_dir(root: str, row: str, variant: str, epochs=None, num_seeds: int = 1) -> str:
  """Where a row's run lives (module docstring): `_<E>ep` when shortened to `epochs`, `_<N>seeds`
  for several seeds."""
  name = row + ("" if epochs is None else f"_{epochs}ep")
  name += "" if num_seeds == 1 else f"_{num_seeds}seeds"
  return os.path.join(root, "tuned" if variant == "tuned" else "", name)


def find_run(root: str, row: str, variant: str) -> Optional[str]:
  """The row's finished run: at the paper's length if there is one, else the longest shortened
  one; of runs as long, the one of most seeds. None if the row has no finished run."""
  base = os.path.dirname(run_dir(root, row, variant))
  name = re.compile(re.escape(row) + r"(?:_(\d+)ep)?(?:_(\d+)seeds)?")
  found = {}
  for entry in os.listdir(base) if os.path.isdir(base) else []:
    match = name.fullmatch(entry)
    if match and os.path.isfile(os.path.join(base, entry, workdir_files.SUMMARY_FILE)):
      epochs = math.inf if match[1] is None else int(match[1])
      found[(epochs, int(match[2] or 1))] = os.path.join(base, entry)
  return found[max(found)] if found else None


def train_run(config, workdir: str, restart: bool = False) -> dict:
  """Trains `config` in `workdir` (`fgjax.train.train_and_evaluate`, which resumes a killed run
  and reads a finished one; `restart` starts it over) after recording the machine it trains on
  in `machine.json`."""
  if restart or not os.path.isfile(os.path.join(workdir, workdir_files.SUMMARY_FILE)):
    os.makedirs(workdir, exist_ok=True)
    workdir_files.write_json(os.path.join(workdir, MACHINE_FILE), workdir_files.describe_machine())
  return train.train_and_evaluate(config, workdir, restart=restart)


def load_run(workdir: str) -> dict:
  """A finished run: its `summary`, `config` and `metrics` rows, `machine` (None if unrecorded),
  and `aggregate`, the summary over seeds of a run of several (else None), whose first seed's
  files then stand for the run in `summary`, `config` and `metrics`."""
  read = lambda directory, name: workdir_files.read_json(os.path.join(directory, name))
  summary = read(workdir, workdir_files.SUMMARY_FILE)
  aggregate = summary if "aggregate" in summary else None
  trial_dir = os.path.join(workdir, f"seed_{aggregate['seeds'][0]}") if aggregate else workdir
  return {"workdir": workdir, "aggregate": aggregate, "machine": read(workdir, MACHINE_FILE),
          "summary": read(trial_dir, workdir_files.SUMMARY_FILE),
          "config": read(trial_dir, workdir_files.CONFIG_FILE),
          "metrics": workdir_files.read_metrics(trial_dir)}


def trial_dirs(run: dict) -> dict:
  """A loaded run's trial directories by seed: each seed's `seed_<s>/` for a run of several,
  else the workdir itself."""
  if run["aggregate"]:
    return {seed: os.path.join(run["workdir"], f"seed_{seed}")
            for seed in run["aggregate"]["seeds"]}
  return {run["config"].get("seed", 0): run["workdir"]}


def read_test_losses(trial_dir: str) -> Optional[dict]:
  """A trial's per-example test losses, an array (in the test split's order) by loss name, from
  its test_losses.npz; None if it has none (a run from before fgjax wrote them, or a trial that
  stopped early)."""
  path = os.path.join(trial_dir, workdir_files.TEST_LOSSES_FILE)
  if not os.path.isfile(path):
    return None
  with np.load(path) as arrays:
    return {name: arrays[name] for name in arrays.files}


def load_sweep(sweep_root: str, row: str) -> Optional[dict]:
  """The results.json of the row's sweep, `<sweep_root>/<row>`, `<sweep_root>/<row>_<E>ep` or
  `<sweep_root>/<row>_<E>ep_<names>` (a sweep of more hyperparameters than the learning rate),
  or its published copy `<sweep_root>/<that name>.json` (experiments.records): of several, the
  one with the most epochs per trial, then of the most hyperparameters searched; None if there
  is none."""
  name = re.compile(re.escape(row) + r"(?:_\d+ep(?:_[a-z][a-z0-9_]*)?)?")
  found = []
  for entry in os.listdir(sweep_root) if os.path.isdir(sweep_root) else []:
    stem, extension = os.path.splitext(entry)
    if extension == ".json" and name.fullmatch(stem):
      found.append(workdir_files.read_json(os.path.join(sweep_root, entry)))
    elif name.fullmatch(entry):
      found.append(workdir_files.read_json(os.path.join(sweep_root, entry, sweep.RESULTS_FILE)))
  return max((results for results in found if results),
             key=lambda results: (results["epochs_per_trial"], len(results["space"])),
             default=None)


def best_setting(sweep_root: str, row: str) -> Optional[dict]:
  """The searched hyperparameters of the row's sweep, or None if it has no successful one."""
  results = load_sweep(sweep_root, row)
  best = results and results["best"]
  return best and best["hyperparameters"]


def _has(config, setting: dict) -> bool:
  """Whether `config` (a ConfigDict or a saved config's dict) holds the hyperparameters
  `setting`."""
  return all(float(config[name]) == value for name, value in setting.items())


def tuned_is_paper(sweep_root: str, row: str) -> bool:
  """Whether the row's sweep chose the paper's own setting: its tuned run is then the paper's."""
  setting = best_setting(sweep_root, row)
  return setting is not None and _has(row_config(row), setting)


def has_setting(workdir: str, setting: dict) -> bool:
  """Whether the finished run in `workdir` was trained with the hyperparameters `setting` (its
  config.json alone is read; a run of several seeds keeps one beside their directories)."""
  return _has(workdir_files.read_json(os.path.join(workdir, workdir_files.CONFIG_FILE)), setting)


def find_variant_run(root: str, sweep_root: str, row: str, variant: str) -> Optional[str]:
  """find_run for a variant; a row whose sweep chose the paper's setting has its paper run as its
  tuned run, and a tuned run trained with an earlier sweep's best does not count."""
  if variant == "tuned" and tuned_is_paper(sweep_root, row):
    variant = "paper"
  found = find_run(root, row, variant)
  if variant == "tuned" and found and not has_setting(found, best_setting(sweep_root, row)):
    return None
  return found


def refuse_fewer_rows(path: str, rows_before: Optional[int], rows_now: int,
                      overwrite: bool) -> None:
  """Exits with one line rather than replace `path`, which shows `rows_before` rows run (None:
  it does not record how many), by an output of fewer rows run, unless `overwrite`.

  The scripts write to the published results by default, so that a report of the published
  runs updates them in place; a report of fewer (a fresh clone has the results but not the
  runs) must not replace them with "not run yet".
  """
  if overwrite or not os.path.exists(path):
    return
  if rows_before is not None and rows_now >= rows_before:
    return
  before = "an unrecorded number of" if rows_before is None else rows_before
  sys.exit(f"not replacing {path} ({before} rows run) with {rows_now} rows run: pass "
           "--overwrite to replace it, or write elsewhere")

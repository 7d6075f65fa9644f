"""Compact records of the runs and sweeps behind experiments/results/table1.md, kept in the
repository so that `python -m experiments.table1 --report_only` rebuilds the table in a fresh
clone, whose `runs/` is empty.

A run's record is what the report reads of it, laid out as the run itself (`experiments.runs`):

  experiments/results/runs/[tuned/]<run name>/   summary.json, config.json, machine.json
      [seed_<s>/]                                 summary.json, config.json, metrics.jsonl (the
                                                  epoch rows only), test_losses.npz (the row's
                                                  own loss, compressed)

(a config naming its data file as `<data dir>/<file name>`, not its place on the machine that
trained it), and a sweep's record is its results.json and results.md as
`experiments/results/sweeps/<sweep name>.json` and `.md`, which `runs.load_sweep` reads as it reads
a sweep's workdir (its own workdir named as `runs/sweeps/<sweep name>`, its data file's folder as
`<data dir>`). Exporting copies, for every Table I row and variant, the run the report would show
from the runs there are; records of runs not there stay, so records from several machines add up.
Importing (`import_records`) copies the records back to the runs' places, so that the work they
hold is not done again. The estimator reports (`experiments.estimators_mnist`) keep their runs'
records the same way, without test losses, in experiments/results/estimator_runs/.
"""

import json
import os
import shutil

import numpy as np

from experiments import runs
from fgjax import paper
from fgjax import sweep
from fgjax import workdir as workdir_files

RUNS_RECORDS = os.path.join(runs.REPO, "experiments", "results", "runs")
ESTIMATOR_RUNS_RECORDS = os.path.join(runs.REPO, "experiments", "results", "estimator_runs")
SWEEP_RECORDS = os.path.join(runs.REPO, "experiments", "results", "sweeps")
_RUN_FILES = (workdir_files.SUMMARY_FILE, workdir_files.CONFIG_FILE, runs.MACHINE_FILE)


def _copy(source_dir: str, target_dir: str, names) -> None:
  """Copies the files `names` that are there, a config with its data file's place on the machine
  that trained it replaced by `<data dir>/<file name>` (a record is read on other machines)."""
  for name in names:
    source, target = os.path.join(source_dir, name), os.path.join(target_dir, name)
    if name == workdir_files.CONFIG_FILE and os.path.isfile(source):
      config = workdir_files.read_json(source)
      data = config.get("data") or {}
      if data.get("path"):
        data["path"] = os.path.join("<data dir>", os.path.basename(data["path"]))
      workdir_files.write_json(target, config)
    elif os.path.isfile(source):
      shutil.copyfile(source, target)


def _export_trial(trial_dir: str, target: str, test_losses: bool) -> None:
  """A trial's summary and config (`_copy`), its epoch rows and, with `test_losses`, the test
  losses of its loss."""
  os.makedirs(target, exist_ok=True)
  _copy(trial_dir, target, _RUN_FILES[:2])
  epochs = [row for row in workdir_files.read_metrics(trial_dir) if "epoch" in row]
  with open(os.path.join(target, workdir_files.METRICS_FILE), "w", encoding="utf-8") as f:
    f.writelines(json.dumps(row) + "\n" for row in epochs)
  losses = test_losses and runs.read_test_losses(trial_dir)
  if losses:
    loss = workdir_files.read_json(os.path.join(trial_dir, workdir_files.CONFIG_FILE)).get("loss")
    kept = {loss: losses[loss]} if loss in losses else losses
    np.savez_compressed(os.path.join(target, workdir_files.TEST_LOSSES_FILE), **kept)


def export_run(workdir: str, record: str, test_losses: bool = True) -> None:
  """Writes the record of the finished run in `workdir` to the directory `record`, replacing
  the record there once the new one is whole; without its per-example test losses unless
  `test_losses`."""
  run = runs.load_run(workdir)
  partial = record + ".partial"
  shutil.rmtree(partial, ignore_errors=True)
  os.makedirs(partial)
  _copy(workdir, partial, _RUN_FILES)
  for trial_dir in runs.trial_dirs(run).values():
    _export_trial(trial_dir, os.path.join(partial, os.path.relpath(trial_dir, workdir)),
                  test_losses)
  shutil.rmtree(record, ignore_errors=True)
  os.replace(partial, record)


def _copy_as(source: str, target: str) -> None:
  if os.path.isfile(source):
    shutil.copyfile(source, target)


def _portable(text: str, sweep_dir: str, data_path) -> str:
  """A sweep's results as read on other machines: its own workdir as `runs/sweeps/<name>` (where
  `import_records` puts it) and its data file's folder as `<data dir>`, not their places on the
  machine that ran it."""
  text = text.replace(os.path.abspath(sweep_dir),
                      os.path.join("runs", "sweeps", os.path.basename(sweep_dir)))
  if data_path and os.path.dirname(data_path):
    text = text.replace(os.path.dirname(data_path) + os.sep, "<data dir>" + os.sep)
  return text


def export_sweeps(sweep_root: str, records: str) -> list[str]:
  """Copies each finished sweep's results.json and results.md under `sweep_root` to
  `<records>/<sweep name>.json` and `.md` (`_portable`); returns the names."""
  names = []
  for entry in sorted(os.listdir(sweep_root)) if os.path.isdir(sweep_root) else []:
    sweep_dir = os.path.join(sweep_root, entry)
    results = os.path.join(sweep_dir, sweep.RESULTS_FILE)
    if not os.path.isfile(results):
      continue
    data_path = (workdir_files.read_json(results).get("config_overrides") or {}).get("data.path")
    os.makedirs(records, exist_ok=True)
    for source, name in ((results, f"{entry}.json"), (os.path.join(sweep_dir, "results.md"),
                                                      f"{entry}.md")):
      if os.path.isfile(source):
        with open(source, encoding="utf-8") as f:
          text = _portable(f.read(), sweep_dir, data_path)
        workdir_files.write_text(os.path.join(records, name), text)
    names.append(entry)
  return names


def export_runs(root: str, sweep_root: str, records: str) -> list[str]:
  """Exports, for every Table I row and variant, the run the report shows (runs.find_variant_run
  under `root`, its setting judged by the sweeps under `sweep_root`) to its place under
  `records`; returns the runs' paths relative to `root`."""
  exported = []
  for row in paper.TABLE_I_ROWS:
    for variant in runs.VARIANTS:
      found = runs.find_variant_run(root, sweep_root, row, variant)
      name = found and os.path.relpath(found, root)
      if name and name not in exported:
        export_run(found, os.path.join(records, name))
        exported.append(name)
  return exported


def import_records(sweep_records: str, runs_records: str, sweep_root: str,
                   workdir_root: str) -> list[str]:
  """The exports' inverse, for a fresh clone: each Table I sweep's record
  `<sweep_records>/<name>.json` (and .md) becomes `<sweep_root>/<name>/results.json` (and
  results.md), and each run record under `runs_records` a run under `workdir_root`, wherever that
  place is free, so that the scripts that skip finished work (tune_table1, table1,
  experiments.backlog) skip what the records hold. Returns the names written."""
  written = []
  for entry in sorted(os.listdir(sweep_records)) if os.path.isdir(sweep_records) else []:
    name, extension = os.path.splitext(entry)
    target = os.path.join(sweep_root, name)
    table1_sweep = any(name.startswith(row + "_") for row in paper.TABLE_I_ROWS)
    if extension == ".json" and table1_sweep and not os.path.exists(target):
      os.makedirs(target)
      shutil.copyfile(os.path.join(sweep_records, entry), os.path.join(target, sweep.RESULTS_FILE))
      _copy_as(os.path.join(sweep_records, f"{name}.md"), os.path.join(target, "results.md"))
      written.append(name)
  for parent in ("", "tuned"):
    source = os.path.join(runs_records, parent)
    for entry in sorted(os.listdir(source)) if os.path.isdir(source) else []:
      record, target = os.path.join(source, entry), os.path.join(workdir_root, parent, entry)
      if (os.path.isfile(os.path.join(record, workdir_files.SUMMARY_FILE))
          and not os.path.exists(target)):
        shutil.copytree(record, target)
        written.append(os.path.join(parent, entry))
  return written

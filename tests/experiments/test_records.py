"""experiments/records.py: the records of the runs and sweeps behind Table I, from which a fresh
clone's `python -m experiments.table1 --report_only` rebuilds the table byte for byte."""

import json
import os
import shutil
import subprocess
import sys
import types

import numpy as np

from experiments import records
from experiments import runs
from experiments import table1
from fgjax import workdir as workdir_files


def _write_sweep(sweep_root: str, row: str, learning_rate: float) -> None:
  """A finished 1-epoch learning-rate sweep's results.json and results.md, by hand."""
  settings = [{"hyperparameters": {"learning_rate": lr}, "status": "completed",
               "validation_loss": loss} for lr, loss in ((learning_rate, 0.1), (0.2, 0.3))]
  results = {"space": {"learning_rate": [learning_rate, 0.2]}, "search": "grid",
             "num_settings": 2, "seeds": 1, "epochs_per_trial": 1, "wall_clock_seconds": 9.0,
             "machine": None, "settings": settings,
             "best": {"hyperparameters": {"learning_rate": learning_rate},
                      "validation_loss": 0.1}}
  workdir = os.path.join(sweep_root, f"{row}_1ep")
  os.makedirs(workdir)
  workdir_files.write_json(os.path.join(workdir, "results.json"), results)
  workdir_files.write_text(os.path.join(workdir, "results.md"), "# the sweep\n")


def test_a_fresh_clone_rebuilds_the_table_from_the_records_alone(tmp_path, tiny_mnist):
  args = types.SimpleNamespace(
      workdir_root=str(tmp_path / "runs"), sweep_root=str(tmp_path / "sweeps"),
      records_root=str(tmp_path / "records" / "runs"),
      sweep_records=str(tmp_path / "records" / "sweeps"), out=str(tmp_path / "table1.md"),
      epochs=1, num_seeds=2, data_source="npz", data_path=tiny_mnist, tfds_data_dir=None,
      overwrite=False)
  table1.run_rows(["mnist_mlp_sgd_bp"], "paper", args)
  _write_sweep(args.sweep_root, "mnist_mlp_sgd_bp", 0.05)
  table1.run_rows(["mnist_mlp_sgd_bp"], "tuned", args)
  args.num_seeds = 1
  table1.run_rows(["mnist_mlp_sgd_fwd"], "paper", args)
  from_runs = table1.report(args)
  assert table1.rows_run(from_runs) == 3

  published = table1.write_report(table1.export_records(args))
  assert published == from_runs
  assert sorted(os.listdir(args.sweep_records)) == ["mnist_mlp_sgd_bp_1ep.json",
                                                     "mnist_mlp_sgd_bp_1ep.md"]
  # Compact: a seed's epoch rows only, and only the test losses of the row's own loss.
  seed = os.path.join(args.records_root, "tuned", "mnist_mlp_sgd_bp_1ep_2seeds", "seed_1")
  assert sorted(os.listdir(seed)) == ["config.json", "metrics.jsonl", "summary.json",
                                      "test_losses.npz"]
  assert all("epoch" in row for row in workdir_files.read_metrics(seed))
  with np.load(os.path.join(seed, "test_losses.npz")) as saved:
    assert saved.files == ["cross_entropy"]

  # A fresh clone: the records, and no runs or sweeps.
  shutil.rmtree(args.workdir_root)
  shutil.rmtree(args.sweep_root)
  before = os.path.getmtime(args.out)
  command = [sys.executable, "-m", "experiments.table1", "--report_only", f"--out={args.out}",
             *(f"--{name}={getattr(args, name)}" for name in
               ("workdir_root", "sweep_root", "records_root", "sweep_records"))]
  result = subprocess.run(command, cwd=runs.REPO, capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr
  assert os.path.getmtime(args.out) > before
  with open(args.out, encoding="utf-8") as f:
    assert f.read() == published


def test_exporting_again_replaces_a_record_and_keeps_the_others(tmp_path):
  root, record_root = tmp_path / "runs", tmp_path / "records"
  for name, loss in (("mnist_mlp_sgd_bp", 0.07), ("mnist_mlp_sgd_fwd", 0.5)):
    workdir = root / name
    workdir.mkdir(parents=True)
    config = runs.row_config(name).to_dict()
    (workdir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (workdir / "summary.json").write_text(json.dumps({"test_loss": loss}), encoding="utf-8")
    (workdir / "metrics.jsonl").write_text('{"step": 1, "train_loss": 1.0}\n', encoding="utf-8")
  assert records.export_runs(str(root), str(tmp_path / "sweeps"), str(record_root)) == [
      "mnist_mlp_sgd_fwd", "mnist_mlp_sgd_bp"]
  shutil.rmtree(root / "mnist_mlp_sgd_fwd")
  (root / "mnist_mlp_sgd_bp" / "summary.json").write_text('{"test_loss": 0.06}', encoding="utf-8")
  assert records.export_runs(str(root), str(tmp_path / "sweeps"), str(record_root)) == [
      "mnist_mlp_sgd_bp"]
  assert sorted(os.listdir(record_root)) == ["mnist_mlp_sgd_bp", "mnist_mlp_sgd_fwd"]
  assert runs.load_run(str(record_root / "mnist_mlp_sgd_bp"))["summary"] == {"test_loss": 0.06}
  assert (record_root / "mnist_mlp_sgd_fwd" / "metrics.jsonl").read_text(encoding="utf-8") == ""


def test_importing_fills_free_places_with_table1_records_only(tmp_path):
  sweep_records, run_records = tmp_path / "records" / "sweeps", tmp_path / "records" / "runs"
  _write_sweep(str(tmp_path / "made"), "mnist_mlp_sgd_bp", 0.1)
  _write_sweep(str(tmp_path / "made"), "mnist_mlp_sgd_fwd", 0.001)
  assert records.export_sweeps(str(tmp_path / "made"), str(sweep_records)) == [
      "mnist_mlp_sgd_bp_1ep", "mnist_mlp_sgd_fwd_1ep"]
  shutil.copyfile(sweep_records / "mnist_mlp_sgd_bp_1ep.json",
                  sweep_records / "cnn_sgd_local_backprop_1ep.json")  # not a Table I sweep
  for name in ("mnist_mlp_sgd_bp_2seeds", os.path.join("tuned", "mnist_mlp_sgd_fwd")):
    (run_records / name).mkdir(parents=True)
    (run_records / name / "summary.json").write_text('{"test_loss": 0.1}', encoding="utf-8")
  sweep_root, workdir_root = tmp_path / "sweeps", tmp_path / "table1"
  (sweep_root / "mnist_mlp_sgd_fwd_1ep").mkdir(parents=True)  # begun here: it stays as it is
  assert records.import_records(str(sweep_records), str(run_records), str(sweep_root),
                                str(workdir_root)) == [
      "mnist_mlp_sgd_bp_1ep", "mnist_mlp_sgd_bp_2seeds", os.path.join("tuned", "mnist_mlp_sgd_fwd")]
  assert sorted(os.listdir(sweep_root)) == ["mnist_mlp_sgd_bp_1ep", "mnist_mlp_sgd_fwd_1ep"]
  assert not os.listdir(sweep_root / "mnist_mlp_sgd_fwd_1ep")
  assert runs.best_setting(str(sweep_root), "mnist_mlp_sgd_bp") == {"learning_rate": 0.1}
  assert (sweep_root / "mnist_mlp_sgd_bp_1ep" / "results.md").read_text(encoding="utf-8") == (
      "# the sweep\n")
  assert runs.find_run(str(workdir_root), "mnist_mlp_sgd_bp", "paper").endswith("_2seeds")
  assert runs.find_run(str(workdir_root), "mnist_mlp_sgd_fwd", "tuned")
  assert records.import_records(str(sweep_records), str(run_records), str(sweep_root),
                                str(workdir_root)) == []


def test_a_sweeps_record_names_neither_its_data_folder_nor_its_workdir(tmp_path):
  made = tmp_path / "made"
  _write_sweep(str(made), "mnist_mlp_sgd_bp", 0.1)
  sweep_dir = made / "mnist_mlp_sgd_bp_1ep"
  data_path = str(tmp_path / "data" / "mnist.npz")
  results = json.loads((sweep_dir / "results.json").read_text(encoding="utf-8"))
  results["config_overrides"] = {"data.path": data_path}
  results["best"]["config_file"] = str(sweep_dir / "best_config.py")
  (sweep_dir / "results.json").write_text(json.dumps(results), encoding="utf-8")
  (sweep_dir / "results.md").write_text(
      f"--config.data.path={data_path}; the config file `{sweep_dir}/best_config.py`\n",
      encoding="utf-8")
  records.export_sweeps(str(made), str(tmp_path / "records"))
  record = json.loads((tmp_path / "records" / "mnist_mlp_sgd_bp_1ep.json").read_text(
      encoding="utf-8"))
  assert record["config_overrides"] == {"data.path": "<data dir>/mnist.npz"}
  assert record["best"]["config_file"] == "runs/sweeps/mnist_mlp_sgd_bp_1ep/best_config.py"
  assert record["settings"] == results["settings"]
  assert (tmp_path / "records" / "mnist_mlp_sgd_bp_1ep.md").read_text(encoding="utf-8") == (
      "--config.data.path=<data dir>/mnist.npz; the config file "
      "`runs/sweeps/mnist_mlp_sgd_bp_1ep/best_config.py`\n")

"""Tests of experiments/tune_table1.py: a learning-rate sweep per Table I row, around the paper's."""

import json
import os
import subprocess
import sys
import types

import pytest

from experiments import runs
from experiments import tune_table1
from fgjax import sweep

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_row_sweep_tries_multiples_of_the_papers_rate_where_table1_finds_them(tmp_path,
                                                                              tiny_mnist):
  args = types.SimpleNamespace(epochs=1, data_source="npz", data_path=tiny_mnist,
                               sweep_root=str(tmp_path / "sweeps"))
  row = "mnist_mlp_sgd_bp"  # the paper's learning rate: 0.1
  results = tune_table1.row_sweep(row, [0.5, 1.0, 2.0], args)
  assert os.path.isfile(os.path.join(args.sweep_root, f"{row}_1ep", "results.json"))
  tried = sorted(s["hyperparameters"]["learning_rate"] for s in results["settings"])
  assert tried == [0.05, 0.1, 0.2]
  assert results["epochs_per_trial"] == 1
  best = results["best"]["hyperparameters"]
  assert runs.best_setting(args.sweep_root, row) == best
  assert runs.tuned_is_paper(args.sweep_root, row) == (best["learning_rate"] == 0.1)


def test_bad_flags_stop_with_one_line(tmp_path):
  for flag, message in (("--rows=mnist_mlp_nope", "--rows: no config for mnist_mlp_nope"),
                        ("--factors=0,1", "--factors=0,1: expected positive numbers"),
                        ("--factors=x", "--factors=x: expected numbers")):
    done = subprocess.run([sys.executable, "-m", "experiments.tune_table1", flag,
                           f"--sweep_root={tmp_path}"], cwd=REPO, capture_output=True,
                          text=True, check=False)
    assert done.returncode != 0 and message in done.stderr, (flag, done.stderr)
    assert "Traceback" not in done.stderr
  assert os.listdir(tmp_path) == []


def test_refine_crosses_rates_around_the_best_with_the_papers_other_axes(tmp_path, tiny_mnist):
  args = types.SimpleNamespace(epochs=1, data_source="npz", data_path=tiny_mnist,
                               sweep_root=str(tmp_path / "sweeps"))
  row = "mnist_mlp_nesterov_fwd"  # the paper's learning rate 0.00032, momentum 0.367
  first = tune_table1.row_sweep(row, [1.0, 8.0], args)
  # A sweep saved by an earlier config (the look-ahead evaluation) is read, not run again.
  for directory, _, names in os.walk(os.path.join(args.sweep_root, f"{row}_1ep")):
    if "config.json" in names:
      path = os.path.join(directory, "config.json")
      with open(path, encoding="utf-8") as f:
        saved = json.load(f)
      with open(path, "w", encoding="utf-8") as f:
        json.dump({**saved, "nesterov_evaluate": "lookahead"}, f)
  assert tune_table1.row_sweep(row, [1.0, 8.0], args) == first
  with pytest.raises(sweep.SweepError, match="holds another sweep"):
    tune_table1.row_sweep(row, [1.0, 4.0], args)
  first["best"]["hyperparameters"] = {"learning_rate": 0.00256}  # as if 8x had won
  results = tune_table1.refine_sweep(row, first, [0.5, 1.0], args)
  assert results["space"] == {"learning_rate": [0.00128, 0.00256],
                              "momentum": [0.1, 0.367, 0.5, 0.9]}
  assert len(results["settings"]) == 8
  assert os.path.isfile(os.path.join(args.sweep_root, f"{row}_1ep_momentum", "results.json"))
  # table1 --tuned takes the sweep of more hyperparameters among those of as many epochs.
  assert runs.load_sweep(args.sweep_root, row)["space"] == results["space"]
  assert set(runs.best_setting(args.sweep_root, row)) == {"learning_rate", "momentum"}


def test_refined_values_are_the_papers_grid_plus_the_rows_own():
  space = tune_table1.refined_space(runs.row_config("mnist_cnn_adam_fwd"), 0.00025, [0.5, 1, 2])
  assert space == {"learning_rate": (0.000125, 0.00025, 0.0005), "b1": (0.9, 0.95, 0.99),
                   "b2": (0.999, 0.9995, 0.9999)}
  space = tune_table1.refined_space(runs.row_config("mnist_mlp_sgd_fwd"), 0.000464, [1])
  assert space == {"learning_rate": (0.000464,), "decay": (0.0, 1e-6, 1e-5, 1e-4)}

"""Tests of experiments/tune_table1.py: a learning-rate sweep per Table I row, around the paper's."""

import os
import subprocess
import sys
import types

from experiments import runs
from experiments import tune_table1

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

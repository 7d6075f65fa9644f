"""experiments/backlog.py: the remaining work as one command that stops at its budget, keeps what
it finished and resumes; here with MLP rows in place of the CNN's, on the tiny MNIST stand-in."""

import os
import subprocess
import sys
import types

import pytest

from experiments import backlog
from experiments import runs
from test_table1 import write_seeds  # pylint: disable=g-bad-import-order

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROW = "mnist_mlp_sgd_bp"


@pytest.fixture
def tiny_backlog(monkeypatch, tmp_path, tiny_mnist):
  """The backlog's items for one MLP row and one estimator (the tiny MNIST's 8 x 8 images are too
  small for the CNN), 2-epoch runs; the estimator study (tested in test_estimators_mnist) only
  writes its report, with the options it was given. Returns the command line's namespace."""
  def study(args):
    with open(args.out, "w", encoding="utf-8") as f:
      f.write(repr(sorted(vars(args).items())))

  monkeypatch.setattr(backlog.estimators_mnist, "run_all", study)
  monkeypatch.setattr(backlog, "TABLE_ROWS", (ROW,))
  monkeypatch.setattr(backlog, "LR_SWEEP_ROWS", (ROW,))
  monkeypatch.setattr(backlog, "REFINE_ROWS", (ROW,))
  monkeypatch.setattr(backlog, "TABLE_SEEDS", 2)
  monkeypatch.setattr(backlog, "STUDY_MODELS", ("mlp",))
  monkeypatch.setattr(backlog, "STUDY_OPTIMIZERS", ("sgd",))
  monkeypatch.setattr(backlog, "STUDY_ESTIMATORS", ("activity_k1",))
  monkeypatch.setattr(backlog, "STUDY_OPTIONS", {"num_seeds": 2, "tune_epochs": 1})
  return types.SimpleNamespace(
      budget_s=600.0, data_source="npz", data_path=tiny_mnist, epochs=2, factors=["1"],
      refine_factors=["1"], sweep_root=str(tmp_path / "sweeps"),
      workdir_root=str(tmp_path / "table1"), study_workdir=str(tmp_path / "study"),
      study_out=str(tmp_path / "study.md"), sweep_records=str(tmp_path / "records" / "sweeps"),
      runs_records=str(tmp_path / "records" / "runs"))


def _states(lines):
  return [line.split("  ")[0].strip() for line in lines]


def test_stops_at_its_budget_then_finishes_what_is_left_and_records_spare_a_fresh_clone(
    tiny_backlog, caplog, tmp_path):
  args = tiny_backlog
  args.budget_s = 1e-3  # past after the first chunk, which always runs
  lines = backlog.run_backlog(args)
  assert _states(lines) == ["partial", "to do", "to do", "to do", "to do"]
  assert lines[0].endswith(f"python -m experiments.table1 --rows={ROW} --num_seeds=2 "
                           f"--workdir_root={args.workdir_root} --data_source=npz "
                           f"--data_path={args.data_path} --epochs=2")
  assert lines[1].endswith(f"python -m experiments.tune_table1 --rows={ROW} "
                           f"--sweep_root={args.sweep_root} --data_source=npz "
                           f"--data_path={args.data_path} --epochs=2")
  paper_run = runs.run_dir(args.workdir_root, ROW, "paper", 2, 2)
  assert os.listdir(os.path.join(paper_run, "checkpoints"))  # kept for the next call
  assert not os.path.exists(args.runs_records)  # nothing finished to record yet

  args.budget_s = 600.0
  with caplog.at_level("INFO"):
    lines = backlog.run_backlog(args)
  assert "resuming" in caplog.text and "from step 1 of 2" in caplog.text
  assert _states(lines) == ["done"] * 5
  assert runs.load_sweep(args.sweep_root, ROW)["space"].keys() == {"learning_rate", "decay"}
  tuned = runs.find_variant_run(args.workdir_root, args.sweep_root, ROW,
                                "paper" if runs.tuned_is_paper(args.sweep_root, ROW) else "tuned")
  assert runs.load_run(tuned)["aggregate"]["num_seeds"] == 2
  with open(args.study_out, encoding="utf-8") as f:
    study = f.read()
  assert ("('estimators', ['activity_k1'])" in study and "('models', ['mlp'])" in study
          and f"('table1_root', '{args.workdir_root}')" in study)
  # The call exported what it finished to the records, as experiments.table1 does.
  assert sorted(os.listdir(args.sweep_records)) == [
      f"{ROW}_2ep{suffix}" for suffix in (".json", ".md", "_decay.json", "_decay.md")]
  assert os.path.basename(paper_run) in os.listdir(args.runs_records)
  # Nothing is left: a third call trains nothing.
  args.budget_s = 1e-3
  assert backlog.run_backlog(args) == lines

  # A fresh clone, whose roots are empty, with the records: its backlog starts with the study.
  args.sweep_root, args.workdir_root = str(tmp_path / "fresh_sweeps"), str(tmp_path / "fresh_t1")
  args.study_out = str(tmp_path / "fresh_study.md")
  args.budget_s = 600.0
  backlog.restore_records(args)
  assert _states(backlog.status_lines(backlog.items(args))) == ["done"] * 4 + ["to do"]
  caplog.clear()
  with caplog.at_level("INFO"):
    assert _states(backlog.run_backlog(args)) == ["done"] * 5
  assert "sweeping" not in caplog.text and "epoch 1/" not in caplog.text


def test_a_status_line_per_item_and_a_bad_budget_in_one_line(tmp_path):
  args = types.SimpleNamespace(epochs=None, data_source=None, data_path=None,
                               sweep_root=str(tmp_path / "s"), workdir_root=str(tmp_path / "t"),
                               study_workdir=str(tmp_path / "e"), study_out=str(tmp_path / "e.md"))
  lines = backlog.status_lines(backlog.items(args))
  assert len(lines) == 12 + 3 + 7 + 12 + 1 and all(line.startswith("to do  ") for line in lines)
  assert lines[0] == (f"to do    mnist_mlp_sgd_fwd: the paper's setting, 5 seeds: python -m "
                      f"experiments.table1 --rows=mnist_mlp_sgd_fwd --num_seeds=5 "
                      f"--workdir_root={args.workdir_root}")
  assert lines[15] == (f"to do    mnist_cnn_sgd_fwd: refining sweep: python -m "
                      f"experiments.tune_table1 --refine --rows=mnist_cnn_sgd_fwd "
                      f"--sweep_root={args.sweep_root}")
  done = subprocess.run([sys.executable, "-m", "experiments.backlog", "--budget_s=0",
                         f"--sweep_root={tmp_path}/s"], cwd=REPO, capture_output=True, text=True,
                        check=False)
  assert done.returncode == 2 and "error: --budget_s=0" in done.stderr
  assert "Traceback" not in done.stderr and not os.listdir(tmp_path)
  # A full-length run of 5 seeds is a done item; a shortened one (a smoke test's) is not.
  write_seeds(os.path.join(args.workdir_root, "mnist_mlp_sgd_fwd_5seeds"), "mnist_mlp_sgd_fwd",
              [0.47] * 5, [0.86] * 5)
  write_seeds(os.path.join(args.workdir_root, "mnist_mlp_sgd_bp_2ep_5seeds"), "mnist_mlp_sgd_bp",
              [0.07] * 5, [0.98] * 5, epochs=2)
  assert _states(backlog.status_lines(backlog.items(args)))[:2] == ["done", "to do"]

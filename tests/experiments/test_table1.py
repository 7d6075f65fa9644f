"""experiments/table1.py: trains rows into resumable workdirs and reports all 14 rows."""

import json
import os
import shutil
import signal
import subprocess
import sys
import types

import numpy as np
import pytest
from scipy import stats

from experiments import records
from experiments import runs
from experiments import table1
from fgjax import preemption
from fgjax import workdir as workdir_files


def write_run(workdir, row, *, epochs, test_loss, test_accuracy, val_losses, machine=None,
              learning_rate=None, seed=0, test_losses=None):
  """A finished one-seed run as train.train_and_evaluate leaves it, written by hand; returns
  its summary. `test_losses` (each loss's per-example array) makes its test_losses.npz; without
  it the run is one from before fgjax wrote them."""
  os.makedirs(workdir)
  config = runs.row_config(row)
  config.num_epochs = epochs
  config.seed = seed
  if learning_rate is not None:
    config.learning_rate = learning_rate
  steps = [781 * (e + 1) for e in range(len(val_losses))]
  rows = [{"step": s, "train_loss": 0.5 / (i + 1), "elapsed_seconds": 10.0 * (i + 1)}
          for i, s in enumerate(steps)]
  rows += [{"step": s, "epoch": i + 1, "epoch_train_loss": 0.4 / (i + 1), "validation_loss": v,
            "validation_accuracy": 0.9, "test_loss": v, "test_accuracy": 0.9,
            "elapsed_seconds": 10.0 * (i + 1)} for i, (s, v) in enumerate(zip(steps, val_losses))]
  summary = {"status": "completed", "steps": steps[-1], "epochs_completed": len(val_losses),
             "train_loss": 0.001, "test_loss": test_loss, "test_accuracy": test_accuracy,
             "validation_loss": val_losses[-1], "validation_accuracy": 0.9,
             "wall_clock_seconds": 4000.0}
  files = {workdir_files.CONFIG_FILE: config.to_dict(), workdir_files.SUMMARY_FILE: summary}
  if machine:
    files[runs.MACHINE_FILE] = machine
  for name, obj in files.items():
    with open(os.path.join(workdir, name), "w", encoding="utf-8") as f:
      json.dump(obj, f)
  with open(os.path.join(workdir, workdir_files.METRICS_FILE), "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  if test_losses is not None:
    np.savez(os.path.join(workdir, workdir_files.TEST_LOSSES_FILE), **test_losses)
  return summary


def example_losses(plain, clamped, n=10_000):
  """A test_losses.npz's arrays: every example's plain and clamped cross-entropy."""
  return {"cross_entropy": np.full(n, plain, np.float32),
          "clamped_cross_entropy": np.full(n, clamped, np.float32)}


def write_seeds(workdir, row, test_losses, test_accuracies, example_losses_by_seed=None,
                epochs=50):
  """A finished run of several seeds (config.num_seeds > 1) of `epochs`, written by hand: each
  seed's files in seed_<s>/ (with the test_losses.npz of `example_losses_by_seed[s]`, if given
  and not None) and their aggregate in the workdir's summary.json."""
  per_example = example_losses_by_seed or [None] * len(test_losses)
  per_seed = {str(seed): write_run(os.path.join(workdir, f"seed_{seed}"), row, epochs=epochs,
                                   test_loss=loss, test_accuracy=accuracy,
                                   val_losses=[0.5, 0.3], seed=seed,
                                   test_losses=per_example[seed])
              for seed, (loss, accuracy) in enumerate(zip(test_losses, test_accuracies))}
  stats = lambda values: {"mean": float(np.mean(values)), "std": float(np.std(values)),
                          "min": min(values), "max": max(values), "n": len(values)}
  aggregate = {"num_seeds": len(per_seed), "seeds": list(range(len(per_seed))),
               "status": "completed", "estimator": "backprop", "model": "mlp",
               "optimizer": "sgd", "dataset": "mnist", "wall_clock_seconds": 5400.0,
               "per_seed": per_seed,
               "aggregate": {key: stats([s[key] for s in per_seed.values()]) for key in
                             ("test_loss", "test_accuracy", "validation_loss",
                              "validation_accuracy")}}
  with open(os.path.join(workdir, workdir_files.SUMMARY_FILE), "w", encoding="utf-8") as f:
    json.dump(aggregate, f)


def write_sweep(sweep_root, row, learning_rate, epochs=5):
  """What table1 reads of a sweep's results.json: a learning-rate search of `epochs` per trial
  (in <row>_<epochs>ep, or <row> for 5) that chose `learning_rate` over a worse and a diverged
  setting."""
  settings = [{"hyperparameters": {"learning_rate": lr}, "status": status, "validation_loss": v}
              for lr, status, v in ((learning_rate, "completed", 0.07),
                                    (learning_rate / 10, "completed", 0.2),
                                    (learning_rate * 10, "diverged", None))]
  results = {"space": {"learning_rate": [s["hyperparameters"]["learning_rate"]
                                         for s in settings]},
             "search": "grid", "num_settings": 3, "seeds": 1, "epochs_per_trial": epochs,
             "wall_clock_seconds": 100.0, "machine": None, "settings": settings,
             "best": {"hyperparameters": {"learning_rate": learning_rate},
                      "validation_loss": 0.07}}
  workdir = os.path.join(sweep_root, row if epochs == 5 else f"{row}_{epochs}ep")
  os.makedirs(workdir)
  with open(os.path.join(workdir, "results.json"), "w", encoding="utf-8") as f:
    json.dump(results, f)


def args_for(tmp_path, **overrides):
  args = dict(workdir_root=str(tmp_path / "runs"), sweep_root=str(tmp_path / "sweeps"),
              out=str(tmp_path / "table1.md"), epochs=None, num_seeds=1, data_source=None,
              data_path=None, tfds_data_dir=None, overwrite=False)
  args.update(overrides)
  return types.SimpleNamespace(**args)


def test_target_is_the_pairs_lowest_nonzero_paper_loss():
  assert table1.target_loss("mnist_mlp_sgd_bp") == table1.target_loss("mnist_mlp_sgd_fwd") == 0.332
  assert table1.target_loss("cifar_fwd") == 1.685


def test_report_shows_full_and_shortened_runs_and_lists_missing_rows(tmp_path):
  args = args_for(tmp_path)
  machine = {"cpu": "Test CPU", "cpus_on_machine": 2, "cpus_used": 1, "jax": "0.0",
             "backend": "cpu", "device": "cpu"}
  root = args.workdir_root
  write_run(os.path.join(root, "mnist_mlp_sgd_bp"), "mnist_mlp_sgd_bp", epochs=50,
            test_loss=0.0612, test_accuracy=0.9832, val_losses=[0.4, 0.3, 0.1], machine=machine)
  write_run(os.path.join(root, "mnist_mlp_sgd_fwd_1ep"), "mnist_mlp_sgd_fwd", epochs=1,
            test_loss=0.9, test_accuracy=0.7, val_losses=[0.9])
  write_run(os.path.join(root, "mnist_mlp_sgd_fwd_2ep"), "mnist_mlp_sgd_fwd", epochs=2,
            test_loss=0.5, test_accuracy=0.8, val_losses=[0.9, 0.5])
  text = table1.write_report(args)
  assert open(args.out, encoding="utf-8").read() == text
  lines = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()
           if line.startswith("| mnist") or line.startswith("| cifar")}
  assert set(lines) == {"mnist_mlp_sgd_bp", "mnist_mlp_sgd_fwd"}
  bp = lines["mnist_mlp_sgd_bp"].split(" | ")
  # paper 0.000 next to ours; the target 0.332 first reached at the 2nd epoch's end (step 1562).
  assert bp[4:7] + bp[10:13] == ["0.000", "0.0612 (1 seed)", "0.9832", "0.0010", "0.332",
                                 "1562"]
  assert f"- {bp[15]}: Test CPU, 1 of 2 CPUs, jax 0.0" in text
  fwd = lines["mnist_mlp_sgd_fwd"].split(" | ")
  assert fwd[3] == "**2 of 50 (shortened)**" and fwd[12] == "not reached"
  assert "Not run yet: mnist_mlp_nesterov_fwd" in text and "cifar_bp" in text
  assert "No tuned run yet" in text and "No sweep yet." in text
  # A sweep that chose the paper's own setting makes the paper's run the tuned one.
  write_sweep(args.sweep_root, "mnist_mlp_sgd_bp", learning_rate=0.1)
  tuned = table1.write_report(args).split("## Tuned")[1]
  assert "| mnist_mlp_sgd_bp |" in tuned and "sweep chose the paper's setting" in tuned
  assert ("Best: learning_rate 0.1 (validation loss 0.0700); the paper's: learning_rate 0.1. "
          "Final validation loss by learning_rate, best first: 0.1: 0.0700; 0.01: 0.2000; "
          "1: diverged.") in tuned
  assert ("mnist_mlp_sgd_bp: test accuracy 0.9832, so test loss >= ln 2 x 0.0168 = 0.0116; ours "
          "0.0612 after epoch 3, lowest 0.1000 at epoch 3; final train loss 0.0010") in text


def test_run_rows_trains_resumes_and_runs_the_tuned_variant(tmp_path, tiny_mnist):
  args = args_for(tmp_path, epochs=1, data_source="npz", data_path=tiny_mnist)
  table1.run_rows(["mnist_mlp_sgd_bp"], "paper", args)
  workdir = os.path.join(args.workdir_root, "mnist_mlp_sgd_bp_1ep")
  summary_path = os.path.join(workdir, workdir_files.SUMMARY_FILE)
  with open(summary_path, encoding="utf-8") as f:
    assert json.load(f)["steps"] == 1
  assert os.path.isfile(os.path.join(workdir, runs.MACHINE_FILE))
  stamp = os.path.getmtime(summary_path)
  table1.run_rows(["mnist_mlp_sgd_bp"], "paper", args)  # done already: not trained again
  assert os.path.getmtime(summary_path) == stamp

  write_sweep(args.sweep_root, "mnist_mlp_sgd_bp", learning_rate=0.0316)
  table1.run_rows(["mnist_mlp_sgd_bp", "mnist_mlp_sgd_fwd"], "tuned", args)  # fwd: no sweep
  with open(os.path.join(args.workdir_root, "tuned", "mnist_mlp_sgd_bp_1ep", "config.json"),
            encoding="utf-8") as f:
    assert json.load(f)["learning_rate"] == 0.0316
  assert not os.path.exists(os.path.join(args.workdir_root, "tuned", "mnist_mlp_sgd_fwd_1ep"))
  text = table1.write_report(args)
  assert "γ 0.0316" in text and "Not tuned yet: mnist_mlp_sgd_fwd" in text
  # The run left every test image's losses, which the 16-image columns read.
  tuned = next(line for line in text.split("## Tuned")[1].splitlines()
               if line.startswith("| mnist_mlp_sgd_bp |")).split(" | ")
  assert tuned[7] != "-" and tuned[9].startswith(("consistent", "paper "))
  assert "mnist_mlp_sgd_bp: its test split has 100 images, not the paper's 10,000." in text
  # A later sweep of a longer budget chose another rate: the tuned run is stale until retrained.
  write_sweep(args.sweep_root, "mnist_mlp_sgd_bp", learning_rate=0.01, epochs=10)
  assert "| mnist_mlp_sgd_bp |" not in table1.report(args).split("## Tuned")[1]
  table1.run_rows(["mnist_mlp_sgd_bp"], "tuned", args)
  with open(os.path.join(args.workdir_root, "tuned", "mnist_mlp_sgd_bp_1ep", "config.json"),
            encoding="utf-8") as f:
    assert json.load(f)["learning_rate"] == 0.01
  assert "γ 0.01," in table1.write_report(args).split("## Tuned")[1]


def test_a_failed_row_is_logged_and_the_next_goes_on_but_a_signal_stops_them_all(
    tmp_path, monkeypatch):
  args = args_for(tmp_path, epochs=1)
  trained = []

  def train_run(config, workdir, restart=False):
    trained.append(os.path.basename(workdir))
    raise failure

  monkeypatch.setattr(table1.runs, "train_run", train_run)
  rows = ["mnist_mlp_sgd_bp", "mnist_mlp_sgd_fwd"]
  failure = RuntimeError("a bad row")
  table1.run_rows(rows, "paper", args)
  assert trained == ["mnist_mlp_sgd_bp_1ep", "mnist_mlp_sgd_fwd_1ep"]
  trained.clear()
  failure = preemption.Stopped(signal.SIGTERM, 5, "checkpoints")
  with pytest.raises(preemption.Stopped):
    table1.run_rows(rows, "paper", args)
  assert trained == ["mnist_mlp_sgd_bp_1ep"]


def test_measurements_compare_full_length_tuned_runs_with_the_paper_setting(tmp_path):
  args = args_for(tmp_path)
  row = "mnist_mlp_sgd_fwd"
  heading = "Full-length tuned rows against the paper's setting"
  write_run(os.path.join(args.workdir_root, row), row, epochs=50, test_loss=0.47,
            test_accuracy=0.86, val_losses=[0.9, 0.6, 0.48])
  write_sweep(args.sweep_root, row, 0.001)
  text = table1.write_report(args)
  assert heading not in text  # no tuned run yet
  assert "our test loss against the paper's: mnist_mlp_sgd_fwd 0.470 against 0.332." in text
  write_run(os.path.join(args.workdir_root, "tuned", row + "_1ep"), row, epochs=1,
            test_loss=0.9, test_accuracy=0.7, val_losses=[0.9], learning_rate=0.001)
  assert heading not in table1.write_report(args)  # shortened: not compared
  write_run(os.path.join(args.workdir_root, "tuned", row), row, epochs=50, test_loss=2.39,
            test_accuracy=0.73, val_losses=[0.9, 0.85, 2.5], learning_rate=0.001)
  text = table1.write_report(args)
  assert heading in text
  assert ("  - mnist_mlp_sgd_fwd: paper's γ 0.000464, decay 1e-05: test loss 0.4700, lowest "
          "validation loss 0.4800 at epoch 3; 5-epoch sweep's γ 0.001, decay 1e-05: test loss "
          "2.3900, lowest validation loss 0.8500 at epoch 2") in text


def test_a_run_of_several_seeds_reports_their_mean_and_std(tmp_path):
  args = args_for(tmp_path, num_seeds=3, epochs=50)
  row = "mnist_mlp_sgd_bp"
  config, workdir = table1.configure(row, "paper", args)
  assert config.num_seeds == 3 and workdir == os.path.join(args.workdir_root, f"{row}_3seeds")
  write_run(os.path.join(args.workdir_root, row), row, epochs=50, test_loss=0.09,
            test_accuracy=0.97, val_losses=[0.5, 0.3])
  write_seeds(workdir, row, test_losses=[0.07, 0.08, 0.09], test_accuracies=[0.98, 0.98, 0.98])
  assert runs.find_run(args.workdir_root, row, "paper") == workdir  # as long, more seeds
  text = table1.write_report(args)
  cells = next(line for line in text.splitlines() if line.startswith(f"| {row} |")).split(" | ")
  assert cells[3:7] == ["2", "0.000", "0.0800 ± 0.0082 (3 seeds)", "0.9800 ± 0.0000"]
  assert cells[14] == "1h30m"  # the whole run's wall-clock
  assert f"  - {row} (seed 0 of 3): test accuracy 0.9800" in text


def test_a_report_of_fewer_rows_run_does_not_replace_a_published_one(tmp_path):
  args = args_for(tmp_path)
  row = "mnist_mlp_sgd_bp"
  write_run(os.path.join(args.workdir_root, row), row, epochs=50, test_loss=0.07,
            test_accuracy=0.98, val_losses=[0.5, 0.3])
  published = table1.write_report(args)
  assert table1.rows_run(published) == 1
  shutil.rmtree(args.workdir_root)
  with pytest.raises(SystemExit, match="not replacing .* \\(1 rows run\\) with 0 rows run"):
    table1.write_report(args)
  assert open(args.out, encoding="utf-8").read() == published
  args.overwrite = True
  assert table1.rows_run(table1.write_report(args)) == 0


def test_report_only_on_a_fresh_clone_keeps_the_published_table(tmp_path):
  out = tmp_path / "table1.md"
  shutil.copy(os.path.join(runs.REPO, "experiments", "results", "table1.md"), out)
  published = out.read_text(encoding="utf-8")
  command = [sys.executable, "-m", "experiments.table1", "--report_only", f"--out={out}",
             f"--workdir_root={tmp_path / 'runs'}", f"--sweep_root={tmp_path / 'sweeps'}"]
  result = subprocess.run(command, cwd=runs.REPO, capture_output=True, text=True, check=False)
  # The records hold fewer of the table's runs than it shows.
  recorded = table1.rows_run(table1.report(types.SimpleNamespace(
      workdir_root=records.RUNS_RECORDS, sweep_root=records.SWEEP_RECORDS)))
  assert recorded < table1.rows_run(published)
  assert result.returncode != 0
  assert result.stderr.strip().splitlines() == [
      f"not replacing {out} ({table1.rows_run(published)} rows run) with {recorded} rows run: "
      "pass --overwrite to replace it, or write elsewhere"]
  assert out.read_text(encoding="utf-8") == published


def test_subset_means_draw_without_replacement_and_within_one_seed():
  # 16 distinct losses: a 16-subset drawn without replacement is all of them, every time.
  losses = np.arange(16.0)
  assert np.allclose(table1.subset_means([losses], draws=200), losses.mean())
  # Two seeds: a subset is one seed's (mean 0 or 1, never between), each seed about half the time.
  means = table1.subset_means([np.zeros(100), np.ones(100)], draws=2000)
  assert set(np.unique(means)) == {0.0, 1.0} and abs(means.mean() - 0.5) < 0.05
  assert np.array_equal(means, table1.subset_means([np.zeros(100), np.ones(100)], draws=2000))
  with pytest.raises(ValueError, match="at least 16"):
    table1.subset_means([np.zeros(15)])


def test_subset_means_of_a_few_nonzero_losses_follow_the_hypergeometric_law():
  # 625 of 10,000 losses are 16, the rest 0: a subset's mean is how many of the 625 it holds.
  losses = np.zeros(10_000)
  losses[::16] = 16.0
  means = table1.subset_means([losses])
  assert means.shape == (10_000,) and np.array_equal(means, np.round(means))
  hits = stats.hypergeom(10_000, 625, 16)
  assert abs(np.mean(means == 0) - hits.pmf(0)) < 0.015  # 0.355
  result = table1.compare_with_paper(means, 0.0)
  assert (result["low"], result["median"], result["high"]) == (
      hits.ppf(0.05), hits.ppf(0.5), hits.ppf(0.95)) == (0, 1, 3)
  # The paper's 0 ties with the draws of no hit: the percentile counts half of them.
  assert result["percentile"] == pytest.approx(50 * np.mean(means == 0))
  assert result["verdict"] == "consistent"


def test_compare_with_paper_at_the_papers_printed_precision():
  means = np.arange(1000) / 1000  # 0.000, 0.001, ..., 0.999
  result = table1.compare_with_paper(means, 0.25)
  assert result["percentile"] == pytest.approx(25.05)  # 250 below, 1 equal
  assert result["verdict"] == "consistent"
  assert table1.compare_with_paper(means, 0.04)["verdict"] == "paper below our band"
  assert table1.compare_with_paper(means, 0.96)["verdict"] == "paper above our band"
  # A printed 0.000 stands for anything below 0.0005.
  tiny = table1.compare_with_paper(np.full(100, 3e-4), 0.0)
  assert tiny["percentile"] == 50 and tiny["verdict"] == "consistent"
  below = table1.compare_with_paper(np.full(100, 0.5), 0.1)
  above = table1.compare_with_paper(np.full(100, 0.5), 0.9)
  assert (below["verdict"], above["verdict"]) == ("paper below our band", "paper above our band")
  assert [table1._percentile(r["percentile"]) for r in (below, above, result)] == [
      "below every draw", "above every draw", "25.1 %"]


def test_report_compares_the_papers_value_with_our_16_image_means(tmp_path):
  args = args_for(tmp_path)
  root = args.workdir_root
  # Forward rows score with the clamped loss: 0.332 everywhere, the paper's value exactly.
  write_run(os.path.join(root, "mnist_mlp_sgd_fwd"), "mnist_mlp_sgd_fwd", epochs=50,
            test_loss=0.332, test_accuracy=0.9, val_losses=[0.5, 0.4],
            test_losses=example_losses(plain=5.0, clamped=0.332))
  # Three seeds, the third without per-example losses: the band spans the other two.
  write_seeds(os.path.join(root, "mnist_mlp_sgd_bp_3seeds"), "mnist_mlp_sgd_bp",
              test_losses=[0.2, 0.4, 0.3], test_accuracies=[0.98, 0.98, 0.98],
              example_losses_by_seed=[example_losses(0.2, 0.25), example_losses(0.4, 0.45), None])
  write_run(os.path.join(root, "mnist_mlp_nesterov_fwd"), "mnist_mlp_nesterov_fwd", epochs=50,
            test_loss=0.44, test_accuracy=0.86, val_losses=[0.5, 0.45])
  losses = np.linspace(0.0, 1.0, 100)
  write_run(os.path.join(root, "mnist_mlp_adam_fwd_1ep"), "mnist_mlp_adam_fwd", epochs=1,
            test_loss=0.5, test_accuracy=0.8, val_losses=[0.5],
            test_losses={"cross_entropy": losses, "clamped_cross_entropy": losses})
  text = table1.write_report(args)
  cells = {line.split(" | ")[0].strip("| "): line.split(" | ")[4:10]
           for line in text.split("## Tuned")[0].splitlines() if line.startswith("| mnist")}
  assert cells["mnist_mlp_sgd_fwd"] == ["0.332", "0.3320 (1 seed)", "0.9000",
                                        "0.3320 [0.3320, 0.3320]", "50.0 %", "consistent"]
  bp = cells["mnist_mlp_sgd_bp"]
  assert bp[1] == "0.3000 ± 0.0816 (3 seeds)" and bp[3].endswith("[0.2000, 0.4000]")
  assert bp[4:] == ["below every draw", "paper below our band (1)"]
  assert cells["mnist_mlp_nesterov_fwd"][3:] == ["-", "-", "- (2)"]
  adam = cells["mnist_mlp_adam_fwd"]
  # 16 of the 100 losses: a band of about [0.39, 0.61], above the paper's 0.283.
  assert adam[5] == "paper below our band (shortened run) (3)"
  assert ("- (1) mnist_mlp_sgd_bp: from seeds 0, 1 of `mnist_mlp_sgd_bp_3seeds`; seed(s) 2 left "
          "no test_losses.npz.\n"
          "- (2) mnist_mlp_nesterov_fwd: its run `mnist_mlp_nesterov_fwd` predates per-example "
          "test losses (no test_losses.npz).\n"
          "- (3) mnist_mlp_adam_fwd: its test split has 100 images, not the paper's "
          "10,000.") in text


def test_a_run_of_an_earlier_config_is_named_field_by_field():
  saved = runs.row_config("mnist_mlp_adam_fwd").to_dict()
  assert table1.config_changes("mnist_mlp_adam_fwd", saved) == []
  saved.update(jvp_clip=1.0, num_epochs=3, seed=4)  # the run's own length and seed are fine
  del saved["init"]  # predates the field: it ran the default
  saved["data"]["source"] = "npz"
  assert table1.config_changes("mnist_mlp_adam_fwd", saved) == [
      "init 'flax' (now 'torch')", "jvp_clip 1.0 (now None)"]


def test_report_says_where_each_nesterov_run_evaluated_its_model(tmp_path):
  args = args_for(tmp_path)
  root = args.workdir_root
  for row in ("mnist_mlp_nesterov_fwd", "mnist_cnn_nesterov_fwd", "mnist_cnn_nesterov_bp"):
    write_run(os.path.join(root, row), row, epochs=50, test_loss=0.5, test_accuracy=0.8,
              val_losses=[0.5])
  config_path = os.path.join(root, "mnist_mlp_nesterov_fwd", workdir_files.CONFIG_FILE)
  with open(config_path, encoding="utf-8") as f:
    saved = json.load(f)
  del saved["nesterov_evaluate"]  # a run from before the field: it evaluated the look-ahead
  with open(config_path, "w", encoding="utf-8") as f:
    json.dump(saved, f)
  text = table1.report(args)
  assert ("  - mnist_mlp_nesterov_fwd (paper): evaluated at the look-ahead point theta + mu v "
          "(the parameters held); configs/mnist_mlp_nesterov_fwd.py now evaluates at theta = "
          "parameters - mu v\n"
          "  - mnist_cnn_nesterov_fwd (paper): evaluated at theta = parameters - mu v\n"
          "  - mnist_cnn_nesterov_bp (paper): evaluated at the look-ahead point theta + mu v "
          "(the parameters held)\n") in text
  assert "nesterov_evaluate 'lookahead' (now 'base')" in text  # the row's note, too


def test_a_tuned_run_is_compared_with_its_rows_config_and_its_searched_setting():
  saved = runs.row_config("mnist_mlp_sgd_bp").to_dict()
  saved["learning_rate"] = 0.025
  assert table1.config_changes("mnist_mlp_sgd_bp", saved, {"learning_rate": 0.025}) == []
  assert table1.config_changes("mnist_mlp_sgd_bp", saved) == ["learning_rate 0.025 (now 0.1)"]


def seed_stats(mean, std, n=5):
  return {"mean": mean, "std": std, "n": n}


def test_pair_verdict_names_the_method_ahead_only_beyond_two_standard_errors():
  forward = {"test_loss": seed_stats(0.47, 0.01), "test_accuracy": seed_stats(0.86, 0.005)}
  backprop = {"test_loss": seed_stats(0.08, 0.002), "test_accuracy": seed_stats(0.98, 0.001)}
  text = table1.pair_verdict(forward, backprop)
  error = (0.01 ** 2 / 5 + 0.002 ** 2 / 5) ** 0.5
  assert text.startswith("backprop ahead: backprop's lead +0.3900 ± "
                         f"{error:.4f} in test loss, +0.1200 ± ")
  assert text.endswith("(5 and 5 seeds)")
  assert table1.pair_verdict(backprop, forward).startswith("forward gradient ahead: "
                                                           "backprop's lead -0.3900")
  # Ahead in loss by 1.5 standard errors only: no winner.
  close = {"test_loss": seed_stats(0.08 + 1.5 * error, 0.01),
           "test_accuracy": seed_stats(0.90, 0.005)}
  assert table1.pair_verdict(close, backprop).startswith("no clear difference")
  # Ahead in loss but behind in accuracy: no winner either.
  mixed = {"test_loss": seed_stats(0.47, 0.01), "test_accuracy": seed_stats(0.99, 0.001)}
  assert table1.pair_verdict(mixed, backprop).startswith("no clear difference")


def test_report_gives_a_verdict_per_pair_with_several_seeds(tmp_path):
  args = args_for(tmp_path)
  root = args.workdir_root
  write_seeds(os.path.join(root, "mnist_mlp_sgd_fwd_3seeds"), "mnist_mlp_sgd_fwd",
              [0.46, 0.47, 0.48], [0.86, 0.86, 0.87])
  text = table1.write_report(args)
  assert "Verdict per pair" not in text  # backprop not run yet
  write_seeds(os.path.join(root, "mnist_mlp_sgd_bp_3seeds"), "mnist_mlp_sgd_bp",
              [0.07, 0.08, 0.09], [0.98, 0.98, 0.98])
  text = table1.write_report(args)
  assert "- **Verdict per pair, the paper's hyperparameters**" in text
  assert "  - mnist_mlp_sgd: backprop ahead: backprop's lead +0.3900 ± " in text
  assert "Verdict per pair, each method tuned" not in text  # no sweep

"""experiments/estimators_mnist.py: tunes, trains with seeds and reports every estimator."""

import os
import re
import shutil
import types

import numpy as np
import pytest

from experiments import estimators_mnist
from experiments import records
from experiments import runs
from fgjax import workdir as workdir_files
from fgjax.errors import UserError


def test_steps_to_a_target_is_the_median_first_step_and_none_if_a_seed_never_gets_there():
  steps = np.array([10, 20, 30])
  losses = np.array([[0.9, 0.4, 0.3], [0.8, 0.6, 0.45], [0.5, 0.5, 0.2]])
  assert estimators_mnist.steps_to(steps, losses, 0.5) == 20  # seeds: 20, 30, 10
  assert estimators_mnist.steps_to(steps, losses, 0.45) == 30  # 20, 30, 30
  assert estimators_mnist.steps_to(steps, losses, 0.3) is None  # the second seed never


def test_tunes_trains_and_reports_each_estimator_against_backprop(tmp_path, tiny_mnist):
  args = types.SimpleNamespace(
      data_source="npz", data_path=tiny_mnist, workdir=str(tmp_path / "runs"),
      table1_root=str(tmp_path / "table1"), num_seeds=2, tune_epochs=1, epochs=2,
      models=["mlp"], optimizers=["sgd"], estimators=list(estimators_mnist.ESTIMATORS),
      step_times=[str(tmp_path / "none.json")], records=str(tmp_path / "records"),
      report_only=False,
      out=str(tmp_path / "out" / "report.md"), overwrite=False)
  text = estimators_mnist.run_all(args)
  rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| MLP | SGD |")]
  assert [row[2] for row in rows] == ["forward", *estimators_mnist.ESTIMATORS, "backprop"]
  trained = [row for row in rows if row[3] != "needs conv maps"]
  assert [row[2] for row in rows if row not in trained] == [
      "local_activity_k1_layer_p2_s256", "local_activity_k1_layer_p2_s256_xh",
      "local_activity_k1_layer_p2_s256_xh_c1", "local_activity_k1_layer_p2_s256_xh_c3",
      "local_backprop_layer_p2", "local_activity_k1_layer_units_xh",
      "local_backprop_layer_units"]
  assert all(row[4] == "2" and "+-" in row[5] and row[-1] == "- |" for row in trained)
  tuned = os.path.join(args.workdir, "mlp_sgd_local_activity_k1_g32_2ep_2seeds")
  config = workdir_files.read_json(os.path.join(tuned, "seed_0", workdir_files.CONFIG_FILE))
  assert (config["estimator"], config["unit_groups"], config["num_epochs"]) == (
      "local_activity", 32, 2)
  sweep = workdir_files.read_json(os.path.join(args.workdir, "sweeps",
                                               "mlp_sgd_local_activity_k1_g32",
                                               "results.json"))
  assert config["learning_rate"] == sweep["best"]["hyperparameters"]["learning_rate"]
  grouped = workdir_files.read_json(os.path.join(
      args.workdir, "mlp_sgd_local_activity_k1_l32_2ep_2seeds", "seed_0",
      workdir_files.CONFIG_FILE))
  assert (grouped["local_heads"]["slices"], grouped["unit_groups"]) == (32, 1)
  shared = workdir_files.read_json(os.path.join(
      args.workdir, "mlp_sgd_local_activity_k1_s1024_2ep_2seeds", "seed_0",
      workdir_files.CONFIG_FILE))
  assert (shared["local_heads"]["slices"], shared["local_heads"]["slice_head"]) == (
      1024, "shared")
  per_layer = workdir_files.read_json(os.path.join(
      args.workdir, "mlp_sgd_local_activity_k1_layer_s64_2ep_2seeds", "seed_0",
      workdir_files.CONFIG_FILE))
  assert (per_layer["local_heads"]["loss_per"], per_layer["local_heads"]["slices"]) == (
      "layer", 64)
  assert os.path.isfile(os.path.join(args.workdir, "mnist_mlp_sgd_bp_2ep_2seeds", "machine.json"))
  assert os.path.getsize(str(tmp_path / "out" / "report.png")) > 10_000

  with pytest.raises(UserError, match="already there; pass --overwrite"):
    estimators_mnist.run_all(args)
  with pytest.raises(UserError, match="--models=resnet: choose from mlp,cnn"):
    estimators_mnist.run_all(types.SimpleNamespace(**{**vars(args), "models": ["resnet"]}))
  metrics = os.path.join(tuned, "seed_0", workdir_files.METRICS_FILE)
  stamp = os.path.getmtime(metrics)
  args.overwrite = True
  assert estimators_mnist.run_all(args) == text  # finished runs are read, not trained again
  assert os.path.getmtime(metrics) == stamp
  # Reporting only: the same rows from the runs there are, and a row "not run" for a missing one.
  shutil.rmtree(tuned)
  shutil.rmtree(os.path.join(args.records, os.path.basename(tuned)))  # and its record
  args.report_only = True
  only = estimators_mnist.run_all(args)
  assert "| MLP | SGD | local_activity_k1_g32 | not run | - |" in only
  kept = lambda report: [line for line in report.splitlines() if "local_activity" not in line
                         and not line.startswith("Made by")]
  assert kept(only) == kept(text)
  # A fresh clone, whose runs/ is empty, rebuilds the report from the records alone.
  shutil.rmtree(args.workdir)
  assert estimators_mnist.run_all(args) == only
  bp_record = os.path.join(args.records, "mnist_mlp_sgd_bp_2ep_2seeds")
  assert not os.path.exists(os.path.join(bp_record, "seed_0", workdir_files.TEST_LOSSES_FILE))
  for config_dir in (bp_record, os.path.join(bp_record, "seed_0")):  # no path of this machine
    config = workdir_files.read_json(os.path.join(config_dir, workdir_files.CONFIG_FILE))
    assert config["data"]["path"] == f"<data dir>/{os.path.basename(tiny_mnist)}"


def test_a_diverged_full_run_falls_back_to_the_next_smaller_rate(tmp_path, monkeypatch,
                                                                 tiny_mnist):
  """The tuned rate's full run diverges (made to, here): the next smaller rate that completed
  its tuning trial trains, in a directory named by its rate."""
  train_run = estimators_mnist.runs.train_run
  trained = []

  def diverging_first(config, workdir):
    summary = train_run(config, workdir)
    trained.append(config.learning_rate)
    return {**summary, "status": "diverged"} if len(trained) == 1 else summary

  monkeypatch.setattr(estimators_mnist.runs, "train_run", diverging_first)
  args = types.SimpleNamespace(
      data_source="npz", data_path=tiny_mnist, workdir=str(tmp_path / "runs"),
      num_seeds=1, tune_epochs=1, epochs=1, records=str(tmp_path / "records"))
  run_dirs = estimators_mnist.tuned_runs("mlp", "sgd", "activity_k1", args)
  assert len(trained) == 2 and trained[1] < trained[0]
  assert [os.path.basename(d) for d in run_dirs] == [
      "mlp_sgd_activity_k1_1ep_1seeds", f"mlp_sgd_activity_k1_lr{trained[1]:g}_1ep_1seeds"]
  assert estimators_mnist.finished_runs("mlp", "sgd", "activity_k1", args) == run_dirs


def test_diverged_seeds_are_reported_with_where_they_stopped():
  aggregate = {"status": "diverged", "num_seeds": 3, "per_seed": {
      "0": {"status": "diverged", "steps": 19691}, "1": {"status": "diverged", "steps": 19135},
      "2": {"status": "completed", "steps": 39050}}}
  assert estimators_mnist._test_cells(aggregate) == (
      "diverged: 2 of 3 seeds, at step 19,135-19,691 | -")


def test_estimators_a_model_cannot_take_are_reported_with_the_reason():
  assert estimators_mnist.why_not("mlp", "local_activity_k1_l32") is None
  assert estimators_mnist.why_not("cnn", "local_activity_k1_l32") == "needs one-layer blocks"
  assert estimators_mnist.why_not("cnn", "local_activity_k1_g32") is None
  assert estimators_mnist.why_not("cnn", "local_activity_k1_layer_s64") is None  # per layer
  assert estimators_mnist.why_not("cnn", "local_activity_k1_layer_p2_s256") is None
  assert estimators_mnist.why_not("mlp", "local_backprop_layer_p2") == "needs conv maps"
  text = estimators_mnist.report({("cnn", "sgd", "local_activity_k1_l32"): [],
                                  ("mlp", "sgd", "local_backprop_layer_p2"): []}, {})
  assert "| CNN | SGD | local_activity_k1_l32 | needs one-layer blocks | - |" in text
  assert "| MLP | SGD | local_backprop_layer_p2 | needs conv maps | - |" in text


def test_step_times_come_one_per_model_from_the_reports_given(tmp_path):
  for name, model in (("mlp.json", "mlp"), ("cnn_cpu.json", "cnn"), ("cnn_gpu.json", "cnn")):
    workdir_files.write_json(str(tmp_path / name), {"model": model, "rows": []})
  paths = [str(tmp_path / name) for name in ("absent.json", "mlp.json", "cnn_cpu.json")]
  found, times = estimators_mnist.read_step_times(paths, ["mlp"])
  assert found == {"mlp": paths[1]} and times == {"mlp": {"model": "mlp", "rows": []}}
  assert set(estimators_mnist.read_step_times(paths, ["mlp", "cnn"])[0]) == {"mlp", "cnn"}
  with pytest.raises(UserError, match="cnn_cpu.json and .*cnn_gpu.json both time the cnn"):
    estimators_mnist.read_step_times(paths + [str(tmp_path / "cnn_gpu.json")], ["cnn"])


def test_a_published_report_is_rebuilt_from_its_records_by_its_own_command(tmp_path):
  published = os.path.join(runs.REPO, "experiments", "results",
                           "estimators_mnist_cnn_exact_heads_2ep.md")
  with open(published, encoding="utf-8") as f:
    text = f.read()
  command = re.search(r"Made by `python -m experiments.estimators_mnist ([^`]*)`", text)[1]
  given = dict(flag[2:].split("=", 1) for flag in command.split() if "=" in flag)
  lists = lambda name: given[name].split(",")
  args = types.SimpleNamespace(
      models=lists("models"), optimizers=lists("optimizers"), estimators=lists("estimators"),
      num_seeds=int(given["num_seeds"]), tune_epochs=int(given["tune_epochs"]),
      epochs=int(given["epochs"]), step_times=[os.path.join(runs.REPO, given["step_times"])],
      report_only="--report_only" in command.split(), data_source=None, data_path=None,
      workdir=str(tmp_path / "runs"), table1_root=str(tmp_path / "table1"),
      records=records.ESTIMATOR_RUNS_RECORDS,
      out=str(tmp_path / "report.md"), overwrite=False)
  assert args.report_only
  assert estimators_mnist.run_all(args) == text

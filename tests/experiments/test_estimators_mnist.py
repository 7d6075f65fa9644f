"""experiments/estimators_mnist.py: tunes, trains with seeds and reports every estimator."""

import os
import types

import numpy as np
import pytest

from experiments import estimators_mnist
from fgjax import workdir as workdir_files
from fgjax.data import embedded
from fgjax.errors import UserError


def test_steps_to_a_target_is_the_median_first_step_and_none_if_a_seed_never_gets_there():
  steps = np.array([10, 20, 30])
  losses = np.array([[0.9, 0.4, 0.3], [0.8, 0.6, 0.45], [0.5, 0.5, 0.2]])
  assert estimators_mnist.steps_to(steps, losses, 0.5) == 20  # seeds: 20, 30, 10
  assert estimators_mnist.steps_to(steps, losses, 0.45) == 30  # 20, 30, 30
  assert estimators_mnist.steps_to(steps, losses, 0.3) is None  # the second seed never


def tiny_mnist(tmp_path) -> str:
  """A stand-in for MNIST: Table I's rows carve 10,000 validation images, so the digits are
  tiled to 10,064 training images (one batch of 64 left to train on) and 100 test images."""
  train_split, test_split, _ = embedded.load_digits()
  path = str(tmp_path / "tiny.npz")
  np.savez(path, x_train=np.resize(train_split.images[..., 0], (10064, 8, 8)),
           y_train=np.resize(train_split.labels, (10064,)),
           x_test=test_split.images[:100, ..., 0], y_test=test_split.labels[:100])
  return path


def test_tunes_trains_and_reports_each_estimator_against_backprop(tmp_path):
  args = types.SimpleNamespace(
      data_source="npz", data_path=tiny_mnist(tmp_path), workdir=str(tmp_path / "runs"),
      table1_root=str(tmp_path / "table1"), num_seeds=2, tune_epochs=1, epochs=2,
      models=["mlp"], optimizers=["sgd"], step_times_dir=str(tmp_path),
      out=str(tmp_path / "out" / "report.md"), overwrite=False)
  text = estimators_mnist.run_all(args)
  rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| MLP | SGD |")]
  assert [row[2] for row in rows] == ["forward", *estimators_mnist.ESTIMATORS, "backprop"]
  assert all(row[4] == "2" and "+-" in row[5] and row[-1] == "- |" for row in rows)
  tuned = os.path.join(args.workdir, "mlp_sgd_local_activity_k1_g32_2ep_2seeds")
  config = workdir_files.read_json(os.path.join(tuned, "seed_0", workdir_files.CONFIG_FILE))
  assert (config["estimator"], config["unit_groups"], config["num_epochs"]) == (
      "local_activity", 32, 2)
  sweep = workdir_files.read_json(os.path.join(args.workdir, "sweeps",
                                               "mlp_sgd_local_activity_k1_g32",
                                               "results.json"))
  assert config["learning_rate"] == sweep["best"]["hyperparameters"]["learning_rate"]
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

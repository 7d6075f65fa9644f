"""experiments/estimator_quality.py: each estimator's cosine and relative variance, untrained."""

import types

import numpy as np
import pytest

from experiments import estimator_quality
from fgjax.errors import UserError


def _args(tmp_path, data_path, **changes):
  return types.SimpleNamespace(**{
      "data_source": "npz", "data_path": data_path, "models": ["mlp"],
      "estimators": list(estimator_quality.ESTIMATORS), "num_inits": 2, "num_batches": 1,
      "draws": 2, "out": str(tmp_path / "quality.md"), "overwrite": False, **changes})


def _rows(text: str) -> dict:
  cells = [line.strip("| ").split(" | ") for line in text.splitlines()
           if line.startswith("| MLP") or line.startswith("| CNN")]
  return {(row[0], row[1]): row[2:] for row in cells}


def test_every_estimator_is_measured_and_fewer_units_per_derivative_is_less_noise(tmp_path,
                                                                                   tiny_mnist):
  args = _args(tmp_path, tiny_mnist)
  text = estimator_quality.run_all(args)
  rows = _rows(text)
  assert [name for _, name in rows] == list(estimator_quality.ESTIMATORS)
  mean = lambda name, column: float(rows["MLP", name][column].split(" +- ")[0])
  for name in estimator_quality.ESTIMATORS:
    patches = estimator_quality.ESTIMATORS[name].get("local_heads.patches", 1)
    if patches != 1:  # conv maps only
      assert rows["MLP", name][0].startswith(
          f"does not apply: local_heads.patches={patches} splits conv")
      continue
    assert -1 <= mean(name, 0) <= 1 and -1 <= mean(name, 1) <= 1 and mean(name, 2) > 0, name
    # The whole estimate's relative variance is its layers' weighted by their gradients' norms.
    assert mean(name, 3) >= mean(name, 2) * (1 - 1e-3), name
  # Weight perturbation of 1.1M parameters is almost orthogonal to the gradient; one derivative
  # per unit under a shared local head is far closer to it.
  assert mean("forward_k1", 0) < 0.01 < 0.2 < mean("local_activity_k1_s1024", 0)
  assert mean("local_activity_k1_s1024", 2) < mean("local_activity_k1_s32", 2) < mean(
      "local_activity_k1", 2)
  with open(args.out) as f:
    assert f.read() == text
  with pytest.raises(UserError, match="already there; pass --overwrite"):
    estimator_quality.run_all(args)
  with pytest.raises(UserError, match="--estimators=backprop: choose from forward_k1,"):
    estimator_quality.run_all(_args(tmp_path, tiny_mnist, estimators=["backprop"]))
  with pytest.raises(UserError, match="--draws=0: expected at least 1"):
    estimator_quality.run_all(_args(tmp_path, tiny_mnist, draws=0, overwrite=True))
  with pytest.raises(UserError,
                     match="--num_batches=2: .* holds 64 images: --num_batches=1 at most"):
    estimator_quality.run_all(_args(tmp_path, tiny_mnist, num_batches=2, overwrite=True))


def test_a_model_that_cannot_take_an_estimator_is_a_row_saying_so(tmp_path):
  """The MNIST CNN's blocks hold two convolutions: losses per slice need local losses per
  layer there, and the row says why instead of stopping the report."""
  rng = np.random.default_rng(0)
  path = str(tmp_path / "mnist28.npz")
  np.savez(path, x_train=rng.integers(0, 256, (10064, 28, 28), dtype=np.uint8),
           y_train=rng.integers(0, 10, 10064), x_test=rng.integers(0, 256, (64, 28, 28),
                                                                  dtype=np.uint8),
           y_test=rng.integers(0, 10, 64))
  args = _args(tmp_path, path, models=["cnn"], num_batches=1, draws=1,
               estimators=["local_activity_k1_l32", "local_activity_k1_layer_s64",
                           "local_activity_k1_layer_p2_s256"])
  rows = _rows(estimator_quality.run_all(args))
  assert rows["CNN", "local_activity_k1_l32"][0].startswith(
      "does not apply: local_heads.slices=32 needs blocks of one layer")
  for name in ("local_activity_k1_layer_s64", "local_activity_k1_layer_p2_s256"):
    assert 0 < float(rows["CNN", name][0].split(" +- ")[0]) <= 1

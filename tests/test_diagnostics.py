"""fgjax.diagnostics: the estimate's cosine to the true gradient and its relative variance, and
their metrics rows in a training run."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fgjax import config_loading
from fgjax import default_config
from fgjax import diagnostics
from fgjax import models
from fgjax import programs
from fgjax import train
from fgjax.workdir import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _problem(local_heads=None, hidden=(6, 5)):
  """A tiny MLP (119 parameters with the default hidden sizes and no local heads) and a batch of
  16 images."""
  model = models.split(models.MLP((3, 3, 1), 4, rngs=nnx.Rngs(0), hidden=hidden, init="torch",
                                  local_heads=local_heads))
  images = jax.random.randint(jax.random.PRNGKey(1), (16, 3, 3, 1), 0, 256).astype(jnp.uint8)
  labels = jax.random.randint(jax.random.PRNGKey(2), (16,), 0, 4)
  loss_fn = programs.make_loss_fn(model.apply, 128.0, 64.0, perturbed=model.perturbed)
  return model.params, images, labels, loss_fn


def _diagnose(estimator, num_draws, local_heads=None, hidden=(6, 5), model_name="mlp"):
  params, images, labels, loss_fn = _problem(local_heads, hidden)
  config = default_config.base_config()
  config.estimator, config.model = estimator, model_name
  diagnose = jax.jit(diagnostics.make_diagnostics(loss_fn, config, num_draws))
  return {k: float(v) for k, v in diagnose(params, images, labels, jax.random.PRNGKey(3)).items()}


def test_backprop_is_the_true_gradient():
  result = _diagnose("backprop", 2)
  for name, value in result.items():
    expected = 0.0 if name.startswith("relative_variance") else 1.0
    np.testing.assert_allclose(value, expected, atol=1e-5, err_msg=name)


def test_forward_gradient_cosine_is_the_theoretical_mean():
  """With one normal tangent v, ĝ = <g, v> v and cos(ĝ, g) = |cos(v, g)|, whose mean for an
  isotropic v in n dimensions is Γ(n/2) / (√π Γ((n+1)/2)), about sqrt(2 / (π n))."""
  params, *_ = _problem()
  n = models.num_params(params)
  expected = math.exp(math.lgamma(n / 2) - math.lgamma((n + 1) / 2)) / math.sqrt(math.pi)
  forward = _diagnose("forward", 512)
  # One draw's |cos| has a standard deviation of about 0.055 here: 0.0024 for the mean of 512.
  assert forward["cosine"] == pytest.approx(expected, abs=0.01)
  # E|<g, v> v - g|^2 = (n + 1) |g|^2; one draw's relative spread is about sqrt(2).
  assert forward["relative_variance"] == pytest.approx(n + 1, rel=0.3)


def test_activity_perturbation_is_closer_than_the_forward_gradient():
  """With one tangent each, on an MLP of 1,508 weights but 68 units per example (measured: cosine
  0.052 against 0.023, relative variance 285 against 1,766)."""
  forward = _diagnose("forward", 64, hidden=(32, 32))
  activity = _diagnose("activity", 64, hidden=(32, 32))
  assert activity["cosine"] > 1.5 * forward["cosine"]
  assert activity["relative_variance"] < forward["relative_variance"] / 3


def test_unrolled_draws_give_what_mapped_draws_give(monkeypatch):
  """Where a model runs badly inside a loop (`programs.scans_well` false: conv nets on CPU) the
  draws are unrolled instead of mapped, with the same numbers."""
  monkeypatch.setattr(programs, "scans_well", lambda model_name: model_name != "cnn")
  mapped = _diagnose("local_activity", 3, local_heads=models.LocalHeads())
  unrolled = _diagnose("local_activity", 3, local_heads=models.LocalHeads(), model_name="cnn")
  assert set(mapped) == set(unrolled)
  for name, value in mapped.items():
    np.testing.assert_allclose(unrolled[name], value, rtol=1e-5, err_msg=name)


def test_layers_are_named_by_the_params_dict():
  result = _diagnose("local_activity", 2, local_heads=models.LocalHeads())
  layers = ("hidden.0", "hidden.1", "head", "local_heads.0", "local_heads.1")
  assert set(result) == {"cosine", "relative_variance", *(f"cosine/{name}" for name in layers),
                         *(f"relative_variance/{name}" for name in layers)}
  conv = models.create_model("cnn", (28, 28, 1), 10, seed=0).params
  assert sorted(set(diagnostics.layer_names(conv))) == [
      "convs.0", "convs.1", "convs.2", "convs.3", "dense", "head"]


def test_vmapped_over_trials_is_each_trial_alone():
  params, images, labels, loss_fn = _problem()
  config = default_config.base_config()
  config.estimator = "forward"
  diagnose = diagnostics.make_diagnostics(loss_fn, config, num_draws=4)
  other = jax.tree.map(lambda leaf: 2 * leaf, params)
  keys = jax.random.split(jax.random.PRNGKey(5), 2)
  stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), params, other)
  together = jax.jit(jax.vmap(diagnose, in_axes=(0, None, None, 0)))(stacked, images, labels, keys)
  for i, trial in enumerate((params, other)):
    alone = jax.jit(diagnose)(trial, images, labels, keys[i])
    for name, value in alone.items():
      np.testing.assert_allclose(together[name][i], value, rtol=1e-5, err_msg=name)


def _digits_rows(workdir):
  config = config_loading.load_config(os.path.join(REPO, "configs", "default.py") + ":activity")
  config.num_epochs, config.log_every_steps, config.diagnostics_every_steps = 1, 4, 6
  config.num_directions, config.learning_rate = 4, 0.02  # of 32 and 0.1: shorter, as stable
  train.train_and_evaluate(config, str(workdir))
  return [row for row in read_metrics(str(workdir)) if "cosine" in row]


def test_a_run_writes_deterministic_diagnostic_rows(tmp_path):
  """16 steps in chunks of 4: rows at the first chunk ends past multiples of 6, steps 8 and 12."""
  rows = _digits_rows(tmp_path / "a")
  assert [row["step"] for row in rows] == [8, 12]
  layers = ("hidden.0", "hidden.1", "head")
  assert set(rows[0]) == {"step", "cosine", "relative_variance",
                          *(f"cosine/{name}" for name in layers),
                          *(f"relative_variance/{name}" for name in layers)}
  assert all(0 < row["cosine"] < 1 for row in rows)
  assert _digits_rows(tmp_path / "b") == rows

"""fgjax.losses: the plain and the clamped cross-entropy, against optax and numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fgjax import losses

EPS = np.finfo(np.float32).eps


def _authors_formula(logits, labels):
  """The paper's code in numpy: stable softmax, probabilities clamped to [eps, 1 - eps], -log."""
  shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
  probs = np.clip(shifted / shifted.sum(axis=1, keepdims=True), EPS, 1 - EPS)
  return -np.log(probs[np.arange(len(labels)), labels])


def test_names():
  assert losses.LOSSES == ("cross_entropy", "clamped_cross_entropy")
  for name in losses.LOSSES:
    assert callable(losses.per_example_loss(name))
  with pytest.raises(ValueError, match="unknown loss"):
    losses.per_example_loss("hinge")


@pytest.mark.parametrize("name", losses.LOSSES)
def test_equals_optax_where_nothing_is_clamped(name):
  logits = jax.random.normal(jax.random.PRNGKey(0), (16, 10))
  labels = jnp.arange(16) % 10
  got = losses.per_example_loss(name)(logits, labels)
  assert got.shape == (16,)
  np.testing.assert_allclose(
      got, optax.softmax_cross_entropy_with_integer_labels(logits, labels), rtol=1e-6)
  grad = jax.grad(lambda z: losses.per_example_loss(name)(z, labels).sum())(logits)
  np.testing.assert_allclose(grad, jax.nn.softmax(logits) - jax.nn.one_hot(labels, 10),
                             atol=1e-6)


@pytest.mark.parametrize("name", losses.LOSSES)
def test_leading_axes_are_batch_axes(name):
  """(B, G, C) logits of G classifiers per example, with (B, G) labels, give (B, G) losses."""
  logits = jax.random.normal(jax.random.PRNGKey(0), (4, 3, 10))
  labels = jnp.arange(12).reshape(4, 3) % 10
  got = losses.per_example_loss(name)(logits, labels)
  flat = losses.per_example_loss(name)(logits.reshape(12, 10), labels.reshape(12))
  np.testing.assert_allclose(got, flat.reshape(4, 3), rtol=1e-6)


def test_clamped_loss_is_capped_at_minus_log_eps():
  logits = jnp.array([[0.0, 200.0, 0.0], [0.0, 30.0, 0.0], [50.0, 0.0, 0.0]])
  labels = jnp.array([0, 0, 0])
  clamped = losses.per_example_loss("clamped_cross_entropy")(logits, labels)
  np.testing.assert_allclose(clamped[:2], -np.log(EPS), rtol=1e-6)  # ~15.94
  assert 15.9 < float(clamped[0]) < 16.0
  # A confidently right example is clamped at 1 - eps: loss -log(1 - eps) ~ eps, not 0.
  np.testing.assert_allclose(clamped[2], -np.log1p(-EPS), rtol=1e-3)
  plain = losses.per_example_loss("cross_entropy")(logits, labels)
  np.testing.assert_allclose(plain[:2], [200.0, 30.0], rtol=1e-6)


def test_saturated_example_gives_no_gradient():
  logits = jnp.array([[0.0, 40.0, 0.0], [1.0, 0.5, -0.5], [60.0, 0.0, 0.0]])
  labels = jnp.array([0, 0, 0])
  fn = losses.per_example_loss("clamped_cross_entropy")
  grad = jax.grad(lambda z: fn(z, labels).sum())(logits)
  np.testing.assert_array_equal(grad[0], 0.0)  # probability of the label < eps
  np.testing.assert_array_equal(grad[2], 0.0)  # probability of the label > 1 - eps
  assert np.all(np.abs(grad[1]) > 0.01)  # the unclamped example keeps its gradient
  plain = losses.per_example_loss("cross_entropy")
  assert np.abs(jax.grad(lambda z: plain(z, labels).sum())(logits)[0]).max() > 0.9


def test_clamped_matches_the_authors_formula_on_random_logits():
  rng = np.random.default_rng(0)
  # Wide logits so that many examples are clamped at either end.
  logits = (rng.standard_normal((512, 10)) * 12).astype(np.float32)
  labels = rng.integers(0, 10, 512)
  labels[:256] = logits[:256].argmax(axis=1)  # half labelled by their largest logit
  expected = _authors_formula(logits.astype(np.float64), labels)
  assert np.sum(expected > 15.9) > 20 and np.sum(expected < 1e-6) > 20
  got = losses.per_example_loss("clamped_cross_entropy")(jnp.asarray(logits),
                                                          jnp.asarray(labels))
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", losses.LOSSES)
def test_per_slice_losses_move_with_each_slices_inputs_alone(name):
  """Each slice's loss equals the loss of the logits, and its derivative along a tangent of the
  inputs is that of the loss of the logits along the tangent of that slice's share of them
  alone (its inputs' tangent times its rows of the kernel)."""
  per_example = losses.per_example_loss(name)
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  inputs = jax.random.normal(keys[0], (4, 3, 2))  # B = 4 examples, S = 3 slices of 2 units
  kernel = jax.random.normal(keys[2], (3, 2, 5))  # C = 5 classes
  logits = jnp.einsum("bsi,sic->bc", inputs, kernel)
  labels = jnp.array([0, 4, 2, 1])
  tangent = jax.random.normal(keys[1], inputs.shape)
  value, derivative = jax.jvp(
      lambda x: losses.per_slice_losses(per_example, logits, x, kernel, labels), (inputs,),
      (tangent,))
  np.testing.assert_allclose(value, np.repeat(per_example(logits, labels)[:, None], 3, 1),
                             rtol=1e-6)
  for s in range(3):
    _, expected = jax.jvp(lambda l: per_example(l, labels), (logits,),
                          (tangent[:, s] @ kernel[s],))
    np.testing.assert_allclose(derivative[:, s], expected, rtol=1e-5, atol=1e-6)

"""Tests of fgjax.estimators: exactness of the directional derivative, unbiasedness, variance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fgjax import estimators

TANGENTS = ("normal", "rademacher")


def _params():
  return {"w": jnp.array([[0.5, -1.0, 2.0], [0.3, 0.0, -0.7]]), "b": jnp.array([0.1, -0.2])}


def _loss(params):
  """A smooth non-linear loss whose gradient is dense."""
  x = jnp.array([1.0, -2.0, 0.5])
  h = jnp.tanh(params["w"] @ x + params["b"])
  return jnp.sum(h ** 2) + 0.1 * jnp.sum(params["w"] ** 3)


def _flat(tree):
  return jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree.leaves(tree)])


def _tangent_of(key, params, tangent):
  """Recovers the tangent v drawn for `key` from the estimator itself.

  For the linear probe f(p) = p_0 the estimate is v_0 * v, so v = g / sqrt(g_0) up to a global
  sign, which cancels in every product <a, v> v that the tests compare.
  """
  def probe(p):
    return _flat(p)[0]

  _, g = estimators.forward_gradient(probe, params, key, tangent=tangent)
  g = _flat(g)
  return g / jnp.sqrt(g[0])


@pytest.mark.parametrize("tangent", TANGENTS)
def test_directional_derivative_equals_grad_dot_tangent(tangent):
  params, key = _params(), jax.random.PRNGKey(3)
  v = _tangent_of(key, params, tangent)
  true_grad = _flat(jax.grad(_loss)(params))
  loss, g = estimators.forward_gradient(_loss, params, key, tangent=tangent)
  np.testing.assert_allclose(_flat(g), jnp.dot(true_grad, v) * v, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(loss, _loss(params), rtol=1e-6)


@pytest.mark.parametrize("tangent", TANGENTS)
def test_unbiased_within_statistical_bound(tangent):
  params, num_keys = _params(), 20000
  keys = jax.random.split(jax.random.PRNGKey(0), num_keys)
  estimate = jax.jit(jax.vmap(
      lambda k: _flat(estimators.forward_gradient(_loss, params, k, tangent=tangent)[1])))
  samples = np.asarray(estimate(keys))
  true_grad = np.asarray(_flat(jax.grad(_loss)(params)))
  standard_error = samples.std(0) / np.sqrt(num_keys)
  assert np.all(np.abs(samples.mean(0) - true_grad) < 5 * standard_error + 1e-6)
  # A biased estimator, e.g. one that forgot to scale by v, would be far outside the bound.
  assert np.linalg.norm(true_grad) > 10 * np.linalg.norm(standard_error)


def _total_variance(num_directions, num_keys=4000):
  params = _params()
  keys = jax.random.split(jax.random.PRNGKey(1), num_keys)
  estimate = jax.jit(jax.vmap(lambda k: _flat(estimators.forward_gradient(
      _loss, params, k, num_directions=num_directions)[1])))
  return float(np.asarray(estimate(keys)).var(0).sum())


def test_num_directions_divides_the_variance():
  ratio = _total_variance(1) / _total_variance(4)
  assert 3.2 < ratio < 5.0, ratio


def test_num_directions_stays_unbiased_and_averages_directions():
  params = _params()
  loss, g = estimators.forward_gradient(_loss, params, jax.random.PRNGKey(5), num_directions=3)
  assert jax.tree.structure(g) == jax.tree.structure(params)
  np.testing.assert_allclose(loss, _loss(params), rtol=1e-6)
  keys = jax.random.split(jax.random.PRNGKey(2), 4000)
  mean = np.asarray(jax.jit(jax.vmap(lambda k: _flat(estimators.forward_gradient(
      _loss, params, k, num_directions=3)[1])))(keys)).mean(0)
  np.testing.assert_allclose(mean, _flat(jax.grad(_loss)(params)), atol=0.15)


def test_rademacher_tangents_are_signs():
  v = _tangent_of(jax.random.PRNGKey(7), _params(), "rademacher")
  np.testing.assert_allclose(jnp.abs(v), 1.0, rtol=1e-6)


@pytest.mark.parametrize("tangent", TANGENTS)
def test_jvp_clip_bounds_the_directional_derivative(tangent):
  params = _params()
  steep = lambda p: 1000.0 * _loss(p)
  for seed in range(20):
    key = jax.random.PRNGKey(seed)
    v = _tangent_of(key, params, tangent)
    _, g = estimators.forward_gradient(steep, params, key, tangent=tangent, jvp_clip=0.5)
    derivative = jnp.dot(_flat(g), v) / jnp.dot(v, v)
    assert abs(float(derivative)) <= 0.5 + 1e-5
    unclipped = jnp.dot(_flat(jax.grad(steep)(params)), v)
    np.testing.assert_allclose(derivative, jnp.clip(unclipped, -0.5, 0.5), rtol=1e-4)


def test_backprop_equals_jax_grad():
  params = _params()
  loss, g = estimators.backprop(_loss, params)
  np.testing.assert_allclose(loss, _loss(params))
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(jax.grad(_loss)(params))):
    np.testing.assert_allclose(a, b)


def test_estimators_are_jittable_and_keep_the_tree():
  params = _params()
  fg = jax.jit(lambda p, k: estimators.forward_gradient(_loss, p, k, num_directions=2))
  loss, g = fg(params, jax.random.PRNGKey(0))
  assert jax.tree.structure(g) == jax.tree.structure(params)
  assert all(a.shape == b.shape and a.dtype == b.dtype
             for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(params)))
  same = fg(params, jax.random.PRNGKey(0))[1]
  other = fg(params, jax.random.PRNGKey(1))[1]
  np.testing.assert_array_equal(_flat(g), _flat(same))
  assert not np.allclose(_flat(g), _flat(other))
  loss_bp, g_bp = jax.jit(lambda p: estimators.backprop(_loss, p))(params)
  assert jax.tree.structure(g_bp) == jax.tree.structure(params)


@pytest.mark.parametrize("num_directions", [1, 3])
def test_derivatives_are_what_scales_the_tangents(num_directions):
  params, key = _params(), jax.random.PRNGKey(4)
  loss, g, derivatives = estimators.forward_gradient_and_derivatives(
      _loss, params, key, num_directions=num_directions, jvp_clip=0.5)
  assert derivatives.shape == (num_directions,) and np.all(np.abs(derivatives) <= 0.5)
  same_loss, same_g = estimators.forward_gradient(_loss, params, key,
                                                  num_directions=num_directions, jvp_clip=0.5)
  np.testing.assert_array_equal(loss, same_loss)
  np.testing.assert_array_equal(_flat(g), _flat(same_g))
  if num_directions == 1:
    v = _tangent_of(key, params, "normal")
    np.testing.assert_allclose(derivatives[0], jnp.clip(
        jnp.dot(_flat(jax.grad(_loss)(params)), v), -0.5, 0.5), rtol=1e-5)


@pytest.mark.parametrize("tangent", ["normal", "rademacher", "threefry_normal"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float16, jnp.bfloat16])
def test_finiteness_from_the_derivatives_never_passes_a_non_finite_estimate(tangent, dtype):
  params = jax.tree.map(lambda leaf: leaf.astype(dtype), _params())
  verdicts = []
  for scale in [1.0, 1e3, 1e4, 1e5, 1e30, 1e37, 1e38, np.inf, np.nan]:
    scaled = lambda p, scale=scale: scale * _loss(jax.tree.map(lambda a: a.astype(jnp.float32), p))
    for k in (1, 4):
      _, g, derivatives = estimators.forward_gradient_and_derivatives(
          scaled, params, jax.random.PRNGKey(9), num_directions=k, tangent=tangent)
      said_finite = bool(estimators.forward_gradient_is_finite(derivatives, params, tangent))
      is_finite = all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(g))
      assert is_finite or not said_finite, (scale, k)  # never a non-finite estimate passed
      verdicts.append(said_finite)
  assert verdicts[:4] == [True] * 4  # scales 1 and 1000 pass in every dtype
  assert verdicts[-4:] == [False] * 4  # inf and nan never


@pytest.mark.parametrize("kwargs, message", [
    ({"num_directions": 0}, "num_directions"),
    ({"tangent": "uniform"}, "unknown tangent"),
    ({"jvp_clip": 0.0}, "jvp_clip"),
])
def test_bad_arguments_are_rejected(kwargs, message):
  with pytest.raises(ValueError, match=message):
    estimators.forward_gradient(_loss, _params(), jax.random.PRNGKey(0), **kwargs)

"""Tests of fgjax.estimators: exactness of the directional derivative, unbiasedness, variance,
the projection of K tangents, activity perturbation (global and local), and short training runs
of every estimator on the embedded digits."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fgjax import config_loading
from fgjax import estimators
from fgjax import models
from fgjax import programs
from fgjax import tangents
from fgjax import train
from fgjax.workdir import read_metrics

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
    ({"combine": "sum"}, "unknown combine"),
])
def test_bad_arguments_are_rejected(kwargs, message):
  with pytest.raises(ValueError, match=message):
    estimators.forward_gradient(_loss, _params(), jax.random.PRNGKey(0), **kwargs)


@pytest.mark.parametrize("num_directions, seed", [(8, 0), (8, 1), (20, 2), (20, 3)])
def test_projection_is_exact_once_the_tangents_span_the_parameters(num_directions, seed):
  """8 tangents of the 8 parameters span the space, and so do 20 (dependent ones)."""
  params = _params()
  _, g = estimators.forward_gradient(_loss, params, jax.random.PRNGKey(seed),
                                     num_directions=num_directions, combine="projection")
  np.testing.assert_allclose(_flat(g), _flat(jax.grad(_loss)(params)), rtol=1e-4, atol=1e-5)


def _net_params():
  """A 14-13 tanh layer: 195 parameters, enough for the Gram matrix of 195 tangents to be too
  ill-conditioned for float32 (its pseudo-inverse missed the gradient by 8-27 %)."""
  return {"w": 0.3 * jax.random.normal(jax.random.PRNGKey(5), (13, 14)),
          "b": jnp.linspace(-1.0, 1.0, 13)}


def _net_loss(params):
  h = jnp.tanh(params["w"] @ jnp.linspace(-1.0, 1.0, 14) + params["b"])
  return jnp.sum(h ** 2) + 0.1 * jnp.sum(params["w"] ** 3)


def _drawn_tangents(key, params, num_directions):
  """The K tangents the estimator draws for `key`, as the columns of an (n, K) float64 matrix."""
  axes = jax.tree.map(lambda leaf: max(leaf.ndim - 1, 0), params)
  vs = tangents.get_sampler("normal").stacked(jax.random.split(key, num_directions), params, axes)
  return np.concatenate([np.moveaxis(np.asarray(t, np.float64), axis, -1).reshape(-1,
                                                                                 num_directions)
                         for t, axis in zip(jax.tree.leaves(vs), jax.tree.leaves(axes))])


@pytest.mark.parametrize("num_directions", [40, 100, 195, 215])
def test_projection_of_many_tangents_is_the_projection_onto_their_span(num_directions):
  """K = 40 of n = 195 (through the Gram matrix), 100 (through the SVD of the tangents), K = n and
  K > n (the exact gradient): the estimate is V (V^T V)^+ V^T grad f, computed in float64."""
  params, key = _net_params(), jax.random.PRNGKey(0)
  grad = np.asarray(_flat(jax.grad(_net_loss)(params)), np.float64)
  _, g = estimators.forward_gradient(_net_loss, params, key, num_directions=num_directions,
                                     combine="projection")
  v = _drawn_tangents(key, params, num_directions)
  expected = v @ np.linalg.lstsq(v, grad, rcond=None)[0]
  if num_directions >= grad.size:
    np.testing.assert_allclose(expected, grad, rtol=1e-9, atol=1e-12)
  else:
    assert np.linalg.norm(expected - grad) > 0.2 * np.linalg.norm(grad)
  np.testing.assert_allclose(_flat(g), expected, rtol=1e-3, atol=1e-4 * np.abs(grad).max())


@pytest.mark.parametrize("num_directions", [1, 3])
def test_projection_onto_fewer_tangents_is_an_orthogonal_projection(num_directions):
  """g = P grad f with P an orthogonal projection: <grad f - g, g> = 0, hence |g| < |grad f|."""
  params, grad = _params(), _flat(jax.grad(_loss)(_params()))
  for seed in range(5):
    _, g = estimators.forward_gradient(_loss, params, jax.random.PRNGKey(seed),
                                       num_directions=num_directions, combine="projection")
    g = _flat(g)
    np.testing.assert_allclose(jnp.dot(grad - g, g), 0.0, atol=1e-5 * jnp.dot(grad, grad))
    assert 0 < jnp.linalg.norm(g) < jnp.linalg.norm(grad)


def _tiny_network():
  """A 4-5-4-3 MLP with local heads (torch init: non-zero biases) and a batch of 3 examples."""
  model = models.split(models.MLP((2, 2, 1), 3, rngs=nnx.Rngs(0), hidden=(5, 4), init="torch",
                                  local_heads=models.LocalHeads()))
  loss_fn = programs.make_loss_fn(model.apply, [127.5], [64.0], perturbed=model.perturbed)
  images = np.random.default_rng(0).integers(0, 256, (3, 2, 2, 1)).astype(np.uint8)
  return model.params, loss_fn, images, np.array([0, 2, 1], np.int32)


def _activity_problem(local):
  """(forward, params, exact): the forward function of the tiny network and the gradient the
  estimator targets: of the model's loss, or of the sum of the local losses, whose stop-gradients
  between blocks give each block the gradient of its own loss alone."""
  params, loss_fn, images, labels = _tiny_network()
  forward = lambda p, perturbations, stop_inputs: loss_fn.per_block(
      p, images, labels, perturbations, stop_inputs, local)
  exact = jax.grad(lambda p: sum(loss.value.mean() for loss in forward(p, None, False)[0]))(
      params)
  return forward, params, exact


@pytest.mark.parametrize("tangent", TANGENTS)
@pytest.mark.parametrize("local", [False, True])
def test_activity_perturbation_is_unbiased(local, tangent):
  """All layers are perturbed at once and share each example's derivative; the estimate of every
  layer is unbiased all the same (the other layers' tangents are independent of its own)."""
  forward, params, exact = _activity_problem(local)
  num_keys = 20000
  estimate = jax.jit(jax.vmap(lambda k: _flat(estimators.activity_gradient(
      forward, params, k, tangent=tangent)[1])))
  samples = np.asarray(estimate(jax.random.split(jax.random.PRNGKey(0), num_keys)))
  exact = np.asarray(_flat(exact))
  standard_error = samples.std(0) / np.sqrt(num_keys)
  assert np.all(np.abs(samples.mean(0) - exact) < 5 * standard_error + 1e-6)
  assert np.linalg.norm(exact) > 10 * np.linalg.norm(standard_error)
  if not local:  # the local heads are unused: no gradient, and none estimated
    unused = estimators.activity_gradient(forward, params, jax.random.PRNGKey(1))[1]
    assert not np.any(_flat(unused["local_heads"]))


@pytest.mark.parametrize("local", [False, True])
def test_a_derivative_per_unit_group_stays_unbiased_and_lowers_the_variance(local):
  """Splitting every layer's units into G groups (5 + 4 + 3 units; G = 2: groups of 3 and 2, 2
  and 2, 2 and 1), each with its own derivative, keeps each layer's estimate unbiased and cuts
  the variance, which grows with the units that share a derivative."""
  forward, params, exact = _activity_problem(local)
  num_keys = 20000
  keys = jax.random.split(jax.random.PRNGKey(0), num_keys)
  variance = {}
  for groups in (1, 2):
    estimate = jax.jit(jax.vmap(lambda k, g=groups: _flat(estimators.activity_gradient(
        forward, params, k, unit_groups=g)[1])))
    samples = np.asarray(estimate(keys))
    standard_error = samples.std(0) / np.sqrt(num_keys)
    assert np.all(np.abs(samples.mean(0) - np.asarray(_flat(exact)))
                  < 5 * standard_error + 1e-6), groups
    variance[groups] = samples.var(0).sum()
  assert variance[2] < 0.7 * variance[1], variance


def _per_slice_problem():
  """(forward, params, exact) of the tiny network with local heads per slice, 2 classifiers per
  block (hidden 6 and 4 units: slices of 3 and 2), and the gradient of the sum of every loss."""
  model = models.split(models.MLP((2, 2, 1), 3, rngs=nnx.Rngs(0), hidden=(6, 4), init="torch",
                                  local_heads=models.LocalHeads(slices=2)))
  loss_fn = programs.make_loss_fn(model.apply, [127.5], [64.0], perturbed=model.perturbed)
  images = np.random.default_rng(0).integers(0, 256, (3, 2, 2, 1)).astype(np.uint8)
  labels = np.array([0, 2, 1], np.int32)
  forward = lambda p, perturbations, stop_inputs: loss_fn.per_block(
      p, images, labels, perturbations, stop_inputs, True)
  exact = jax.grad(lambda p: sum(loss.value.mean(0).sum()
                                 for loss in forward(p, None, False)[0]))(model.params)
  return forward, model.params, exact


def test_losses_per_slice_are_unbiased_from_one_jvp():
  """Each block's local head is 2 classifiers, each reading its own slice of the block's units:
  one jvp gives each slice the derivative of its own classifier's loss, and the estimate of the
  sum of all losses' gradient stays unbiased."""
  forward, params, exact = _per_slice_problem()
  assert [loss.value.shape for loss in forward(params, None, False)[0]] == [(3, 2), (3, 2), (3,)]
  num_keys = 20000
  estimate = jax.jit(jax.vmap(lambda k: _flat(estimators.activity_gradient(
      forward, params, k)[1])))
  samples = np.asarray(estimate(jax.random.split(jax.random.PRNGKey(0), num_keys)))
  exact = np.asarray(_flat(exact))
  standard_error = samples.std(0) / np.sqrt(num_keys)
  assert np.all(np.abs(samples.mean(0) - exact) < 5 * standard_error + 1e-6)
  assert np.linalg.norm(exact) > 10 * np.linalg.norm(standard_error)
  for options in ({"unit_groups": 2}, {"combine": "projection", "num_directions": 2}):
    with pytest.raises(ValueError, match="losses per slice give each slice its derivative"):
      estimators.activity_gradient(forward, params, jax.random.PRNGKey(0), **options)


def _shared_head_problem(slices, network="mlp"):
  """(forward, params) of a tiny network whose local heads are shared by `slices` slices:
  the MLP (hidden 6 and 4 units) or a ConvNet with local losses per layer (two convs of 2
  channels, dense 4 units; with "conv_patches", heads reading 2 x 2 patches, dense 8 units;
  with "conv_units", heads reading every position, dense 8 units)."""
  local = dict(slices=slices, slice_head="shared")
  options = dict(rngs=nnx.Rngs(0), init="torch")
  if network == "mlp":
    shape, module = (2, 2, 1), models.MLP((2, 2, 1), 3, hidden=(6, 4), **options,
                                          local_heads=models.LocalHeads(**local))
  elif network == "conv_per_layer":
    shape, module = (4, 4, 1), models.ConvNet(
        (4, 4, 1), 3, blocks=((2, 2),), padding="SAME", hidden=4, **options,
        local_heads=models.LocalHeads(loss_per="layer", **local))
  else:
    shape, module = (4, 4, 1), models.ConvNet(
        (4, 4, 1), 3, blocks=((2, 2),), padding="SAME", hidden=8, **options,
        local_heads=models.LocalHeads(loss_per="layer", patches=2 if network == "conv_patches"
                                      else 0, **local))
  model = models.split(module)
  loss_fn = programs.make_loss_fn(model.apply, [127.5], [64.0], perturbed=model.perturbed)
  images = np.random.default_rng(0).integers(0, 256, (3, *shape)).astype(np.uint8)
  labels = np.array([0, 2, 1], np.int32)
  forward = lambda p, perturbations, stop_inputs: loss_fn.per_block(
      p, images, labels, perturbations, stop_inputs, True)
  return forward, model.params


@pytest.mark.parametrize("network, many", [("mlp", 2), ("conv_per_layer", 2),
                                            ("conv_patches", 8), ("conv_units", 0)])
def test_a_shared_local_head_gives_each_slice_its_derivative_from_one_jvp(network, many):
  """Slices of one shared head: the exact gradient of all the slices' losses is that of the
  plain local losses (each block's units, its head and the model's head moved once), and the
  estimate is unbiased for it, with less variance the more slices (S = 2: slices of 3 and 2
  units in the MLP; of one channel, and of 2 dense units, in the ConvNet; S = 8 under heads
  reading 2 x 2 patches: a slice per patch and channel, and per dense unit; S = 0 under heads
  reading every position: a slice per unit a head reads)."""
  forward, params = _shared_head_problem(1, network)
  exact = np.asarray(_flat(estimators.local_backprop(forward, params)[1]))
  num_keys = 20000
  keys = jax.random.split(jax.random.PRNGKey(0), num_keys)
  variance = {}
  for slices in (1, many):
    forward, params = _shared_head_problem(slices, network)
    np.testing.assert_allclose(_flat(estimators.local_backprop(forward, params)[1]), exact,
                               rtol=1e-6, atol=1e-7)
    estimate = jax.jit(jax.vmap(lambda k, f=forward, p=params: _flat(
        estimators.activity_gradient(f, p, k)[1])))
    samples = np.asarray(estimate(keys))
    standard_error = samples.std(0) / np.sqrt(num_keys)
    assert np.all(np.abs(samples.mean(0) - exact) < 5 * standard_error + 1e-6), slices
    variance[slices] = samples.var(0).sum()
  assert variance[many] < 0.7 * variance[1], variance


@pytest.mark.parametrize("problem", ["local", "per_slice"])
def test_local_backprop_is_the_exact_gradient_local_activity_estimates(problem):
  """Each block gets the gradient of its own loss alone: the first block's weights that of its
  local head's loss (summed over its classifiers), not the model's."""
  forward, params, exact = (_activity_problem(True) if problem == "local"
                            else _per_slice_problem())
  loss, grads = estimators.local_backprop(forward, params)
  np.testing.assert_allclose(_flat(grads), _flat(exact), rtol=1e-6, atol=1e-7)
  assert loss == pytest.approx(float(forward(params, None, False)[0][-1].value.mean()))
  first_block = jax.grad(lambda p: forward(p, None, False)[0][0].value.mean(0).sum())(params)
  np.testing.assert_allclose(_flat(grads["hidden"][0]), _flat(first_block["hidden"][0]),
                             rtol=1e-6)
  assert np.any(_flat(grads["hidden"][0]))


@pytest.mark.parametrize("problem", ["global", "local", "per_slice", "shared_conv"])
def test_exact_heads_take_the_exact_gradient_and_the_rest_stays_unbiased(problem):
  """With exact_heads every head (the local heads and the model's head; not the layer before a
  shared head) gets its loss's exact gradient from every key, and the other layers' estimates
  stay unbiased."""
  if problem in ("global", "local"):
    forward, params, _ = _activity_problem(problem == "local")
  elif problem == "per_slice":
    forward, params, _ = _per_slice_problem()
  else:
    forward, params = _shared_head_problem(2, "conv_per_layer")
  exact = (estimators.local_backprop(forward, params)[1] if problem != "global"
           else estimators.backprop(lambda p: forward(p, None, False)[0][-1].value.mean(),
                                    params)[1])
  num_keys = 20000
  estimate = jax.jit(jax.vmap(lambda k: estimators.activity_gradient(
      forward, params, k, exact_heads=True)[1]))
  samples = estimate(jax.random.split(jax.random.PRNGKey(0), num_keys))
  heads = ["head"] + (["local_heads"] if problem != "global" else [])
  for name in heads:
    for sample, truth in zip(jax.tree.leaves(samples[name]), jax.tree.leaves(exact[name])):
      np.testing.assert_allclose(sample, np.broadcast_to(truth, sample.shape), rtol=2e-5,
                                 atol=1e-6)
  others = lambda tree: [leaf for name, value in sorted(tree.items()) if name not in heads
                         for leaf in jax.tree.leaves(value)]
  flat = np.concatenate([np.asarray(leaf).reshape(num_keys, -1) for leaf in others(samples)], 1)
  truth = np.concatenate([np.ravel(leaf) for leaf in others(exact)])
  standard_error = flat.std(0) / np.sqrt(num_keys)
  assert np.all(np.abs(flat.mean(0) - truth) < 5 * standard_error + 1e-6)
  assert np.linalg.norm(truth) > 10 * np.linalg.norm(standard_error)


def test_each_slice_is_scaled_by_its_own_derivative():
  derivatives = jnp.array([[[1.0, 10.0]], [[2.0, 20.0]]])  # (K=2, B=1, S=2)
  u = jnp.ones((2, 1, 4))
  np.testing.assert_allclose(estimators._by_slice(derivatives, u), [[3.0, 3.0, 30.0, 30.0]])
  u = jnp.ones((2, 1, 5, 5, 4))  # conv activations: the slices split the channels
  np.testing.assert_allclose(estimators._by_slice(derivatives, u)[0, 2, 3], [3, 3, 30, 30])


def test_unit_groups_split_the_last_axis_into_contiguous_groups():
  np.testing.assert_array_equal(estimators.unit_group_of(5, 2), [0, 0, 0, 1, 1])
  np.testing.assert_array_equal(estimators.unit_group_of(3, 8), [0, 2, 5])  # one unit each
  forward, params, _ = _activity_problem(True)
  with pytest.raises(ValueError, match="unit_groups"):
    estimators.activity_gradient(forward, params, jax.random.PRNGKey(0), unit_groups=0)
  with pytest.raises(ValueError, match="unit_groups"):
    estimators.activity_gradient(forward, params, jax.random.PRNGKey(0), unit_groups=2,
                                 combine="projection", num_directions=2)


@pytest.mark.parametrize("local", [False, True])
def test_activity_projection_on_all_units_is_exact(local):
  """12 tangents span each example's 12 units (5 + 4 + 3; or per block 5 + 3, 4 + 3, 3): the
  projection is then the exact activity gradient, and the local weight gradient the exact
  gradient of the parameters."""
  forward, params, exact = _activity_problem(local)
  loss, g = estimators.activity_gradient(forward, params, jax.random.PRNGKey(1),
                                         num_directions=12, combine="projection")
  np.testing.assert_allclose(_flat(g), _flat(exact), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(loss, forward(params, None, False)[0][-1].value.mean(), rtol=1e-6)


def test_activity_directions_clip_and_key():
  forward, params, _ = _activity_problem(False)
  estimate = jax.jit(lambda k, **kw: estimators.activity_gradient(forward, params, k, **kw)[1],
                     static_argnames=("num_directions", "jvp_clip"))
  key = jax.random.PRNGKey(2)
  assert jax.tree.structure(estimate(key)) == jax.tree.structure(params)
  np.testing.assert_array_equal(_flat(estimate(key)), _flat(estimate(key)))
  assert not np.allclose(_flat(estimate(key)), _flat(estimate(jax.random.PRNGKey(3))))
  # A clip below every derivative scales the estimate of each example's units to +-clip.
  tiny = _flat(estimate(key, jvp_clip=1e-6))
  assert 0 < np.abs(tiny).max() < 1e-4
  with pytest.raises(ValueError, match="num_directions"):
    estimators.activity_gradient(forward, params, key, num_directions=0)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("side", ["forward", "backprop", "activity", "local_activity",
                                  "forward_projection"])
def test_each_estimator_trains_the_digits_mlp(side, tmp_path):
  """~100 steps of configs/default.py:<side> through the training loop lower the training loss."""
  config = config_loading.load_config(os.path.join(REPO, "configs", "default.py") + ":" + side)
  config.num_epochs, config.log_every_steps = 6, 16  # 96 steps, 16 per epoch
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["status"] == "completed" and summary["steps"] == 96
  epochs = [row["epoch_train_loss"] for row in read_metrics(str(tmp_path)) if "epoch" in row]
  assert len(epochs) == 6 and epochs[-1] < epochs[0] - 0.05, epochs


def test_the_registry_holds_one_consistent_record_per_estimator():
  assert estimators.ESTIMATORS == tuple(estimators.REGISTRY)
  for name, estimator in estimators.REGISTRY.items():
    assert estimators.get(name) is estimator and estimator.name == name
    assert estimator.consumes in (estimators.LOSS, estimators.PERTURBED_FORWARD)
    # Local heads reach their losses only through the perturbed forward, which runs on one device.
    if estimator.local_heads:
      assert estimator.consumes == estimators.PERTURBED_FORWARD and not estimator.data_parallel
  assert estimators.LOCAL == ("local_activity", "local_backprop")
  with pytest.raises(ValueError, match=r"unknown estimator 'reverse'; choose one of \('forward'"):
    estimators.get("reverse")

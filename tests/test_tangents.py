"""Tests of fgjax.tangents: shapes, reproducibility, the laws' moments and independence.

Statistical bounds are 5 standard errors (or p > 1e-5 for the chi-square and KS tests), so that
a correct sampler fails with negligible probability; the keys are fixed, so the tests are
deterministic anyway.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special
from scipy import stats

from fgjax import tangents

SAMPLERS = sorted(tangents.SAMPLERS)


def _params():
  return {"conv": jnp.zeros((3, 3, 4, 8)), "dense": {"kernel": jnp.zeros((300, 700)),
                                                     "bias": jnp.zeros((700,))},
          "scalar": jnp.zeros(()), "half": jnp.zeros((5, 6), jnp.bfloat16)}


def _flat(tree):
  return np.concatenate([np.asarray(leaf, np.float64).ravel() for leaf in jax.tree.leaves(tree)])


@pytest.fixture(scope="module")
def big_draws():
  """Each sampler's tangent of `_params()` for one key (211k entries)."""
  key = jax.random.PRNGKey(2026)
  return {name: tangents.SAMPLERS[name](key, _params()) for name in SAMPLERS}


@pytest.mark.parametrize("name", SAMPLERS)
def test_shapes_and_dtypes_follow_the_params(name, big_draws):
  v = big_draws[name]
  assert jax.tree.structure(v) == jax.tree.structure(_params())
  for leaf, param in zip(jax.tree.leaves(v), jax.tree.leaves(_params())):
    assert leaf.shape == param.shape and leaf.dtype == param.dtype


@pytest.mark.parametrize("name", SAMPLERS)
def test_same_key_same_tangent_other_key_other_tangent(name):
  sample = jax.jit(tangents.SAMPLERS[name])
  params = {"w": jnp.zeros((64, 32)), "b": jnp.zeros((32,))}
  a = _flat(sample(jax.random.PRNGKey(0), params))
  np.testing.assert_array_equal(a, _flat(sample(jax.random.PRNGKey(0), params)))
  np.testing.assert_array_equal(a, _flat(tangents.SAMPLERS[name](jax.random.PRNGKey(0), params)))
  b = _flat(sample(jax.random.PRNGKey(1), params))
  assert np.mean(a == b) < 0.6  # Rademacher entries agree half the time by chance
  typed = _flat(sample(jax.random.key(0), params))  # new-style typed keys work too
  assert typed.shape == a.shape


@pytest.mark.parametrize("name", SAMPLERS)
def test_stacked_draw_equals_vmapped_draws(name):
  sampler = tangents.SAMPLERS[name]
  params = {"kernel": jnp.zeros((6, 5)), "bias": jnp.zeros((5,)), "conv": jnp.zeros((3, 3, 2, 4))}
  axes = {"kernel": 1, "bias": 0, "conv": 3}
  keys = jax.random.split(jax.random.PRNGKey(3), 4)
  stacked = sampler.stacked(keys, params, axes)
  for k in range(4):
    one = sampler(keys[k], params)
    for name_, axis in axes.items():
      np.testing.assert_array_equal(np.take(np.asarray(stacked[name_]), k, axis=axis), one[name_])


@pytest.mark.parametrize("name", SAMPLERS)
def test_mean_zero_variance_one(name, big_draws):
  v = _flat(big_draws[name])
  n = v.size
  assert abs(v.mean()) < 5 / math.sqrt(n)
  # Var(v^2) is 2 for N(0, 1) and 0 for +-1.
  assert abs(np.mean(v ** 2) - 1) < 5 * math.sqrt(2 / n)


@pytest.mark.parametrize("name", ["normal", "threefry_normal"])
def test_normal_higher_moments_and_ks(name):
  v = _flat(tangents.SAMPLERS[name](jax.random.PRNGKey(11), {"w": jnp.zeros((1 << 20,))}))
  n = v.size
  assert abs(stats.skew(v)) < 5 * math.sqrt(6 / n)
  assert abs(stats.kurtosis(v)) < 5 * math.sqrt(24 / n)  # excess kurtosis, 0 for a normal
  assert stats.kstest(v, "norm").pvalue > 1e-5
  # Tail mass: P(|z| > 3) = 0.0027.
  tail = np.mean(np.abs(v) > 3)
  p = 2 * stats.norm.sf(3)
  assert abs(tail - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_rademacher_is_plus_minus_one():
  v = _flat(tangents.rademacher(jax.random.PRNGKey(5), _params()))
  assert set(np.unique(v)) == {-1.0, 1.0}


def test_normal_transform_is_the_inverse_cdf_on_every_cell():
  """All 2^23 values of the 23 bits used: the exact quantile of each cell's midpoint."""
  m = np.arange(1 << 23, dtype=np.uint32)
  # The low 9 bits are ignored; random low bits check that.
  low = np.random.default_rng(0).integers(0, 512, m.size, dtype=np.uint32)
  z = np.asarray(jax.jit(tangents.normal_from_bits)((m << 9) | low), np.float64)
  u = (2 * m.astype(np.float64) + 1) / 2**23 - 1
  exact = math.sqrt(2) * special.erfinv(u)
  np.testing.assert_allclose(z, exact, rtol=3e-7)
  np.testing.assert_array_equal(z[::-1], -z)  # the law is exactly symmetric
  assert tangents.normal.max_abs - 0.01 < np.abs(z).max() <= tangents.normal.max_abs


def test_every_sampler_stays_within_its_bound(big_draws):
  for name in SAMPLERS:
    assert np.abs(_flat(big_draws[name])).max() <= tangents.SAMPLERS[name].max_abs, name
  assert tangents.rademacher.max_abs == 1.0
  # jax.random.normal is sqrt(2) erfinv(u) for float32 u in [nextafter(-1, 0), 1): its extremes.
  lowest = np.nextafter(np.float32(-1), np.float32(0))
  extremes = np.sqrt(np.float32(2)) * jax.scipy.special.erfinv(
      jnp.array([lowest, -lowest], jnp.float32))
  assert np.abs(np.asarray(extremes)).max() <= tangents.threefry_normal.max_abs


def test_hash_bits_are_uniform():
  bits = np.asarray(tangents.hash_bits(jnp.array([12345, 67890], jnp.uint32), (1 << 20,)))
  n = bits.size
  ones = np.array([np.mean((bits >> b) & 1) for b in range(32)])
  assert np.all(np.abs(ones - 0.5) < 5 * 0.5 / math.sqrt(n))
  for shift in (0, 8, 16, 24):  # each byte uniform over 256 values
    counts = np.bincount((bits >> shift) & 0xFF, minlength=256)
    assert stats.chisquare(counts).pvalue > 1e-5
  # Consecutive counters: the pair of top bytes is uniform over 65536 cells.
  pairs = (bits[:-1] >> 24) * 256 + (bits[1:] >> 24)
  assert stats.chisquare(np.bincount(pairs, minlength=65536)).pvalue > 1e-5


@pytest.mark.parametrize("name", ["normal", "rademacher"])
def test_entries_leaves_directions_and_steps_are_uncorrelated(name):
  sampler = tangents.SAMPLERS[name]
  params = {"a": jnp.zeros((512, 512)), "b": jnp.zeros((512, 512))}
  key = jax.random.PRNGKey(8)
  v = sampler(key, params)
  a, b = np.asarray(v["a"]).ravel(), np.asarray(v["b"]).ravel()
  next_step = np.asarray(sampler(jax.random.fold_in(key, 1), params)["a"]).ravel()
  stacked = sampler.stacked(jax.random.split(key, 2), params, {"a": 1, "b": 1})["a"]
  pairs = {
      "lag 1": (a[:-1], a[1:]), "lag 2": (a[:-2], a[2:]), "next row": (a[:-512], a[512:]),
      "bit 10 flipped": (a, a[np.arange(a.size) ^ 1024]),
      "other leaf": (a, b), "next step": (a, next_step),
      "other direction": (stacked[:, 0].ravel(), stacked[:, 1].ravel()),
  }
  for what, (x, y) in pairs.items():
    assert abs(np.corrcoef(x, y)[0, 1]) < 5 / math.sqrt(x.size), what
    if name == "normal":  # squares catch dependence that leaves the linear correlation at zero
      assert abs(np.corrcoef(x ** 2, y ** 2)[0, 1]) < 5 / math.sqrt(x.size), what


def test_a_leaf_beyond_the_counter_is_rejected():
  huge = {"w": jax.ShapeDtypeStruct((1 << 16, (1 << 16) + 1), jnp.float32)}
  with pytest.raises(ValueError, match="2\\^32"):
    tangents.normal(jax.random.PRNGKey(0), huge)


def test_unknown_tangent_is_rejected():
  with pytest.raises(ValueError, match="unknown tangent"):
    tangents.get_sampler("uniform")

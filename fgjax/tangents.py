"""Random tangent directions over a parameter pytree.

A forward-gradient estimate g = <grad f, v> v is unbiased whenever E[v v^T] = I. Every sampler here
has that property; they differ in cost and in the variance of the estimate.

Drawing the tangent is most of a forward-gradient step's extra cost: the MLP's tangent has 1.86M
entries, and `jax.random.normal` spends some 50 integer operations per entry on threefry (20
rounds of add-rotate-xor per pair of 32-bit words) before it even turns bits into a normal.
The default samplers therefore take only a 64-bit seed per leaf from threefry and derive each
entry's 32 random bits from a counter-based hash of (seed, entry index), `hash_bits`. Every entry
is a pure function of (key, leaf, index), so the tangent is reproducible from the key and can be
computed in any order, fused into whatever consumes it.
"""

import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

PyTree = object

# Giles, "Approximating the erfinv function" (GPU Computing Gems, 2010), single precision: erfinv(u)
# = u * p(w) with w = -log(1 - u^2), p a polynomial in w - 2.5 (w < 5) or sqrt(w) - 3 (the tails).
_ERFINV_CENTRE = (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
                  -0.00125372503, -0.00417768164, 0.246640727, 1.50140941)
_ERFINV_TAIL = (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
                -0.0076224613, 0.00943887047, 1.00167406, 2.83297682)


def _lowbias32(x: jax.Array) -> jax.Array:
  """The `lowbias32` hash of C. Wellons (hash-prospector): a uint32 bijection of xor-shifts and odd
  multiplications in which every input bit flips every output bit with probability close to 1/2."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def _counter(shape) -> jax.Array:
  """Each entry's row-major index in an array of `shape`, as uint32."""
  size = math.prod(shape)
  if size > 2**32:
    raise ValueError(f"a leaf of {size} entries exceeds the 2^32 entries of the hash counter")
  return jax.lax.iota(jnp.uint32, size).reshape(shape)


def _hash(counter: jax.Array, s0: jax.Array, s1: jax.Array) -> jax.Array:
  return _lowbias32(_lowbias32(counter ^ s0) + s1)


def hash_bits(seed: jax.Array, shape) -> jax.Array:
  """Uniform uint32 words of `shape`, entry i (row-major) = lowbias32(lowbias32(i ^ s0) + s1).

  `seed` holds the two uint32 words (s0, s1). For a uniformly random s0 every entry is exactly
  uniform; the two hash rounds make distinct entries look independent.
  """
  return _hash(_counter(shape), seed[0], seed[1])


def _polynomial(coefficients, x: jax.Array) -> jax.Array:
  result = jnp.full_like(x, coefficients[0])
  for c in coefficients[1:]:
    result = result * x + np.float32(c)
  return result


def normal_from_bits(bits: jax.Array) -> jax.Array:
  """N(0, 1) float32 values from uniform uint32 words, by the inverse CDF sqrt(2) erfinv(u).

  The top 23 bits pick u = (2m + 1) / 2^23 - 1, the midpoint of one of 2^23 equal cells of (-1, 1),
  so u is never 0 or +-1 and its law is exactly symmetric. 1 - u^2 is formed as (1 - u)(1 + u),
  which keeps its relative precision near |u| = 1 (relative error of the result < 3e-7).
  """
  unit = jax.lax.bitcast_convert_type((bits >> 9) | jnp.uint32(0x3F800000), jnp.float32)  # [1, 2)
  u = (unit - 1.5) * 2 + np.float32(2.0**-23)  # exact in float32
  w = -jnp.log((1 - u) * (1 + u))
  centre = w < 5
  p = jnp.where(centre, _polynomial(_ERFINV_CENTRE, w - 2.5),
                _polynomial(_ERFINV_TAIL, jnp.sqrt(w) - 3))
  return np.float32(math.sqrt(2)) * p * u


def rademacher_from_bits(bits: jax.Array) -> jax.Array:
  """+-1.0 float32 values, the sign taken from each word's top bit (bit operations only)."""
  return jax.lax.bitcast_convert_type((bits & jnp.uint32(0x80000000)) | jnp.uint32(0x3F800000),
                                      jnp.float32)


@dataclasses.dataclass(frozen=True)
class Sampler:
  """A tangent law: `sampler(key, params)` draws one tangent shaped like `params`.

  `sampler.stacked(keys, params, axes)` draws the K tangents `sampler(keys[k], params)` at once,
  each leaf carrying them along its axis in `axes` (a pytree of ints shaped like `params`): the
  values of `jax.vmap(sampler, out_axes=axes)`, written straight into that layout.
  `max_abs` bounds every entry's magnitude, so that a forward-gradient step can tell from its K
  directional derivatives alone whether the estimate is finite.
  """
  sample: Callable[[jax.Array, PyTree], PyTree]
  stacked: Callable[[jax.Array, PyTree, PyTree], PyTree]
  description: str
  max_abs: float

  def __call__(self, key: jax.Array, params: PyTree) -> PyTree:
    return self.sample(key, params)


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 5))
def _hashed_leaf(from_bits, s0, s1, shape, dtype, axis):
  """One leaf's entries from_bits(hash(i, s0, s1)); with `axis`, the K directions whose seeds s0,
  s1 vary along that axis. Jitted so that a call outside `jit` runs as one fused kernel."""
  counter = _counter(shape)
  if axis is not None:
    counter = jnp.expand_dims(counter, axis)
  return from_bits(_hash(counter, s0, s1)).astype(dtype)


def _hashed(from_bits, description: str, max_abs: float) -> Sampler:
  """Draws one 64-bit seed per leaf from the key (threefry) and hashes the entries' bits."""

  def sample(key, params):
    leaves, treedef = jax.tree.flatten(params)
    seeds = jax.random.bits(key, (len(leaves), 2), jnp.uint32)
    return jax.tree.unflatten(treedef, [
        _hashed_leaf(from_bits, seed[0], seed[1], leaf.shape, leaf.dtype, None)
        for seed, leaf in zip(seeds, leaves)])

  def stacked(keys, params, axes):
    leaves, treedef = jax.tree.flatten(params)
    seeds = jax.vmap(lambda k: jax.random.bits(k, (len(leaves), 2), jnp.uint32))(keys)
    drawn = []
    for i, (leaf, axis) in enumerate(zip(leaves, treedef.flatten_up_to(axes))):
      seed_shape = [1] * len(leaf.shape)
      seed_shape.insert(axis, len(keys))
      s0, s1 = (seeds[:, i, j].reshape(seed_shape) for j in (0, 1))
      drawn.append(_hashed_leaf(from_bits, s0, s1, leaf.shape, leaf.dtype, axis))
    return jax.tree.unflatten(treedef, drawn)

  return Sampler(sample, stacked, description, max_abs)


def _per_leaf(draw, description: str, max_abs: float) -> Sampler:
  """Draws each leaf with `jax.random` and its own subkey."""

  def sample(key, params):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    drawn = [draw(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)]
    return jax.tree.unflatten(treedef, drawn)

  return Sampler(sample, lambda keys, params, axes: jax.vmap(
      sample, in_axes=(0, None), out_axes=axes)(keys, params), description, max_abs)


normal = _hashed(
    normal_from_bits,
    "I.i.d. N(0, 1) entries (the tangent law of Baydin et al., 2022) from hashed bits, drawn in "
    "float32 and cast to each leaf's dtype.",
    max_abs=5.3)  # the outermost cells' midpoints: +-5.29
rademacher = _hashed(
    rademacher_from_bits,
    "I.i.d. +-1 entries from hashed bits: identity covariance, a lower estimator variance than "
    "normal tangents (E[v^4] = 1 instead of 3), and the cheapest draw.",
    max_abs=1.0)
threefry_normal = _per_leaf(
    jax.random.normal,
    "I.i.d. N(0, 1) entries from `jax.random.normal` (threefry bits for every entry): the law "
    "of `normal`, several times slower to draw.",
    max_abs=5.5)  # sqrt(2) erfinv of its most extreme uniform, 1 - 2^-24: 5.42

SAMPLERS = {"normal": normal, "rademacher": rademacher, "threefry_normal": threefry_normal}


def get_sampler(name: str) -> Sampler:
  """Returns the tangent sampler registered under `name`."""
  if name not in SAMPLERS:
    raise ValueError(f"unknown tangent {name!r}; choose one of {sorted(SAMPLERS)}")
  return SAMPLERS[name]

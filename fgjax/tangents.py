"""Random tangent directions over a parameter pytree.

A forward-gradient estimate g = <grad f, v> v is unbiased whenever E[v v^T] = I. Every sampler here
has that property; they differ in cost and in the variance of the estimate.
"""

from typing import Callable

import jax

PyTree = object
Sampler = Callable[[jax.Array, PyTree], PyTree]


def _per_leaf(draw) -> Sampler:
  """Builds a sampler that draws each leaf independently with its own subkey."""

  def sample(key: jax.Array, params: PyTree) -> PyTree:
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    drawn = [draw(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)]
    return jax.tree.unflatten(treedef, drawn)

  return sample


normal = _per_leaf(jax.random.normal)
normal.__doc__ = "I.i.d. N(0, 1) entries: the tangent law of Baydin et al. (2022)."

rademacher = _per_leaf(lambda k, shape, dtype: jax.random.rademacher(k, shape, dtype))
rademacher.__doc__ = "I.i.d. +-1 entries: identity covariance, lower estimator variance."

SAMPLERS = {"normal": normal, "rademacher": rademacher}


def get_sampler(name: str) -> Sampler:
  """Returns the tangent sampler registered under `name`."""
  try:
    return SAMPLERS[name]
  except KeyError:
    raise ValueError(
        f"unknown tangent {name!r}; choose one of {sorted(SAMPLERS)}") from None


"""Gradient estimators: the public core of fgjax.

Each estimator is a pure, jittable function of a scalar loss `loss_fn(params)`, the parameter
pytree and (for stochastic estimators) a PRNG key. It returns `(loss, grads)` with `grads` shaped
like `params`, so any optax optimizer can consume it. Estimators know nothing of models or data:
they work for Flax NNX, Linen or plain-JAX models alike.

Example::

    loss_fn = lambda p: optax.softmax_cross_entropy_with_integer_labels(
        model_apply(p, x), y).mean()
    loss, grads = forward_gradient(loss_fn, params, key, jvp_clip=1.0)
    updates, opt_state = tx.update(grads, opt_state, params)

`forward_gradient_and_derivatives` also returns the directional derivatives, from which
`forward_gradient_is_finite` tells whether the estimate is finite without reading it.
"""

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from fgjax import tangents

# The estimators a run config may name (`config.estimator`).
ESTIMATORS = ("forward", "backprop")

PyTree = object
LossFn = Callable[[PyTree], jax.Array]


def backprop(loss_fn: LossFn, params: PyTree) -> tuple[jax.Array, PyTree]:
  """The exact gradient by reverse-mode AD (`jax.value_and_grad`)."""
  return jax.value_and_grad(loss_fn)(params)


def forward_gradient(
    loss_fn: LossFn,
    params: PyTree,
    key: jax.Array,
    *,
    num_directions: int = 1,
    tangent: str = "normal",
    jvp_clip: Optional[float] = None,
) -> tuple[jax.Array, PyTree]:
  """The forward gradient of Baydin et al. (2022): g = <grad f, v> v, from one `jax.jvp`.

  Args:
    loss_fn: scalar loss as a function of the parameter pytree.
    params: the parameter pytree.
    key: PRNG key for the tangent draw; the same key gives the same estimate.
    num_directions: K >= 1 tangents, evaluated together with `jax.vmap`; the K estimates are
      averaged, which divides the estimator's variance by K.
    tangent: tangent law, a name in `fgjax.tangents.SAMPLERS`: "normal" (N(0, 1) entries, the
      default), "rademacher" (+-1 entries, the cheapest to draw) or "threefry_normal" (N(0, 1)
      from `jax.random.normal`, slower). Every law has identity covariance, so the estimate
      stays unbiased.
    jvp_clip: if set, each directional derivative <grad f, v> is clipped to [-jvp_clip, jvp_clip]
      before it scales v (Rike & Forland cap it at 1 to stop sudden explosions). Clipping makes
      the estimate biased whenever it binds.

  Returns:
    `(loss, grads)`: the loss at `params` and the estimate, shaped like `params`.
  """
  loss, grads, _ = forward_gradient_and_derivatives(
      loss_fn, params, key, num_directions=num_directions, tangent=tangent, jvp_clip=jvp_clip)
  return loss, grads


def forward_gradient_and_derivatives(loss_fn: LossFn, params: PyTree, key: jax.Array, *,
                                     num_directions: int = 1, tangent: str = "normal",
                                     jvp_clip: Optional[float] = None
                                     ) -> tuple[jax.Array, PyTree, jax.Array]:
  """`forward_gradient` (same arguments), also returning the K directional derivatives, shape (K,),
  after `jvp_clip`: with the tangents, all the estimate is made of, so that questions about the
  estimate (is it finite?) can be answered from K numbers instead of n."""
  if num_directions < 1:
    raise ValueError(f"num_directions must be >= 1, got {num_directions}")
  if jvp_clip is not None and jvp_clip <= 0:
    raise ValueError(f"jvp_clip must be positive or None, got {jvp_clip}")
  sample = tangents.get_sampler(tangent)

  def directional_derivative(v):
    loss, derivative = jax.jvp(loss_fn, (params,), (v,))
    if jvp_clip is not None:
      derivative = jnp.clip(derivative, -jvp_clip, jvp_clip)
    return loss, derivative

  if num_directions == 1:
    v = sample(key, params)
    loss, derivative = directional_derivative(v)
    grads = jax.tree.map(lambda t: (derivative * t).astype(t.dtype), v)
    return loss, grads, derivative.reshape(1)

  # The K tangents of a leaf are stacked on the axis before its last one (kernels keep their
  # output features last): there a batched matmul or convolution reads the K tangents as one
  # wider kernel, with no transposed copy of them.
  axes = jax.tree.map(lambda leaf: max(leaf.ndim - 1, 0), params)
  vs = sample.stacked(jax.random.split(key, num_directions), params, axes)
  losses, derivatives = jax.vmap(directional_derivative, in_axes=(axes,))(vs)

  def average(t, axis):
    shape = [1] * t.ndim
    shape[axis] = num_directions
    return (jnp.sum(derivatives.reshape(shape) * t, axis=axis) / num_directions).astype(t.dtype)

  return losses[0], jax.tree.map(average, vs, axes), derivatives


def forward_gradient_is_finite(derivatives: jax.Array, params: PyTree,
                               tangent: str = "normal") -> jax.Array:
  """Whether the forward gradient built from `derivatives` (shape (K,)) is finite everywhere.

  Every entry of the estimate is (sum_k d_k v_k) / K with |v_k| <= the sampler's `max_abs`, so it
  is finite, in float32 and after the cast to its leaf's dtype, whenever sum_k |d_k| * max_abs
  is below the largest finite value of every leaf dtype. The test reads K numbers where a check of
  the estimate itself reads all n entries of it (a pass over memory as long as the update's). It
  is conservative: a bound above the largest finite value reports False even if no entry reached
  it, which with float32 parameters takes a derivative above 6e37.
  """
  largest = min(float(jnp.finfo(leaf.dtype).max) for leaf in jax.tree.leaves(params))
  bound = jnp.sum(jnp.abs(derivatives)) * tangents.get_sampler(tangent).max_abs
  return bound <= largest  # False for inf and nan

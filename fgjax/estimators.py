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
"""

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from fgjax import tangents

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
    return loss, jax.tree.map(lambda t: (derivative * t).astype(t.dtype), v)

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

  return losses[0], jax.tree.map(average, vs, axes)

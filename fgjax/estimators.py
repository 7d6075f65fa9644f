"""Gradient estimators: the public core of fgjax.

Each estimator is a pure, jittable function of an objective (a scalar loss `loss_fn(params)`, or
for the activity estimators a forward function with perturbation points), the parameter pytree
and (for stochastic estimators) a PRNG key. It returns `(loss, grads)` with `grads` shaped like
`params`, so any optax optimizer can consume it. Estimators know nothing of models or data: they
work for Flax NNX, Linen or plain-JAX models alike.

Example::

    loss_fn = lambda p: optax.softmax_cross_entropy_with_integer_labels(
        model_apply(p, x), y).mean()
    loss, grads = forward_gradient(loss_fn, params, key, jvp_clip=1.0)
    updates, opt_state = tx.update(grads, opt_state, params)

`REGISTRY`, at the end, is the one place that knows the estimators by name.
"""

import dataclasses
import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from fgjax import losses as loss_blocks
from fgjax import tangents

# How K directional derivatives d = V^T grad f make one estimate (`config.combine`; Flügel et al.,
# "Beyond Backpropagation: Optimization with Multi-Tangent Forward Gradients"): "mean" is V d / K,
# unbiased; "projection" is V (V^T V)^+ d, the projection of grad f onto the span of V: exact once
# V spans the space, but (K / n) grad f in expectation for isotropic tangents in n dimensions
# (V^T V ~ n I when K << n), so it asks for about n / K times the mean's learning rate.
COMBINES = ("mean", "projection")
# The projection's weights come from the Gram matrix V^T V while K <= GRAM_MAX_RATIO * n: isotropic
# tangents are then nearly orthogonal (the Gram matrix's condition number is below 9), and the
# Gram matrix is summed leaf by leaf with no copy of the tangents. Closer to K = n it squares V's
# condition number past what float32 resolves, so the weights come from the SVD of V itself.
GRAM_MAX_RATIO = 0.25

PyTree = object
LossFn = Callable[[PyTree], jax.Array]


def backprop(loss_fn: LossFn, params: PyTree) -> tuple[jax.Array, PyTree]:
  """The exact gradient by reverse-mode AD (`jax.value_and_grad`)."""
  return jax.value_and_grad(loss_fn)(params)


def local_objective(losses) -> jax.Array:
  """What the activity estimators estimate the gradient of, from each loss block's per-example
  losses ((B,), or a `losses.Block` of (B,) or (B, S) losses, one per slice): the batch mean,
  summed over a block's slices and over the loss blocks. Under local losses each block's
  parameters reach only their own loss block's loss, so the gradient trains every block on its
  own loss."""
  return sum(loss_blocks.as_block(block).value.mean(axis=0).sum() for block in losses)


def local_backprop(forward: Callable, params: PyTree) -> tuple[jax.Array, PyTree]:
  """The exact gradient of `local_objective` by reverse-mode AD, for `activity_gradient`'s
  `forward` (its `losses` under local losses: stop-gradients between blocks): greedy local
  learning, the ceiling of any local-loss forward gradient. Returns the mean of the last loss
  block's losses (the model's loss) and the gradient."""
  def objective(p):
    losses = forward(p, None, False)[0]
    return local_objective(losses), loss_blocks.as_block(losses[-1]).value.mean()

  (_, loss), grads = jax.value_and_grad(objective, has_aux=True)(params)
  return loss, grads


def forward_gradient(
    loss_fn: LossFn,
    params: PyTree,
    key: jax.Array,
    *,
    num_directions: int = 1,
    tangent: str = "normal",
    jvp_clip: Optional[float] = None,
    combine: str = "mean",
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
    combine: "mean" (the K estimates averaged) or "projection" (grad f projected onto the span
      of the K tangents; see COMBINES).

  Returns:
    `(loss, grads)`: the loss at `params` and the estimate, shaped like `params`.
  """
  loss, grads, _ = forward_gradient_and_derivatives(
      loss_fn, params, key, num_directions=num_directions, tangent=tangent, jvp_clip=jvp_clip,
      combine=combine)
  return loss, grads


def _check_options(num_directions: int, jvp_clip: Optional[float], combine: str) -> None:
  if num_directions < 1:
    raise ValueError(f"num_directions must be >= 1, got {num_directions}")
  if jvp_clip is not None and jvp_clip <= 0:
    raise ValueError(f"jvp_clip must be positive or None, got {jvp_clip}")
  if combine not in COMBINES:
    raise ValueError(f"unknown combine {combine!r}; choose one of {COMBINES}")


def _projection(gram: jax.Array, derivatives: jax.Array) -> jax.Array:
  """The weights c = G^+ d, shaped (K, ...) like `derivatives`, that make sum_k c_k v_k the
  projection of the gradient onto the span of the K tangents, G (..., K, K) being their Gram
  matrix V^T V. The pseudo-inverse keeps the projection defined when the tangents are dependent
  (K > n): V G^+ V^T is still the projection onto their span."""
  return jnp.einsum("...km,m...->k...", jnp.linalg.pinv(gram, hermitian=True), derivatives)


def _projection_from_tangents(flat: jax.Array, derivatives: jax.Array) -> jax.Array:
  """`_projection`'s weights from the tangents themselves, `flat` (..., K, n) holding V^T: with
  V^T = U S W^T, G^+ = U S^-2 U^T. The singular values of V are cut at the resolution of V's
  dtype (float32 at least), not of G's, so the weights stay exact whenever the tangents span the
  space (K >= n)."""
  u, s, _ = jnp.linalg.svd(flat.astype(jnp.promote_types(flat.dtype, jnp.float32)),
                          full_matrices=False)
  cutoff = jnp.max(s, axis=-1, keepdims=True) * max(flat.shape[-2:]) * jnp.finfo(s.dtype).eps
  inverse = jnp.where(s > cutoff, 1.0 / jnp.where(s > cutoff, s, 1.0) ** 2, 0.0)
  return jnp.einsum("...kr,...r,...mr,m...->k...", u, inverse, u, derivatives)


def forward_gradient_and_derivatives(loss_fn: LossFn, params: PyTree, key: jax.Array, *,
                                     num_directions: int = 1, tangent: str = "normal",
                                     jvp_clip: Optional[float] = None, combine: str = "mean"
                                     ) -> tuple[jax.Array, PyTree, jax.Array]:
  """`forward_gradient` (same arguments), also returning the K directional derivatives, shape (K,),
  after `jvp_clip`, from which `forward_gradient_is_finite` tells whether the estimate is finite."""
  _check_options(num_directions, jvp_clip, combine)
  sample = tangents.get_sampler(tangent)

  def directional_derivative(v):
    loss, derivative = jax.jvp(loss_fn, (params,), (v,))
    if jvp_clip is not None:
      derivative = jnp.clip(derivative, -jvp_clip, jvp_clip)
    return loss, derivative

  if num_directions == 1 and combine == "mean":
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
  if combine == "mean":
    coefficients = derivatives / num_directions
  elif num_directions <= GRAM_MAX_RATIO * sum(leaf.size for leaf in jax.tree.leaves(params)):
    gram = sum(jnp.tensordot(t, t, axes=2 * ([d for d in range(t.ndim) if d != axis],),
                             preferred_element_type=jnp.float32)
               for t, axis in zip(jax.tree.leaves(vs), jax.tree.leaves(axes)))
    coefficients = _projection(gram, derivatives)
  else:
    flat = jnp.concatenate([jnp.moveaxis(t, axis, 0).reshape(num_directions, -1)
                            for t, axis in zip(jax.tree.leaves(vs), jax.tree.leaves(axes))], 1)
    coefficients = _projection_from_tangents(flat, derivatives)

  def combined(t, axis):
    shape = [1] * t.ndim
    shape[axis] = num_directions
    return jnp.sum(coefficients.reshape(shape) * t, axis=axis).astype(t.dtype)

  return losses[0], jax.tree.map(combined, vs, axes), derivatives


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


def unit_group_of(num_units: int, unit_groups: int) -> jax.Array:
  """The group of each of `num_units` units (features or channels) split into `unit_groups`
  contiguous groups of nearly equal size; with fewer units than groups, one unit per group."""
  return jnp.arange(num_units) * unit_groups // num_units


def _by_unit_group(derivatives: jax.Array, u: jax.Array) -> jax.Array:
  """sum_k d_g,k,i u_k,i,...: tangents u (K, B, ..., units) scaled per example by the derivative
  (G, K, B) of each unit's group g (`unit_group_of`)."""
  by_unit = derivatives[unit_group_of(u.shape[-1], derivatives.shape[0])]  # (units, K, B)
  return (jnp.expand_dims(jnp.moveaxis(by_unit, 0, -1), tuple(range(2, u.ndim - 1))) * u).sum(0)


def _by_slice(derivatives: jax.Array, u: jax.Array) -> jax.Array:
  """sum_k d_k,i,s u_k,i,...,s: tangents u (K, B, ..., units) scaled per example by the
  derivative (K, B, S) of their slice s of S contiguous, equal slices of the last axis."""
  num_slices = derivatives.shape[-1]
  sliced = u.reshape(u.shape[:-1] + (num_slices, u.shape[-1] // num_slices))
  scale = jnp.expand_dims(derivatives, tuple(range(2, u.ndim - 1)) + (u.ndim,))
  return (sliced * scale).sum(0).reshape(u.shape[1:])


def activity_gradient(forward: Callable, params: PyTree, key: jax.Array, *,
                      num_directions: int = 1, tangent: str = "normal",
                      jvp_clip: Optional[float] = None, combine: str = "mean",
                      unit_groups: int = 1, exact_heads: bool = False
                      ) -> tuple[jax.Array, PyTree]:
  """Activity perturbation (Ren et al., 2023, "Scaling Forward Gradient With Local Losses").

  It perturbs each layer's pre-activations z, per example, instead of the weights: a layer has
  far fewer units than weights, so the estimate's variance is far smaller. Then

  1. one `jax.jvp` of the per-example losses, along a tangent u_l at every perturbation point l,
     gives each example's derivative d_i = sum_l <grad_{z_l,i} loss_i, u_l,i>;
  2. g_{z_l,i} = d_i u_l,i / B estimates the gradient of the mean loss w.r.t. z_l,i;
  3. `jax.vjp` of params -> z, every layer's input stop-gradiented, turns g_z into the weight
     gradient from each layer's own input x alone: sum_i x_i g_{z_l,i}^T for a dense layer, the
     transposed convolution for a convolution, with no backward pass through the network.

  All layers are perturbed at once and share d_i, yet each layer's estimate is unbiased: the
  tangents of different layers are independent, so E[d_i u_l,i] = sum_m E[u_l,i u_m,i^T]
  grad_{z_m,i} loss_i = grad_{z_l,i} loss_i, the terms m != l vanishing. They add variance, which
  grows with the number of units that share one loss: what local losses cut.

  Args:
    forward: `forward(params, perturbations, stop_inputs) -> (losses, activations)`.
      `activations` is a list of loss blocks, each a list of pre-activations z shaped (B, ...),
      with `perturbations` (the same structure, or None) added; `losses` holds each loss block's
      per-example losses, (B,) or a `losses.Block`, whose derivative estimates the gradient of
      that block's activations. The last loss block's loss is the model's own. With
      `stop_inputs` every layer's input is `jax.lax.stop_gradient`-ed. One loss block perturbs
      all layers under the model's loss ("activity"); one per block of the model, each with a
      local loss and stop-gradients between blocks, trains each block on its own loss
      ("local_activity").
    params, key, num_directions, tangent, jvp_clip, combine: as in `forward_gradient`, applied per
      example and loss block: K tangents of each example's activations, each derivative d_i
      clipped, the projection onto the span of one example's K tangents in one loss block.
    unit_groups: G >= 1. With G > 1 the units of every perturbation point are split by their last
      axis (features, or channels) into G groups (`unit_group_of`), and each group's units get a
      derivative of their own, d_i,g = sum_l <grad_{z_l,i,g} loss_i, u_l,i,g>, from the tangent
      masked to that group: G jvps (vmapped) instead of one. Still unbiased, and the noise now
      grows with the units of one group rather than of all layers. combine must then be "mean".

  Losses per slice: a loss block's losses may be (B, S), a `losses.Block` of a kind other than
  PLAIN, the s-th moved only by the s-th of S contiguous, equal slices of the last axis of each
  of the block's activations (S classifiers, or a shared head's slices). One jvp then gives
  every slice its own derivative, which scales its units: unbiased, with the noise of one
  slice's units, at the cost of one jvp (unit_groups must be 1, combine "mean").

  Exact heads: with `exact_heads`, the layer that makes a loss's logits (a local head, the
  model's head) is not perturbed; its pre-activations take the exact gradient of that loss
  instead, by reverse mode through the loss alone, so that a head's parameters get their exact
  gradient (as in Ren et al.) and its units add no noise to the others' derivatives. A loss
  block's head is its last activation, except in a block of kind SHARED_HEAD, whose head sits
  in the next block (as fgjax's models list them).

  Returns:
    `(loss, grads)`: the mean of the last loss block's losses (the model's loss) and the estimate.
  """
  _check_options(num_directions, jvp_clip, combine)
  if unit_groups < 1 or (unit_groups > 1 and combine != "mean"):
    raise ValueError(f"unit_groups must be >= 1, and 1 unless combine is 'mean'; got "
                     f"{unit_groups} with combine {combine!r}")
  sample = tangents.get_sampler(tangent)
  activations, pullback = jax.vjp(lambda p: forward(p, None, True)[1], params)
  us = sample.stacked(jax.random.split(key, num_directions), activations,
                      jax.tree.map(lambda _: 0, activations))  # leaves (K, B, ...)
  zeros = jax.tree.map(jnp.zeros_like, activations)
  block_losses = lambda perturbations: tuple(
      loss_blocks.as_block(block) for block in forward(params, perturbations, False)[0])
  kinds = [block.kind for block in jax.eval_shape(block_losses, zeros)]
  per_slice = [kind is not loss_blocks.Kind.PLAIN for kind in kinds]
  if any(per_slice) and (unit_groups > 1 or combine != "mean"):
    raise ValueError("losses per slice give each slice its derivative already; they take "
                     f"unit_groups=1 and combine='mean', not {unit_groups} and {combine!r}")
  heads = [exact_heads and kind is not loss_blocks.Kind.SHARED_HEAD for kind in kinds]
  us = _with_heads(us, heads, map(jnp.zeros_like, _heads_of(us, heads)))  # not perturbed
  directional = jax.vmap(lambda u: jax.jvp(block_losses, (zeros,), (u,)))
  values = lambda blocks: [block.value for block in blocks]
  if unit_groups == 1:
    losses, derivatives = map(values, directional(us))  # per loss block (K, B) or (K, B, S)
  else:
    def masked_to(unit_group):
      return jax.tree.map(lambda u: u * (unit_group_of(u.shape[-1], unit_groups) == unit_group
                                         ).astype(u.dtype), us)

    losses, derivatives = map(values, jax.vmap(lambda g: directional(masked_to(g)))(
        jnp.arange(unit_groups)))
    losses = [loss[0] for loss in losses]  # derivatives: per loss block (G, K, B)
  if jvp_clip is not None:
    derivatives = [jnp.clip(d, -jvp_clip, jvp_clip) for d in derivatives]
  cotangents = [_cotangents(block_us, block_derivatives, sliced, unit_groups, combine)
                for block_us, block_derivatives, sliced in zip(us, derivatives, per_slice)]
  if exact_heads:
    cotangents = _with_heads(cotangents, heads, _head_cotangents(forward, params, zeros, heads))
  (grads,) = pullback(cotangents)
  return losses[-1][0].mean(), grads


def _heads_of(blocks: list, heads: list) -> list:
  """The last activation of each loss block that `heads` marks: its head's pre-activations."""
  return [block[-1] for block, head in zip(blocks, heads) if head]


def _with_heads(blocks: list, heads: list, replacements) -> list:
  """`blocks` with the last activation of each block that `heads` marks replaced, in order, by
  the next of `replacements`."""
  replacements = iter(replacements)
  return [[*block[:-1], next(replacements)] if head else block
          for block, head in zip(blocks, heads)]


def _head_cotangents(forward: Callable, params: PyTree, zeros, heads: list) -> list:
  """The exact gradient of `local_objective` w.r.t. the heads' pre-activations (`_heads_of`),
  by reverse mode from the losses back to those activations alone."""
  def objective(head_perturbations):
    perturbations = _with_heads(zeros, heads, head_perturbations)
    return local_objective(forward(params, perturbations, False)[0])

  return jax.grad(objective)(_heads_of(zeros, heads))


def _cotangents(us, derivatives: jax.Array, per_slice: bool, unit_groups: int,
                combine: str) -> list:
  """The estimate of the mean loss's gradient w.r.t. each pre-activation of one loss block,
  from its tangents `us` (K, B, ... each) and its derivatives: (K, B); (K, B, S) per slice;
  or (G, K, B) for G > 1 unit groups."""
  num_directions, batch_size = us[0].shape[:2]
  if per_slice or unit_groups > 1:
    scaled = _by_slice if per_slice else _by_unit_group
    return [(scaled(derivatives, u) / (num_directions * batch_size)).astype(u.dtype) for u in us]
  if combine == "mean":
    coefficients = derivatives / num_directions
  else:  # per example: its K tangents, (K, B, units) per layer
    flats = [u.reshape(u.shape[:2] + (-1,)) for u in us]
    if num_directions <= GRAM_MAX_RATIO * sum(flat.shape[-1] for flat in flats):
      gram = sum(jnp.einsum("kbn,mbn->bkm", flat, flat, preferred_element_type=jnp.float32)
                 for flat in flats)
      coefficients = _projection(gram, derivatives)
    else:
      coefficients = _projection_from_tangents(
          jnp.moveaxis(jnp.concatenate(flats, axis=-1), 0, 1), derivatives)
  return [(jnp.einsum("kb,kb...->b...", coefficients, u) / batch_size).astype(u.dtype)
          for u in us]


# The registry of the estimators a run config may name (`config.estimator`). A new estimator is
# its function above and one record below; config validation, the train step, the diagnostics
# and the docs' table (docs/estimators.md, checked by tests/test_docs.py) read the record.
LOSS = "loss"
PERTURBED_FORWARD = "perturbed forward"

# `gradient(objective, params, key) -> (loss, grads, grads_finite)`.
GradientFn = Callable[[Callable, PyTree, jax.Array], tuple[jax.Array, PyTree, jax.Array]]


@dataclasses.dataclass(frozen=True)
class Estimator:
  """One estimator a run config may name, and what a run must provide for it.

  Attributes:
    name: the value of `config.estimator`.
    summary: what it computes, in a few words.
    consumes: the objective its gradient function takes: LOSS, a scalar loss of the parameters,
      or PERTURBED_FORWARD, the model's forward function (`activity_gradient`'s `forward`).
    local_heads: whether it trains each block on its own local loss: the model needs local heads.
    exact: whether its gradient is exact (deterministic) rather than a stochastic estimate.
    data_parallel: whether it runs data-parallel (`config.sharding.data_parallel`); every
      estimator runs on one device.
    options: the config fields `make` takes as keyword arguments.
    make: `make(**options)` builds the GradientFn; `grads_finite` says whether every entry of
      `grads` is finite.
  """
  name: str
  summary: str
  consumes: str
  local_heads: bool
  exact: bool
  data_parallel: bool
  options: tuple[str, ...]
  make: Callable[..., GradientFn]


def _all_finite(tree) -> jax.Array:
  return functools.reduce(jnp.logical_and,
                          [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)])


def _forward(num_directions, tangent, jvp_clip, combine) -> GradientFn:
  """`forward_gradient`. Combined by their mean, the K directional derivatives tell whether the
  estimate is finite, so that the step's update stays one fused pass that computes each tangent
  entry where it is used; any other estimate is read."""
  def gradient(loss_fn, params, key):
    loss, grads, derivatives = forward_gradient_and_derivatives(
        loss_fn, params, key, num_directions=int(num_directions), tangent=tangent,
        jvp_clip=jvp_clip, combine=combine)
    if combine != "mean":
      return loss, grads, _all_finite(grads)
    return loss, grads, forward_gradient_is_finite(derivatives, params, tangent)

  return gradient


def _read(estimate: Callable) -> GradientFn:
  """`estimate(objective, params, key) -> (loss, grads)` as a GradientFn that reads `grads` to
  tell whether they are finite."""
  def gradient(objective, params, key):
    loss, grads = estimate(objective, params, key)
    return loss, grads, _all_finite(grads)

  return gradient


def _activity(num_directions, tangent, jvp_clip, combine, unit_groups,
              exact_heads) -> GradientFn:
  """`activity_gradient`, of the model's loss or of the local losses (as `forward` gives)."""
  return _read(functools.partial(
      activity_gradient, num_directions=int(num_directions), tangent=tangent, jvp_clip=jvp_clip,
      combine=combine, unit_groups=int(unit_groups), exact_heads=bool(exact_heads)))


def _exact(estimate: Callable) -> GradientFn:
  """`estimate(objective, params) -> (loss, grads)`, which takes no key, as a GradientFn."""
  return _read(lambda objective, params, key: estimate(objective, params))


_TANGENT_OPTIONS = ("num_directions", "tangent", "jvp_clip", "combine")
REGISTRY = {estimator.name: estimator for estimator in (
    Estimator("forward", "weight perturbation: `forward_gradient`, one `jax.jvp` per tangent",
              LOSS, local_heads=False, exact=False, data_parallel=True,
              options=_TANGENT_OPTIONS, make=_forward),
    Estimator("backprop", "the exact gradient: `jax.grad`", LOSS, local_heads=False, exact=True,
              data_parallel=True, options=(), make=functools.partial(_exact, backprop)),
    Estimator("activity", "activity perturbation of the model's loss: `activity_gradient`",
              PERTURBED_FORWARD, local_heads=False, exact=False, data_parallel=False,
              options=(*_TANGENT_OPTIONS, "unit_groups", "exact_heads"), make=_activity),
    Estimator("local_activity", "activity perturbation of each block's local loss",
              PERTURBED_FORWARD, local_heads=True, exact=False, data_parallel=False,
              options=(*_TANGENT_OPTIONS, "unit_groups", "exact_heads"), make=_activity),
    Estimator("local_backprop", "the exact gradient of the local losses: `local_backprop`",
              PERTURBED_FORWARD, local_heads=True, exact=True, data_parallel=False,
              options=(), make=functools.partial(_exact, local_backprop)),
)}
ESTIMATORS = tuple(REGISTRY)
# The estimators that train each block on its own local loss: a model with local heads.
LOCAL = tuple(name for name, estimator in REGISTRY.items() if estimator.local_heads)


def get(name: str) -> Estimator:
  """The registry's record of estimator `name`; ValueError naming the choices if none."""
  if name not in REGISTRY:
    raise ValueError(f"unknown estimator {name!r}; choose one of {ESTIMATORS}")
  return REGISTRY[name]

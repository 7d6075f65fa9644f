"""The compiled programs of a run, free of host work: the training chunk, the epoch order and
the evaluation.

The tangent key of step t is `fold_in(state.rng, t)`, so a run is reproducible from (seed, step)
alone and a resumed run draws exactly the tangents an uninterrupted one would.
"""

import dataclasses
import functools
from typing import Callable, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fgjax import compilation
from fgjax import estimators
from fgjax import losses


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32: optimizer steps taken so far (skipped ones included)
  params: dict
  opt_state: optax.OptState
  rng: jax.Array  # base key of the tangent draws
  num_skipped: jax.Array  # int32: steps whose non-finite loss or gradient was not applied
  diverged_at: jax.Array  # int32: the step the run diverged at (not applied); -1 if none
  first_loss: jax.Array  # float32: the first finite loss (0 before it), the guard's scale


def init_state(params, tx: optax.GradientTransformation, rng: jax.Array) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    rng=rng, num_skipped=jnp.zeros((), jnp.int32),
                    diverged_at=jnp.full((), -1, jnp.int32),
                    first_loss=jnp.zeros((), jnp.float32))


@dataclasses.dataclass(frozen=True)
class LossFn:
  """A model's loss on a batch, in the forms the estimators consume (`estimators.Estimator`);
  `make_loss_fn` builds it.

  Attributes:
    mean: `mean(params, images_uint8, labels) -> (mean loss, logits)`; calling the LossFn calls it.
    per_block: None, or `per_block(params, images, labels, perturbations, stop_inputs, local) ->
      (losses, activations)`: each loss block's per-example losses (a `losses.Block`: (B,), or
      (B, S), one per slice of its units) and its pre-activations, the forward function the
      activity estimators take.
  """
  mean: Callable
  per_block: Optional[Callable] = None

  def __call__(self, params, images, labels):
    return self.mean(params, images, labels)


def make_loss_fn(apply: Callable, pixel_mean, pixel_std, loss: str = "cross_entropy",
                 perturbed: Optional[Callable] = None) -> LossFn:
  """The LossFn of a model's `apply`; `loss` names a per-example loss of fgjax.losses. With
  `perturbed` (a `models.Model`'s) it has `per_block`, which the activity estimators take."""
  mean = np.asarray(pixel_mean, np.float32)
  inv_std = 1.0 / np.asarray(pixel_std, np.float32)
  per_example = losses.per_example_loss(loss)
  normalize = lambda images: (images.astype(jnp.float32) - mean) * inv_std

  def loss_fn(params, images, labels):
    logits = apply(params, normalize(images))
    return per_example(logits, labels).mean(), logits

  if perturbed is None:
    return LossFn(loss_fn)

  def per_block(params, images, labels, perturbations, stop_inputs, local):
    logits, activations = perturbed(params, normalize(images), perturbations, stop_inputs,
                                    local)
    return [losses.block_losses(per_example, block, labels) for block in logits], activations

  return LossFn(loss_fn, per_block)


def make_gradient_fn(config) -> estimators.GradientFn:
  """The `estimators.GradientFn` of `config.estimator`, `gradient(objective, params, key) ->
  (loss, grads, grads_finite)`, built by its registry record from the config fields the record
  names; `make_objective` gives the `objective` of a batch."""
  estimator = estimators.get(config.estimator)
  return estimator.make(**{name: config[name] for name in estimator.options})


def make_objective(loss_fn: Callable, estimator: estimators.Estimator) -> Callable:
  """`objective(images, labels)`: a batch's objective in the form `estimator` consumes, the
  scalar loss of the parameters or `activity_gradient`'s forward function.

  `loss_fn` is `(params, images, labels) -> (mean loss, logits)`. The forward function needs a
  LossFn with `per_block` (`make_loss_fn(..., perturbed=model.perturbed)`), which a
  data-parallel loss (`sharding.data_parallel_loss`) is not: ValueError if it is missing.
  """
  if estimator.consumes == estimators.LOSS:
    return lambda images, labels: lambda params: loss_fn(params, images, labels)[0]
  if not isinstance(loss_fn, LossFn) or loss_fn.per_block is None:
    raise ValueError(f"estimator {estimator.name!r} needs the loss of make_loss_fn(..., "
                     "perturbed=model.perturbed), on one device")

  def objective(images, labels):
    return lambda params, perturbations, stop_inputs: loss_fn.per_block(
        params, images, labels, perturbations, stop_inputs, estimator.local_heads)

  return objective


def make_train_step(loss_fn: Callable, tx: optax.GradientTransformation, config) -> Callable:
  """`train_step(state, images, labels) -> (state, loss)` for one batch.

  A step is not applied when its loss or gradient is not finite (policy `config.on_nonfinite`:
  "stop" ends the run there as diverged, "skip" counts it and goes on) or, under both policies,
  when its loss exceeds `config.max_loss_ratio` times the first finite loss (None: no guard):
  a divergence that clipping the directional derivative keeps finite. A diverged state is frozen.
  `loss_fn` is as `make_objective` needs it for `config.estimator`.
  """
  gradient = make_gradient_fn(config)
  objective_of = make_objective(loss_fn, estimators.get(config.estimator))
  stop_on_nonfinite = config.on_nonfinite == "stop"
  max_loss_ratio = config.max_loss_ratio

  def train_step(state: TrainState, images, labels):
    objective = objective_of(images, labels)
    key = jax.random.fold_in(state.rng, state.step)
    loss, grads, grads_finite = gradient(objective, state.params, key)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(loss) & grads_finite
    first_loss = jnp.where((state.first_loss <= 0) & jnp.isfinite(loss),
                           loss.astype(jnp.float32), state.first_loss)
    diverging = ~finite if stop_on_nonfinite else jnp.zeros((), bool)
    if max_loss_ratio is not None:
      diverging |= loss > max_loss_ratio * first_loss
    skip = ~finite & ~diverging
    stopped = state.diverged_at >= 0
    apply = ~stopped & ~diverging & ~skip
    diverged_at = jnp.where(stopped | ~diverging, state.diverged_at, state.step)
    num_skipped = state.num_skipped + (skip & ~stopped).astype(jnp.int32)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(apply, n, o), new, old)
    state = state.replace(step=state.step + 1, params=keep(params, state.params),
                          opt_state=keep(opt_state, state.opt_state),
                          num_skipped=num_skipped, diverged_at=diverged_at,
                          first_loss=first_loss)
    return state, loss

  return train_step


def make_train_chunk(train_step: Callable, batch_size: int, *, scan: bool = True,
                     vmapped: bool = False, fed: bool = False) -> Callable:
  """`chunk(state, images, labels, order, first_batch, num_steps) -> (state, losses)`.

  Runs batches `first_batch, ..., first_batch + num_steps - 1` of the epoch whose example order is
  `order` (a permutation of the training indices); `losses` holds each step's loss. The input
  state's buffers are donated. With `vmapped`, `state` and `order` carry a leading trial axis
  (trials that differ in seed and in the hyperparameters held in the optimizer state) and
  `losses` is shaped (trials, num_steps): one program trains them all.

  With `fed`, the batches come gathered: `images` and `labels` are batches, (batches,
  batch_size, ...), of which the chunk runs `first_batch, ...`, and `order` is unused (None). A
  data-parallel run feeds each chunk its own batches so (and first batch 0), each process
  gathering only its rows of each batch (`sharding.global_batches`).

  With `scan` (the default) the steps run inside one jitted `lax.scan`: no per-step dispatch.
  Without it, each step is one jitted call from a host loop, for models that do not `scans_well`.
  """

  def one_batch(state, images, labels, order, batch_index):
    batch = (batch_index if fed
             else jax.lax.dynamic_slice_in_dim(order, batch_index * batch_size, batch_size))
    return train_step(state, images[batch], labels[batch])

  if vmapped:
    one_batch = jax.vmap(one_batch, in_axes=(0, None, None, 0, None))
  steps_axis = 1 if vmapped else 0

  if scan:
    @functools.partial(compilation.jit, static_argnames="num_steps", donate_argnames="state")
    def train_chunk(state, images, labels, order, first_batch, num_steps):
      body = lambda state, i: one_batch(state, images, labels, order, first_batch + i)
      state, losses = jax.lax.scan(body, state, jnp.arange(num_steps))
      return state, jnp.moveaxis(losses, 0, steps_axis)

    return train_chunk

  step = compilation.jit(one_batch, donate_argnames="state")

  def train_chunk(state, images, labels, order, first_batch, num_steps):
    losses = []
    for i in range(num_steps):
      state, loss = step(state, images, labels, order, jnp.asarray(first_batch + i, jnp.int32))
      losses.append(loss)
    return state, jnp.stack(losses, axis=steps_axis)

  return train_chunk


def scans_well(model_name: str) -> bool:
  """Whether `make_train_chunk(scan=True)` suits `model_name` on the default backend: not for
  convolutional models on CPU. In a loop body XLA:CPU keeps the convolutions of backprop's
  kernel and input gradients in the dimension order autodiff gives them (the kernel gradient's
  batch is the input channel) and compiles them into a naive loop, where a jitted step gets
  them reordered into its fast convolution: a CNN backprop step runs about a hundred times
  slower in a `lax.scan`. Trials vmapped in one program also cost more than the same trials one
  call each (benchmarks/README.md, "Conv nets on CPU")."""
  return not (jax.default_backend() == "cpu" and model_name in ("cnn", "vgg"))


@jax.jit
def epoch_order(data_rng: jax.Array, epoch, num_examples_like: jax.Array) -> jax.Array:
  """The example order of `epoch`: a permutation drawn from (data_rng, epoch) alone."""
  return jax.random.permutation(jax.random.fold_in(data_rng, epoch),
                                num_examples_like.shape[0])


def batch_for_eval(images: np.ndarray, labels: np.ndarray, batch_size: int):
  """Pads a split to whole batches: (images, labels, weights), each shaped (batches, B, ...)."""
  n = len(labels)
  num_batches = -(-n // batch_size)
  batched = lambda a: np.pad(a, [(0, num_batches * batch_size - n)] + [(0, 0)] * (a.ndim - 1)
                             ).reshape((num_batches, batch_size) + a.shape[1:])
  return batched(images), batched(labels), batched(np.ones(n, np.float32))


def make_evaluate(loss_fn: Callable, loss: str = "cross_entropy") -> Callable:
  """`evaluate(params, images, labels, weights) -> {"loss", "accuracy"}` over a split batched by
  `batch_for_eval`; `loss` (a name of fgjax.losses) is the loss it averages."""
  per_example = losses.per_example_loss(loss)

  def evaluate(params, images, labels, weights):
    def batch_sums(batch):
      images, labels, weights = batch
      logits = loss_fn(params, images, labels)[1]
      correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
      return (jnp.sum(per_example(logits, labels) * weights), jnp.sum(correct * weights))

    sums, correct = jax.lax.map(batch_sums, (images, labels, weights))
    total = jnp.sum(weights)
    return {"loss": jnp.sum(sums) / total, "accuracy": jnp.sum(correct) / total}

  return evaluate


def make_example_losses(loss_fn: Callable) -> Callable:
  """`example_losses(params, images, labels, weights) -> {loss name: (batches, B)}`: every
  example's loss under each loss of fgjax.losses (padding entries included), which lets a report
  compute any statistic of the test loss after the run, such as a mean over a random subset."""

  def example_losses(params, images, labels, weights):
    del weights

    def batch_losses(batch):
      logits = loss_fn(params, *batch)[1]
      return {name: losses.per_example_loss(name)(logits, batch[1]) for name in losses.LOSSES}

    return jax.lax.map(batch_losses, (images, labels))

  return example_losses

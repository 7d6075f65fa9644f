"""How good a run's gradient estimates are: their cosine similarity to the true gradient and their
relative variance, measured on one batch while training (`config.diagnostics_every_steps`).

The true gradient is what the configured estimator estimates, computed by backprop for the
diagnostic alone: the gradient of the model's loss, or for the local-loss estimators that of the
sum of the blocks' own losses with stop-gradients between blocks (`estimators.local_objective`).
The exact estimators' (backprop, local_backprop) estimate is that gradient: cosine 1, variance 0.
"""

from typing import Callable

import jax
import jax.numpy as jnp

from fgjax import estimators
from fgjax import programs


def layer_names(params) -> list[str]:
  """Each leaf's layer, in leaf order: the path of the dict that holds it ("hidden.0", "head")."""
  names = []
  for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
    keys = [str(getattr(entry, "key", entry)) for entry in path]
    names.append(".".join(keys[:-1] or keys))
  return names


def make_diagnostics(loss_fn: Callable, config, num_draws: int = 8) -> Callable:
  """`diagnose(params, images, labels, key) -> {name: scalar}` for `config.estimator`.

  On the batch (images, labels), `num_draws` estimates drawn from independent keys split from
  `key` are each compared with the true gradient g; the result holds their means of

  - "cosine": the cosine similarity <ĝ, g> / (|ĝ| |g|) over all parameters;
  - "cosine/<layer>": the same over each layer's parameters (see `layer_names`); NaN for a layer
    whose true gradient is zero;
  - "relative_variance": |ĝ - g|^2 / |g|^2, whose mean is the estimator's relative variance plus
    its squared relative bias (a clip that binds, the projection's scale of about K / n);
  - "relative_variance/<layer>": the same over each layer's parameters, NaN where its true
    gradient is zero: which layers' estimates carry the noise.

  `loss_fn` is `programs.make_loss_fn`'s, with `per_block` for the activity estimators. The
  draws run one after another, each reduced to its sums at once: in a `lax.map`, so memory holds
  one estimate at a time, or, where `programs.scans_well` says the backend runs the model badly
  inside a loop (conv nets on CPU: 7x slower per draw), unrolled. Jittable and vmappable over a
  leading trial axis of `params` and `key`.
  """
  gradient = programs.make_gradient_fn(config)
  estimator = estimators.get(config.estimator)
  objective_of = programs.make_objective(loss_fn, estimator)

  def diagnose(params, images, labels, key):
    objective = target = objective_of(images, labels)
    if estimator.consumes == estimators.PERTURBED_FORWARD:
      target = lambda p: estimators.local_objective(objective(p, None, False)[0])
    names = layer_names(params)
    layers = list(dict.fromkeys(names))

    def per_layer(leaves):
      sums = dict.fromkeys(layers, 0.0)
      for name, value in zip(names, leaves):
        sums[name] = sums[name] + value
      return jnp.stack([sums[name] for name in layers])

    dot = lambda a, b: jnp.vdot(a.astype(jnp.float32), b.astype(jnp.float32))
    truth = jax.tree.leaves(estimators.backprop(target, params)[1])
    truth_sq = per_layer([dot(g, g) for g in truth])

    def one_draw(draw_key):
      estimate = jax.tree.leaves(gradient(objective, params, draw_key)[1])
      products = per_layer([dot(e, g) for e, g in zip(estimate, truth)])
      estimate_sq = per_layer([dot(e, e) for e in estimate])
      error_sq = per_layer([dot(e - g, e - g) for e, g in zip(estimate, truth)])
      return (products / jnp.sqrt(estimate_sq * truth_sq),
              products.sum() / jnp.sqrt(estimate_sq.sum() * truth_sq.sum()),
              error_sq / truth_sq, error_sq.sum() / truth_sq.sum())

    keys = jax.random.split(key, num_draws)
    if programs.scans_well(config.model):
      draws = jax.lax.map(one_draw, keys)
    else:
      draws = jax.tree.map(lambda *values: jnp.stack(values), *[one_draw(k) for k in keys])
    layer_cosines, cosines, layer_variances, variances = draws
    return {"cosine": cosines.mean(),
            **{f"cosine/{name}": c for name, c in zip(layers, layer_cosines.mean(axis=0))},
            "relative_variance": variances.mean(),
            **{f"relative_variance/{name}": v
               for name, v in zip(layers, layer_variances.mean(axis=0))}}

  return diagnose

"""Per-example training losses, by name.

"cross_entropy" is the usual softmax cross-entropy. "clamped_cross_entropy" is the loss the
paper's forward-gradient runs minimised: the softmax probabilities are clamped to [eps, 1 - eps]
(eps the float32 machine epsilon, ~1.19e-7) before the log. Each example's loss is then at most
-log(eps) ~ 15.94, and an example whose label probability lies outside [eps, 1 - eps] contributes
no gradient, which bounds the directional derivatives a forward gradient sees.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

LOSSES = ("cross_entropy", "clamped_cross_entropy")

EPS = float(np.finfo(np.float32).eps)
_LOG_LOW, _LOG_HIGH = float(np.log(EPS)), float(np.log1p(-EPS))


def cross_entropy(logits, labels):
  """Softmax cross-entropy of each example: (B, C) logits, (B,) integer labels -> (B,); any
  leading axes as the batch's."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def clamped_cross_entropy(logits, labels):
  """-log(clamp(softmax(logits)[label], eps, 1 - eps)) of each example, in float32.

  The clamp is applied to the log-probability (log is monotone, so the value is the same), which
  keeps small probabilities exact; jnp.clip passes no gradient to a clamped value, so a saturated
  example's gradient is zero.
  """
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  label_log_prob = jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
  return -jnp.clip(label_log_prob, _LOG_LOW, _LOG_HIGH)


_BY_NAME = {"cross_entropy": cross_entropy, "clamped_cross_entropy": clamped_cross_entropy}


def per_example_loss(name: str) -> Callable:
  """`fn(logits, labels) -> (B,) losses` for the loss `name` (one of LOSSES); (B, G, C) logits
  with (B, G) labels give (B, G) losses."""
  if name not in _BY_NAME:
    raise ValueError(f"unknown loss {name!r}; choose one of {LOSSES}")
  return _BY_NAME[name]


def per_group_losses(per_example: Callable, logits, contributions, labels):
  """The loss of a classifier shared by G groups of its inputs, once per group: (B, G), each
  equal to `per_example(logits, labels)` and differentiable only through the group's own
  contribution to the logits, `contributions` (B, G, C).

  The derivative along a tangent is then <dl/dlogits, the tangent of the group's contribution>
  per group: the loss's first-order term, with dl/dlogits taken once by forward mode
  (`jax.jacfwd`, C jvps of the per-example loss) instead of evaluating the loss G times."""
  logits = jax.lax.stop_gradient(logits)  # so the value and the slope are constants
  slope = jax.vmap(jax.jacfwd(lambda row, label: per_example(row[None], label[None])[0]))(
      logits, labels)  # (B, C)
  moved = contributions - jax.lax.stop_gradient(contributions)  # zero, with the tangents
  return per_example(logits, labels)[:, None] + jnp.einsum("bc,bgc->bg", slope, moved)

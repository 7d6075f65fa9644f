"""Per-example training losses, by name, and the loss blocks (`Block`) a model's logits come in.

"cross_entropy" is the usual softmax cross-entropy, "clamped_cross_entropy" the loss the paper's
forward-gradient runs minimised.
"""

import enum
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

EPS = float(np.finfo(np.float32).eps)
_LOG_LOW, _LOG_HIGH = float(np.log(EPS)), float(np.log1p(-EPS))


def cross_entropy(logits, labels):
  """Softmax cross-entropy of each example: (B, C) logits, (B,) integer labels -> (B,); any
  leading axes as the batch's."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def clamped_cross_entropy(logits, labels):
  """-log(clamp(softmax(logits)[label], eps, 1 - eps)) of each example, in float32, eps being the
  float32 machine epsilon (~1.19e-7).

  Each example's loss is then at most -log(eps) ~ 15.94, and an example whose label probability
  lies outside [eps, 1 - eps] contributes no gradient (jnp.clip passes none to a clamped value),
  which bounds the directional derivatives a forward gradient sees. The clamp is applied to the
  log-probability (log is monotone, so the value is the same), which keeps small probabilities
  exact.
  """
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  label_log_prob = jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
  return -jnp.clip(label_log_prob, _LOG_LOW, _LOG_HIGH)


_BY_NAME = {"cross_entropy": cross_entropy, "clamped_cross_entropy": clamped_cross_entropy}
LOSSES = tuple(_BY_NAME)


def per_example_loss(name: str) -> Callable:
  """`fn(logits, labels) -> (B,) losses` for the loss `name` (one of LOSSES); (B, G, C) logits
  with (B, G) labels give (B, G) losses."""
  if name not in _BY_NAME:
    raise ValueError(f"unknown loss {name!r}; choose one of {LOSSES}")
  return _BY_NAME[name]


def per_slice_losses(per_example: Callable, logits, inputs, kernel, labels):
  """The loss of a classifier shared by S slices of its inputs, once per slice: (B, S), each
  equal to `per_example(logits, labels)` and differentiable only through the slice's own
  inputs, `inputs` (B, S, I) (I units each), read by the rows `kernel` (S, I, C) of the
  classifier's kernel, held fixed.

  The derivative along a tangent is then <dl/dlogits, the tangent of the slice's share of the
  logits> per slice: the loss's first-order term, with dl/dlogits taken once by forward mode
  (`jax.jacfwd`, C jvps of the per-example loss) instead of evaluating the loss S times, and
  carried back to each input unit once (B, S, I), so that no (B, S, C) shares are formed."""
  logits = jax.lax.stop_gradient(logits)  # so the value and the slope are constants
  slope = jax.vmap(jax.jacfwd(lambda row, label: per_example(row[None], label[None])[0]))(
      logits, labels)  # (B, C)
  unit_slope = jnp.einsum("bc,sic->bsi", slope, jax.lax.stop_gradient(kernel))
  moved = inputs - jax.lax.stop_gradient(inputs)  # zero, with the tangents
  return per_example(logits, labels)[:, None] + jnp.einsum("bsi,bsi->bs", unit_slope, moved)


class Kind(enum.Enum):
  """What a loss block's logits are: all but PLAIN give a loss per slice of its units, (B, S)."""
  PLAIN = "plain"  # (B, C) logits of one classifier: (B,) losses
  SLICE_CLASSIFIERS = "separate"  # (B, S, C): S classifiers, one per slice of units
  SHARED_HEAD = "shared"  # (logits, inputs (B, S, I), kernel (S, I, C)): per_slice_losses


@flax.struct.dataclass
class Block:
  """One loss block's logits (as its `kind` says) or per-example losses; a pytree whose kind is
  static, so that it stays known through `jax.jvp`, `jax.vmap` and `jax.eval_shape`."""
  kind: Kind = flax.struct.field(pytree_node=False)
  value: Any


def as_block(output) -> Block:
  """A loss block's losses as a Block: a bare (B,) array is a PLAIN block's."""
  return output if isinstance(output, Block) else Block(Kind.PLAIN, output)


def block_losses(per_example: Callable, logits: Block, labels) -> Block:
  """The per-example losses of a loss block from its logits: (B,), or (B, S) per slice."""
  if logits.kind is Kind.SHARED_HEAD:
    return Block(logits.kind, per_slice_losses(per_example, *logits.value, labels))
  if logits.kind is Kind.SLICE_CLASSIFIERS:
    labels = jnp.broadcast_to(labels[:, None], logits.value.shape[:-1])
  return Block(logits.kind, per_example(logits.value, labels))

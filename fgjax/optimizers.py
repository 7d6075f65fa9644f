"""The optax chain of a run: optional global-norm clipping, then SGD, Nesterov or Adam, with the
learning rate gamma_t = gamma * exp(-decay * t) (t counts updates from 0, as in the paper's code).

Every numeric hyperparameter is held in the optimizer state (`optax.inject_hyperparams`), not baked
into the compiled program, so one compiled step serves a whole vmapped sweep over them.
"""

import functools
from typing import Optional

import jax.numpy as jnp
import optax

OPTIMIZERS = ("sgd", "nesterov", "adam")


def _chain(optimizer: str, grad_clip_norm: Optional[float], learning_rate, decay,
           momentum, b1, b2, eps) -> optax.GradientTransformation:
  parts = []
  if grad_clip_norm is not None:
    parts.append(optax.clip_by_global_norm(grad_clip_norm))
  if optimizer == "nesterov":
    parts.append(optax.trace(decay=momentum, nesterov=True))
  elif optimizer == "adam":
    parts.append(optax.scale_by_adam(b1=b1, b2=b2, eps=eps))
  parts.append(optax.scale_by_schedule(lambda count: -learning_rate * jnp.exp(-decay * count)))
  return optax.chain(*parts)


HYPERPARAMETERS = ("learning_rate", "decay", "momentum", "b1", "b2", "eps")


def hyperparameters(config) -> dict:
  """The numeric optimizer hyperparameters of `config`, by name (unused ones included)."""
  return {name: float(config[name]) for name in HYPERPARAMETERS}


def build_optimizer(config) -> optax.GradientTransformation:
  """The optax transformation for `config.optimizer` with the config's hyperparameters.

  Its state's `hyperparams` dict holds every name in HYPERPARAMETERS (those the optimizer does not
  use are ignored), which a sweep may replace with per-trial values.
  """
  if config.optimizer not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {config.optimizer!r}; choose one of {OPTIMIZERS}")
  clip = config.grad_clip_norm
  factory = functools.partial(_chain, config.optimizer,
                              None if clip is None else float(clip))
  return optax.inject_hyperparams(factory)(**hyperparameters(config))

"""The optax chain of a run: optional global-norm clipping, then SGD, Nesterov or Adam, with the
learning rate gamma_t = gamma * exp(-decay * t) (t counts updates from 0, as in the paper's code).

Nesterov is the paper's look-ahead form, v <- mu v - gamma_t g(theta + mu v), theta <- theta + v,
written for the look-ahead point phi = theta + mu v, which is what the parameters hold (the
gradient is taken at the parameters): with u = -gamma_t g(phi), v <- mu v + u and
phi <- phi + u + mu v. That is `optax.trace(nesterov=True)` applied to the already scaled step u,
so the step size enters the velocity when the gradient does; the schedule therefore comes first.
(Scaling after the trace, PyTorch's order, gives the same iterates only at a constant step size.)

Where a Nesterov run evaluates its model (validation and test) is `config.nesterov_evaluate`:
"lookahead", the parameters as held (phi, where the gradients are taken); or "base", theta =
phi - mu v, the iterate of the paper's recursion. torch.optim.SGD(nesterov=True), in the paper's
backprop rows, holds and evaluates phi (its parameters are the look-ahead point); the paper's
forward-gradient class holds theta, takes its gradients at theta + mu v and evaluates theta.
"""

import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("sgd", "nesterov", "adam")
# Where a Nesterov run's model is evaluated (module docstring); other optimizers ignore it.
NESTEROV_EVALUATE = ("lookahead", "base")


def _chain(optimizer: str, grad_clip_norm: Optional[float], learning_rate, decay,
           momentum, b1, b2, eps, eps_root) -> optax.GradientTransformation:
  parts = []
  if grad_clip_norm is not None:
    parts.append(optax.clip_by_global_norm(grad_clip_norm))
  if optimizer == "adam":
    parts.append(optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root))
  parts.append(optax.scale_by_schedule(lambda count: -learning_rate * jnp.exp(-decay * count)))
  if optimizer == "nesterov":
    parts.append(optax.trace(decay=momentum, nesterov=True))
  return optax.chain(*parts)


HYPERPARAMETERS = ("learning_rate", "decay", "momentum", "b1", "b2", "eps", "eps_root")

# The hyperparameters each optimizer reads; the others sit in its state unused.
USED_BY = {
    "sgd": ("learning_rate", "decay"),
    "nesterov": ("learning_rate", "decay", "momentum"),
    "adam": ("learning_rate", "decay", "b1", "b2", "eps", "eps_root"),
}


def hyperparameters(config) -> dict:
  """The numeric optimizer hyperparameters of `config`, by name (unused ones included)."""
  return {name: float(config[name]) for name in HYPERPARAMETERS}


def build_optimizer(config) -> optax.GradientTransformation:
  """The optax transformation for `config.optimizer` with the config's hyperparameters.

  Its state's `hyperparams` dict (`optax.inject_hyperparams`) holds every name in HYPERPARAMETERS,
  used or not, rather than the compiled program: one compiled step then serves a whole vmapped
  sweep, which replaces them with per-trial values.
  """
  if config.optimizer not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {config.optimizer!r}; choose one of {OPTIMIZERS}")
  clip = config.grad_clip_norm
  factory = functools.partial(_chain, config.optimizer,
                              None if clip is None else float(clip))
  return optax.inject_hyperparams(factory)(**hyperparameters(config))


def evaluation_point(config) -> Callable:
  """`point(params, opt_state) -> params` at which to evaluate the model: `params` itself, except
  for Nesterov with `nesterov_evaluate="base"`, which gives theta = params - mu v (mu and the
  velocity v read from the optimizer state, so a sweep's per-trial momentum counts)."""
  if config.optimizer != "nesterov" or config.get("nesterov_evaluate", "lookahead") == "lookahead":
    return lambda params, opt_state: params

  def base(params, opt_state):
    momentum = opt_state.hyperparams["momentum"]
    velocity = optax.tree_utils.tree_get(opt_state, "trace")
    return jax.tree.map(lambda p, v: (p - momentum * v).astype(p.dtype), params, velocity)

  return base

"""The optax chain of fgjax.optimizers against updates computed by hand."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from fgjax import default_config
from fgjax import optimizers

GRADS = [np.array([1.0, -2.0]), np.array([0.5, 0.5]), np.array([-1.0, 3.0])]
THETA0 = np.array([0.2, -0.4])


def _config(**fields):
  config = default_config.base_config()
  config.update(fields)
  return config


def _run(config, grads=GRADS):
  tx = optimizers.build_optimizer(config)
  params = jnp.asarray(THETA0, jnp.float32)
  state = tx.init(params)
  trajectory = []
  for g in grads:
    updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
    params = params + updates
    trajectory.append(np.asarray(params))
  return trajectory


def _lr(gamma, decay, t):
  return gamma * math.exp(-decay * t)


def test_sgd_with_exponential_decay():
  gamma, decay = 0.1, 0.3
  theta, expected = THETA0.copy(), []
  for t, g in enumerate(GRADS):
    theta = theta - _lr(gamma, decay, t) * g
    expected.append(theta)
  got = _run(_config(optimizer="sgd", learning_rate=gamma, decay=decay))
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_nesterov_matches_the_pytorch_rule():
  gamma, mu, decay = 0.05, 0.7, 0.1
  theta, buf, expected = THETA0.copy(), np.zeros(2), []
  for t, g in enumerate(GRADS):
    buf = mu * buf + g
    theta = theta - _lr(gamma, decay, t) * (g + mu * buf)
    expected.append(theta)
  got = _run(_config(optimizer="nesterov", learning_rate=gamma, decay=decay, momentum=mu))
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_adam_with_bias_correction():
  gamma, b1, b2, eps = 0.01, 0.8, 0.95, 1e-8
  theta, m, v, expected = THETA0.copy(), np.zeros(2), np.zeros(2), []
  for t, g in enumerate(GRADS):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g ** 2
    m_hat, v_hat = m / (1 - b1 ** (t + 1)), v / (1 - b2 ** (t + 1))
    theta = theta - gamma * m_hat / (np.sqrt(v_hat) + eps)
    expected.append(theta)
  got = _run(_config(optimizer="adam", learning_rate=gamma, b1=b1, b2=b2, eps=eps))
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_global_norm_clipping_comes_first():
  gamma, clip = 0.1, 1.0
  theta, expected = THETA0.copy(), []
  for g in GRADS:
    norm = np.linalg.norm(g)
    theta = theta - gamma * g * min(1.0, clip / norm)
    expected.append(theta)
  got = _run(_config(optimizer="sgd", learning_rate=gamma, grad_clip_norm=clip))
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_hyperparameters_live_in_the_state():
  config = _config(optimizer="nesterov", learning_rate=0.05, momentum=0.7)
  state = optimizers.build_optimizer(config).init(jnp.zeros(2))
  assert set(state.hyperparams) == set(optimizers.HYPERPARAMETERS)
  np.testing.assert_allclose(state.hyperparams["momentum"], 0.7)
  # A sweep changes a trial's learning rate through the state alone.
  tx = optimizers.build_optimizer(config)
  state.hyperparams["learning_rate"] = jnp.asarray(0.5)
  updates, _ = tx.update(jnp.ones(2), state, jnp.zeros(2))
  np.testing.assert_allclose(updates, -0.5 * (1 + 0.7) * np.ones(2), rtol=1e-6)


def test_unknown_optimizer():
  with pytest.raises(ValueError, match="unknown optimizer"):
    optimizers.build_optimizer(_config(optimizer="rmsprop"))

"""The optax chain of fgjax.optimizers against updates computed by hand."""

import math

import jax.numpy as jnp
import numpy as np
import optax
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


def test_nesterov_matches_the_pytorch_rule_at_a_constant_step_size():
  # torch.optim.SGD(nesterov=True), which the backprop Nesterov rows used with no decay.
  gamma, mu = 0.05, 0.7
  theta, buf, expected = THETA0.copy(), np.zeros(2), []
  for g in GRADS:
    buf = mu * buf + g
    theta = theta - gamma * (g + mu * buf)
    expected.append(theta)
  got = _run(_config(optimizer="nesterov", learning_rate=gamma, momentum=mu))
  np.testing.assert_allclose(got, expected, rtol=1e-6)


# A quadratic f(x) = x.A.x / 2 - b.x, ill-conditioned enough for momentum to matter.
A = np.array([[3.0, 0.5], [0.5, 0.4]])
B = np.array([1.0, -0.5])


def _quadratic_grad(x):
  return A @ x - B


def _look_ahead_nesterov(gamma, mu, decay, steps):
  """The paper's forward Nesterov: v <- mu v - gamma_t grad(theta + mu v); theta <- theta + v.

  Returns the iterates theta_t and the look-ahead points phi_t = theta_t + mu v_t, t = 1..steps.
  """
  theta, v, thetas, phis = THETA0.copy(), np.zeros(2), [], []
  for t in range(steps):
    v = mu * v - _lr(gamma, decay, t) * _quadratic_grad(theta + mu * v)
    theta = theta + v
    thetas.append(theta)
    phis.append(theta + mu * v)
  return np.array(thetas), np.array(phis)


def _descend(tx, steps, point=lambda params, state: params):
  """`tx` run on the quadratic, each gradient taken at its own parameters; after each step, the
  `point(params, state)` (the parameters, or where a run evaluates its model)."""
  params = jnp.asarray(THETA0, jnp.float32)
  state = tx.init(params)
  trajectory = []
  for _ in range(steps):
    updates, state = tx.update(_quadratic_grad(params).astype(jnp.float32), state, params)
    params = params + updates
    trajectory.append(np.asarray(point(params, state)))
  return np.array(trajectory)


def _pytorch_order_nesterov(gamma, mu, decay):
  """Momentum on the raw gradient, step size applied after: PyTorch's Nesterov with a schedule."""
  return optax.chain(optax.trace(decay=mu, nesterov=True),
                     optax.scale_by_schedule(lambda t: -gamma * jnp.exp(-decay * t)))


@pytest.mark.parametrize("decay", [0.0, 0.2])
def test_nesterov_tracks_the_look_ahead_point_of_the_papers_recursion(decay):
  gamma, mu, steps = 0.1, 0.9, 20
  thetas, phis = _look_ahead_nesterov(gamma, mu, decay, steps)
  ours = _descend(optimizers.build_optimizer(
      _config(optimizer="nesterov", learning_rate=gamma, momentum=mu, decay=decay)), steps)
  # Our parameters are phi = theta + mu v, where the paper takes its gradients, at every step;
  # theta itself is a different sequence (mu v apart).
  np.testing.assert_allclose(ours, phis, rtol=1e-5, atol=1e-6)
  assert np.abs(ours - thetas).max() > 1e-2
  # The check can fail: the PyTorch order matches the recursion only at a constant step size,
  # since its velocity carries past gradients at the current step size rather than their own.
  pytorch = _descend(_pytorch_order_nesterov(gamma, mu, decay), steps)
  if decay == 0.0:
    np.testing.assert_allclose(pytorch, phis, rtol=1e-5, atol=1e-6)
  else:
    assert np.abs(pytorch - phis).max() > 1e-2


def _authors_forward_nesterov_evaluated(gamma, mu, decay, steps):
  """The paper's forward-gradient class, written as it runs: it holds theta, takes the gradient
  at the look-ahead theta + mu v, and its notebooks evaluate the model at the theta it holds.
  Returns the points it evaluated after each step."""
  theta, v, evaluated = THETA0.copy(), np.zeros(2), []
  for t in range(steps):
    look_ahead = theta + mu * v
    v = mu * v - _lr(gamma, decay, t) * _quadratic_grad(look_ahead)
    theta = theta + v
    evaluated.append(theta.copy())
  return np.array(evaluated)


def _pytorch_nesterov_evaluated(gamma, mu, steps):
  """torch.optim.SGD(nesterov=True), the paper's backprop rows: it holds p, takes the gradient at
  p (buf <- mu buf + g; p <- p - gamma (g + mu buf)) and evaluates the model at p."""
  p, buf, evaluated = THETA0.copy(), np.zeros(2), []
  for _ in range(steps):
    g = _quadratic_grad(p)
    buf = mu * buf + g
    p = p - gamma * (g + mu * buf)
    evaluated.append(p.copy())
  return np.array(evaluated)


def _evaluated(config, steps):
  """The points a run of `config` on the quadratic evaluates its model at after each step."""
  return _descend(optimizers.build_optimizer(config), steps, optimizers.evaluation_point(config))


@pytest.mark.parametrize("decay", [0.0, 0.2])
def test_nesterov_evaluates_where_the_papers_code_did(decay):
  gamma, mu, steps = 0.1, 0.9, 20
  nesterov = dict(optimizer="nesterov", learning_rate=gamma, momentum=mu, decay=decay)
  base = _evaluated(_config(nesterov_evaluate="base", **nesterov), steps)
  lookahead = _evaluated(_config(nesterov_evaluate="lookahead", **nesterov), steps)
  # The forward-gradient rows: theta, mu v behind the parameters (which are the look-ahead).
  np.testing.assert_allclose(base, _authors_forward_nesterov_evaluated(gamma, mu, decay, steps),
                             rtol=1e-5, atol=1e-6)
  assert np.abs(base - lookahead).max() > 1e-2
  if decay == 0.0:  # the backprop rows: torch's own parameters, our look-ahead point
    np.testing.assert_allclose(lookahead, _pytorch_nesterov_evaluated(gamma, mu, steps),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_only_nesterov_moves_the_evaluation_point(optimizer):
  config = _config(optimizer=optimizer, nesterov_evaluate="base", momentum=0.9)
  tx = optimizers.build_optimizer(config)
  params = jnp.asarray(THETA0, jnp.float32)
  state = tx.init(params)
  updates, state = tx.update(jnp.ones(2), state, params)
  params = params + updates
  np.testing.assert_array_equal(optimizers.evaluation_point(config)(params, state), params)


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


def test_adam_with_eps_inside_the_square_root():
  # The paper's forward Adam: m_hat / sqrt(v_hat + 1e-8), optax's eps=0, eps_root=1e-8.
  gamma, b1, b2, eps_root, decay = 0.01, 0.9, 0.999, 1e-8, 0.2
  grads = [np.array([1e-4, -2.0]), np.array([-3e-5, 0.5]), np.array([1e-5, 3.0])]
  theta, m, v, expected = THETA0.copy(), np.zeros(2), np.zeros(2), []
  for t, g in enumerate(grads):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g ** 2
    m_hat, v_hat = m / (1 - b1 ** (t + 1)), v / (1 - b2 ** (t + 1))
    theta = theta - _lr(gamma, decay, t) * m_hat / np.sqrt(v_hat + eps_root)
    expected.append(theta)
  got = _run(_config(optimizer="adam", learning_rate=gamma, decay=decay, b1=b1, b2=b2, eps=0.0,
                     eps_root=eps_root), grads)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # eps outside the root instead moves the small-gradient coordinate visibly less.
  outside = _run(_config(optimizer="adam", learning_rate=gamma, decay=decay, b1=b1, b2=b2,
                         eps=1e-8, eps_root=0.0), grads)
  assert abs(outside[0][0] - expected[0][0]) > 1e-4


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


BASE = {"learning_rate": 0.1, "decay": 0.1, "momentum": 0.5, "b1": 0.8, "b2": 0.9,
        "eps": 1e-3, "eps_root": 1e-3}
CHANGED = {"learning_rate": 0.2, "decay": 0.5, "momentum": 0.9, "b1": 0.5, "b2": 0.5,
           "eps": 0.5, "eps_root": 0.5}


@pytest.mark.parametrize("optimizer", optimizers.OPTIMIZERS)
def test_used_by_names_exactly_the_hyperparameters_that_change_the_updates(optimizer):
  assert set(optimizers.USED_BY) == set(optimizers.OPTIMIZERS)
  assert set(BASE) == set(optimizers.HYPERPARAMETERS)
  tx = optimizers.build_optimizer(_config(optimizer=optimizer, **BASE))

  def three_steps(state):
    params, out = jnp.asarray(THETA0, jnp.float32), []
    for g in GRADS:
      updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
      params = params + updates
      out.append(params)
    return np.array(out)

  reference = three_steps(tx.init(jnp.zeros(2)))
  for name in optimizers.HYPERPARAMETERS:
    state = tx.init(jnp.zeros(2))
    state.hyperparams[name] = jnp.asarray(CHANGED[name], jnp.float32)
    changed = not np.allclose(three_steps(state), reference, rtol=1e-6, atol=0)
    assert changed == (name in optimizers.USED_BY[optimizer]), name


def test_unknown_optimizer():
  with pytest.raises(ValueError, match="unknown optimizer"):
    optimizers.build_optimizer(_config(optimizer="rmsprop"))

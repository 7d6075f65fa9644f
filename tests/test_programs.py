"""fgjax.programs: the chunk run as one scan equals the same steps dispatched one by one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fgjax import default_config
from fgjax import estimators
from fgjax import models
from fgjax import optimizers
from fgjax import programs


def _chunk_setup(estimator: str, combine: str):
  """A small MLP's train step for `estimator`, its optimizer, a function giving fresh step-0
  states, and 40 random examples with an epoch order: (step, new_state, images, labels, order)."""
  config = default_config.base_config()
  config.estimator, config.jvp_clip, config.combine = estimator, 1.0, combine
  config.num_directions = 1 if combine == "mean" else 2
  model = models.create_model("mlp", (4, 4, 1), 3, seed=0,
                              local_heads=models.LocalHeads() if estimator in estimators.LOCAL
                              else None)
  tx = optimizers.build_optimizer(config)
  loss_fn = programs.make_loss_fn(model.apply, [0.0], [255.0], perturbed=model.perturbed)
  step = programs.make_train_step(loss_fn, tx, config)
  # each run donates its own copy of the parameters
  new_state = lambda: programs.init_state(jax.tree.map(np.array, model.params), tx,
                                          jax.random.PRNGKey(2))
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (40, 4, 4, 1), dtype=np.uint8)
  labels = rng.integers(0, 3, 40).astype(np.int32)
  return step, new_state, images, labels, programs.epoch_order(jax.random.PRNGKey(1), 0, labels)


def _assert_same_steps(a, b) -> None:
  """Two chunks' (state, losses) are the same steps up to float rounding."""
  (a_state, a_losses), (b_state, b_losses) = a, b
  assert a_losses.shape == b_losses.shape and int(a_state.step) == int(b_state.step)
  np.testing.assert_allclose(a_losses, b_losses, rtol=1e-5)
  for x, y in zip(jax.tree.leaves(a_state.params), jax.tree.leaves(b_state.params)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("estimator, combine", [
    ("forward", "mean"), ("forward", "projection"), ("backprop", "mean"),
    ("activity", "mean"), ("local_activity", "projection"), ("local_backprop", "mean")])
def test_scan_and_host_loop_take_the_same_steps(estimator, combine):
  step, new_state, images, labels, order = _chunk_setup(estimator, combine)
  scan, loop = (programs.make_train_chunk(step, 8, scan=scan)(
      new_state(), images, labels, order, 1, num_steps=3) for scan in (True, False))
  assert loop[1].shape == (3,) and int(loop[0].step) == 3
  _assert_same_steps(scan, loop)


@pytest.mark.parametrize("scan", [True, False])
def test_a_fed_chunk_takes_the_steps_of_the_batches_it_is_given(scan):
  step, new_state, images, labels, order = _chunk_setup("forward", "mean")
  gathered = programs.make_train_chunk(step, 8, scan=scan)(new_state(), images, labels, order,
                                                           1, num_steps=3)
  batches = np.asarray(order)[8:32].reshape(3, 8)  # batches 1 to 3 of the epoch
  fed = programs.make_train_chunk(step, 8, scan=scan, fed=True)(
      new_state(), images[batches], labels[batches], None, 0, num_steps=3)
  _assert_same_steps(gathered, fed)


@pytest.mark.parametrize("estimator, combine", [
    ("forward", "mean"), ("forward", "projection"), ("backprop", "mean")])
def test_a_finite_loss_with_a_non_finite_gradient_is_not_applied(estimator, combine):
  """sqrt(|w_0 - 1|) is 0 at w_0 = 1 but its derivative is not finite there."""
  config = default_config.base_config()
  config.estimator, config.jvp_clip, config.on_nonfinite = estimator, None, "skip"
  config.combine = combine
  tx = optimizers.build_optimizer(config)
  params = {"w": jnp.array([1.0, 2.0])}
  images, labels = jnp.ones((2, 1)), jnp.zeros((2,), jnp.int32)
  smooth = lambda p, images, labels: (jnp.sum(p["w"] ** 2), None)
  kinked = lambda p, images, labels: (jnp.sum(p["w"] ** 2) + jnp.sqrt(jnp.abs(p["w"][0] - 1)),
                                      None)
  for loss_fn, applied in ((smooth, True), (kinked, False)):
    state = programs.init_state(params, tx, jax.random.PRNGKey(0))
    step = jax.jit(programs.make_train_step(loss_fn, tx, config))
    new_state, loss = step(state, images, labels)
    assert np.isfinite(loss) and int(new_state.step) == 1
    assert int(new_state.num_skipped) == (0 if applied else 1)
    changed = not np.array_equal(new_state.params["w"], params["w"])
    assert changed == applied and np.all(np.isfinite(new_state.params["w"]))


def test_activity_gradient_finiteness_is_read_from_the_estimate():
  """An example's loss sqrt(|z - 1|) at z = 1 is finite, its derivative is not."""
  config = default_config.base_config()
  config.estimator, config.jvp_clip = "activity", None
  gradient = programs.make_gradient_fn(config)
  x = jnp.array([[1.0], [2.0]])
  params = {"w": jnp.ones((1, 1))}

  def forward(kink):
    def per_block(params, perturbations, stop_inputs):
      z = (jax.lax.stop_gradient(x) if stop_inputs else x) @ params["w"]
      if perturbations is not None:
        z = z + perturbations[0][0]
      return [jnp.sqrt(jnp.abs(z[:, 0] - kink))], [[z]]
    return per_block

  for kink, finite in ((0.0, True), (1.0, False)):
    loss, grads, grads_finite = gradient(forward(kink), params, jax.random.PRNGKey(0))
    assert np.isfinite(loss) and bool(grads_finite) == finite
    assert bool(np.all(np.isfinite(grads["w"]))) == finite


def test_activity_estimators_need_the_perturbed_loss():
  config = default_config.base_config()
  config.estimator = "activity"
  model = models.create_model("mlp", (4, 4, 1), 3, seed=0)
  tx = optimizers.build_optimizer(config)
  with pytest.raises(ValueError, match="perturbed=model.perturbed"):
    programs.make_train_step(programs.make_loss_fn(model.apply, [0.0], [255.0]), tx, config)


def test_convolutional_models_leave_the_scan_on_cpu():
  assert jax.default_backend() == "cpu"
  assert programs.scans_well("mlp")
  assert not programs.scans_well("cnn") and not programs.scans_well("vgg")


def test_a_new_estimator_is_one_record(monkeypatch):
  """A record in the registry is all the train step needs: here signSGD's gradient."""
  def make():
    def gradient(loss_fn, params, key):
      del key
      loss, grads = estimators.backprop(loss_fn, params)
      return loss, jax.tree.map(jnp.sign, grads), jnp.array(True)

    return gradient

  monkeypatch.setitem(estimators.REGISTRY, "sign", estimators.Estimator(
      "sign", "the gradient's sign", estimators.LOSS, local_heads=False, exact=True,
      data_parallel=True, options=(), make=make))
  config = default_config.base_config()
  config.estimator, config.learning_rate = "sign", 0.5
  tx = optimizers.build_optimizer(config)
  params = {"w": jnp.array([3.0, -2.0, 0.0])}
  loss_fn = lambda p, images, labels: (jnp.sum(p["w"] ** 2), None)
  step = jax.jit(programs.make_train_step(loss_fn, tx, config))
  state, _ = step(programs.init_state(params, tx, jax.random.PRNGKey(0)), None, None)
  np.testing.assert_allclose(state.params["w"], [2.5, -1.5, 0.0])

"""Every config file parses, builds its model and optimizer, and trains two steps on a stand-in
batch of its dataset's shape (the real data is not needed)."""

import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fgjax import config_loading
from fgjax import models
from fgjax import optimizers
from fgjax import paper
from fgjax import programs

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "configs")
# The smallest images each model accepts keep the stand-in steps cheap; the MLP takes the real
# MNIST shape so that its first layer is the paper's.
STAND_IN_SHAPES = {"mlp": (28, 28, 1), "cnn": (16, 16, 1), "vgg": (8, 8, 3)}


def _config_specs():
  specs = []
  for path in sorted(glob.glob(os.path.join(CONFIG_DIR, "*.py"))):
    if os.path.basename(path) == "default.py":
      specs += [path + ":forward", path + ":backprop"]
    else:
      specs.append(path)
  return specs


def test_one_config_per_table_row():
  names = {os.path.splitext(os.path.basename(p))[0]
           for p in glob.glob(os.path.join(CONFIG_DIR, "*.py"))}
  assert set(paper.TABLE_I_ROWS) <= names
  assert len(paper.TABLE_I_ROWS) == 14


@pytest.mark.parametrize("spec", _config_specs(), ids=lambda s: os.path.basename(s))
def test_config_builds_and_trains_two_steps(spec):
  config = config_loading.load_config(spec)
  shape = STAND_IN_SHAPES[config.model]
  model = models.create_model(config.model, shape, 10, config.seed)
  tx = optimizers.build_optimizer(config)
  loss_fn = programs.make_loss_fn(model.apply, np.zeros(shape[-1]), np.full(shape[-1], 255.0))
  step = jax.jit(programs.make_train_step(loss_fn, tx, config))
  state = programs.init_state(model.params, tx, jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (4,) + shape, dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, 4), jnp.int32)
  for _ in range(2):
    new_state, loss = step(state, images, labels)
    assert np.isfinite(float(loss))
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new_state.params, state.params)
    assert any(jax.tree.leaves(changed))
    state = new_state
  assert int(state.step) == 2


@pytest.mark.parametrize("row", paper.TABLE_I_ROWS)
def test_table_rows_follow_the_paper(row):
  config = config_loading.load_config(os.path.join(CONFIG_DIR, row + ".py"))
  assert config.batch_size == 64
  assert config.num_epochs == (100 if row.startswith("cifar") else 50)
  assert config.estimator == ("forward" if row.endswith("_fwd") else "backprop")
  assert config.jvp_clip == (1.0 if config.estimator == "forward" else None)
  assert config.data.validation_size == 10000

"""Shapes, parameter counts and input-shape handling of fgjax.models."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fgjax import models


@pytest.mark.parametrize("name, input_shape, num_params", [
    ("mlp", (28, 28, 1), 1_863_690),
    ("cnn", (28, 28, 1), 1_171_274),
    ("vgg", (32, 32, 3), 17_967_690),
    ("mlp", (8, 8, 1), 1_126_410),
])
def test_output_shape_and_parameter_count(name, input_shape, num_params):
  model = models.create_model(name, input_shape, 10, seed=0)
  assert models.num_params(model.params) == num_params
  logits = model.apply(model.params, jnp.ones((3,) + input_shape))
  assert logits.shape == (3, 10)


def test_params_are_a_plain_dict_and_seeded():
  a = models.create_model("mlp", (8, 8, 1), 4, seed=1).params
  b = models.create_model("mlp", (8, 8, 1), 4, seed=1).params
  c = models.create_model("mlp", (8, 8, 1), 4, seed=2).params
  assert isinstance(a, dict)
  assert jnp.array_equal(a["head"]["kernel"], b["head"]["kernel"])
  assert not jnp.array_equal(a["head"]["kernel"], c["head"]["kernel"])


def test_cnn_layout_matches_the_design():
  params = models.create_model("cnn", (28, 28, 1), 10, seed=0).params
  assert [params["convs"][i]["kernel"].shape for i in range(4)] == [
      (3, 3, 1, 64), (3, 3, 64, 64), (3, 3, 64, 64), (3, 3, 64, 64)]
  assert params["dense"]["kernel"].shape == (4 * 4 * 64, 1024)


def test_vgg_layout_matches_the_design():
  params = models.create_model("vgg", (32, 32, 3), 10, seed=0).params
  assert [params["convs"][i]["kernel"].shape[-1] for i in range(6)] == [
      64, 64, 128, 128, 256, 256]
  # The authors' CifarNet: Linear(4096, 4096) -> ReLU -> Linear(4096, 10).
  assert params["dense"]["kernel"].shape == (4 * 4 * 256, 4096)
  assert params["head"]["kernel"].shape == (4096, 10)


def _fan_in(kernel) -> int:
  """Inputs per output unit: in_features for Dense (in, out), in_channels*kh*kw for Conv."""
  return math.prod(kernel.shape[:-1])


def _layers(params):
  """Every (kernel, bias) pair of a parameter dict, in a fixed order."""
  found = []
  def visit(node):
    if "kernel" in node:
      found.append((np.asarray(node["kernel"]), np.asarray(node["bias"])))
      return
    for key in sorted(node):
      visit(node[key])
  visit(params)
  return found


@pytest.mark.parametrize("name, input_shape, num_layers", [
    ("mlp", (28, 28, 1), 3), ("cnn", (28, 28, 1), 6), ("vgg", (32, 32, 3), 8)])
def test_torch_init_is_uniform_with_bound_one_over_sqrt_fan_in(name, input_shape, num_layers):
  params = models.create_model(name, input_shape, 10, seed=0, init="torch").params
  layers = _layers(params)
  assert len(layers) == num_layers
  for kernel, bias in layers:
    fan_in = _fan_in(kernel)
    bound = 1 / math.sqrt(fan_in)
    assert np.abs(kernel).max() <= bound
    # U(-b, b) has standard deviation b / sqrt(3) = 1 / sqrt(3 fan_in).
    np.testing.assert_allclose(kernel.std(), 1 / math.sqrt(3 * fan_in), rtol=0.1)
    assert np.abs(bias).max() <= bound
    assert np.all(bias != 0)
    if bias.size >= 64:
      np.testing.assert_allclose(bias.std(), bound / math.sqrt(3), rtol=0.35)


def test_flax_init_is_the_default_with_zero_biases():
  default = models.create_model("mlp", (8, 8, 1), 10, seed=0).params
  flax = models.create_model("mlp", (8, 8, 1), 10, seed=0, init="flax").params
  assert jax.tree.all(jax.tree.map(jnp.array_equal, default, flax))
  for kernel, bias in _layers(flax):
    assert np.all(bias == 0)
    # lecun normal: std 1/sqrt(fan_in), so it exceeds the torch bound somewhere.
    assert np.abs(kernel).max() > 1 / math.sqrt(_fan_in(kernel))


def test_unknown_init():
  with pytest.raises(ValueError, match="unknown init"):
    models.create_model("mlp", (8, 8, 1), 10, seed=0, init="xavier")


def test_too_small_input_is_a_clear_error():
  with pytest.raises(ValueError, match="too small"):
    models.create_model("cnn", (8, 8, 1), 10, seed=0)


def test_unknown_model():
  with pytest.raises(ValueError, match="unknown model"):
    models.create_model("resnet", (28, 28, 1), 10, seed=0)

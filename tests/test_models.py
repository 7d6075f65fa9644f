"""Shapes, parameter counts and input-shape handling of fgjax.models."""

import jax.numpy as jnp
import pytest

from fgjax import models


@pytest.mark.parametrize("name, input_shape, num_params", [
    ("mlp", (28, 28, 1), 1_863_690),
    ("cnn", (28, 28, 1), 1_171_274),
    ("vgg", (32, 32, 3), 5_350_986),
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
  assert params["dense"]["kernel"].shape == (4 * 4 * 256, 1024)


def test_too_small_input_is_a_clear_error():
  with pytest.raises(ValueError, match="too small"):
    models.create_model("cnn", (8, 8, 1), 10, seed=0)


def test_unknown_model():
  with pytest.raises(ValueError, match="unknown model"):
    models.create_model("resnet", (28, 28, 1), 10, seed=0)

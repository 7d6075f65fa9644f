"""Shapes, parameter counts and input-shape handling of fgjax.models, and the plumbing of
activity perturbation: perturbed pre-activations, stopped inputs, local heads."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from fgjax import losses
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


LOCAL = models.LocalHeads()  # local heads, one per block, each one classifier


def _small(name, local_heads=None, seed=0):
  """Small networks of both kinds, with non-zero biases, and a batch of 4 inputs."""
  rngs, options = nnx.Rngs(seed), dict(init="torch", local_heads=local_heads)
  if name == "mlp":
    module = models.MLP((3, 3, 1), 4, rngs=rngs, hidden=(6, 5), **options)
    shape = (3, 3, 1)
  else:
    module = models.ConvNet((8, 8, 2), 4, rngs=rngs, blocks=((3, 3), (4,)), padding="SAME",
                            hidden=5, **options)
    shape = (8, 8, 2)
  images = jax.random.normal(jax.random.PRNGKey(1), (4,) + shape)
  return models.split(module), images, jnp.array([0, 3, 1, 2])


@pytest.mark.parametrize("name, head_inputs", [("mlp", [1024, 1024]), ("cnn", [64, 64]),
                                               ("vgg", [64, 128, 256])])
def test_local_heads_are_extra_parameters_only(name, head_inputs):
  shape = (32, 32, 3) if name == "vgg" else (28, 28, 1)
  plain = models.create_model(name, shape, 10, seed=3).params
  local = models.create_model(name, shape, 10, seed=3, local_heads=LOCAL).params
  heads = local.pop("local_heads")
  assert [heads[i]["kernel"].shape for i in range(len(heads))] == [
      (size, 10) for size in head_inputs]
  assert jax.tree.all(jax.tree.map(jnp.array_equal, plain, local))  # same seed, same weights


def test_local_losses_per_layer_make_every_layer_a_block():
  """loss_per="layer": a local head after every conv layer and the dense layer (the
  parameters otherwise those of the same seed), the head the last block alone; the MLP's blocks
  are its layers already."""
  per_block, images, _ = _small("conv", LOCAL)
  per_layer = _small("conv", models.LocalHeads(loss_per="layer"))[0]
  heads = per_layer.params["local_heads"]
  assert [heads[i]["kernel"].shape[0] for i in range(len(heads))] == [3, 3, 4, 5]
  for part in ("convs", "dense", "head"):
    assert jax.tree.all(jax.tree.map(jnp.array_equal, per_block.params[part],
                                     per_layer.params[part]))
  outputs, activations = per_layer.perturbed(per_layer.params, images, None, False, True)
  assert [[z.shape[-1] for z in block] for block in activations] == [
      [3, 4], [3, 4], [4, 4], [5, 4], [4]]
  np.testing.assert_allclose(outputs[-1].value, per_layer.apply(per_layer.params, images),
                             rtol=1e-6)
  # The second conv's local loss moves the second conv and its head alone.
  local_loss = lambda p: per_layer.perturbed(p, images, None, False, True)[0][1].value.sum()
  grads = jax.grad(local_loss)(
      per_layer.params)
  moved = {path for path, leaf in jax.tree_util.tree_leaves_with_path(grads) if np.any(leaf)}
  assert {jax.tree_util.keystr(path) for path in moved} == {
      "['convs'][1]['kernel']", "['convs'][1]['bias']",
      "['local_heads'][1]['kernel']", "['local_heads'][1]['bias']"}
  mlp_block, mlp_images, _ = _small("mlp", LOCAL)
  mlp_layer = _small("mlp", models.LocalHeads(loss_per="layer"))[0]
  assert jax.tree.all(jax.tree.map(jnp.array_equal, mlp_block.params, mlp_layer.params))
  with pytest.raises(ValueError, match="unknown local_heads.loss_per 'unit'"):
    _small("conv", models.LocalHeads(loss_per="unit"))


def _on_patches(patches, head_inputs):
  """The small conv net with local heads per layer reading `patches`: checks that its heads
  read `head_inputs` units each, that its other parameters are those of the same seed without
  patches and that it computes what that one does; returns its heads' parameters, its local
  outputs and activations, and that one's activations."""
  whole, images, _ = _small("conv", models.LocalHeads(loss_per="layer"))
  patched = _small("conv", models.LocalHeads(loss_per="layer", patches=patches))[0]
  heads = patched.params["local_heads"]
  assert [heads[i]["kernel"].shape[0] for i in range(len(heads))] == head_inputs
  for part in ("convs", "dense", "head"):
    assert jax.tree.all(jax.tree.map(jnp.array_equal, whole.params[part], patched.params[part]))
  logits = whole.apply(whole.params, images)
  np.testing.assert_allclose(patched.apply(patched.params, images), logits, rtol=1e-6)
  outputs, activations = patched.perturbed(patched.params, images, None, False, True)
  np.testing.assert_allclose(outputs[-1].value, logits, rtol=1e-6)
  return heads, outputs, activations, whole.perturbed(whole.params, images, None, False, True)[1]


def test_local_heads_can_read_patches_of_the_conv_maps():
  """patches=2: a conv layer's local head reads its output averaged over each of
  2 x 2 patches (4 x channels inputs; the other parameters those of the same seed), its
  activation comes patch-major (a unit of patch (r, c) at [i, j, (2 r + c) C + channel]), and
  the model computes what it did."""
  heads, outputs, activations, z = _on_patches(2, [12, 12, 16, 5])
  z = z[0][0]  # (4, 8, 8, 3)
  patch_major = activations[0][0]
  assert patch_major.shape == (4, 4, 4, 12)
  np.testing.assert_array_equal(patch_major[:, 1, 2, (2 * 1 + 0) * 3 + 2], z[:, 4 + 1, 2, 2])
  patch_means = jax.nn.relu(z).reshape(4, 2, 4, 2, 4, 3).mean(axis=(2, 4)).reshape(4, 12)
  np.testing.assert_allclose(outputs[0].value, patch_means @ heads[0]["kernel"] + heads[0]["bias"],
                             rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match=r"local_heads.patches=3 does not split .* \(8, 8\)"):
    _small("conv", models.LocalHeads(patches=3))
  with pytest.raises(ValueError, match="the MLP has none"):
    _small("mlp", models.LocalHeads(patches=2))


def test_local_heads_can_read_every_position_of_the_conv_maps():
  """patches=0: a conv layer's local head reads the whole map it closes on (the pooled map where
  pooling follows), a patch per position; its activation comes patch-major on that grid (a
  unit of pooled position (r, c) at [i, j, (4 r + c) C + channel]); with slices=0 a shared
  head's slices are one per unit it reads."""
  heads, outputs, activations, z = _on_patches(0, [192, 48, 16, 5])
  images = _small("conv")[1]
  assert [block[0].shape for block in activations[:3]] == [
      (4, 1, 1, 192), (4, 2, 2, 48), (4, 2, 2, 16)]
  np.testing.assert_array_equal(activations[1][0][:, 1, 0, (4 * 3 + 2) * 3 + 1],
                                z[1][0][:, 2 * 3 + 1, 2 * 2 + 0, 1])
  np.testing.assert_allclose(
      outputs[0].value, jax.nn.relu(z[0][0]).reshape(4, -1) @ heads[0]["kernel"]
      + heads[0]["bias"], rtol=1e-5, atol=1e-6)
  shared = _small("conv", models.LocalHeads(loss_per="layer", patches=0, slices=0,
                                            slice_head="shared"))[0]
  logits = shared.perturbed(shared.params, images, None, False, True)[0]
  assert [out.value[1].shape for out in logits[:-1:2]] == [
      (4, 192, 1), (4, 48, 1), (4, 16, 1), (4, 5, 1)]
  with pytest.raises(ValueError, match=r"patches=0 does not split .* \(0: maps of even size"):
    models.ConvNet((7, 7, 1), 4, rngs=nnx.Rngs(0), blocks=((2,),), padding="SAME", hidden=3,
                   local_heads=models.LocalHeads(patches=0))


def test_local_losses_per_layer_let_a_conv_net_share_a_head_by_slices():
  """Losses per slice need blocks of one layer: per layer, the CNN takes them (a shared head's
  slice per channel), per block it refuses them, saying why."""
  model = models.create_model("cnn", (28, 28, 1), 10, seed=0, local_heads=models.LocalHeads(
      slices=64, slice_head="shared", loss_per="layer"))
  images = jax.random.normal(jax.random.PRNGKey(1), (2, 28, 28, 1))
  logits, activations = model.perturbed(model.params, images, None, False, True)
  assert [(out.kind, jax.tree.map(jnp.shape, out.value)) for out in logits] == [
      (losses.Kind.SHARED_HEAD, ((2, 10), (2, 64, 1), (64, 1, 10))),
      (losses.Kind.PLAIN, (2, 10))] * 4 + [  # 4 convs, then the dense
      (losses.Kind.SHARED_HEAD, ((2, 10), (2, 64, 16), (64, 16, 10))),
      (losses.Kind.PLAIN, (2, 10)), (losses.Kind.PLAIN, (2, 10))]
  assert [len(block) for block in activations] == [1] * 11
  with pytest.raises(ValueError, match="local_heads.loss_per='layer' gives every layer"):
    models.create_model("cnn", (28, 28, 1), 10, seed=0,
                        local_heads=models.LocalHeads(slices=64, slice_head="shared"))


@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_perturbed_forward_without_perturbations_is_the_model(name):
  model, images, _ = _small(name, LOCAL)
  logits = model.apply(model.params, images)
  for local in (False, True):
    for stop_inputs in (False, True):
      outputs, activations = model.perturbed(model.params, images, None, stop_inputs, local)
      np.testing.assert_allclose(outputs[-1].value, logits, rtol=1e-6)
      np.testing.assert_allclose(activations[-1][-1], logits, rtol=1e-6)  # the head's z
  _, activations = model.perturbed(model.params, images)
  layers = 3 if name == "mlp" else 5
  assert len(activations) == 1 and len(activations[0]) == layers
  outputs, activations = model.perturbed(model.params, images, None, False, True)
  # A loss block per block, each block's layers then its local head; the last ends in the head.
  sizes = [[6, 4], [5, 4], [4]] if name == "mlp" else [[3, 3, 4], [4, 4], [5, 4]]
  assert [[z.shape[-1] for z in block] for block in activations] == sizes
  assert [(out.kind, out.value.shape) for out in outputs] == [
      (losses.Kind.PLAIN, (4, 4))] * len(sizes)


def test_perturbations_are_added_to_the_pre_activations():
  model, images, _ = _small("mlp")
  _, activations = model.perturbed(model.params, images)
  shift = jax.tree.map(lambda z: jnp.full_like(z, 0.5), activations)
  _, shifted = model.perturbed(model.params, images, shift)
  hidden_0 = images.reshape(4, -1) @ model.params["hidden"][0]["kernel"]
  np.testing.assert_allclose(shifted[0][0], hidden_0 + model.params["hidden"][0]["bias"] + 0.5,
                             rtol=1e-6)
  # The head's perturbation shifts the logits by exactly itself.
  only_head = jax.tree.map(jnp.zeros_like, activations)
  only_head[0][-1] = jnp.ones_like(activations[0][-1])
  logits, _ = model.perturbed(model.params, images, only_head)
  np.testing.assert_allclose(logits[-1].value, model.apply(model.params, images) + 1,
                             rtol=1e-6)


def test_local_model_needs_local_heads():
  model, images, _ = _small("mlp")
  with pytest.raises(ValueError, match="a model created with local heads"):
    model.perturbed(model.params, images, None, False, True)


def _losses(model, images, labels, local):
  """The mean of every loss block's loss as a function of (params, perturbations)."""
  def total(params, perturbations):
    logits, _ = model.perturbed(params, images, perturbations, False, local)
    return sum(optax.softmax_cross_entropy_with_integer_labels(out.value, labels).mean()
               for out in logits)
  return total


@pytest.mark.parametrize("local", [False, True])
@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_local_weight_gradient_from_the_exact_activity_gradient_is_backprop(name, local):
  """Given the exact gradient g_z of every pre-activation, the vjp of params -> z with stopped
  layer inputs (no backward pass through the network) gives the exact weight gradient: for
  dense layers sum_i x_i g_{z_i}^T, for convolutions its transposed convolution."""
  model, images, labels = _small(name, LOCAL)
  _, activations = model.perturbed(model.params, images, None, False, local)
  zeros = jax.tree.map(jnp.zeros_like, activations)
  total = _losses(model, images, labels, local)
  backprop, g_z = jax.grad(total, argnums=(0, 1))(model.params, zeros)
  _, pullback = jax.vjp(lambda p: model.perturbed(p, images, None, True, local)[1], model.params)
  (local_grads,) = pullback(g_z)
  for a, b in zip(jax.tree.leaves(local_grads), jax.tree.leaves(backprop)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  if name == "mlp":  # the dense formula, written out for the first layer
    x = images.reshape(4, -1)
    np.testing.assert_allclose(local_grads["hidden"][0]["kernel"], x.T @ g_z[0][0], rtol=1e-5,
                               atol=1e-6)


def test_local_losses_pass_no_gradient_between_blocks():
  model, images, labels = _small("mlp", LOCAL)
  outputs = lambda p: model.perturbed(p, images, None, False, True)[0]
  loss = lambda out: optax.softmax_cross_entropy_with_integer_labels(out.value, labels).mean()
  first_block = jax.grad(lambda p: loss(outputs(p)[0]))(model.params)
  model_loss = jax.grad(lambda p: loss(outputs(p)[-1]))(model.params)
  assert np.any(first_block["hidden"][0]["kernel"]) and not np.any(first_block["head"]["kernel"])
  assert not any(np.any(leaf) for leaf in jax.tree.leaves(first_block["hidden"][1]))
  # The model's own loss trains only the last block: its head.
  assert np.any(model_loss["head"]["kernel"])
  assert not any(np.any(leaf) for leaf in jax.tree.leaves(model_loss["hidden"]))


@pytest.mark.parametrize("init", models.INITS)
def test_sliced_linear_is_s_linear_layers_on_their_own_slices(init):
  head = models.SlicedLinear(12, 5, 3, rngs=nnx.Rngs(0), init=init)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 12))
  out = head(x)
  assert out.shape == (2, 15)
  kernel, bias = head.kernel[...], head.bias[...]
  for s in range(3):
    np.testing.assert_allclose(out[:, 5 * s:5 * (s + 1)],
                               x[:, 4 * s:4 * (s + 1)] @ kernel[s] + bias[5 * s:5 * (s + 1)],
                               rtol=1e-5, atol=1e-6)
  # Each classifier is initialised as a layer of 4 inputs: torch U(-1/2, 1/2), flax std 1/2.
  big = models.SlicedLinear(4 * 64, 64, 64, rngs=nnx.Rngs(0), init=init).kernel[...]
  if init == "torch":
    assert 0.45 < np.abs(big).max() <= 0.5
  else:
    assert abs(float(big.std()) - 0.5) < 0.05
  with pytest.raises(ValueError, match="local_heads.slices=5 must divide the 12 units"):
    models.MLP((2, 3, 2), 10, rngs=nnx.Rngs(0), hidden=(12,), init=init,
               local_heads=models.LocalHeads(slices=5))


def test_local_heads_per_slice_give_a_loss_per_slice():
  model = models.create_model("mlp", (8, 8, 1), 10, seed=0,
                              local_heads=models.LocalHeads(slices=32))
  images = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 1))
  logits, activations = model.perturbed(model.params, images, None, False, True)
  assert [(out.kind, out.value.shape) for out in logits] == [
      (losses.Kind.SLICE_CLASSIFIERS, (4, 32, 10))] * 2 + [(losses.Kind.PLAIN, (4, 10))]
  assert [[z.shape for z in block] for block in activations] == [
      [(4, 1024), (4, 320)], [(4, 1024), (4, 320)], [(4, 10)]]
  with pytest.raises(ValueError, match="local_heads.slices=4 needs blocks of one layer"):
    models.create_model("cnn", (28, 28, 1), 10, seed=0, local_heads=models.LocalHeads(slices=4))


def test_a_shared_local_head_gives_each_slice_its_inputs_and_rows_of_the_head():
  """With slice_head="shared" a block's S slices share one classifier (the parameters of the
  same seed with one slice); the block's logits are the head's with its input and kernel cut
  into the slices' parts (a slice's units alone move its input); the head is a loss block of
  its own. slices=0 gives a slice per unit."""
  shared = models.create_model("mlp", (8, 8, 1), 10, seed=0,
                               local_heads=models.LocalHeads(slices=4, slice_head="shared"))
  plain = models.create_model("mlp", (8, 8, 1), 10, seed=0, local_heads=LOCAL)
  for a, b in zip(jax.tree.leaves(shared.params), jax.tree.leaves(plain.params)):
    np.testing.assert_array_equal(a, b)
  images = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 1))
  logits, activations = shared.perturbed(shared.params, images, None, False, True)
  assert [jax.tree.map(jnp.shape, out.value) for out in logits] == [
      ((2, 10), (2, 4, 256), (4, 256, 10)), (2, 10)] * 2 + [(2, 10)]
  assert [out.kind for out in logits] == [losses.Kind.SHARED_HEAD, losses.Kind.PLAIN] * 2 + [
      losses.Kind.PLAIN]
  assert [[z.shape for z in block] for block in activations] == [
      [(2, 1024)], [(2, 10)], [(2, 1024)], [(2, 10)], [(2, 10)]]
  plain_logits = plain.perturbed(plain.params, images, None, False, True)[0]
  head_logits, inputs, kernel = logits[0].value
  np.testing.assert_allclose(head_logits, plain_logits[0].value, rtol=1e-5, atol=1e-5)
  bias = shared.params["local_heads"][0]["bias"]
  np.testing.assert_allclose(jnp.einsum("bsi,sic->bc", inputs, kernel) + bias, head_logits,
                             rtol=1e-5, atol=1e-5)

  def first_inputs(z):  # the first block's head input by slice as a function of its z
    return shared.perturbed(shared.params, images, [[z], [0.0], [0.0], [0.0], [0.0]], False,
                            True)[0][0].value[1]

  slice_1 = jnp.zeros((2, 1024)).at[:, 256:512].set(1.0)  # the units of slice 1
  _, moved = jax.jvp(first_inputs, (jnp.zeros((2, 1024)),), (slice_1,))
  assert np.any(moved[:, 1]) and not np.any(moved[:, [0, 2, 3]])
  per_unit = models.create_model("mlp", (8, 8, 1), 10, seed=0,
                                 local_heads=models.LocalHeads(slices=0, slice_head="shared"))
  assert per_unit.perturbed(per_unit.params, images, None, False, True)[0][0].value[1].shape == (
      2, 1024, 1)
  with pytest.raises(ValueError, match="unknown local_heads.slice_head 'joint'"):
    models.LocalHeads(slices=4, slice_head="joint")
  with pytest.raises(ValueError, match="local_heads.slices must be an integer >= 0, got -1"):
    models.LocalHeads(slices=-1)
  with pytest.raises(ValueError, match="local_heads.slices=3 must divide the 1024 units"):
    models.create_model("mlp", (8, 8, 1), 10, seed=0,
                        local_heads=models.LocalHeads(slices=3, slice_head="shared"))


def test_pooling_agrees_with_reduce_window_in_value_gradient_and_jvp():
  """After a ReLU, as in the models: windows of zeros tie, where the two poolings route
  derivatives differently, but the ReLU's zero derivative there makes them agree."""
  key = lambda seed: jax.random.PRNGKey(seed)
  z = jax.random.normal(key(0), (2, 7, 6, 3))  # odd height: the last row is dropped
  ours = lambda z: models._pool(jax.nn.relu(z))  # pylint: disable=protected-access
  reference = lambda z: nnx.max_pool(jax.nn.relu(z), window_shape=(2, 2), strides=(2, 2))
  cotangent, tangent = jax.random.normal(key(1), (2, 3, 3, 3)), jax.random.normal(key(2), z.shape)
  assert ours(z).shape == reference(z).shape == (2, 3, 3, 3)
  for a, b in [(ours(z), reference(z)),
               (jax.vjp(ours, z)[1](cotangent)[0], jax.vjp(reference, z)[1](cotangent)[0]),
               (jax.jvp(ours, (z,), (tangent,))[1], jax.jvp(reference, (z,), (tangent,))[1])]:
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("padding", ["VALID", "SAME"])
def test_conv_layers_agree_with_flax_conv_in_value_gradients_and_jvp(padding):
  """The models' conv layers (`_conv`, the bias added as a matrix product) against nnx.Conv's
  own call: outputs, the input's, kernel's and bias's gradients, and a jvp in every argument."""
  conv = nnx.Conv(5, 4, kernel_size=(3, 3), padding=padding, rngs=nnx.Rngs(0),
                  bias_init=nnx.initializers.normal(1.0))
  graph, params = nnx.split(conv)
  key = lambda seed: jax.random.PRNGKey(seed)
  x = jax.random.normal(key(1), (3, 9, 8, 5))

  def apply(layer):
    return lambda params, x: layer(nnx.merge(graph, params), x)

  ours, reference = apply(models._conv), apply(lambda conv, x: conv(x))  # pylint: disable=protected-access
  cotangent = jax.random.normal(key(2), reference(params, x).shape)
  tangents = (jax.tree.map(lambda p: jax.random.normal(key(3), p.shape), params),
              jax.random.normal(key(4), x.shape))
  for a, b in [(ours(params, x), reference(params, x)),
               (jax.vjp(ours, params, x)[1](cotangent), jax.vjp(reference, params, x)[1](cotangent)),
               (jax.jvp(ours, (params, x), tangents), jax.jvp(reference, (params, x), tangents))]:
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), a, b)

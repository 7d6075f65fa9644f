"""Both convolution formulations compute the same function, gradient and jvp, alone and inside
every conv net of fgjax.models (each padding, local heads and patches included)."""

from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fgjax import convolution
from fgjax import models


def _allclose(a, b):
  """float32 agreement, relative to the larger entries (sums over hundreds of products)."""
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    scale = max(float(jnp.max(jnp.abs(y))), 1e-6)
    np.testing.assert_allclose(np.asarray(x) / scale, np.asarray(y) / scale, atol=2e-5)


def _random(shape, seed):
  return jax.random.normal(jax.random.PRNGKey(seed), shape)


@pytest.mark.parametrize("padding", ["VALID", "SAME"])
@pytest.mark.parametrize("channels", [1, 3, 8])
def test_methods_agree_in_value_gradient_and_jvp(padding, channels):
  x, kernel = _random((2, 9, 7, channels), 0), _random((3, 3, channels, 5), 1)
  convs = {m: (lambda x, k, m=m: convolution.conv2d(x, k, padding, m))
           for m in convolution.METHODS}
  reference = convolution.conv2d(x, kernel, padding, "xla")
  expected_shape = (2, 9, 7, 5) if padding == "SAME" else (2, 7, 5, 5)
  assert reference.shape == expected_shape
  np.testing.assert_allclose(
      reference, jax.lax.conv_general_dilated(x, kernel, (1, 1), padding,
                                              dimension_numbers=("NHWC", "HWIO", "NHWC")))
  cotangent = _random(expected_shape, 2)
  tangents = (_random(x.shape, 3), _random(kernel.shape, 4))
  results = {}
  for method, conv in convs.items():
    out, vjp = jax.vjp(conv, x, kernel)
    results[method] = (out, vjp(cotangent), jax.jvp(conv, (x, kernel), tangents),
                       jax.jvp(lambda x: conv(x, kernel), (x,), tangents[:1]),
                       jax.jvp(lambda k: conv(x, k), (kernel,), tangents[1:]))
  _allclose(results["patches"], results["xla"])


def test_patches_grad_through_a_stopped_input_is_the_kernel_gradient_alone():
  x, kernel = _random((2, 6, 6, 4), 0), _random((3, 3, 4, 3), 1)
  loss = lambda k, m: jnp.sum(convolution.conv2d(jax.lax.stop_gradient(x), k, "VALID", m) ** 2)
  _allclose(jax.grad(loss)(kernel, "patches"), jax.grad(loss)(kernel, "xla"))


def test_method_per_backend_and_errors():
  assert convolution.method_for("cpu") == "patches"
  assert convolution.method_for("gpu") == convolution.method_for("tpu") == "xla"
  x, kernel = jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1))
  with pytest.raises(ValueError, match="unknown convolution method"):
    convolution.conv2d(x, kernel, "VALID", "fft")
  with pytest.raises(ValueError, match="padding"):
    convolution.conv2d(x, kernel, "FULL")


def test_pooling_agrees_with_reduce_window_in_value_gradient_and_jvp():
  """After a ReLU, as in the models: windows of zeros tie, where the two poolings route
  derivatives differently, but the ReLU's zero derivative there makes them agree."""
  z = _random((2, 7, 6, 3), 0)  # odd height: the last row is dropped
  ours = lambda z: models._pool(jax.nn.relu(z))  # pylint: disable=protected-access
  reference = lambda z: nnx.max_pool(jax.nn.relu(z), window_shape=(2, 2), strides=(2, 2))
  cotangent, tangent = _random((2, 3, 3, 3), 1), _random(z.shape, 2)
  assert ours(z).shape == reference(z).shape == (2, 3, 3, 3)
  _allclose(ours(z), reference(z))
  _allclose(jax.vjp(ours, z)[1](cotangent), jax.vjp(reference, z)[1](cotangent))
  _allclose(jax.jvp(ours, (z,), (tangent,)), jax.jvp(reference, (z,), (tangent,)))


NETS = [
    ("cnn", (28, 28, 1), {}),
    ("cnn", (28, 28, 1), dict(local_heads=models.LocalHeads(
        loss_per="layer", patches=2, slices=2, slice_head="shared"))),
    ("vgg", (16, 16, 3), dict(local_heads=models.LocalHeads())),
]


@pytest.mark.parametrize("name,shape,options", NETS)
def test_every_conv_net_is_the_same_function_with_either_method(name, shape, options):
  net = models.create_model(name, shape, 10, seed=0, **options)
  images, labels = _random((2, *shape), 1), jnp.array([3, 7])
  tangent = jax.tree.map(lambda p: _random(p.shape, 2), net.params)

  def loss(params):
    logits = net.apply(params, images)
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - logits[jnp.arange(2), labels])

  def local_losses(params):  # the local objective, each block's input cut by stop_gradient
    logits, _ = net.perturbed(params, images, None, True, True)
    return sum(jnp.sum(jax.tree.leaves(block.value)[0] ** 2) for block in logits)

  results = {}
  for method in convolution.METHODS:
    with mock.patch.object(convolution, "method_for", return_value=method):
      results[method] = (
          jax.jit(jax.value_and_grad(loss))(net.params),
          jax.jit(lambda p, v: jax.jvp(loss, (p,), (v,)))(net.params, tangent),
          jax.jit(jax.grad(local_losses))(net.params) if options.get("local_heads") else None)
  _allclose(results["patches"], results["xla"])

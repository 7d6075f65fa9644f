"""fgjax compiles its programs with the options that suit the backend (`compilation.jit`): on CPU
no convolution goes to YNNPACK, and the conv nets compute the same losses, gradients and jvps as
under XLA's defaults."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fgjax import compilation
from fgjax import models
from fgjax import programs


def _allclose(a, b):
  """float32 agreement, relative to the larger entries (sums over hundreds of products)."""
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    scale = max(float(jnp.max(jnp.abs(y))), 1e-6)
    np.testing.assert_allclose(np.asarray(x) / scale, np.asarray(y) / scale, atol=2e-5)


def _random(shape, seed):
  return jax.random.normal(jax.random.PRNGKey(seed), shape)


def _ynn_convolutions(hlo_text: str) -> int:
  """How many convolutions of a compiled program run inside YNNPACK fusions."""
  ynn = set(re.findall(r"calls=(%[\w.-]+), [^\n]*__ynn_fusion", hlo_text))
  blocks = re.findall(r"^(%[\w.-]+) [^\n]*\{\n(.*?)^\}", hlo_text, re.M | re.S)
  return sum(body.count(" convolution(") for name, body in blocks if name in ynn)


def _conv(x, kernel):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _ynn_takes_convolutions() -> bool:
  args = (jnp.ones((4, 26, 26, 64)), jnp.ones((3, 3, 64, 64)))  # the MNIST CNN's second layer
  return _ynn_convolutions(jax.jit(_conv).lower(*args).compile().as_text()) > 0


def test_options_per_backend():
  assert compilation.options("gpu") == compilation.options("tpu") == {}
  assert compilation.options("cpu") in ({}, compilation.CPU_OPTIONS)


@pytest.mark.skipif(not _ynn_takes_convolutions(),
                    reason="this XLA does not hand convolutions to YNNPACK: nothing to keep apart")
def test_no_convolution_of_a_conv_net_train_step_runs_in_ynnpack():
  assert compilation.options("cpu") == compilation.CPU_OPTIONS
  net = models.create_model("cnn", (28, 28, 1), 10, seed=0)
  loss_fn = programs.make_loss_fn(net.apply, 127.5, 64.0)
  step = lambda params, images, labels: jax.grad(lambda p: loss_fn(p, images, labels)[0])(params)
  args = (net.params, jnp.zeros((4, 28, 28, 1), jnp.uint8), jnp.zeros((4,), jnp.int32))
  default = jax.jit(step).lower(*args).compile().as_text()
  ours = compilation.jit(step).lower(*args).compile().as_text()
  assert _ynn_convolutions(default) > 0
  assert " convolution(" in ours and _ynn_convolutions(ours) == 0


NETS = [
    ("cnn", (28, 28, 1), {}),
    ("cnn", (28, 28, 1), dict(local_heads=models.LocalHeads(
        loss_per="layer", patches=2, slices=2, slice_head="shared"))),
    ("vgg", (16, 16, 3), dict(local_heads=models.LocalHeads())),
]


@pytest.mark.parametrize("name,shape,options", NETS)
def test_every_conv_net_is_the_same_function_under_either_compilation(name, shape, options):
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
  for name, jit in (("ours", compilation.jit), ("default", jax.jit)):
    results[name] = (
        jit(jax.value_and_grad(loss))(net.params),
        jit(lambda p, v: jax.jvp(loss, (p,), (v,)))(net.params, tangent),
        jit(jax.grad(local_losses))(net.params) if options.get("local_heads") else None)
  _allclose(results["ours"], results["default"])

"""The paper's three networks as Flax NNX modules, and a registry from name to module.

NNX, because its modules are plain Python objects that `nnx.split` turns into a graph definition
and a parameter pytree: the estimators then see an ordinary dict of arrays, and `model_fn` rebuilds
the module inside compiled code at no run-time cost.

Inputs are NHWC float images; the input shape comes from the dataset, so each model trains on any
image size its layers allow.

Two initialisations: "flax" (Flax's default: lecun-normal weights, zero biases) and "torch"
(PyTorch's default for nn.Linear and nn.Conv2d, which the paper's code used: weights and biases
both U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
"""

import dataclasses
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

INITS = ("flax", "torch")


def _uniform(bound: float):
  """An nnx initializer drawing U(-bound, bound)."""
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def _layer_init(init: str, fan_in: int) -> dict:
  """The `kernel_init`/`bias_init` keyword arguments of one layer with `fan_in` inputs per unit.

  The bias initializer sees only the bias shape, so fan_in is computed per layer by the caller.
  """
  if init == "flax":
    return {}
  if init == "torch":
    bound = 1.0 / math.sqrt(fan_in)
    return {"kernel_init": _uniform(bound), "bias_init": _uniform(bound)}
  raise ValueError(f"unknown init {init!r}; choose one of {INITS}")


def _flat_size(shape: Sequence[int]) -> int:
  size = 1
  for dim in shape:
    size *= dim
  return size


class MLP(nnx.Module):
  """flatten -> Dense 1024 -> ReLU -> Dense 1024 -> ReLU -> Dense num_classes."""

  def __init__(self, input_shape, num_classes, *, rngs: nnx.Rngs, hidden=(1024, 1024),
               init="flax"):
    sizes = [_flat_size(input_shape), *hidden]
    self.hidden = nnx.List(
        [nnx.Linear(a, b, rngs=rngs, **_layer_init(init, a))
         for a, b in zip(sizes[:-1], sizes[1:])])
    self.head = nnx.Linear(sizes[-1], num_classes, rngs=rngs, **_layer_init(init, sizes[-1]))

  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    for layer in self.hidden:
      x = nnx.relu(layer(x))
    return self.head(x)


def _pool(x):
  return nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))


class ConvNet(nnx.Module):
  """Blocks of 3x3 convolutions + ReLU, each block closed by 2x2 max-pooling, then a dense head.

  `blocks` lists each block's channel counts; `padding` is "VALID" (the MNIST CNN) or "SAME"
  (the VGG-style CIFAR network).
  """

  def __init__(self, input_shape, num_classes, *, rngs: nnx.Rngs, blocks, padding, hidden=1024,
               init="flax"):
    height, width, channels = input_shape
    convs = []
    for block in blocks:
      for features in block:
        convs.append(nnx.Conv(channels, features, kernel_size=(3, 3), padding=padding,
                              rngs=rngs, **_layer_init(init, channels * 3 * 3)))
        channels = features
        if padding == "VALID":
          height, width = height - 2, width - 2
      height, width = height // 2, width // 2
    if height < 1 or width < 1:
      raise ValueError(
          f"input shape {tuple(input_shape)} is too small for {len(blocks)} conv blocks "
          f"with {padding} padding")
    self.block_sizes = tuple(len(block) for block in blocks)
    self.convs = nnx.List(convs)
    flat = height * width * channels
    self.dense = nnx.Linear(flat, hidden, rngs=rngs, **_layer_init(init, flat))
    self.head = nnx.Linear(hidden, num_classes, rngs=rngs, **_layer_init(init, hidden))

  def __call__(self, x):
    layers = iter(self.convs)
    for size in self.block_sizes:
      for _ in range(size):
        x = nnx.relu(next(layers)(x))
      x = _pool(x)
    x = x.reshape(x.shape[0], -1)
    return self.head(nnx.relu(self.dense(x)))


def MnistCNN(input_shape, num_classes, *, rngs, init="flax"):
  """Conv64 x2 (VALID) -> pool -> Conv64 x2 -> pool -> Dense 1024 -> Dense num_classes."""
  return ConvNet(input_shape, num_classes, rngs=rngs, blocks=((64, 64), (64, 64)),
                 padding="VALID", init=init)


def CifarVGG(input_shape, num_classes, *, rngs, init="flax"):
  """[Conv64 x2, pool] [Conv128 x2, pool] [Conv256 x2, pool] (SAME) -> Dense 4096 -> head.

  The paper gives the convolutional blocks and leaves the dense part unsaid; its code's CifarNet
  has Linear(4096, 4096) -> ReLU -> Linear(4096, 10), which this follows.
  """
  return ConvNet(input_shape, num_classes, rngs=rngs,
                 blocks=((64, 64), (128, 128), (256, 256)), padding="SAME", hidden=4096,
                 init=init)


MODELS = {"mlp": MLP, "cnn": MnistCNN, "vgg": CifarVGG}


@dataclasses.dataclass(frozen=True)
class Model:
  """A model split into a pure function and its parameters.

  `apply(params, images) -> logits` is pure and jittable; `params` is a nested dict of arrays.
  """
  apply: Callable
  params: dict


def create_model(name: str, input_shape, num_classes: int, seed: int, init: str = "flax") -> Model:
  """Builds the registered model `name` for NHWC inputs of `input_shape` (H, W, C), with its
  parameters drawn by the initialisation `init` (one of INITS) from `seed`."""
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
  module = MODELS[name](tuple(input_shape), num_classes, rngs=nnx.Rngs(seed), init=init)
  graphdef, state = nnx.split(module)

  def apply(params, images):
    return nnx.merge(graphdef, nnx.State(params))(images)

  return Model(apply=apply, params=nnx.to_pure_dict(state))


def num_params(params) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(params))

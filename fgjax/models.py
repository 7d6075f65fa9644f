"""The paper's three networks as Flax NNX modules, and a registry from name to module.

NNX, because its modules are plain Python objects that `nnx.split` turns into a graph definition
and a parameter pytree: the estimators then see an ordinary dict of arrays, and `model_fn` rebuilds
the module inside compiled code at no run-time cost.

Inputs are NHWC float images; the input shape comes from the dataset, so each model trains on any
image size its layers allow.
"""

import dataclasses
from typing import Callable, Sequence

import jax
from flax import nnx


def _flat_size(shape: Sequence[int]) -> int:
  size = 1
  for dim in shape:
    size *= dim
  return size


class MLP(nnx.Module):
  """flatten -> Dense 1024 -> ReLU -> Dense 1024 -> ReLU -> Dense num_classes."""

  def __init__(self, input_shape, num_classes, *, rngs: nnx.Rngs, hidden=(1024, 1024)):
    sizes = [_flat_size(input_shape), *hidden]
    self.hidden = nnx.List(
        [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
    self.head = nnx.Linear(sizes[-1], num_classes, rngs=rngs)

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

  def __init__(self, input_shape, num_classes, *, rngs: nnx.Rngs, blocks, padding, hidden=1024):
    height, width, channels = input_shape
    convs = []
    for block in blocks:
      for features in block:
        convs.append(nnx.Conv(channels, features, kernel_size=(3, 3), padding=padding,
                              rngs=rngs))
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
    self.dense = nnx.Linear(height * width * channels, hidden, rngs=rngs)
    self.head = nnx.Linear(hidden, num_classes, rngs=rngs)

  def __call__(self, x):
    layers = iter(self.convs)
    for size in self.block_sizes:
      for _ in range(size):
        x = nnx.relu(next(layers)(x))
      x = _pool(x)
    x = x.reshape(x.shape[0], -1)
    return self.head(nnx.relu(self.dense(x)))


def MnistCNN(input_shape, num_classes, *, rngs):
  """Conv64 x2 (VALID) -> pool -> Conv64 x2 -> pool -> Dense 1024 -> Dense num_classes."""
  return ConvNet(input_shape, num_classes, rngs=rngs, blocks=((64, 64), (64, 64)),
                 padding="VALID")


def CifarVGG(input_shape, num_classes, *, rngs):
  """[Conv64 x2, pool] [Conv128 x2, pool] [Conv256 x2, pool] (SAME) -> Dense 1024 -> head.

  The paper gives the convolutional blocks; the dense head is our choice (it leaves it unsaid).
  """
  return ConvNet(input_shape, num_classes, rngs=rngs,
                 blocks=((64, 64), (128, 128), (256, 256)), padding="SAME")


MODELS = {"mlp": MLP, "cnn": MnistCNN, "vgg": CifarVGG}


@dataclasses.dataclass(frozen=True)
class Model:
  """A model split into a pure function and its parameters.

  `apply(params, images) -> logits` is pure and jittable; `params` is a nested dict of arrays.
  """
  apply: Callable
  params: dict


def create_model(name: str, input_shape, num_classes: int, seed: int) -> Model:
  """Builds the registered model `name` for NHWC inputs of `input_shape` (H, W, C)."""
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
  module = MODELS[name](tuple(input_shape), num_classes, rngs=nnx.Rngs(seed))
  graphdef, state = nnx.split(module)

  def apply(params, images):
    return nnx.merge(graphdef, nnx.State(params))(images)

  return Model(apply=apply, params=nnx.to_pure_dict(state))


def num_params(params) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(params))

"""The paper's three networks as Flax NNX modules, and a registry from name to module.

NNX, because its modules are plain Python objects that `nnx.split` turns into a graph definition
and a parameter pytree: the estimators then see an ordinary dict of arrays, and `model_fn` rebuilds
the module inside compiled code at no run-time cost.

Inputs are NHWC float images; the input shape comes from the dataset, so each model trains on any
image size its layers allow.

Every model is a sequence of blocks (`_Network`): besides `__call__` (the logits), its
`perturbed` method adds perturbations to the pre-activations of every Dense and Conv layer and
can stop gradients between blocks and at every layer's input, which is what activity
perturbation needs (`fgjax.estimators.activity_gradient`). With `local_heads`, every block but
the last also gets a linear classifier of its own, for local losses.

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


def _linear(fan_in: int, features: int, rngs: nnx.Rngs, init: str) -> nnx.Linear:
  return nnx.Linear(fan_in, features, rngs=rngs, **_layer_init(init, fan_in))


class GroupedLinear(nnx.Module):
  """G linear classifiers side by side, the g-th reading only the g-th of G contiguous, equal
  slices of the input's last axis: (B, D) -> (B, G * C), classifier g's C outputs at
  [g C, (g + 1) C). A group-wise local head: each group of a block's units gets a loss of its
  own, which only those units affect (`fgjax.estimators.activity_gradient` then takes one
  derivative per group from a single jvp). Initialised as G separate (D / G)-input layers."""

  def __init__(self, in_features: int, out_features: int, groups: int, *, rngs: nnx.Rngs,
               init: str):
    if groups < 1 or in_features % groups:
      raise ValueError(f"local_groups={groups} must divide the {in_features} units a local "
                       "head reads")
    fan_in = in_features // groups
    bound = 1.0 / math.sqrt(fan_in)
    kernel_init = (_uniform(bound) if init == "torch"
                   else nnx.initializers.lecun_normal(batch_axis=(0,)))
    bias_init = _uniform(bound) if init == "torch" else nnx.initializers.zeros_init()
    _layer_init(init, fan_in)  # rejects an unknown init
    self.groups = groups
    self.kernel = nnx.Param(kernel_init(rngs.params(), (groups, fan_in, out_features)))
    self.bias = nnx.Param(bias_init(rngs.params(), (groups * out_features,)))

  def __call__(self, x):
    grouped = x.reshape(x.shape[0], self.groups, -1)
    out = jnp.einsum("bgi,gio->bgo", grouped, self.kernel[...])
    return out.reshape(x.shape[0], -1) + self.bias[...]


# How a block's local head serves G > 1 unit groups (`local_groups`): "separate" classifiers,
# one per group reading only its own units (GroupedLinear), or one "shared" classifier reading
# all the block's units, whose loss each group takes as its own with every other group's units
# held fixed (Ren et al.'s concatenated groups under one head).
LOCAL_GROUP_HEADS = ("separate", "shared")
# Where local losses sit: one per block of the model (a ConvNet block holds several conv layers),
# or one per layer with parameters (every layer its own block, so group-wise local losses apply).
LOCAL_LOSS_PER = ("block", "layer")


def _local_head(features: int, num_classes: int, groups: int, group_head: str,
                rngs: nnx.Rngs, init: str):
  """A block's local classifier: one linear layer (shared by the G groups, if any), or G side by
  side (GroupedLinear)."""
  if group_head not in LOCAL_GROUP_HEADS:
    raise ValueError(f"unknown local_group_head {group_head!r}; choose one of "
                     f"{LOCAL_GROUP_HEADS}")
  if groups == 1 or group_head == "shared":
    if features % groups:
      raise ValueError(f"local_groups={groups} must divide the {features} units a local head "
                       "reads")
    return _linear(features, num_classes, rngs, init)
  return GroupedLinear(features, num_classes, groups, rngs=rngs, init=init)


def _group_contributions(head_input, kernel, groups: int):
  """(B, G, C): each of G contiguous, equal slices of a shared head's (B, D) input times its
  rows of the (D, C) kernel, the kernel held fixed: group g's share of the logits, which moves
  with the group's units alone (the losses of `losses.per_group_losses`)."""
  sliced = head_input.reshape(head_input.shape[0], groups, -1)
  kernel = jax.lax.stop_gradient(kernel).reshape(groups, -1, kernel.shape[-1])
  return jnp.einsum("bgi,gic->bgc", sliced, kernel)


def _flatten(x):
  return x.reshape(x.shape[0], -1)


def _pool(x):
  """2x2 max-pooling with stride 2 (an odd last row or column dropped, as VALID pooling does),
  written as a max over a reshape: XLA differentiates it elementwise, where `reduce_window`'s
  gradient (select-and-scatter) is slow on CPU. Both agree in value, gradient and jvp."""
  batch, height, width, channels = x.shape
  x = x[:, :height // 2 * 2, :width // 2 * 2]
  return x.reshape(batch, height // 2, 2, width // 2, 2, channels).max(axis=(2, 4))


def _patch_grid(x, patches: int):
  """A feature map (B, H, W, C) viewed as (B, patch row, H / P, patch column, W / P, C)."""
  batch, height, width, channels = x.shape
  return x.reshape(batch, patches, height // patches, patches, width // patches, channels)


def _local_head_input(x, patches: int):
  """What a block's local classifier reads: a dense block's output, or a conv block's output
  averaged over each of patches x patches equal spatial patches (a classifier per block stays
  small), (B, P * P * C) in (patch row, patch column, channel) order."""
  if x.ndim == 2:
    return x
  return _patch_grid(x, patches).mean(axis=(2, 4)).reshape(x.shape[0], -1)


def _to_patch_major(z, patches: int):
  """A conv output (B, H, W, C) as (B, H / P, W / P, P * P * C): position (i, j) of patch
  (r, c) at [i, j, (r P + c) C + channel], so that the last axis orders its units as
  `_local_head_input` orders what it reads, and a slice of it is a slice of a head's input."""
  if patches == 1 or z.ndim != 4:
    return z
  batch, height, width, _ = z.shape
  return _patch_grid(z, patches).transpose(0, 2, 4, 1, 3, 5).reshape(
      batch, height // patches, width // patches, -1)


def _from_patch_major(z, patches: int):
  """The inverse of `_to_patch_major`."""
  if patches == 1 or z.ndim != 4:
    return z
  batch, rows, columns, units = z.shape
  grid = z.reshape(batch, rows, columns, patches, patches, units // (patches * patches))
  return grid.transpose(0, 3, 1, 4, 2, 5).reshape(batch, patches * rows, patches * columns, -1)


class _Network(nnx.Module):
  """A classifier made of blocks, each a list of steps: a layer (nnx.Linear or nnx.Conv, whose
  output z is a perturbation point) or a parameter-free function (ReLU, pooling, flattening).
  The last block ends with the model's head. Subclasses build `self.local_heads` (an nnx.List of
  local classifiers, one per block but the last, or None), `self.local_groups` and
  `self.local_head_patches`, and list their blocks in `_blocks()`.

  Perturbations are an explicit argument of `perturbed` rather than flax's `Module.perturb`:
  that one works through variables a capturing call creates inside the module's state, shaped by
  the batch, and flax documents it for reading gradients while debugging. Here the estimator
  needs a pure function of (params, images, perturbations), one it takes `jax.jvp` of, and the
  stop-gradient at every layer's input for its local weight gradients, which perturb lacks.
  """

  def __call__(self, x):
    return self.perturbed(x)[0][-1]

  def perturbed(self, x, perturbations=None, stop_inputs=False, local=False):
    """`(logits, activations)` of images `x`.

    `activations` lists groups of pre-activations z (every Dense and Conv output, before its
    nonlinearity), `perturbations` (None, or arrays in that structure) added to them, and
    `logits` holds the logits whose loss belongs to each group, the model's own last. Without
    `local`: one group, all layers, and the model's logits. With `local`: one group per block,
    each block's input stop-gradiented; the groups of all blocks but the last end with their
    local head, whose logits come first in `logits`: (B, C), or (B, G, C) for a group-wise head
    of G classifiers (`local_groups`), whose activation is its (B, G * C) output. A head shared
    by G unit groups is a group of its own, after its block's: the block's logits are then the
    pair (head logits, each group's contribution to them (B, G, C), `_group_contributions`),
    whose loss each group takes as its own (`losses.per_group_losses`), and the head's group
    has the (B, C) logits, moved by the head alone.
    `stop_inputs` stop-gradients every layer's input, so that a layer's z depends on the
    parameters through that layer alone. With local heads reading P x P patches
    (`local_head_patches` P > 1), a conv layer's z is listed and perturbed patch-major
    (`_to_patch_major`), so that the unit groups of its last axis are (patch, channel) groups.
    """
    if local and self.local_heads is None:
      raise ValueError("local losses need a model created with local_heads=True")
    given = iter(jax.tree.leaves(perturbations))  # in layer order
    blocks, logits, activations = self._blocks(), [], []

    def layer(module, x):
      inputs = jax.lax.stop_gradient(x) if stop_inputs else x
      z = _to_patch_major(module(inputs), self.local_head_patches)
      if perturbations is not None:
        z = z + next(given)
      activations[-1].append(z)
      return _from_patch_major(z, self.local_head_patches)

    for b, steps in enumerate(blocks):
      activations.append([])
      if local:
        x = jax.lax.stop_gradient(x)
      for step in steps:
        x = layer(step, x) if isinstance(step, (nnx.Linear, nnx.Conv)) else step(x)
      if local and b < len(blocks) - 1:
        head, head_input = self.local_heads[b], _local_head_input(x, self.local_head_patches)
        if self.local_groups > 1 and isinstance(head, nnx.Linear):  # shared by the groups
          activations.append([])  # the head's own group: its loss alone moves it
          out = layer(head, jax.lax.stop_gradient(head_input))
          logits += [(out, _group_contributions(head_input, head.kernel[...],
                                                self.local_groups)), out]
        else:
          out = layer(head, head_input)
          logits.append(out.reshape(out.shape[0], head.groups, -1)
                        if isinstance(head, GroupedLinear) else out)
    if not local:
      activations = [[z for group in activations for z in group]]
    return logits + [x], activations


class MLP(_Network):
  """flatten -> Dense 1024 -> ReLU -> Dense 1024 -> ReLU -> Dense num_classes.

  Blocks: each hidden Dense + ReLU, then the head; being one layer each, they are the same
  whether local losses sit per block or per layer."""

  def __init__(self, input_shape, num_classes, *, rngs: nnx.Rngs, hidden=(1024, 1024),
               init="flax", local_heads=False, local_groups=1, local_group_head="separate",
               local_loss_per="block", local_head_patches=1):
    _check_local_loss_per(local_loss_per)
    if local_head_patches != 1:
      raise ValueError(f"local_head_patches={local_head_patches} splits conv feature maps into "
                       "patches; the MLP has none (leave it 1)")
    self.local_head_patches = 1
    sizes = [_flat_size(input_shape), *hidden]
    self.hidden = nnx.List([_linear(a, b, rngs, init) for a, b in zip(sizes[:-1], sizes[1:])])
    self.head = _linear(sizes[-1], num_classes, rngs, init)
    self.local_groups = local_groups
    self.local_heads = nnx.List([
        _local_head(size, num_classes, local_groups, local_group_head, rngs, init)
        for size in hidden]) if local_heads else None

  def _blocks(self):
    blocks = [[layer, nnx.relu] for layer in self.hidden] + [[self.head]]
    return [[_flatten] + blocks[0]] + blocks[1:]


class ConvNet(_Network):
  """Blocks of 3x3 convolutions + ReLU, each block closed by 2x2 max-pooling, then a dense head.

  `blocks` lists each block's channel counts; `padding` is "VALID" (the MNIST CNN) or "SAME"
  (the VGG-style CIFAR network). The dense layer and the head form the last block.
  With local losses per layer (`local_loss_per="layer"`), every conv layer (its ReLU, and the
  pooling that closes its block) and the dense layer (its ReLU) are blocks of their own, each
  with a local head, and the head is the last block alone. A conv block's local head reads its
  output averaged over the whole map, or over each of P x P equal patches
  (`local_head_patches`): P * P * channels inputs, so the head sees where features are, and
  group-wise losses can give each (patch, channel) group a derivative of its own.
  """

  def __init__(self, input_shape, num_classes, *, rngs: nnx.Rngs, blocks, padding, hidden=1024,
               init="flax", local_heads=False, local_groups=1, local_group_head="separate",
               local_loss_per="block", local_head_patches=1):
    _check_local_loss_per(local_loss_per)
    self.per_layer = local_heads and local_loss_per == "layer"
    if (local_heads and local_groups > 1 and not self.per_layer
        and any(len(block) > 1 for block in blocks)):
      raise ValueError(f"local_groups={local_groups} needs blocks of one layer: a block's earlier "
                       "layers would feed every group's loss; this network's blocks have "
                       f"{max(len(block) for block in blocks)} conv layers (local_loss_per="
                       "'layer' gives every layer a local loss of its own)")
    height, width, channels = input_shape
    convs, maps = [], []  # maps: each conv output's (H, W), and whether pooling follows
    for block in blocks:
      for i, features in enumerate(block):
        convs.append(nnx.Conv(channels, features, kernel_size=(3, 3), padding=padding,
                              rngs=rngs, **_layer_init(init, channels * 3 * 3)))
        channels = features
        if padding == "VALID":
          height, width = height - 2, width - 2
        maps.append((height, width, i == len(block) - 1))
      height, width = height // 2, width // 2
    if height < 1 or width < 1:
      raise ValueError(
          f"input shape {tuple(input_shape)} is too small for {len(blocks)} conv blocks "
          f"with {padding} padding")
    if local_heads:
      _check_patches(local_head_patches, maps)
    self.local_head_patches = local_head_patches if local_heads else 1
    self.block_sizes = tuple(len(block) for block in blocks)
    self.convs = nnx.List(convs)
    self.dense = _linear(height * width * channels, hidden, rngs, init)
    self.head = _linear(hidden, num_classes, rngs, init)
    self.local_groups = local_groups
    area = self.local_head_patches ** 2
    head_features = ([area * features for block in blocks for features in block] + [hidden]
                     if self.per_layer else [area * block[-1] for block in blocks])
    self.local_heads = nnx.List([
        _local_head(features, num_classes, local_groups, local_group_head, rngs, init)
        for features in head_features]) if local_heads else None

  def _blocks(self):
    convs, blocks = list(self.convs), []
    for size in self.block_sizes:
      block, convs = convs[:size], convs[size:]
      layers = [[conv, nnx.relu] for conv in block]
      layers[-1].append(_pool)
      blocks += layers if self.per_layer else [[step for steps in layers for step in steps]]
    dense = [_flatten, self.dense, nnx.relu]
    return blocks + ([dense, [self.head]] if self.per_layer else [dense + [self.head]])


def _check_patches(patches: int, maps) -> None:
  """Raises unless P x P equal patches tile every conv output map of `maps` ((H, W, pooled)
  each) and, where 2x2 pooling follows, the pooled map along the same lines: each unit then
  reaches only its own patch's part of a local head's input."""
  if not isinstance(patches, int) or patches < 1:
    raise ValueError(f"local_head_patches must be a positive integer, got {patches!r}")
  tiled = lambda size, pooled: size % (2 * patches if pooled else patches) == 0
  if not all(tiled(height, pooled) and tiled(width, pooled) for height, width, pooled in maps):
    raise ValueError(
        f"local_head_patches={patches} does not split this network's conv output maps "
        f"{[(height, width) for height, width, _ in maps]} into equal patches (pooled maps "
        "too); choose a divisor of every size")


def _check_local_loss_per(local_loss_per: str):
  if local_loss_per not in LOCAL_LOSS_PER:
    raise ValueError(f"unknown local_loss_per {local_loss_per!r}; choose one of "
                     f"{LOCAL_LOSS_PER}")


def MnistCNN(input_shape, num_classes, *, rngs, **options):
  """Conv64 x2 (VALID) -> pool -> Conv64 x2 -> pool -> Dense 1024 -> Dense num_classes."""
  return ConvNet(input_shape, num_classes, rngs=rngs, blocks=((64, 64), (64, 64)),
                 padding="VALID", **options)


def CifarVGG(input_shape, num_classes, *, rngs, **options):
  """[Conv64 x2, pool] [Conv128 x2, pool] [Conv256 x2, pool] (SAME) -> Dense 4096 -> head.

  The paper gives the convolutional blocks and leaves the dense part unsaid; its code's CifarNet
  has Linear(4096, 4096) -> ReLU -> Linear(4096, 10), which this follows.
  """
  return ConvNet(input_shape, num_classes, rngs=rngs,
                 blocks=((64, 64), (128, 128), (256, 256)), padding="SAME", hidden=4096,
                 **options)


MODELS = {"mlp": MLP, "cnn": MnistCNN, "vgg": CifarVGG}


@dataclasses.dataclass(frozen=True)
class Model:
  """A model split into pure functions and its parameters.

  `apply(params, images) -> logits` is pure and jittable; `params` is a nested dict of arrays.
  `perturbed(params, images, perturbations=None, stop_inputs=False, local=False) ->
  (logits, activations)` is `_Network.perturbed`, what the activity estimators differentiate.
  """
  apply: Callable
  params: dict
  perturbed: Callable


def split(module: nnx.Module) -> Model:
  """The Model of an NNX module of this file: its functions rebuild it from `params` when
  traced, at no run-time cost."""
  graphdef, state = nnx.split(module)
  merge = lambda params: nnx.merge(graphdef, nnx.State(params))
  return Model(apply=lambda params, images: merge(params)(images),
               params=nnx.to_pure_dict(state),
               perturbed=lambda params, images, *mode: merge(params).perturbed(images, *mode))


def create_model(name: str, input_shape, num_classes: int, seed: int, init: str = "flax",
                 local_heads: bool = False, local_groups: int = 1,
                 local_group_head: str = "separate", local_loss_per: str = "block",
                 local_head_patches: int = 1) -> Model:
  """Builds the registered model `name` for NHWC inputs of `input_shape` (H, W, C), with its
  parameters drawn by the initialisation `init` (one of INITS) from `seed`. `local_heads` adds a
  linear classifier to every block but the last (params["local_heads"]), for local losses; the
  other parameters stay those of the same seed without it. `local_groups` G > 1 makes each a
  group-wise head for blocks of one layer: G classifiers, each reading its own 1/G of the block's
  units (GroupedLinear), or, with `local_group_head="shared"`, one classifier whose loss each
  group takes as its own (the parameters those of the same seed with local_groups=1).
  `local_loss_per="layer"` puts a local head after every layer with parameters instead of every
  block (one of LOCAL_LOSS_PER; the CNNs' blocks hold two conv layers, the MLP's one).
  `local_head_patches` P > 1 has a conv block's local head read its output averaged over each of
  P x P patches instead of the whole map (conv nets only)."""
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
  return split(MODELS[name](tuple(input_shape), num_classes, rngs=nnx.Rngs(seed), init=init,
                            local_heads=local_heads, local_groups=local_groups,
                            local_group_head=local_group_head,
                            local_loss_per=local_loss_per,
                            local_head_patches=local_head_patches))


def num_params(params) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(params))

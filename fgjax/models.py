"""The paper's three networks as Flax NNX modules, and a registry from name to module.

NNX, because its modules are plain Python objects that `nnx.split` turns into a graph definition
and a parameter pytree: the estimators then see an ordinary dict of arrays, and `split` rebuilds
the module inside compiled code at no run-time cost. Inputs are NHWC float images of any size the
layers allow. Every model is a sequence of blocks (`_Network`), optionally with a local classifier
after each block but the last (`LocalHeads`), for local losses.
"""

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from fgjax import losses

# "flax": Flax's default, lecun-normal weights and zero biases. "torch": PyTorch's default for
# nn.Linear and nn.Conv2d, which the paper's code used: weights and biases U(-1/sqrt(fan_in),
# 1/sqrt(fan_in)).
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


def _linear(fan_in: int, features: int, rngs: nnx.Rngs, init: str) -> nnx.Linear:
  return nnx.Linear(fan_in, features, rngs=rngs, **_layer_init(init, fan_in))


class SlicedLinear(nnx.Module):
  """S linear classifiers side by side, the s-th reading only the s-th of S contiguous, equal
  slices of the input's last axis: (B, D) -> (B, S * C), classifier s's C outputs at
  [s C, (s + 1) C). A local head with a loss per slice of a block's units, which only those
  units affect (`fgjax.estimators.activity_gradient` then takes one derivative per slice from a
  single jvp). Initialised as S separate (D / S)-input layers."""

  def __init__(self, in_features: int, out_features: int, slices: int, *, rngs: nnx.Rngs,
               init: str):
    fan_in = in_features // slices
    inits = {"kernel_init": nnx.initializers.lecun_normal(batch_axis=(0,)),  # flax's, per slice
             "bias_init": nnx.initializers.zeros_init(), **_layer_init(init, fan_in)}
    self.slices = slices
    self.kernel = nnx.Param(inits["kernel_init"](rngs.params(), (slices, fan_in, out_features)))
    self.bias = nnx.Param(inits["bias_init"](rngs.params(), (slices * out_features,)))

  def __call__(self, x):
    sliced = x.reshape(x.shape[0], self.slices, -1)
    out = jnp.einsum("bsi,sio->bso", sliced, self.kernel[...])
    return out.reshape(x.shape[0], -1) + self.bias[...]


# The choices of LocalHeads.slice_head and .loss_per (`config.local_heads` says what they do).
SLICE_HEADS = (losses.Kind.SLICE_CLASSIFIERS.value, losses.Kind.SHARED_HEAD.value)
LOSS_PER = ("block", "layer")


@dataclasses.dataclass(frozen=True)
class LocalHeads:
  """A model's local heads, a linear classifier after every block but the last, for local
  losses: the fields of `config.local_heads`, whose comments say what each does."""
  slices: int = 1
  slice_head: str = "separate"
  loss_per: str = "block"
  patches: int = 1

  def __post_init__(self):
    for name, value, choices in (("slice_head", self.slice_head, SLICE_HEADS),
                                 ("loss_per", self.loss_per, LOSS_PER)):
      if value not in choices:
        raise ValueError(f"unknown local_heads.{name} {value!r}; choose one of {choices}")
    for name, value in (("slices", self.slices), ("patches", self.patches)):
      if not isinstance(value, int) or value < 0:
        raise ValueError(f"local_heads.{name} must be an integer >= 0, got {value!r}")

  @property
  def kind(self) -> losses.Kind:
    """The kind of the loss block each local head closes (named by slice_head, if S != 1)."""
    return losses.Kind(self.slice_head) if self.slices != 1 else losses.Kind.PLAIN

  def slices_of(self, features: int) -> int:
    """How many slices a head reading `features` units splits them into: S, or with S = 0 one
    per unit."""
    return self.slices or features


def _local_head(features: int, num_classes: int, local_heads: LocalHeads, rngs: nnx.Rngs,
                init: str):
  """A block's local classifier: one linear layer (shared by the S slices, if any), or S side by
  side (SlicedLinear)."""
  slices = local_heads.slices_of(features)
  if features % slices:
    raise ValueError(f"local_heads.slices={slices} must divide the {features} "
                     "units a local head reads")
  if local_heads.kind is losses.Kind.SLICE_CLASSIFIERS:
    return SlicedLinear(features, num_classes, slices, rngs=rngs, init=init)
  return _linear(features, num_classes, rngs, init)


def _slice_inputs(head_input, kernel, slices: int):
  """A shared head's (B, D) input cut into S contiguous, equal slices, (B, S, D / S), and its
  (D, C) kernel's rows by slice, (S, D / S, C), held fixed: what `losses.per_slice_losses`
  reads, each slice's loss moved by its units alone."""
  sliced = head_input.reshape(head_input.shape[0], slices, -1)
  return sliced, jax.lax.stop_gradient(kernel).reshape(slices, -1, kernel.shape[-1])


def add_bias(y, bias):
  """`y + bias` over y's last axis, the bias added as the product of a column of ones and the
  bias row. Autodiff then sums the bias's gradient over the other axes as that product's
  transpose, a matrix product, where the broadcast's transpose is a reduction over every axis
  but the last: on XLA:CPU several times slower for a conv layer's output (benchmarks/README.md,
  "Conv nets on CPU"). Forward and jvp cost the same either way, and at the highest precision
  the product is exact on every backend."""
  ones = jnp.ones((y.size // y.shape[-1], 1), y.dtype)
  return y + jnp.matmul(ones, bias[None], precision=jax.lax.Precision.HIGHEST).reshape(y.shape)


def _conv(conv: nnx.Conv, x):
  """`conv(x)` for the ConvNet's convolutions (stride 1, a padding name), its bias added by
  `add_bias`."""
  y = jax.lax.conv_general_dilated(x, conv.kernel[...], (1, 1), conv.padding,
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return add_bias(y, conv.bias[...])


def _flatten(x):
  return x.reshape(x.shape[0], -1)


def _pool(x):
  """2x2 max-pooling with stride 2 (an odd last row or column dropped, as VALID pooling does),
  written as a max over a reshape: XLA differentiates it elementwise, where `reduce_window`'s
  gradient (select-and-scatter) is slow on CPU. Both agree in value, gradient and jvp."""
  batch, height, width, channels = x.shape
  x = x[:, :height // 2 * 2, :width // 2 * 2]
  return x.reshape(batch, height // 2, 2, width // 2, 2, channels).max(axis=(2, 4))


def _patch_grid(x, grid):
  """A feature map (B, H, W, C) cut into a grid of (rows, columns) equal patches, viewed as
  (B, patch row, H / rows, patch column, W / columns, C)."""
  batch, height, width, channels = x.shape
  rows, columns = grid
  return x.reshape(batch, rows, height // rows, columns, width // columns, channels)


def _local_head_input(x, grid):
  """What a block's local classifier reads: a dense block's output, or a conv block's output
  averaged over each patch of its patch grid (a classifier per block stays small),
  (B, rows * columns * C) in (patch row, patch column, channel) order."""
  if x.ndim == 2:
    return x
  return _patch_grid(x, grid).mean(axis=(2, 4)).reshape(x.shape[0], -1)


def _to_patch_major(z, grid):
  """A conv output (B, H, W, C) as (B, H / rows, W / columns, rows * columns * C): position
  (i, j) of patch (r, c) at [i, j, (r columns + c) C + channel], so that the last axis orders
  its units as `_local_head_input` orders what it reads, and a slice of it is a slice of a
  head's input."""
  if grid == (1, 1) or z.ndim != 4:
    return z
  batch, height, width, _ = z.shape
  rows, columns = grid
  return _patch_grid(z, grid).transpose(0, 2, 4, 1, 3, 5).reshape(
      batch, height // rows, width // columns, -1)


def _from_patch_major(z, grid):
  """The inverse of `_to_patch_major`."""
  if grid == (1, 1) or z.ndim != 4:
    return z
  batch, height, width, units = z.shape
  rows, columns = grid
  z = z.reshape(batch, height, width, rows, columns, units // (rows * columns))
  return z.transpose(0, 3, 1, 4, 2, 5).reshape(batch, rows * height, columns * width, -1)


class _Network(nnx.Module):
  """A classifier made of blocks, each a list of steps: a layer (nnx.Linear or nnx.Conv, whose
  output z is a perturbation point) or a parameter-free function (ReLU, pooling, flattening).
  The last block ends with the model's head. Subclasses set `self.local` (their LocalHeads, or
  None), `self.patch_grids` (each conv layer's patch grid, `ConvNet`; none in an MLP) and
  `self.local_heads` (an nnx.List of local classifiers, one per block but the last, or None),
  and list their blocks in `_blocks()`.

  Perturbations are an explicit argument of `perturbed` rather than flax's `Module.perturb`:
  that one works through variables a capturing call creates inside the module's state, shaped by
  the batch, and flax documents it for reading gradients while debugging. Here the estimator
  needs a pure function of (params, images, perturbations), one it takes `jax.jvp` of, and the
  stop-gradient at every layer's input for its local weight gradients, which perturb lacks.
  """

  def __call__(self, x):
    return self.perturbed(x)[0][-1].value

  def perturbed(self, x, perturbations=None, stop_inputs=False, local=False):
    """`(logits, activations)` of images `x`.

    `activations` lists loss blocks, each a list of pre-activations z (every Dense and Conv
    output, before its nonlinearity), `perturbations` (None, or arrays in that structure) added
    to them; `logits` holds each loss block's logits, a `losses.Block` of `LocalHeads.kind`,
    the model's own last. Without `local`: one loss block, all layers. With `local`: one per
    block, its input stop-gradiented, closed by its local head (the last by the model's head).
    A head shared by S slices is a loss block of its own, after its block's, whose logits are
    (head logits, its input and kernel by slice, `_slice_inputs`). Every other loss block's
    last pre-activations are the logits of its loss (what `exact_heads` reads). `stop_inputs`
    stop-gradients every layer's input, so that a layer's z depends on the parameters through
    that layer alone. With heads reading patches, a conv layer's z is listed patch-major
    (`_to_patch_major`), so that the slices of its last axis are (patch, channel).
    """
    if local and self.local_heads is None:
      raise ValueError("local losses need a model created with local heads")
    given = iter(jax.tree.leaves(perturbations))  # in layer order
    grids = iter(self.patch_grids)  # in conv layer order
    blocks, logits, activations, grid = self._blocks(), [], [], (1, 1)

    def layer(module, x, grid):
      inputs = jax.lax.stop_gradient(x) if stop_inputs else x
      z = _conv(module, inputs) if isinstance(module, nnx.Conv) else module(inputs)
      z = _to_patch_major(z, grid)
      if perturbations is not None:
        z = z + next(given)
      activations[-1].append(z)
      return _from_patch_major(z, grid)

    for b, steps in enumerate(blocks):
      activations.append([])
      if local:
        x = jax.lax.stop_gradient(x)
      for step in steps:
        if isinstance(step, nnx.Conv):
          grid = next(grids)
        x = layer(step, x, grid) if isinstance(step, (nnx.Linear, nnx.Conv)) else step(x)
      if local and b < len(blocks) - 1:
        head, head_input = self.local_heads[b], _local_head_input(x, grid)
        if self.local.kind is losses.Kind.SHARED_HEAD:
          activations.append([])  # the head's own loss block: its loss alone moves it
          out = layer(head, jax.lax.stop_gradient(head_input), grid)
          logits += [losses.Block(losses.Kind.SHARED_HEAD, (out, *_slice_inputs(
              head_input, head.kernel[...], self.local.slices_of(head_input.shape[-1])))),
                     losses.Block(losses.Kind.PLAIN, out)]
        else:
          out = layer(head, head_input, grid)
          if self.local.kind is losses.Kind.SLICE_CLASSIFIERS:
            out = out.reshape(out.shape[0], head.slices, -1)
          logits.append(losses.Block(self.local.kind, out))
    if not local:
      activations = [[z for block in activations for z in block]]
    return logits + [losses.Block(losses.Kind.PLAIN, x)], activations


class MLP(_Network):
  """flatten -> Dense 1024 -> ReLU -> Dense 1024 -> ReLU -> Dense num_classes.

  Blocks: each hidden Dense + ReLU, then the head; being one layer each, they are the same
  whether local losses sit per block or per layer."""

  def __init__(self, input_shape, num_classes, *, rngs: nnx.Rngs, hidden=(1024, 1024),
               init="flax", local_heads: LocalHeads | None = None):
    if local_heads and local_heads.patches != 1:
      raise ValueError(f"local_heads.patches={local_heads.patches} splits conv feature maps "
                       "into patches; the MLP has none (leave it 1)")
    sizes = [math.prod(input_shape), *hidden]
    self.hidden = nnx.List([_linear(a, b, rngs, init) for a, b in zip(sizes[:-1], sizes[1:])])
    self.head = _linear(sizes[-1], num_classes, rngs, init)
    self.local, self.patch_grids = local_heads, ()
    self.local_heads = nnx.List([_local_head(size, num_classes, local_heads, rngs, init)
                                 for size in hidden]) if local_heads else None

  def _blocks(self):
    blocks = [[layer, nnx.relu] for layer in self.hidden] + [[self.head]]
    return [[_flatten] + blocks[0]] + blocks[1:]


class ConvNet(_Network):
  """Blocks of 3x3 convolutions + ReLU, each block closed by 2x2 max-pooling, then a dense head.

  `blocks` lists each block's channel counts; `padding` is "VALID" (the MNIST CNN) or "SAME"
  (the VGG-style CIFAR network). The dense layer and the head form the last block.
  With local losses per layer (`LocalHeads.loss_per="layer"`), every conv layer (its ReLU, and
  the pooling that closes its block) and the dense layer (its ReLU) are blocks of their own,
  each with a local head, and the head is the last block alone. A conv block's local head reads
  its output averaged over P x P patches (`LocalHeads.patches`, `_local_head_input`; P = 0: a
  patch per position of the map it reads), so that it sees where features are and losses per
  slice can give each (patch, channel) its derivative.
  """

  def __init__(self, input_shape, num_classes, *, rngs: nnx.Rngs, blocks, padding, hidden=1024,
               init="flax", local_heads: LocalHeads | None = None):
    self.per_layer = bool(local_heads) and local_heads.loss_per == "layer"
    if (local_heads and local_heads.slices != 1 and not self.per_layer
        and any(len(block) > 1 for block in blocks)):
      raise ValueError(f"local_heads.slices={local_heads.slices} needs blocks of one layer: a "
                       "block's earlier layers would feed every slice's loss; this network's "
                       f"blocks have {max(len(block) for block in blocks)} conv layers "
                       "(local_heads.loss_per='layer' gives every layer a local loss of its own)")
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
    self.local = local_heads
    self.patch_grids = _patch_grids(local_heads.patches if local_heads else 1, maps)
    self.block_sizes = tuple(len(block) for block in blocks)
    self.convs = nnx.List(convs)
    self.dense = _linear(height * width * channels, hidden, rngs, init)
    self.head = _linear(hidden, num_classes, rngs, init)
    # What a head after each conv would read: its patch grid's cells times its channels.
    read = [rows * columns * conv.out_features
            for (rows, columns), conv in zip(self.patch_grids, convs)]
    head_features = (read + [hidden] if self.per_layer  # else after each block's last conv
                     else [n for n, (_, _, closes_block) in zip(read, maps) if closes_block])
    self.local_heads = nnx.List([_local_head(features, num_classes, local_heads, rngs, init)
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


def _patch_grids(patches: int, maps) -> tuple[tuple[int, int], ...]:
  """Each conv output map's patch grid, (rows, columns), for `maps` ((H, W, pooled) each): P x P
  patches, or with P = 0 one patch per position of the map a local head reads (the pooled map
  where 2x2 pooling follows). Raises unless the patches tile every map and, where pooling
  follows, the pooled map along the same lines: each unit then reaches only its own patch's
  part of a local head's input."""
  factor = lambda pooled: 2 if pooled else 1
  grids = [(height // factor(pooled), width // factor(pooled)) if patches == 0
           else (patches, patches) for height, width, pooled in maps]
  tiled = lambda size, parts, pooled: size % (factor(pooled) * parts) == 0
  if not all(tiled(height, rows, pooled) and tiled(width, columns, pooled)
             for (height, width, pooled), (rows, columns) in zip(maps, grids)):
    raise ValueError(
        f"local_heads.patches={patches} does not split this network's conv output maps "
        f"{[(height, width) for height, width, _ in maps]} into equal patches (pooled maps "
        "too); choose a divisor of every size" + (" (0: maps of even size where pooled)"
                                                   if patches == 0 else ""))
  return tuple(grids)


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
                 local_heads: LocalHeads | None = None) -> Model:
  """Builds the registered model `name` for NHWC inputs of `input_shape` (H, W, C), with its
  parameters drawn by the initialisation `init` (one of INITS) from `seed`. `local_heads` adds a
  linear classifier to every block but the last (params["local_heads"]), for local losses; the
  other parameters stay those of the same seed without it, and a shared head's those of the
  same seed with one slice."""
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
  return split(MODELS[name](tuple(input_shape), num_classes, rngs=nnx.Rngs(seed), init=init,
                            local_heads=local_heads))


def num_params(params) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(params))

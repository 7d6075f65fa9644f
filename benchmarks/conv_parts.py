"""Where a conv net's step spends its time on the CPU: each convolution's parts, in fgjax and in
PyTorch, side by side.

  pip install torch==2.13.0  # optional: only this benchmark and torch_compare need PyTorch
  python -m benchmarks.conv_parts --model cnn --json benchmarks/results/conv_parts_cnn.json

For every 3x3 convolution of the network (`--model cnn|vgg`, batch 64, random inputs shaped as
the layer sees them: the time does not depend on the values), the parts of a training step take
turns over `--repeats` rounds in one process, each part compiled on its own by
`fgjax.compilation.jit`:

- forward: the convolution with its bias (`fgjax.models.add_bias`), against
  `torch.nn.functional.conv2d`;
- input gradient and kernel gradient: `jax.vjp` of the convolution in that argument alone,
  against `torch.ops.aten.convolution_backward` asked for that gradient alone (the first layer's
  input gradient is left out: training never computes it);
- kernel gradient, patch product: the same gradient as one matrix product, the transpose of the
  layer's image patches (its input's 3 x 3 shifted views side by side on the channel axis, the
  im2col matrix) times the output gradient (checked equal to the first), against PyTorch's kernel
  gradient again;
- bias gradient: the output gradient summed over batch and positions, as autodiff gives it for
  fgjax's conv layers (the transpose of `add_bias`'s product) and for a bias added by
  broadcasting (a reduction over every axis but the last: nnx.Conv's own call), against the
  same sum in PyTorch.
"""

import statistics
import sys

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common

from fgjax import cli
from fgjax import compilation
from fgjax import models

try:
  import torch  # pylint: disable=g-import-not-at-top
except ImportError:
  print("error: benchmarks.conv_parts needs PyTorch, an optional benchmark dependency: "
        "pip install torch==2.13.0 (a CPU build)", file=sys.stderr)
  sys.exit(2)

BATCH = 64
FLAGS = flags.FLAGS
common.define_flags(model=False)
flags.DEFINE_enum("model", "cnn", sorted(common.CONV_NETS), "The conv net whose layers to time.")
flags.DEFINE_integer("repeats", 7, "Interleaved rounds.")
flags.DEFINE_integer("calls", 5, "Calls of each part per round.")


def _patch_product_kernel_gradient(x, grad, padding: str, kernel_shape):
  """A 3x3 convolution's kernel gradient as the patches' transpose times the output gradient."""
  if padding == "SAME":
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  height, width = grad.shape[1:3]
  patches = jnp.concatenate([x[:, i:i + height, j:j + width] for i in range(3) for j in range(3)],
                            axis=-1)
  features = grad.shape[-1]
  return jnp.dot(patches.reshape(-1, patches.shape[-1]).T,
                 grad.reshape(-1, features)).reshape(kernel_shape)


def _fgjax_parts(x, kernel, bias, padding: str, first: bool) -> dict:
  """`{part: call()}` of one convolution in fgjax, each blocking until done."""
  conv = lambda x, kernel: jax.lax.conv_general_dilated(
      x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
  y = conv(x, kernel)
  grad = jnp.ones_like(y)
  parts = {
      "forward": (lambda x, kernel, bias: models.add_bias(conv(x, kernel), bias), x, kernel, bias),
      "input gradient": (lambda x, kernel, g: jax.vjp(lambda x: conv(x, kernel), x)[1](g)[0],
                         x, kernel, grad),
      "kernel gradient": (lambda x, kernel, g: jax.vjp(lambda k: conv(x, k), kernel)[1](g)[0],
                          x, kernel, grad),
      "kernel gradient, patch product": (
          lambda x, kernel, g: _patch_product_kernel_gradient(x, g, padding, kernel.shape),
          x, kernel, grad),
      "bias gradient": (lambda y, bias, g: jax.vjp(
          lambda b: models.add_bias(y, b), bias)[1](g)[0], y, bias, grad),
      "bias gradient, broadcast": (lambda y, bias, g: jax.vjp(lambda b: y + b, bias)[1](g)[0],
                                   y, bias, grad)}
  if first:
    del parts["input gradient"]
  kernel_gradients = [compilation.jit(parts[name][0])(*parts[name][1:])
                      for name in ("kernel gradient", "kernel gradient, patch product")]
  np.testing.assert_allclose(*kernel_gradients, rtol=1e-4,
                             atol=1e-5 * float(jnp.abs(kernel_gradients[0]).max()))
  calls = {}
  for part, (function, *args) in parts.items():
    compiled = compilation.jit(function)
    calls[part] = lambda compiled=compiled, args=args: compiled(*args).block_until_ready()
  return calls


def _torch_parts(x, kernel, bias, padding: str, first: bool) -> dict:
  """`{part: call()}` of the same convolution in PyTorch (NCHW), the parts named as fgjax's."""
  x = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
  kernel = torch.from_numpy(np.asarray(kernel).transpose(3, 2, 0, 1).copy())
  bias = torch.from_numpy(np.array(bias))
  pad = 0 if padding == "VALID" else 1
  grad = torch.ones_like(torch.nn.functional.conv2d(x, kernel, bias, padding=pad))

  def backward(mask):
    return lambda: torch.ops.aten.convolution_backward(
        grad, x, kernel, [kernel.shape[0]], [1, 1], [pad, pad], [1, 1], False, [0, 0], 1, mask)

  calls = {"forward": lambda: torch.nn.functional.conv2d(x, kernel, bias, padding=pad),
           "input gradient": backward([True, False, False]),
           "kernel gradient": backward([False, True, False]),
           "bias gradient": lambda: grad.sum((0, 2, 3))}
  if first:
    del calls["input gradient"]
  return calls


def measure(model: str, repeats: int, calls_per_round: int) -> dict:
  _, padding, _ = common.CONV_NETS[model]
  calls, rng = {}, np.random.default_rng(0)
  layers = common.conv_layers(model)
  for index, (height, channels, features) in enumerate(layers):
    x = jnp.asarray(rng.standard_normal((BATCH, height, height, channels)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, channels, features)) / np.sqrt(9 * channels),
                         jnp.float32)
    bias = jnp.asarray(rng.standard_normal(features), jnp.float32)
    for side, parts in (("fgjax", _fgjax_parts), ("torch", _torch_parts)):
      for part, call in parts(x, kernel, bias, padding, index == 0).items():
        calls[index, part, side] = lambda call=call: [call() for _ in range(calls_per_round)]
  common.warm_up(calls)
  seconds = common.time_interleaved(calls, repeats)
  ms = {key: [1e3 * s / calls_per_round for s in values] for key, values in seconds.items()}
  rows = []
  for (index, part, side), values in ms.items():
    if side != "fgjax":
      continue
    height, channels, features = layers[index]
    torch_part = next((name for name in ("bias gradient", "kernel gradient")
                       if part.startswith(name)), part)
    torch_ms = ms[index, torch_part, "torch"]
    rows.append({"layer": index + 1, "shape": f"{height}x{height}x{channels} -> {features}",
                 "part": part, "fgjax_ms": statistics.median(values),
                 "torch_ms": statistics.median(torch_ms),
                 "fgjax_vs_torch": common.paired_ratio(values, torch_ms)})
  return {"model": model, "batch_size": BATCH, "repeats": repeats,
          "calls_per_round": calls_per_round,
          "machine": {**common.machine_info(), "torch": torch.__version__,
                      "torch_threads": torch.get_num_threads()},
          "rows": rows}


def format_table(report: dict) -> str:
  machine = report["machine"]
  lines = [f"{report['model']}, batch {report['batch_size']}: each convolution's parts, "
           f"{report['calls_per_round']} calls per round, medians of {report['repeats']} "
           "interleaved rounds",
           f"{common.machine_line(machine)}; torch {machine['torch']} with "
           f"{machine['torch_threads']} threads", ""]
  lines += common.markdown_table(
      ["layer", "input -> features", "part", "fgjax ms", "torch ms", "fgjax / torch"],
      [[str(row["layer"]), row["shape"], row["part"], f"{row['fgjax_ms']:.2f}",
        f"{row['torch_ms']:.2f}", f"{row['fgjax_vs_torch']:.2f}"] for row in report["rows"]],
      left=3)
  return "\n".join(lines)


def main(argv):
  del argv  # cli.run refuses positional arguments
  report = measure(FLAGS.model, FLAGS.repeats, FLAGS.calls)
  common.publish(report, format_table(report), FLAGS.json)


if __name__ == "__main__":
  cli.run(main)

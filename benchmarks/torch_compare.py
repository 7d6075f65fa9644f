"""fgjax's training steps against the same steps in PyTorch, on the CPU, with the machine's floor.

  pip install torch==2.13.0  # optional: only this benchmark needs PyTorch (a CPU build)
  python -m benchmarks.torch_compare --model cnn --json benchmarks/results/torch_compare_cnn.json

For one network (`--model mlp|cnn|vgg`, batch 64), four steps take turns over `--repeats` rounds
in one process: fgjax's backprop and forward-gradient steps (the package's own `make_train_step`:
K = 1, normal tangents, the derivative clipped to [-1, 1], SGD, the non-finite check; run as
training runs them: `--steps` per compiled `lax.scan` call where `programs.scans_well` says so,
else one jitted call per step), and the same two steps written as a user of the paper's stack
would in PyTorch (eager, oneDNN): `loss.backward()` with `torch.optim.SGD`, and `torch.func.jvp`
of `functional_call` along `torch.randn_like` tangents. Both see the same uint8 batches (PyTorch
in its native NCHW layout), normalised inside the step.

The floor is what the step's arithmetic costs at the machine's matrix-product speed, measured in
the same run: the network's multiply-adds per example (counted from its layer shapes), times 3
for backprop (forward, input gradient, weight gradient) and for a forward gradient (the primal
and the two tangent terms of every layer whose input has a tangent; 2 for the first layer), at
the best float32 speed of a 2048 x 2048 matrix product in XLA over the rounds.
"""

import statistics
import sys
import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common

from fgjax import cli
from fgjax import programs

try:
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  from torch.func import functional_call, jvp  # pylint: disable=g-import-not-at-top
except ImportError:
  print("error: benchmarks.torch_compare needs PyTorch, an optional benchmark dependency: "
        "pip install torch==2.13.0 (a CPU build)", file=sys.stderr)
  sys.exit(2)

LEARNING_RATE = 1e-4
JVP_CLIP = 1.0
DEFAULTS = {"mlp": (50, 10), "cnn": (5, 7), "vgg": (2, 5)}  # steps per sample, repeats
MATMUL_SIZE = 2048

FLAGS = flags.FLAGS
common.define_flags()
flags.DEFINE_integer("steps", None, "Steps per timed sample (default per model).")
flags.DEFINE_integer("repeats", None, "Interleaved rounds (default per model).")
flags.DEFINE_integer("torch_threads", 0,
                     "PyTorch's intra-op threads (0: its default, one per core).")


def torch_network(model: str) -> nn.Module:
  """The network of fgjax.models for `model`, in PyTorch (NCHW)."""
  if model == "mlp":
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024),
                         nn.ReLU(), nn.Linear(1024, 10))
  blocks, padding, hidden = common.CONV_NETS[model]
  convs, layers = iter(common.conv_layers(model)), []
  for block in blocks:
    for _, channels, features in (next(convs) for _ in block):
      layers += [nn.Conv2d(channels, features, 3, padding=padding.lower()), nn.ReLU()]
    layers.append(nn.MaxPool2d(2))
  height, _, features = common.conv_layers(model)[-1]
  side = (height - (2 if padding == "VALID" else 0)) // 2  # after the last conv and its pooling
  return nn.Sequential(*layers, nn.Flatten(), nn.Linear(side * side * features, hidden),
                       nn.ReLU(), nn.Linear(hidden, 10))


def multiply_adds(network: nn.Module, image_shape) -> tuple[int, int]:
  """`(all, first layer's)` multiply-adds of one example's forward pass through `network`."""
  counts, x = [], torch.zeros(1, image_shape[2], *image_shape[:2])
  for layer in network:
    y = layer(x)
    if isinstance(layer, nn.Conv2d):
      counts.append(y.numel() * layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1])
    elif isinstance(layer, nn.Linear):
      counts.append(layer.in_features * layer.out_features)
    x = y
  return sum(counts), counts[0]


def torch_steps(model: str, images: np.ndarray, labels: np.ndarray):
  """`(forward_gradient_step, backprop_step)`: PyTorch steps over batch i of the arrays."""
  torch.manual_seed(0)
  network = torch_network(model)
  params = {name: p.detach().clone() for name, p in network.named_parameters()}  # no autograd
  images = torch.from_numpy(images).permute(0, 1, 4, 2, 3).contiguous()  # NCHW
  labels = torch.from_numpy(labels).long()

  def loss_fn(params, x, y):
    logits = functional_call(network, params, ((x.float() - 127.5) / 64.0,))
    return nn.functional.cross_entropy(logits, y)

  def forward_gradient_step(i):
    x, y = images[i], labels[i]
    tangents = {name: torch.randn_like(p) for name, p in params.items()}
    loss, derivative = jvp(lambda p: loss_fn(p, x, y), (params,), (tangents,))
    derivative = derivative.clamp(-JVP_CLIP, JVP_CLIP)
    for name, p in params.items():
      p.sub_(LEARNING_RATE * derivative * tangents[name])
    return loss

  optimizer = torch.optim.SGD(network.parameters(), lr=LEARNING_RATE)

  def backprop_step(i):
    optimizer.zero_grad()
    loss = loss_fn(dict(network.named_parameters()), images[i], labels[i])
    loss.backward()
    optimizer.step()
    return loss

  return forward_gradient_step, backprop_step


def _matmul_call():
  """`call()`: one float32 MATMUL_SIZE^2 matrix product in XLA, blocking."""
  a = jax.random.normal(jax.random.PRNGKey(0), (MATMUL_SIZE, MATMUL_SIZE))
  product = jax.jit(lambda a: a @ a)
  return lambda: product(a).block_until_ready()


def measure(model: str, steps: int, repeats: int, torch_threads: int) -> dict:
  if torch_threads:
    torch.set_num_threads(torch_threads)
  images, labels = common.synthetic_batches(model, steps, 64)
  np_images, np_labels = np.array(images), np.array(labels)  # writable copies for torch
  mode = "scan" if programs.scans_well(model) else "jit"
  calls = {}
  for name, estimator in (("fgjax forward gradient", "forward"), ("fgjax backprop", "backprop")):
    train_step, state = common.build(model, common.step_config(model, estimator))
    run, held = common.make_runner(train_step, mode), {"state": state}

    def call(run=run, held=held):
      held["state"], losses = run(held["state"], images, labels)
      jnp.asarray(losses).block_until_ready()

    calls[name] = call
  fg_step, bp_step = torch_steps(model, np_images, np_labels)
  calls["torch forward gradient"] = lambda: [fg_step(i) for i in range(steps)]
  calls["torch backprop"] = lambda: [bp_step(i) for i in range(steps)]
  calls["matmul"] = _matmul_call()
  common.warm_up(calls)
  start = time.perf_counter()
  seconds = common.time_interleaved(calls, repeats)
  matmul_seconds = seconds.pop("matmul")
  ms = {name: [1e3 * s / steps for s in values] for name, values in seconds.items()}
  flops_per_second = 2 * MATMUL_SIZE ** 3 / min(matmul_seconds)
  total, first = multiply_adds(torch_network(model), common.MODEL_DATA[model][1])
  step_flops = {"backprop": 2 * 64 * 3 * total, "forward gradient": 2 * 64 * (3 * total - first)}
  floor_ms = {kind: 1e3 * flops / flops_per_second for kind, flops in step_flops.items()}
  rows = []
  for name, values in ms.items():
    kind = "backprop" if name.endswith("backprop") else "forward gradient"
    rows.append({"name": name, "ms": statistics.median(values),
                 "vs_torch_backprop": common.paired_ratio(values, ms["torch backprop"]),
                 "vs_floor": statistics.median(values) / floor_ms[kind]})
  return {
      "model": model, "steps_per_sample": steps, "repeats": repeats, "batch_size": 64,
      "fgjax_mode": mode,
      "machine": {**common.machine_info(), "torch": torch.__version__,
                  "torch_threads": torch.get_num_threads()},
      "matmul_gflops": flops_per_second / 1e9, "step_gflop": {k: v / 1e9 for k, v in
                                                              step_flops.items()},
      "floor_ms": floor_ms, "rows": rows, "wall_seconds": time.perf_counter() - start,
  }


def format_table(report: dict) -> str:
  machine = report["machine"]
  calls = ("one lax.scan call per sample" if report["fgjax_mode"] == "scan"
           else "one jitted call per step")
  lines = [f"{report['model']}, batch 64: {report['steps_per_sample']} steps per sample "
           f"(fgjax: {calls}), medians of {report['repeats']} interleaved repeats",
           f"{common.machine_line(machine)}; torch {machine['torch']} with "
           f"{machine['torch_threads']} threads",
           f"floor: {report['step_gflop']['backprop']:.2f} GFLOP a backprop step, "
           f"{report['step_gflop']['forward gradient']:.2f} a forward-gradient step, at "
           f"{report['matmul_gflops']:.0f} GFLOP/s (XLA float32 {MATMUL_SIZE}^2 matmul): "
           f"{report['floor_ms']['backprop']:.1f} / {report['floor_ms']['forward gradient']:.1f}"
           " ms", ""]
  lines += common.markdown_table(
      ["step", "ms/step", "vs torch backprop", "vs floor"],
      [[row["name"], f"{row['ms']:.2f}", f"{row['vs_torch_backprop']:.2f}",
        f"{row['vs_floor']:.2f}"] for row in report["rows"]])
  return "\n".join(lines)


def main(argv):
  del argv  # cli.run refuses positional arguments
  if FLAGS.batch_size != 64:
    raise cli.UserError("the comparison is at the paper's batch size, 64")
  steps, repeats = DEFAULTS[FLAGS.model]
  report = measure(FLAGS.model, FLAGS.steps or steps, FLAGS.repeats or repeats,
                   FLAGS.torch_threads)
  common.publish(report, format_table(report), FLAGS.json)


if __name__ == "__main__":
  cli.run(main)

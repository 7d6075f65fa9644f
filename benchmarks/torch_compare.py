"""fgjax's forward-gradient step against the same step in PyTorch (`torch.func.jvp`), on the CPU.

  pip install torch==2.13.0  # optional: only this benchmark needs PyTorch
  python benchmarks/torch_compare.py --json benchmarks/results/torch_compare.json

The PyTorch step is written as a user of the paper's stack would write it (the paper's code uses
functorch, now `torch.func`): the MLP as an `nn.Sequential`, tangents from `torch.randn_like`, the
loss and directional derivative from `torch.func.jvp` of `functional_call`, the derivative
clipped to [-1, 1], and the SGD update in place; one Python call per step, with PyTorch's default
threads unless `--torch_threads` says otherwise. fgjax's step is the package's own
(`make_train_step`, K = 1, normal tangents, the same clipping and SGD), `--steps` per compiled
`lax.scan` call. Both see the same uint8 batches, normalised inside the step. A backprop step
of each (PyTorch: `loss.backward()`) is timed too, for scale. The variants take turns over
`--repeats` rounds; medians are reported.
"""

import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position

try:
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  from torch.func import functional_call, jvp  # pylint: disable=g-import-not-at-top
except ImportError:
  sys.exit("benchmarks/torch_compare.py needs PyTorch, an optional benchmark dependency:\n"
           "  pip install torch==2.13.0   # a CPU build")

LEARNING_RATE = 1e-4
JVP_CLIP = 1.0


def torch_steps(images: np.ndarray, labels: np.ndarray):
  """`(forward_gradient_step, backprop_step)`: PyTorch steps over batch i of the arrays."""
  torch.manual_seed(0)
  model = nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024),
                        nn.ReLU(), nn.Linear(1024, 10))
  params = {name: p.detach().clone() for name, p in model.named_parameters()}  # no autograd
  images, labels = torch.from_numpy(images), torch.from_numpy(labels).long()

  def loss_fn(params, x, y):
    logits = functional_call(model, params, ((x.float() - 127.5) / 64.0,))
    return nn.functional.cross_entropy(logits, y)

  def forward_gradient_step(i):
    x, y = images[i], labels[i]
    tangents = {name: torch.randn_like(p) for name, p in params.items()}
    loss, derivative = jvp(lambda p: loss_fn(p, x, y), (params,), (tangents,))
    derivative = derivative.clamp(-JVP_CLIP, JVP_CLIP)
    for name, p in params.items():
      p.sub_(LEARNING_RATE * derivative * tangents[name])
    return loss

  optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)

  def backprop_step(i):
    optimizer.zero_grad()
    loss = loss_fn(dict(model.named_parameters()), images[i], labels[i])
    loss.backward()
    optimizer.step()
    return loss

  return forward_gradient_step, backprop_step


def measure(steps: int, repeats: int, torch_threads: int) -> dict:
  if torch_threads:
    torch.set_num_threads(torch_threads)
  images, labels = common.synthetic_batches("mlp", steps, 64)
  np_images, np_labels = np.array(images), np.array(labels)  # writable copies for torch
  calls = {}
  for name, estimator in (("fgjax forward gradient", "forward"), ("fgjax backprop", "backprop")):
    train_step, state = common.build("mlp", common.step_config("mlp", estimator))
    run, held = common.make_runner(train_step), {"state": state}

    def call(run=run, held=held):
      held["state"], losses = run(held["state"], images, labels)
      losses.block_until_ready()

    calls[name] = call
  fg_step, bp_step = torch_steps(np_images, np_labels)
  calls["torch forward gradient"] = lambda: [fg_step(i) for i in range(steps)]
  calls["torch backprop"] = lambda: [bp_step(i) for i in range(steps)]
  common.warm_up(calls)
  start = time.perf_counter()
  seconds = common.time_interleaved(calls, repeats)
  ms = {name: [1e3 * s / steps for s in values] for name, values in seconds.items()}
  rows = [{"name": name, "ms": statistics.median(values)} for name, values in ms.items()]
  return {
      "steps_per_sample": steps, "repeats": repeats, "batch_size": 64, "model": "mlp",
      "machine": {**common.machine_info(), "torch": torch.__version__,
                  "torch_threads": torch.get_num_threads()},
      "rows": rows, "wall_seconds": time.perf_counter() - start,
      "fg_speedup": common.paired_ratio(ms["torch forward gradient"],
                                        ms["fgjax forward gradient"]),
      "bp_speedup": common.paired_ratio(ms["torch backprop"], ms["fgjax backprop"]),
  }


def format_table(report: dict) -> str:
  machine = report["machine"]
  lines = [f"MLP, batch 64: {report['steps_per_sample']} steps per sample, medians of "
           f"{report['repeats']} interleaved repeats",
           f"{common.describe_machine(machine)}; torch {machine['torch']} with "
           f"{machine['torch_threads']} threads", ""]
  lines += common.markdown_table(["step", "ms/step"],
                                 [[row["name"], f"{row['ms']:.2f}"] for row in report["rows"]])
  lines += ["", f"fgjax forward gradient is {report['fg_speedup']:.2f}x faster than PyTorch's "
            f"(backprop: {report['bp_speedup']:.2f}x)"]
  return "\n".join(lines)


def main():
  parser = common.argument_parser(__doc__, model=False)
  parser.add_argument("--steps", type=int, default=50, help="steps per timed sample")
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--torch_threads", type=int, default=0,
                      help="PyTorch's intra-op threads (0: its default, one per core)")
  args = parser.parse_args()
  report = measure(args.steps, args.repeats, args.torch_threads)
  common.publish(report, format_table(report), args.json)


if __name__ == "__main__":
  main()

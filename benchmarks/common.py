"""What the benchmarks share: the machine's description, synthetic data, the benchmarked
configs, an interleaved timer that reports its progress, and the command lines' common flags.

Synthetic data has the real datasets' shapes (MNIST 28x28x1 for the MLP and CNN, CIFAR-10 32x32x3
for the VGG network) and dtypes (uint8 pixels, int32 labels): step time does not depend on pixel
values, and the benchmarks then need no download.
"""

import os
import statistics
import sys
import time
from typing import Callable

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from fgjax import compilation
from fgjax import models
from fgjax import optimizers
from fgjax import paper
from fgjax import programs
from fgjax import train
from fgjax import workdir

MODEL_DATA = {"mlp": ("mnist", (28, 28, 1)), "cnn": ("mnist", (28, 28, 1)),
              "vgg": ("cifar10", (32, 32, 3))}
NUM_CLASSES = 10
# (conv blocks, padding, dense width) of the conv nets, as fgjax.models builds them.
CONV_NETS = {"cnn": (((64, 64), (64, 64)), "VALID", 1024),
             "vgg": (((64, 64), (128, 128), (256, 256)), "SAME", 4096)}


def machine_info() -> dict:
  """The machine (fgjax.workdir.describe_machine) and its load average as the benchmark starts:
  what a timing depends on."""
  return {**workdir.describe_machine(), "load_average_at_start": os.getloadavg()[0]}


def machine_line(info: dict) -> str:
  """One line naming the machine of `machine_info()` and its load at the start."""
  return (f"{workdir.format_machine(info)}; load average {info['load_average_at_start']:.1f} "
          "at start")


def progress(message: str) -> None:
  """A progress line on stderr, so that a long benchmark shows it is running; the table goes to
  stdout."""
  print(message, file=sys.stderr, flush=True)


def conv_layers(model: str) -> list[tuple[int, int, int]]:
  """`(input height = width, input channels, output channels)` of each 3x3 convolution of
  `model` (a key of CONV_NETS), in order; each block ends in 2x2 pooling."""
  blocks, padding, _ = CONV_NETS[model]
  height, _, channels = MODEL_DATA[model][1]
  layers = []
  for block in blocks:
    for features in block:
      layers.append((height, channels, features))
      height, channels = height - (2 if padding == "VALID" else 0), features
    height //= 2
  return layers


def synthetic_batches(model: str, num_batches: int, batch_size: int, seed: int = 0):
  """`(images, labels)` shaped (num_batches, batch_size, H, W, C) uint8 and (num_batches,
  batch_size) int32, on the device."""
  shape = MODEL_DATA[model][1]
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (num_batches, batch_size) + shape, dtype=np.uint8)
  labels = rng.integers(0, NUM_CLASSES, (num_batches, batch_size), dtype=np.int32)
  return jax.device_put(images), jax.device_put(labels)


def step_config(model: str, estimator: str, num_directions: int = 1, tangent: str = "normal"):
  """Table I's setup for `model` with SGD: batch 64 and, for forward gradients, the directional
  derivative clipped to [-1, 1]. The small learning rate keeps long timing runs finite."""
  config = paper.row_config(MODEL_DATA[model][0], model, "sgd", forward=estimator == "forward")
  config.estimator = estimator
  config.learning_rate = 1e-4
  config.num_directions = num_directions
  config.tangent = tangent
  return config


def loss_and_params(model: str, seed: int = 0, local_heads=None):
  """`(loss_fn, params)`: the package's `loss_fn(params, images, labels)` (with the perturbation
  points the activity estimators need) and initial params; `local_heads` as in
  `models.create_model` (`fgjax.train.local_heads` gives a config's)."""
  net = models.create_model(model, MODEL_DATA[model][1], NUM_CLASSES, seed,
                            local_heads=local_heads)
  return programs.make_loss_fn(net.apply, 127.5, 64.0, perturbed=net.perturbed), net.params


def build(model: str, config, seed: int = 0):
  """`(train_step, state)`: the package's own step for `config` and a fresh state."""
  loss_fn, params = loss_and_params(model, seed, train.local_heads(config))
  tx = optimizers.build_optimizer(config)
  state = programs.init_state(params, tx, jax.random.PRNGKey(seed + 1))
  return programs.make_train_step(loss_fn, tx, config), state


def make_runner(train_step: Callable, mode: str = "scan",
                jit: Callable = compilation.jit) -> Callable:
  """`run(state, images, labels, *extra) -> (state, losses)`: one step per leading index of
  `images`/`labels`, `train_step(state, images[i], labels[i], *extra)`, input state donated.

  mode "scan": all steps in one `lax.scan` call, as `make_train_chunk` runs them: the bare step.
  mode "jit": one jitted call per step from Python, as conv nets train on CPU (XLA:CPU compiles
  convolution gradients inside a loop body into a much slower kernel than outside one). Both
  compile with `jit`: as fgjax compiles (`compilation.jit`), unless told otherwise.
  Not `programs.make_train_chunk`: it gathers each batch by an epoch order, which the bare step
  leaves out, and passes no per-call argument such as step_time.py's fixed tangent.
  """
  if mode == "scan":
    def run(state, images, labels, *extra):
      return jax.lax.scan(lambda s, batch: train_step(s, *batch, *extra), state, (images, labels))

    return jit(run, donate_argnums=0)
  if mode == "jit":
    step = jit(train_step, donate_argnums=0)

    def run_steps(state, images, labels, *extra):
      losses = []
      for i in range(images.shape[0]):
        state, loss = step(state, images[i], labels[i], *extra)
        losses.append(loss)
      return state, jnp.stack(losses)

    return run_steps
  raise ValueError(f"unknown mode {mode!r}; choose scan or jit")


def step_call(model: str, config, images, labels, mode: str = "scan") -> Callable[[], None]:
  """`call()`: runs the package's step for `config` over every batch of `images`/`labels` from
  its own state, carried from call to call, and blocks until done."""
  train_step, state = build(model, config)
  run, held = make_runner(train_step, mode), {"state": state}

  def call():
    held["state"], losses = run(held["state"], images, labels)
    losses.block_until_ready()

  return call


def warm_up(calls: dict[str, Callable[[], None]]) -> None:
  """Calls each variant twice, so that it is compiled and warm before it is timed."""
  for i, (name, call) in enumerate(calls.items(), start=1):
    start = time.perf_counter()
    call()
    call()
    progress(f"warm-up {i}/{len(calls)}: {name} ({time.perf_counter() - start:.1f} s)")


def time_interleaved(calls: dict[str, Callable[[], None]], repeats: int) -> dict[str, list]:
  """Seconds per call of each `calls[name]()` (which must block until done), `repeats` times.

  The variants take turns within each repeat, and the order rotates between repeats, so that a
  change of machine load touches every variant alike.
  """
  names = list(calls)
  seconds = {name: [] for name in names}
  for r in range(repeats):
    start = time.perf_counter()
    for name in names[r % len(names):] + names[:r % len(names)]:
      call_start = time.perf_counter()
      calls[name]()
      seconds[name].append(time.perf_counter() - call_start)
    progress(f"round {r + 1}/{repeats} ({time.perf_counter() - start:.1f} s)")
  return seconds


def paired_ratio(numerator: list, denominator: list) -> float:
  """Median over repeats of the per-repeat ratio: robust to load that drifts between repeats."""
  return statistics.median(a / b for a, b in zip(numerator, denominator))


def markdown_table(columns: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
  """The lines of a markdown table: its first `left` columns aligned left, numbers right."""
  line = lambda cells: "| " + " | ".join(cells) + " |"
  align = ["---"] * left + ["---:"] * (len(columns) - left)
  return [line(columns), "|" + "|".join(align) + "|", *map(line, rows)]


def define_flags(*, model: bool = True) -> None:
  """Defines the flags the benchmarks share: `--json` and, with `model`, `--model` and
  `--batch_size`. A script calls it at module level: absl flags belong to the process, and each
  benchmark is a process of its own."""
  if model:
    flags.DEFINE_enum("model", "mlp", sorted(MODEL_DATA), "The network to time.")
    flags.DEFINE_integer("batch_size", 64, "Examples per step.")
  flags.DEFINE_string("json", None, "Also write the report as JSON to this path.")


def define_step_flags() -> None:
  """Defines the flags of the step-time benchmarks: `--steps`, `--repeats` (default: the
  script's per model) and `--mode`."""
  flags.DEFINE_integer("steps", None, "Steps per compiled call (default per model).")
  flags.DEFINE_integer("repeats", None, "Interleaved timed rounds (default per model).")
  flags.DEFINE_enum("mode", "scan", ["scan", "jit"],
                    "scan: many steps per compiled lax.scan call, as training runs them; jit: "
                    "one jitted call per step.")


def step_header(report: dict) -> list[str]:
  """The lines above a step-time table: what was timed, and on which machine."""
  per_call = ("per compiled call (lax.scan)" if report["mode"] == "scan"
              else "per sample, one jitted call each")
  return [f"{report['model']}, batch {report['batch_size']}: {report['steps_per_call']} steps "
          f"{per_call}, medians of {report['repeats']} interleaved repeats",
          machine_line(report["machine"]), ""]


def publish(report: dict, table: str, json_path) -> None:
  """Prints `table` and, if `json_path` is given, writes `report` there as JSON."""
  print(table)
  if json_path:
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    workdir.write_json(json_path, report)

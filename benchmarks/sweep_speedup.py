"""How much faster a sweep's trials train vmapped in one program than one after another.

  python benchmarks/sweep_speedup.py                       # MLP on digits, both estimators
  python benchmarks/sweep_speedup.py --configs=configs/mnist_mlp_sgd_bp.py \
      --config_overrides=data.source=npz,data.path=../shared/data/mnist.npz --epochs=1

For each config, `--num_trials` trials (learning rates log-spaced over the decade below the
config's, one seed) are timed two ways:
  steps      the compiled programs of fgjax.sweep alone: `--steps` steps of all trials in one
             vmapped call, against the same steps of one trial times num_trials (the sequential
             cost). The two are timed in alternation `--repeats` times and the medians compared,
             so that other jobs on a shared machine slow both alike.
  whole      `fgjax.sweep.run_trials` for `--epochs`, with `trials_per_call=num_trials` and then
             1 (each trial its own call, the program compiled once): the wall-clock a user sees,
             data loading, compilation and validation included; it also checks that both modes
             reach the same validation losses.
Writes a markdown table to `--out` (default experiments/results/sweep_speedup.md).
"""

import os
import statistics
import sys
import time

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np

from fgjax import config_loading
from fgjax import data
from fgjax import sweep

FLAGS = flags.FLAGS
flags.DEFINE_list("configs", ["configs/default.py:forward", "configs/default.py:backprop"],
                  "Config files to benchmark.")
flags.DEFINE_list("config_overrides", [], "name=value overrides applied to every config.")
flags.DEFINE_integer("num_trials", 8, "Trials per sweep.")
flags.DEFINE_integer("steps", 64, "Steps per timed call of the compiled programs.")
flags.DEFINE_integer("repeats", 5, "Timed calls per mode (the median counts).")
flags.DEFINE_integer("epochs", 5, "Epochs per trial of the whole-sweep timing.")
flags.DEFINE_string("out", "experiments/results/sweep_speedup.md", "Markdown table to write.")


def _parse_overrides(items) -> dict:
  overrides = {}
  for item in items:
    name, _, value = item.partition("=")
    for cast in (int, float):
      try:
        value = cast(value)
        break
      except ValueError:
        continue
    overrides[name] = value
  return overrides


def time_steps(config, trials, steps: int, repeats: int) -> dict:
  """Median seconds of `steps` steps of all trials vmapped, and of one trial alone."""
  dataset = data.load_dataset(config.data)
  programs = sweep.make_programs(config, dataset)
  images, labels = jax.device_put(dataset.train.images), jax.device_put(dataset.train.labels)
  steps = min(steps, len(dataset.train) // int(config.batch_size))
  runs = {}
  for mode, group in (("vmapped", trials), ("one", trials[:1])):
    states, data_rngs = sweep.initial_states(config, dataset, group, epochs=1)
    orders = programs.orders(data_rngs, 0, labels)
    runs[mode] = [states, orders]
  seconds = {mode: [] for mode in runs}
  for repeat in range(repeats + 1):  # the first round compiles
    for mode, run in runs.items():
      start = time.perf_counter()
      run[0], losses = programs.chunk(run[0], images, labels, run[1], 0, num_steps=steps)
      jax.block_until_ready(losses)
      if repeat:
        seconds[mode].append(time.perf_counter() - start)
  vmapped, one = statistics.median(seconds["vmapped"]), statistics.median(seconds["one"])
  return {"steps": steps, "vmapped_s": vmapped, "sequential_s": one * len(trials),
          "speedup": one * len(trials) / vmapped}


def time_whole(config, trials, epochs: int) -> dict:
  """Wall-clock of run_trials with all trials per call and with one, and their disagreement."""
  seconds, losses = {}, {}
  for mode, per_call in (("vmapped", len(trials)), ("sequential", 1)):
    start = time.time()
    results = sweep.run_trials(config, trials, epochs=epochs, trials_per_call=per_call)
    seconds[mode] = time.time() - start
    losses[mode] = np.array([r.validation_loss for r in results])
    logging.info("whole sweep, %s: %.1f s", mode, seconds[mode])
  difference = np.abs(losses["vmapped"] - losses["sequential"]) / np.abs(losses["sequential"])
  return {"vmapped_s": seconds["vmapped"], "sequential_s": seconds["sequential"],
          "speedup": seconds["sequential"] / seconds["vmapped"],
          "max_relative_difference": float(np.max(difference)),
          "steps_per_trial": results[0].steps}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  overrides = _parse_overrides(FLAGS.config_overrides)
  rows = []
  for spec in FLAGS.configs:
    config = config_loading.load_config(spec)
    config.update_from_flattened_dict(overrides)
    rates = np.geomspace(float(config.learning_rate) / 10, float(config.learning_rate),
                         FLAGS.num_trials)
    trials = sweep.make_trials([{"learning_rate": float(lr)} for lr in rates],
                               [int(config.seed)])
    logging.info("=== %s: %d trials ===", spec, FLAGS.num_trials)
    steps = time_steps(config, trials, FLAGS.steps, FLAGS.repeats)
    logging.info("steps: vmapped %.2f s, sequential %.2f s: %.2fx", steps["vmapped_s"],
                 steps["sequential_s"], steps["speedup"])
    rows.append((spec, steps, time_whole(config, trials, FLAGS.epochs)))
  machine = sweep.format_machine(sweep.describe_machine())
  lines = ["# Sweep speed-up: trials vmapped in one program vs one after another", "",
           f"`{' '.join(['python benchmarks/sweep_speedup.py', *sys.argv[1:]])}`", "",
           f"{FLAGS.num_trials} trials (learning rates log-spaced over a decade), on {machine}. "
           "*Steps*: compiled programs only, the median of "
           f"{FLAGS.repeats} timings per mode taken in alternation (sequential = num_trials x "
           "one trial's time). *Whole sweep*: `fgjax.sweep.run_trials` wall-clock, data "
           "loading, compilation and per-epoch validation included, each mode timed once. On a "
           "machine shared with other jobs, the alternating step timings are the reliable "
           "ones.", "",
           "| config | steps: vmapped s | steps: sequential s | steps speed-up | whole sweep: "
           "steps/trial | vmapped s | sequential s | whole speed-up | max rel. diff of val. "
           "loss |", "|---|---|---|---|---|---|---|---|---|"]
  for spec, steps, whole in rows:
    lines.append(
        f"| {spec} | {steps['vmapped_s']:.2f} ({steps['steps']} steps) | "
        f"{steps['sequential_s']:.2f} | **{steps['speedup']:.2f}x** | "
        f"{whole['steps_per_trial']} | {whole['vmapped_s']:.1f} | {whole['sequential_s']:.1f} "
        f"| {whole['speedup']:.2f}x | {whole['max_relative_difference']:.1e} |")
  text = "\n".join(lines) + "\n"
  print(text)
  os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
  with open(FLAGS.out, "w", encoding="utf-8") as f:
    f.write(text)


if __name__ == "__main__":
  app.run(main)

"""How much faster a sweep's trials train vmapped in one program than one after another.

  python -m benchmarks.sweep_speedup                       # MLP on digits, both estimators
  python -m benchmarks.sweep_speedup --configs=configs/mnist_mlp_sgd_bp.py \
      --config_overrides=data.source=npz,data.path=<data dir>/mnist.npz --epochs=1
  python -m benchmarks.sweep_speedup --out=experiments/results/sweep_speedup.md  # publish

For each config, `--num_trials` trials (learning rates log-spaced over the decade below the
config's, one seed) are timed two ways:
  steps      the compiled programs alone (`fgjax.programs.make_train_chunk`): `--steps` steps of
             all trials in one vmapped call, against the same steps of one trial times
             num_trials (the sequential cost). The two are timed in alternation `--repeats`
             times and the medians compared, so that other jobs on a shared machine slow both
             alike.
  whole      `fgjax.train.train_trials` (what a sweep runs) for `--epochs`, with
             `trials_per_call=num_trials` and then 1 (each trial its own call, the program
             compiled once): the wall-clock a user sees, data loading, compilation and
             validation included; it also checks that both modes reach the same validation
             losses.
Prints a markdown table, and writes it to `--out` if given: the published table is replaced only
when asked.
"""

import os
import statistics
import sys
import tempfile
import time

from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from fgjax import cli
from fgjax import config_loading
from fgjax import data
from fgjax import models
from fgjax import optimizers
from fgjax import programs
from fgjax import sweep
from fgjax import train
from fgjax import workdir

FLAGS = flags.FLAGS
flags.DEFINE_list("configs", ["configs/default.py:forward", "configs/default.py:backprop"],
                  "Config files to benchmark.")
flags.DEFINE_list("config_overrides", [], "name=value overrides applied to every config.")
flags.DEFINE_integer("num_trials", 8, "Trials per sweep.")
flags.DEFINE_integer("steps", 64, "Steps per timed call of the compiled programs.")
flags.DEFINE_integer("repeats", 5, "Timed calls per mode (the median counts).")
flags.DEFINE_integer("epochs", 5, "Epochs per trial of the whole-sweep timing.")
flags.DEFINE_string("out", None, "Also write the markdown table here "
                    "(experiments/results/sweep_speedup.md publishes it).")


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


def _stacked_states(config, dataset, trials):
  """The step-0 states of `trials` stacked on a leading trial axis, as a sweep's program holds
  them (they differ in the hyperparameters held in the optimizer state)."""
  states = []
  for trial in trials:
    trial_cfg = train.trial_config(config, trial)
    params = models.create_model(config.model, dataset.image_shape, dataset.num_classes,
                                 trial.seed, init=config.init).params
    states.append(programs.init_state(params, optimizers.build_optimizer(trial_cfg),
                                      jax.random.PRNGKey(trial.seed)))
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


def time_steps(config, trials, steps: int, repeats: int) -> dict:
  """Median seconds of `steps` steps of all trials in one vmapped program, and of one trial in
  the plain program (as a sweep of one trial per call runs it)."""
  dataset = data.load_dataset(config.data)
  model = models.create_model(config.model, dataset.image_shape, dataset.num_classes,
                              int(config.seed), init=config.init)
  loss_fn = programs.make_loss_fn(model.apply, dataset.pixel_mean, dataset.pixel_std,
                                  config.loss)
  train_step = programs.make_train_step(loss_fn, optimizers.build_optimizer(config), config)
  images, labels = jax.device_put(dataset.train.images), jax.device_put(dataset.train.labels)
  order = programs.epoch_order(jax.random.PRNGKey(0), 0, labels)
  steps = min(steps, len(dataset.train) // int(config.batch_size))
  states = _stacked_states(config, dataset, trials)
  runs = {"vmapped": [states, jnp.stack([order] * len(trials)), True],
          "one": [jax.tree.map(lambda leaf: leaf[0], states), order, False]}
  for run in runs.values():
    run[2] = programs.make_train_chunk(train_step, int(config.batch_size), vmapped=run[2],
                                       scan=programs.scans_well(config.model))
  seconds = {mode: [] for mode in runs}
  for repeat in range(repeats + 1):  # the first round compiles
    for mode, run in runs.items():
      start = time.perf_counter()
      run[0], losses = run[2](run[0], images, labels, run[1], 0, num_steps=steps)
      jax.block_until_ready(losses)
      if repeat:
        seconds[mode].append(time.perf_counter() - start)
    logging.info("steps: round %d of %d%s", repeat, repeats, "" if repeat else " (compiles)")
  vmapped, one = statistics.median(seconds["vmapped"]), statistics.median(seconds["one"])
  return {"steps": steps, "vmapped_s": vmapped, "sequential_s": one * len(trials),
          "speedup": one * len(trials) / vmapped}


def time_whole(config, trials, epochs: int) -> dict:
  """Wall-clock of `fgjax.train.train_trials` (what a sweep runs) with all trials per call and
  with one, and how far their validation losses differ."""
  config = config.copy_and_resolve_references()
  config.num_epochs, config.num_seeds = epochs, 1
  seconds, losses = {}, {}
  for mode, per_call in (("vmapped", len(trials)), ("sequential", 1)):
    config.trials_per_call = per_call
    start = time.time()
    with tempfile.TemporaryDirectory() as workdir:
      summaries = train.train_trials(config, workdir, trials, evaluate_test=False)
    seconds[mode] = time.time() - start
    losses[mode] = np.array([s["validation_loss"] for s in summaries], float)
    logging.info("whole sweep, %s: %.1f s", mode, seconds[mode])
  difference = np.abs(losses["vmapped"] - losses["sequential"]) / np.abs(losses["sequential"])
  return {"vmapped_s": seconds["vmapped"], "sequential_s": seconds["sequential"],
          "speedup": seconds["sequential"] / seconds["vmapped"],
          "max_relative_difference": float(np.max(difference)),
          "steps_per_trial": summaries[0]["steps"]}


def main(argv):
  del argv  # cli.run refuses positional arguments
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
  machine = workdir.format_machine(workdir.describe_machine())
  lines = ["# Sweep speed-up: trials vmapped in one program vs one after another", "",
           f"`{' '.join(['python -m benchmarks.sweep_speedup', *sys.argv[1:]])}`", "",
           f"{FLAGS.num_trials} trials (learning rates log-spaced over a decade), on {machine}. "
           "*Steps*: compiled programs only, the median of "
           f"{FLAGS.repeats} timings per mode taken in alternation (sequential = num_trials x "
           "one trial's time). *Whole sweep*: `fgjax.train.train_trials` wall-clock, data "
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
  if FLAGS.out:
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    workdir.write_text(FLAGS.out, text)


if __name__ == "__main__":
  cli.run(main)

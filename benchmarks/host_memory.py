"""What keeping freed host memory (`fgjax.host_memory`) saves a CPU training step.

  python -m benchmarks.host_memory --model cnn --json benchmarks/results/host_memory_cnn.json

The malloc settings are process-wide and must be made before JAX starts, so each sample is a
process of its own: the package's backprop and forward-gradient steps (`common.build`, run as
training runs them), `--steps` of each after a warm-up, with `FGJAX_KEEP_FREED_MEMORY=1` (the
default) or `=0`; the two settings alternate over `--repeats` rounds. Each sample reports the
wall time, the CPU time (user and system) and the page faults per step; medians are reported.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import flags
import jax.numpy as jnp

from benchmarks import common
from fgjax import cli
from fgjax import programs

FLAGS = flags.FLAGS
common.define_flags()
flags.DEFINE_integer("steps", 5, "Steps per sample.")
flags.DEFINE_integer("repeats", 3, "Alternating rounds of the two settings.")
flags.DEFINE_bool("sample", False, "Take one sample in this process and print it as JSON (the "
                  "script runs itself so).")

SETTINGS = {"kept (default)": "1", "returned (FGJAX_KEEP_FREED_MEMORY=0)": "0"}
ESTIMATORS = {"backprop": "backprop", "forward gradient": "forward"}


def sample(model: str, steps: int) -> dict:
  """In this process: per step of each estimator, wall ms, CPU ms, system ms and page faults."""
  images, labels = common.synthetic_batches(model, steps, 64)
  mode = "scan" if programs.scans_well(model) else "jit"
  results = {}
  for label, estimator in ESTIMATORS.items():
    train_step, state = common.build(model, common.step_config(model, estimator))
    run = common.make_runner(train_step, mode)
    state, losses = run(state, images, labels)  # warm-up: compile, and reach a steady heap
    jnp.asarray(losses).block_until_ready()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    state, losses = run(state, images, labels)
    jnp.asarray(losses).block_until_ready()
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    results[label] = {
        "wall_ms": 1e3 * wall / steps,
        "cpu_ms": 1e3 * (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
                  / steps,
        "system_ms": 1e3 * (after.ru_stime - before.ru_stime) / steps,
        "page_faults": (after.ru_minflt - before.ru_minflt) / steps}
  return results


def measure(model: str, steps: int, repeats: int) -> dict:
  samples = {setting: [] for setting in SETTINGS}
  for r in range(repeats):
    for setting, value in SETTINGS.items():
      env = {**os.environ, "FGJAX_KEEP_FREED_MEMORY": value}
      output = subprocess.run(
          [sys.executable, "-m", "benchmarks.host_memory", "--sample", "--model", model,
           "--steps", str(steps)], env=env, check=True, capture_output=True, text=True).stdout
      samples[setting].append(json.loads(output.splitlines()[-1]))
      common.progress(f"round {r + 1}/{repeats}: {setting} done")
  rows = []
  for setting, values in samples.items():
    for label in ESTIMATORS:
      rows.append({"setting": setting, "estimator": label,
                   **{k: statistics.median(v[label][k] for v in values)
                      for k in ("wall_ms", "cpu_ms", "system_ms", "page_faults")}})
  return {"model": model, "steps": steps, "repeats": repeats, "batch_size": 64,
          "machine": common.machine_info(), "rows": rows}


def format_table(report: dict) -> str:
  lines = [f"{report['model']}, batch 64: {report['steps']} steps per sample, one process per "
           f"sample, medians of {report['repeats']} alternating rounds",
           common.machine_line(report["machine"]), ""]
  lines += common.markdown_table(
      ["freed host memory", "step", "wall ms/step", "CPU ms/step", "of which system",
       "page faults/step"],
      [[row["setting"], row["estimator"], f"{row['wall_ms']:.1f}", f"{row['cpu_ms']:.1f}",
        f"{row['system_ms']:.1f}", f"{row['page_faults']:,.0f}"] for row in report["rows"]],
      left=2)
  return "\n".join(lines)


def main(argv):
  del argv  # cli.run refuses positional arguments
  if FLAGS.sample:
    print(json.dumps(sample(FLAGS.model, FLAGS.steps)))
    return
  report = measure(FLAGS.model, FLAGS.steps, FLAGS.repeats)
  common.publish(report, format_table(report), FLAGS.json)


if __name__ == "__main__":
  cli.run(main)

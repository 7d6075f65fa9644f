"""What fgjax's compiler options (`fgjax.compilation`) save a CPU training step.

  python -m benchmarks.compile_options --model cnn --json benchmarks/results/compile_options_cnn.json

The package's backprop and forward-gradient steps (`common.build`, run as training runs them),
each compiled twice: with `compilation.jit` (on CPU, YNNPACK kept to matrix products, so that
convolutions run in XLA's own kernels) and with plain `jax.jit` (XLA's defaults). The four take
turns over `--repeats` rounds of `--steps` steps in one process; the table gives medians and the
median per-round ratio of the defaults' step to fgjax's.
"""

import statistics

from absl import flags
import jax

from benchmarks import common
from fgjax import cli
from fgjax import compilation
from fgjax import programs

FLAGS = flags.FLAGS
common.define_flags()
flags.DEFINE_integer("steps", 5, "Steps per timed sample.")
flags.DEFINE_integer("repeats", 7, "Interleaved rounds.")

COMPILERS = {"fgjax": compilation.jit, "defaults": jax.jit}
ESTIMATORS = {"backprop": "backprop", "forward gradient": "forward"}


def measure(model: str, steps: int, repeats: int) -> dict:
  """Seconds per step of each (estimator, compiler) pair, and the options fgjax used."""
  images, labels = common.synthetic_batches(model, steps, 64)
  mode = "scan" if programs.scans_well(model) else "jit"
  calls = {}
  for label, estimator in ESTIMATORS.items():
    for compiler, jit in COMPILERS.items():
      train_step, state = common.build(model, common.step_config(model, estimator))
      run, held = common.make_runner(train_step, mode, jit), {"state": state}

      def call(run=run, held=held):
        held["state"], losses = run(held["state"], images, labels)
        losses.block_until_ready()

      calls[f"{label} / {compiler}"] = call
  common.warm_up(calls)
  seconds = common.time_interleaved(calls, repeats)
  return {"model": model, "steps": steps, "repeats": repeats, "mode": mode,
          "options": compilation.options(), "machine": common.machine_info(),
          "ms_per_step": {name: 1e3 * statistics.median(s) / steps
                          for name, s in seconds.items()},
          "defaults_over_fgjax": {label: common.paired_ratio(seconds[f"{label} / defaults"],
                                                             seconds[f"{label} / fgjax"])
                                  for label in ESTIMATORS}}


def format_table(report: dict) -> str:
  per_call = "one lax.scan call" if report["mode"] == "scan" else "one jitted call per step"
  lines = [f"{report['model']}, batch 64: {report['steps']} steps per sample ({per_call}), "
           f"medians of {report['repeats']} interleaved repeats",
           common.machine_line(report["machine"]), f"fgjax's options: {report['options']}", ""]
  rows = [[label, f"{report['ms_per_step'][f'{label} / fgjax']:.2f}",
           f"{report['ms_per_step'][f'{label} / defaults']:.2f}",
           f"{report['defaults_over_fgjax'][label]:.2f}"] for label in ESTIMATORS]
  return "\n".join(lines + common.markdown_table(
      ["step", "fgjax ms/step", "XLA defaults ms/step", "defaults / fgjax"], rows))


def main(argv):
  del argv  # cli.run refuses positional arguments
  report = measure(FLAGS.model, FLAGS.steps, FLAGS.repeats)
  common.publish(report, format_table(report), FLAGS.json)


if __name__ == "__main__":
  cli.run(main)

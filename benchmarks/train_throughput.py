"""The training loop's cost over the bare step: data gather, chunking, host sync and metrics.

  python -m benchmarks.train_throughput --model mlp \
      --json benchmarks/results/train_throughput_mlp.json

"loop" runs training as `fgjax.train` does: a device-resident training set (synthetic, of the
dataset's size and shape), the epoch's permutation from `epoch_order`, `make_train_chunk` calls of
`--chunk` steps (each gathering its batches by the permutation inside the compiled scan, with the
state donated), and after each chunk the host work of the loop: the losses fetched, the
divergence flag read, a metrics row written (JSON lines and TensorBoard, `MetricWriter`).
"bare" is the same step on pre-gathered batches, run as training runs it (`programs.scans_well`:
in one `lax.scan`, or, for the conv nets on CPU, one jitted call per step).
Both run `--steps` steps per sample; the variants take turns over `--repeats` rounds.
"""

import os
import statistics
import tempfile

from absl import flags
import jax
import numpy as np

from benchmarks import common

from fgjax import cli
from fgjax import programs
from fgjax import metrics_writer

FLAGS = flags.FLAGS
common.define_flags()
flags.DEFINE_integer("steps", 300, "Steps per timed sample.")
flags.DEFINE_integer("chunk", 100, "Steps per compiled call (the configs' log_every_steps).")
flags.DEFINE_integer("repeats", 5, "Interleaved timed rounds.")

TRAIN_SIZE = {"mlp": 50000, "cnn": 50000, "vgg": 40000}  # training split after validation
ESTIMATORS = {"forward gradient (K=1, normal)": "forward", "backprop": "backprop"}


def _loop_call(model, config, batch_size, steps, chunk, workdir):
  """One sample of the full loop: `steps` steps from the start of a fresh epoch."""
  train_step, state = common.build(model, config)
  train_chunk = programs.make_train_chunk(train_step, batch_size,
                                         scan=programs.scans_well(model))
  images, labels = common.synthetic_batches(model, 1, TRAIN_SIZE[model])
  images, labels = images[0], labels[0]
  data_rng = jax.random.PRNGKey(3)
  os.makedirs(workdir)
  writer = metrics_writer.MetricWriter(workdir)
  held = {"state": state, "epoch": 0}

  def call():
    state, epoch = held["state"], held["epoch"]
    order = programs.epoch_order(data_rng, epoch, labels)
    for first_batch in range(0, steps, chunk):
      state, losses = train_chunk(state, images, labels, order, first_batch,
                                  num_steps=min(chunk, steps - first_batch))
      losses = np.asarray(losses)
      finite = losses[np.isfinite(losses)]
      if int(state.diverged_at) >= 0:
        raise RuntimeError("the benchmarked run diverged")
      writer.write({"step": int(state.step), "train_loss": float(np.mean(finite))})
    held["state"], held["epoch"] = state, epoch + 1

  return call, writer


def _bare_call(model, config, batch_size, steps, chunk):
  """One sample of the bare step: `steps` steps on pre-gathered batches, `chunk` per call."""
  train_step, state = common.build(model, config)
  run = common.make_runner(train_step, "scan" if programs.scans_well(model) else "jit")
  images, labels = common.synthetic_batches(model, chunk, batch_size)
  held = {"state": state}

  def call():
    for _ in range(0, steps, chunk):
      held["state"], losses = run(held["state"], images, labels)
    losses.block_until_ready()

  return call


def measure(model: str, batch_size: int, steps: int, chunk: int, repeats: int) -> dict:
  if steps % chunk:
    raise cli.UserError(f"--steps {steps} must be a multiple of --chunk {chunk}")
  if steps * batch_size > TRAIN_SIZE[model]:
    raise cli.UserError(f"--steps {steps} exceed one epoch of {TRAIN_SIZE[model]} examples")
  calls, writers = {}, []
  with tempfile.TemporaryDirectory() as workdir:
    for label, estimator in ESTIMATORS.items():
      config = common.step_config(model, estimator)
      calls[f"{label}: loop"], writer = _loop_call(
          model, config, batch_size, steps, chunk, os.path.join(workdir, estimator))
      writers.append(writer)
      calls[f"{label}: bare"] = _bare_call(model, config, batch_size, steps, chunk)
    common.warm_up(calls)
    seconds = common.time_interleaved(calls, repeats)
    for writer in writers:
      writer.close()
  rows = []
  for label in ESTIMATORS:
    loop, bare = seconds[f"{label}: loop"], seconds[f"{label}: bare"]
    rows.append({"estimator": label,
                 "loop_ms": 1e3 * statistics.median(loop) / steps,
                 "bare_ms": 1e3 * statistics.median(bare) / steps,
                 "ratio": common.paired_ratio(loop, bare)})
  return {"model": model, "batch_size": batch_size, "steps": steps, "chunk": chunk,
          "repeats": repeats, "train_size": TRAIN_SIZE[model],
          "machine": common.machine_info(), "rows": rows,
          "loop_over_bare": rows[0]["ratio"]}


def format_table(report: dict) -> str:
  lines = [f"{report['model']}, batch {report['batch_size']}: {report['steps']} steps per sample "
           f"in chunks of {report['chunk']}, training set of {report['train_size']:,}; medians "
           f"of {report['repeats']} interleaved repeats",
           common.machine_line(report["machine"]), ""]
  lines += common.markdown_table(
      ["estimator", "loop ms/step", "bare step ms", "loop / bare"],
      [[row["estimator"], f"{row['loop_ms']:.2f}", f"{row['bare_ms']:.2f}", f"{row['ratio']:.3f}"]
       for row in report["rows"]])
  return "\n".join(lines)


def main(argv):
  del argv  # cli.run refuses positional arguments
  report = measure(FLAGS.model, FLAGS.batch_size, FLAGS.steps, FLAGS.chunk, FLAGS.repeats)
  common.publish(report, format_table(report), FLAGS.json)


if __name__ == "__main__":
  cli.run(main)

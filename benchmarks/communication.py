"""Bytes that cross devices per data-parallel training step: backprop against forward gradient.

  XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m benchmarks.communication \
      [--model mlp] [--json benchmarks/results/communication_mlp.json]
  python -m fgjax.launch --num_processes=2 --devices_per_process=2 \
      --module=benchmarks.communication -- [--json ...]   # two processes of two devices

Each variant is the package's own step (`fgjax.programs.make_train_step` around the loss that
`fgjax.sharding.data_parallel` splits over a mesh of every device) for the model's Table I setup at
batch 64. The step is compiled, not run, and the collectives of the compiled HLO
(`jax.jit(step).lower(...).compile().as_text()`) are summed: the bytes each device puts into an
all-reduce per step. Backprop all-reduces the full gradient (every parameter, float32); the
forward gradient all-reduces the loss and its K directional derivatives, since every device draws
the same tangents from the shared key and rebuilds the update locally. A ring all-reduce moves
about twice its operand per device, for both alike. On a CPU the flag above simulates the
devices; on a TPU or several GPUs the real ones are used. Under `fgjax.launch` (or with
`--distributed`, as `fgjax.main`) the mesh spans the devices of every process, and the report
adds what the devices of one process put into the all-reduces together (how many of those bytes
cross between processes depends on the all-reduce's algorithm); process 0 reports.
"""

from absl import flags
import jax
import numpy as np

from benchmarks import common

from fgjax import cli
from fgjax import models
from fgjax import optimizers
from fgjax import sharding
from fgjax import programs

DIRECTIONS = (1, 4)

FLAGS = flags.FLAGS
common.define_flags()
flags.DEFINE_bool("distributed", False, "Join a multi-process run first, as fgjax.main does.")
flags.DEFINE_string("coordinator_address", None, "The multi-process run's coordinator.")
flags.DEFINE_integer("num_processes", None, "Processes of the multi-process run.")
flags.DEFINE_integer("process_id", None, "This process's index in the multi-process run.")


def step_collectives(model: str, config) -> list[tuple[str, str, int]]:
  """The collectives of `config`'s compiled data-parallel step, with their bytes."""
  config.sharding.data_parallel = True
  net = models.create_model(model, common.MODEL_DATA[model][1], common.NUM_CLASSES, 0)
  tx = optimizers.build_optimizer(config)
  loss_fn = programs.make_loss_fn(net.apply, 127.5, 64.0)
  train_loss_fn, place, _ = sharding.data_parallel(config, loss_fn)
  state = place(programs.init_state(net.params, tx, jax.random.PRNGKey(1)))
  images = place(np.zeros((config.batch_size,) + common.MODEL_DATA[model][1], np.uint8))
  labels = place(np.zeros((config.batch_size,), np.int32))
  step = jax.jit(programs.make_train_step(train_loss_fn, tx, config))
  return sharding.collectives(step.lower(state, images, labels).compile().as_text())


def measure(model: str, batch_size: int) -> dict:
  """The collectives of backprop's and each K's forward-gradient step; returns the report."""
  variants = {"backprop": common.step_config(model, "backprop")}
  for k in DIRECTIONS:
    variants[f"forward K={k}"] = common.step_config(model, "forward", k)
  rows = []
  for name, config in variants.items():
    common.progress(f"compiling the data-parallel step: {name}")
    config.batch_size = batch_size
    found = step_collectives(model, config)
    rows.append({"name": name, "collectives": found,
                 "bytes": sum(size for _, _, size in found),
                 "ops": sorted({op for op, _, _ in found})})
  num_params = models.num_params(
      models.create_model(model, common.MODEL_DATA[model][1], common.NUM_CLASSES, 0).params)
  return {"model": model, "batch_size": batch_size, "num_devices": jax.device_count(),
          "num_processes": jax.process_count(), "devices_per_process": jax.local_device_count(),
          "num_params": num_params, "machine": common.machine_info(), "rows": rows}


def format_table(report: dict) -> str:
  backprop = report["rows"][0]["bytes"]
  processes = report.get("num_processes", 1)
  per_process = report.get("devices_per_process", report["num_devices"])
  where = (f"{report['num_devices']} devices" if processes == 1 else
           f"{processes} processes of {per_process} devices")
  lines = [f"{report['model']} ({report['num_params']:,} parameters), batch "
           f"{report['batch_size']} over {where}: bytes each device all-reduces per step, from "
           "the compiled HLO", common.machine_line(report["machine"]), ""]
  columns = ["step", "collectives", "floats (4 B)", "bytes per step", "backprop / this"]
  if processes > 1:
    columns.append(f"bytes one process's {per_process} devices put in")
  rows = []
  for row in report["rows"]:
    rows.append([row["name"], ", ".join(row["ops"]) or "-", f"{row['bytes'] // 4:,}",
                 f"{row['bytes']:,}", f"{backprop / row['bytes']:,.0f}"]
                + ([f"{row['bytes'] * per_process:,}"] if processes > 1 else []))
  lines += common.markdown_table(columns, rows, left=2)
  return "\n".join(lines)


def main(argv):
  del argv  # cli.run refuses positional arguments
  if FLAGS.distributed:
    sharding.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                    FLAGS.process_id)
  if jax.device_count() < 2:
    raise cli.UserError("needs several devices; on a CPU run it with "
                        "XLA_FLAGS=--xla_force_host_platform_device_count=4")
  report = measure(FLAGS.model, FLAGS.batch_size)
  if jax.process_index() == 0:
    common.publish(report, format_table(report), FLAGS.json)


if __name__ == "__main__":
  cli.run(main)

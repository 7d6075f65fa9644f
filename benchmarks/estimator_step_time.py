"""Time of one training step of every gradient estimator, relative to backprop's, side by side.

  python -m benchmarks.estimator_step_time --model mlp --json benchmarks/results/estimator_step_time_mlp.json
  python -m benchmarks.estimator_step_time --model cnn --mode jit --json benchmarks/results/estimator_step_time_cnn_jit.json

Each variant is the package's own step (`fgjax.programs.make_train_step`: the estimator, the optax
SGD update and the non-finite check) for the model's Table I setup at batch 64, on synthetic
batches of the dataset's shape: backprop, the weight-perturbation forward gradient, activity
perturbation of the model's loss and activity perturbation with local losses (`local_activity`,
the model with its local heads), the last two with K = 1, 4 and 32 tangents per example, and
local_activity with one tangent and a derivative per group of G units (config.unit_groups),
(the MLP) with losses per slice, a classifier per slice of units (config.local_heads.slices;
named local_groups in the results) or one classifier shared by the slices
(config.local_heads.slice_head = "shared"), (the conv nets) with local losses per layer
(config.local_heads.loss_per = "layer"), alone, with one shared head's slice per channel, and
with heads reading 2 x 2 patches (config.local_heads.patches) and a slice per patch and
channel (also with config.exact_heads, and with exact heads and the estimate clipped to
global norm 1), and with heads reading every position of the maps (patches 0) and a slice per
unit they read (slices 0; with exact heads, also clipped), and local_backprop, the exact gradients
of the local losses (the local heads' cost without the jvp), per block and (the MLP) per slice or
(the conv nets) per layer, on the whole maps, on patches or on every position. The variants take
turns over the repeats in one process (`common.time_interleaved`), so the ratio to backprop, the
median of the per-round ratios, is what this measures; absolute times depend on
the machine and its load, printed with the table. Modes as in step_time.py.
"""

import statistics

from absl import flags

from benchmarks import common

from fgjax import cli

FLAGS = flags.FLAGS
common.define_flags()
common.define_step_flags()
flags.DEFINE_list("only", None, "Time only these variants (comma-separated names as in the "
                  "table, e.g. 'forward K=1,activity K=1'), and backprop.")

DEFAULTS = {"mlp": (50, 10), "cnn": (5, 5), "vgg": (2, 3)}  # steps per call, repeats
ACTIVITY_DIRECTIONS = (1, 4, 32)
UNIT_GROUPS = (8, 32, 128)  # local_activity with K = 1
LOCAL_GROUPS = (32, 128)  # local_activity with K = 1 and group-wise local heads (the MLP)
SHARED_GROUPS = (32, 128, 1024)  # ... and a local head shared by the groups (the MLP)
LAYER_SHARED_GROUPS = 64  # conv nets, local losses per layer: one group per channel
PATCH_SHARED_GROUPS = 4 * LAYER_SHARED_GROUPS  # ... on 2 x 2 patches: per patch and channel


def _config(model: str, estimator: str, **fields):
  """The step's config: `fields` by dotted name, the local heads' under `local_heads.`."""
  config = common.step_config(model, estimator)
  config.update_from_flattened_dict(
      {(name if name in config else f"local_heads.{name}"): value
       for name, value in fields.items()})
  return config


def variants(model: str) -> dict:
  """Name -> config of every timed step; backprop first, the ratios' denominator."""
  configs = {"backprop": _config(model, "backprop"), "forward K=1": _config(model, "forward")}
  for estimator in ("activity", "local_activity"):
    for k in ACTIVITY_DIRECTIONS:
      configs[f"{estimator} K={k}"] = _config(model, estimator, num_directions=k)
  for groups in UNIT_GROUPS:
    configs[f"local_activity K=1 G={groups}"] = _config(model, "local_activity",
                                                         unit_groups=groups)
  if model == "mlp":  # losses per slice need blocks of one layer
    for groups in LOCAL_GROUPS:
      configs[f"local_activity K=1 local_groups={groups}"] = _config(
          model, "local_activity", slices=groups)
    for groups in SHARED_GROUPS:
      configs[f"local_activity K=1 shared local_groups={groups}"] = _config(
          model, "local_activity", slices=groups, slice_head="shared")
  else:  # the conv nets' blocks hold two conv layers: local losses per layer
    configs["local_activity K=1 per layer"] = _config(model, "local_activity",
                                                      loss_per="layer")
    configs[f"local_activity K=1 per layer shared local_groups={LAYER_SHARED_GROUPS}"] = (
        _config(model, "local_activity", loss_per="layer",
                slices=LAYER_SHARED_GROUPS, slice_head="shared"))
    patch_heads = ("local_activity K=1 per layer 2x2 patches shared local_groups="
                   f"{PATCH_SHARED_GROUPS}")
    patch_fields = {"loss_per": "layer", "patches": 2, "slices": PATCH_SHARED_GROUPS,
                    "slice_head": "shared"}
    exact_heads = ((" exact heads", {"exact_heads": True}),
                   (" exact heads clipped", {"exact_heads": True, "grad_clip_norm": 1.0}))
    for suffix, fields in (("", {}), *exact_heads):
      configs[patch_heads + suffix] = _config(model, "local_activity", **patch_fields, **fields)
    unit_heads = "local_activity K=1 per layer every position shared per unit"
    unit_fields = {"loss_per": "layer", "patches": 0, "slices": 0, "slice_head": "shared"}
    for suffix, fields in exact_heads:
      configs[unit_heads + suffix] = _config(model, "local_activity", **unit_fields, **fields)
  configs["local_backprop"] = _config(model, "local_backprop")
  if model == "mlp":
    configs["local_backprop local_groups=32"] = _config(model, "local_backprop", slices=32)
  else:
    configs["local_backprop per layer"] = _config(model, "local_backprop",
                                                  loss_per="layer")
    configs["local_backprop per layer 2x2 patches"] = _config(
        model, "local_backprop", loss_per="layer", patches=2)
    configs["local_backprop per layer every position"] = _config(
        model, "local_backprop", loss_per="layer", patches=0)
  return configs


def measure(model: str, batch_size: int, steps: int, repeats: int, mode: str,
            only=None) -> dict:
  """Times every variant (those named in `only`, and backprop, if given) interleaved; returns
  the JSON report."""
  images, labels = common.synthetic_batches(model, steps, batch_size)
  calls = {name: common.step_call(model, config, images, labels, mode)
           for name, config in variants(model).items()
           if only is None or name == "backprop" or name in only}
  common.warm_up(calls)
  seconds = common.time_interleaved(calls, repeats)
  ms = {name: [1e3 * s / steps for s in values] for name, values in seconds.items()}
  rows = [{"name": name, "ms": statistics.median(values),
           "examples_per_s": 1e3 * batch_size / statistics.median(values),
           "ratio": common.paired_ratio(values, ms["backprop"]), "ms_per_repeat": values}
          for name, values in ms.items()]
  return {"model": model, "mode": mode, "batch_size": batch_size, "steps_per_call": steps,
          "repeats": repeats, "machine": common.machine_info(), "rows": rows}


def format_table(report: dict) -> str:
  lines = common.step_header(report)
  lines += common.markdown_table(
      ["step", "ms/step", "examples/s", "vs backprop"],
      [[row["name"], f"{row['ms']:.2f}", f"{row['examples_per_s']:,.0f}", f"{row['ratio']:.2f}"]
       for row in report["rows"]])
  return "\n".join(lines)


def main(argv):
  del argv  # cli.run refuses positional arguments
  unknown = sorted(set(FLAGS.only or ()) - set(variants(FLAGS.model)))
  if unknown:
    raise cli.UserError(f"--only: unknown variant(s) {', '.join(unknown)}; choose from "
                        f"{', '.join(variants(FLAGS.model))}")
  steps, repeats = DEFAULTS[FLAGS.model]
  report = measure(FLAGS.model, FLAGS.batch_size, FLAGS.steps or steps,
                   FLAGS.repeats or repeats, FLAGS.mode, FLAGS.only or None)
  common.publish(report, format_table(report), FLAGS.json)


if __name__ == "__main__":
  cli.run(main)

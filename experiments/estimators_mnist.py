"""Gradient estimators on MNIST, each against backprop: tuned on validation, trained with seeds.

  python -m experiments.estimators_mnist --data_source=npz --data_path=<data dir>/mnist.npz
  python -m experiments.estimators_mnist --models=cnn ...    # the MNIST CNN (wants a GPU)

For each model of `--models` (Table I's MNIST MLP and CNN, with Table I's data, batch 64 and
epochs) and each optimizer of `--optimizers` (SGD, Adam):

1. the activity estimators (ESTIMATORS below: activity perturbation with one tangent; with
   local losses, one tangent and a derivative per group of 32 units (`unit_groups`, 32 jvps);
   and with losses per slice (`local_heads.slices`, one jvp; the MLP only, whose blocks are one
   layer each): each block's local head split into 32 classifiers, each reading its own slice
   of 32 units, or one head shared by 32 or 1024 slices (of 32 units, or one unit each), each
   slice's loss moved by its units alone (`local_heads.slice_head="shared"`); for the CNN, whose
   blocks hold two conv layers, local losses per layer (`local_heads.loss_per="layer"`) under a
   shared head with 64 slices, one per channel (16 units of the dense layer), and the same with
   heads reading the conv maps' 2 x 2 patches (`local_heads.patches=2`) and 256 slices, one per
   patch and channel (4 dense units), also with `exact_heads` (`_xh`: the heads take their
   loss's exact gradient), and with the estimate then clipped to global norm 1 or 3 (`_xh_c1`,
   `_xh_c3`, `grad_clip_norm`); and with exact heads reading every position of the map they close on
   (`local_heads.patches=0`, the pooled map where pooling follows) and a slice per unit they read
   (`local_heads.slices=0`: one conv unit each, or the 2 x 2 units of one pooling window),
   `local_activity_k1_layer_units_xh`; and, for reference, `local_backprop`, `local_backprop_l32`,
   `local_backprop_layer`, `local_backprop_layer_p2` and `local_backprop_layer_units`, the exact
   gradients of the same local losses (greedy local learning), per block, per slice, per layer or
   per layer on patches or on every position:
   what the local-loss forward gradients estimate, without their noise) start from the backprop
   row's
   config (`configs/mnist_<model>_<optimizer>_bp.py`: PyTorch initialisation, the plain
   cross-entropy, no clip), and their learning rate is tuned on the validation split by
   `fgjax.sweep` (`--tune_epochs` epochs per trial, `GRIDS[model, optimizer, estimator]` where
   there is one, else `GRIDS[model, optimizer]`, one seed), in
   `<workdir>/sweeps/<model>_<optimizer>_<estimator>`;
2. the best learning rate trains `--num_seeds` seeds at the full 50 epochs, in
   `<workdir>/<model>_<optimizer>_<estimator>_<N>seeds`; if the run diverges, the next smaller
   rate that completed its tuning trial does, in `..._<estimator>_lr<rate>_<N>seeds`, and so on
   (the report shows every such run);
3. the weight-perturbation forward gradient and backprop are Table I's rows
   (`mnist_<model>_<optimizer>_{fwd,bp}`, their paper settings, the learning rates the paper
   tuned), read from `--table1_root` where a run of at least `--num_seeds` seeds is there, else
   trained with `--num_seeds` seeds in `<workdir>/<row>_<N>seeds`.

Reported (`--out`, a markdown table, and a figure beside it): test loss and accuracy, mean +- std
over the seeds; the steps until the validation loss (evaluated at every epoch's end, 781 steps)
first reaches each of TARGETS, the median over seeds ("-" if a seed never does); and the step time
relative to backprop's from the model's benchmarks/estimator_step_time.py JSON among
`--step_times` (STEP_TIMES by default; measured side by side in one process, on the machine it
names: pass the one of the machine the runs trained on). The figure
draws the validation loss against steps, the mean over seeds and their range, a panel per model
and optimizer. Finished sweeps and runs are read, not trained again; a killed run resumes.
The report reads each run from its record (`experiments.records`: summaries, configs and epoch
rows), which it first writes under `--records` (experiments/results/estimator_runs/), so that
`--report_only`, which trains nothing and reports the finished runs there are in the workdir or
else among the records, rebuilds a published report in a fresh clone. Neither output is replaced
unless `--overwrite`.
"""

import math
import os
import re
import sys

from absl import flags
from absl import logging
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from experiments import records  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import runs  # pylint: disable=g-import-not-at-top,wrong-import-position
from fgjax import cli  # pylint: disable=g-import-not-at-top,wrong-import-position
from fgjax import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position
from fgjax import workdir as workdir_files  # pylint: disable=g-import-not-at-top,wrong-import-position

MODELS = ("mlp", "cnn")
OPTIMIZERS = ("sgd", "adam")
# The CNN's local estimate per layer with heads on 2 x 2 patches and one slice per (patch,
# channel) under a shared head, which the `_xh` variants extend.
PATCH_HEADS = {"estimator": "local_activity", "num_directions": 1,
               "local_heads.loss_per": "layer", "local_heads.patches": 2,
               "local_heads.slices": 256, "local_heads.slice_head": "shared"}
# ... and with heads reading every position of the maps, a slice per unit they read: each
# derivative then covers one unit (a conv unit, or one pooling window's).
UNIT_HEADS = {**PATCH_HEADS, "local_heads.patches": 0, "local_heads.slices": 0}
# name -> the config overrides of the estimator (on the backprop row's config, by dotted name):
# the estimator, one tangent per example, and its unit groups (`unit_groups`) or losses per slice
# (`local_heads.slices`, `local_heads.slice_head`).
ESTIMATORS = {
    "activity_k1": {"estimator": "activity", "num_directions": 1},
    "local_activity_k1_g32": {"estimator": "local_activity", "num_directions": 1,
                              "unit_groups": 32},
    "local_activity_k1_l32": {"estimator": "local_activity", "num_directions": 1,
                              "local_heads.slices": 32},
    "local_activity_k1_s32": {"estimator": "local_activity", "num_directions": 1,
                              "local_heads.slices": 32, "local_heads.slice_head": "shared"},
    "local_activity_k1_s1024": {"estimator": "local_activity", "num_directions": 1,
                                "local_heads.slices": 1024, "local_heads.slice_head": "shared"},
    "local_activity_k1_layer_s64": {"estimator": "local_activity", "num_directions": 1,
                                    "local_heads.loss_per": "layer", "local_heads.slices": 64,
                                    "local_heads.slice_head": "shared"},
    "local_backprop": {"estimator": "local_backprop", "num_directions": 1},
    "local_backprop_l32": {"estimator": "local_backprop", "num_directions": 1,
                           "local_heads.slices": 32},
    "local_backprop_layer": {"estimator": "local_backprop", "num_directions": 1,
                             "local_heads.loss_per": "layer"},
    "local_activity_k1_layer_p2_s256": PATCH_HEADS,
    "local_activity_k1_layer_p2_s256_xh": {**PATCH_HEADS, "exact_heads": True},
    "local_activity_k1_layer_p2_s256_xh_c1": {**PATCH_HEADS, "exact_heads": True,
                                              "grad_clip_norm": 1.0},
    "local_activity_k1_layer_p2_s256_xh_c3": {**PATCH_HEADS, "exact_heads": True,
                                              "grad_clip_norm": 3.0},
    "local_backprop_layer_p2": {"estimator": "local_backprop", "num_directions": 1,
                                "local_heads.loss_per": "layer", "local_heads.patches": 2},
    "local_activity_k1_layer_units_xh": {**UNIT_HEADS, "exact_heads": True},
    "local_backprop_layer_units": {"estimator": "local_backprop", "num_directions": 1,
                                   "local_heads.loss_per": "layer", "local_heads.patches": 0}}
# Learning rates tried per (model, optimizer), low:high:num. With SGD the CNN's activity
# perturbation diverged within 200 steps at every rate from 1e-3 to 0.3 (each of its conv layers
# perturbs about 40,000 units per example, the MLP's layers 1,024), so its grid lies lower. An
# estimator whose derivatives each cover few units gets its own grid, (model, optimizer, name),
# reaching up to backprop's rates: per layer with a derivative per channel, and the exact local
# gradients.
GRIDS = {("mlp", "sgd"): "1e-3:0.3:6", ("mlp", "adam"): "1e-5:3e-3:6",
         ("cnn", "sgd"): "1e-5:1e-3:6", ("cnn", "adam"): "1e-5:3e-3:6",
         ("cnn", "sgd", "local_activity_k1_layer_s64"): "1e-4:0.1:7",
         ("cnn", "sgd", "local_backprop_layer"): "1e-3:0.3:6",
         ("cnn", "sgd", "local_activity_k1_layer_p2_s256"): "1e-4:0.1:7",
         ("cnn", "sgd", "local_activity_k1_layer_p2_s256_xh"): "3e-3:0.1:4",
         ("cnn", "sgd", "local_activity_k1_layer_p2_s256_xh_c1"): "0.01:0.3:4",
         ("cnn", "sgd", "local_activity_k1_layer_p2_s256_xh_c3"): "0.01:0.3:4",
         ("cnn", "sgd", "local_backprop_layer_p2"): "1e-3:0.3:6",
         ("cnn", "sgd", "local_activity_k1_layer_units_xh"): "0.01:0.3:4",
         ("cnn", "adam", "local_activity_k1_layer_units_xh"): "3e-5:1e-3:4",
         ("cnn", "sgd", "local_backprop_layer_units"): "0.01:0.3:4"}
SIDES = ("forward", *ESTIMATORS, "backprop")  # the report's order, and the figure's colours
COLOURS = plt.get_cmap("tab20")  # one of 20 per side (matplotlib's default cycle has 10)
TARGETS = (0.5, 0.2, 0.1)  # validation losses for "steps to target"
# benchmarks/estimator_step_time.py's reports, one per model, from the kind of machine it trains
# on by default: the MLP's on the CPU, the CNN's on one H200 (a 50-epoch CNN run on a CPU is hours).
STEP_TIMES = tuple(os.path.join(runs.REPO, "benchmarks", "results", name) for name in (
    "estimator_step_time_mlp.json", "estimator_step_time_cnn_h200.json"))
PATCH_HEADS_STEP = "local_activity K=1 per layer 2x2 patches shared local_groups=256"
STEP_TIME_NAMES = {"activity_k1": "activity K=1",
                   "local_activity_k1_g32": "local_activity K=1 G=32",
                   "local_activity_k1_l32": "local_activity K=1 local_groups=32",
                   "local_activity_k1_s32": "local_activity K=1 shared local_groups=32",
                   "local_activity_k1_s1024": "local_activity K=1 shared local_groups=1024",
                   "local_backprop": "local_backprop",
                   "local_activity_k1_layer_s64":
                       "local_activity K=1 per layer shared local_groups=64",
                   "local_backprop_l32": "local_backprop local_groups=32",
                   "local_backprop_layer": "local_backprop per layer",
                   "local_activity_k1_layer_p2_s256": PATCH_HEADS_STEP,
                   "local_activity_k1_layer_p2_s256_xh": f"{PATCH_HEADS_STEP} exact heads",
                   "local_activity_k1_layer_p2_s256_xh_c1":
                       f"{PATCH_HEADS_STEP} exact heads clipped",
                   "local_activity_k1_layer_p2_s256_xh_c3":  # a clip costs the same at any norm
                       f"{PATCH_HEADS_STEP} exact heads clipped",
                   "local_backprop_layer_p2": "local_backprop per layer 2x2 patches",
                   "local_activity_k1_layer_units_xh":
                       "local_activity K=1 per layer every position shared per unit exact heads",
                   "local_backprop_layer_units": "local_backprop per layer every position",
                   "forward": "forward K=1", "backprop": "backprop"}

def _with_data(config, args):
  """`config` with the data options and `args.epochs` applied."""
  if args.epochs:
    config.num_epochs = args.epochs
  return runs.with_data(config, args)


def _suffix(args) -> str:
  """A final run's name ends in `_<E>ep` when shortened, then `_<N>seeds`."""
  return (f"_{args.epochs}ep" if args.epochs else "") + f"_{args.num_seeds}seeds"


def tuned_runs(model: str, optimizer: str, name: str, args) -> list[str]:
  """Tunes the learning rate of estimator `name` (step 1) and trains the best with seeds (step
  2). A rate chosen on the short tuning budget may diverge later in the full run: then the
  next smaller rate that completed its tuning trial is trained, and so on. Returns the runs'
  workdirs, the one that completed (if any) last."""
  row = f"mnist_{model}_{optimizer}_bp"
  config = _with_data(runs.row_config(row), args)
  overrides = dict(ESTIMATORS[name])
  config.update_from_flattened_dict(overrides)
  logging.info("tuning %s, %s with %s", model, name, optimizer)
  results = sweep.sweep(
      config, os.path.join(args.workdir, "sweeps", f"{model}_{optimizer}_{name}"),
      space={"learning_rate": sweep.parse_spec(
          "learning_rate", GRIDS.get((model, optimizer, name), GRIDS[model, optimizer]))},
      epochs=args.tune_epochs, config_spec=f"configs/{row}.py", config_overrides=overrides)
  rates = [setting["hyperparameters"]["learning_rate"] for setting in results["settings"]
           if setting["status"] == "completed"]
  if not rates:
    raise cli.UserError(f"every learning rate of {model} {optimizer} {name} diverged; widen "
                        "GRIDS")
  config.num_seeds = args.num_seeds
  run_dirs = []
  while rates:
    config.learning_rate = rates[0]
    fallback = f"_lr{rates[0]:g}" if run_dirs else ""
    run_dirs.append(os.path.join(args.workdir,
                                 f"{model}_{optimizer}_{name}{fallback}{_suffix(args)}"))
    logging.info("training %s, %s with %s, learning rate %g, %d seeds", model, name, optimizer,
                 config.learning_rate, args.num_seeds)
    if runs.train_run(config, run_dirs[-1])["status"] == "completed":
      break
    rates = [rate for rate in rates if rate < config.learning_rate]
  return run_dirs


def _table1_found(row: str, args):
  """The row's finished run in --table1_root, else among the records, if it has at least
  --num_seeds seeds (and the run is not shortened), else None."""
  if args.epochs:
    return None
  return (runs.full_run_with_seeds(args.table1_root, row, args.num_seeds)
          or runs.full_run_with_seeds(args.records, row, args.num_seeds))


def table1_run(model: str, optimizer: str, side: str, args) -> str:
  """Table I's row of `side` (fwd or bp) for `model` and `optimizer` with at least --num_seeds
  seeds (step 3): the one in --table1_root, or trained here."""
  row = f"mnist_{model}_{optimizer}_{side}"
  found = _table1_found(row, args)
  if found:
    return found
  config = _with_data(runs.row_config(row), args)
  config.num_seeds = args.num_seeds
  run_dir = os.path.join(args.workdir, f"{row}{_suffix(args)}")
  logging.info("training Table I's %s, %d seeds", row, args.num_seeds)
  runs.train_run(config, run_dir)
  return run_dir


def finished_runs(model: str, optimizer: str, name: str, args) -> list[str]:
  """The finished runs of `name` for `model` and `optimizer` that steps 1-3 left, in the order
  they trained (an estimator's tuned rate first, then its fallbacks, falling rates), from the
  workdir or else the records; none is trained. [] if there is none."""
  finished = lambda d: os.path.isfile(os.path.join(d, workdir_files.SUMMARY_FILE))
  if name in ("forward", "backprop"):
    row = f"mnist_{model}_{optimizer}_{'fwd' if name == 'forward' else 'bp'}"
    found = _table1_found(row, args)
    candidates = [found] if found else [os.path.join(root, f"{row}{_suffix(args)}")
                                        for root in (args.workdir, args.records)]
    return [d for d in candidates if finished(d)][:1]
  pattern = re.compile(re.escape(f"{model}_{optimizer}_{name}") + r"(?:_lr([0-9.e+-]+))?"
                       + re.escape(_suffix(args)))
  matches = {}
  for root in (args.records, args.workdir):  # a run in the workdir over its record
    for entry in sorted(os.listdir(root)) if os.path.isdir(root) else []:
      match = pattern.fullmatch(entry)
      if match and finished(os.path.join(root, entry)):
        matches[entry] = (-math.inf if match[1] is None else -float(match[1]),
                          os.path.join(root, entry))
  return [path for _, path in sorted(matches.values())]


def record(run_dir: str, args) -> str:
  """The record of the finished run in `run_dir` under --records (experiments.records), written
  there unless `run_dir` is that record."""
  target = os.path.join(args.records, os.path.basename(run_dir))
  if os.path.abspath(run_dir) != os.path.abspath(target):
    records.export_run(run_dir, target, test_losses=False)
  return target


def validation_curves(run: dict) -> tuple[np.ndarray, np.ndarray]:
  """`(steps, losses)`: the validation loss at every epoch's end, losses shaped (seeds, epochs),
  NaN after a seed diverged."""
  curves = []
  for trial_dir in runs.trial_dirs(run).values():
    rows = [r for r in workdir_files.read_metrics(trial_dir) if "validation_loss" in r]
    curves.append(([r["step"] for r in rows], [r["validation_loss"] for r in rows]))
  steps = max((steps for steps, _ in curves), key=len)
  losses = np.full((len(curves), len(steps)), np.nan)
  for i, (_, curve) in enumerate(curves):
    losses[i, :len(curve)] = curve
  return np.array(steps), losses


def steps_to(steps: np.ndarray, losses: np.ndarray, target: float):
  """The median over seeds of the first step whose validation loss is <= target; None if a seed
  never reaches it."""
  firsts = []
  for curve in losses:
    reached = np.flatnonzero(curve <= target)
    if not reached.size:
      return None
    firsts.append(steps[reached[0]])
  return int(np.median(firsts))


def _test_cells(aggregate: dict) -> str:
  """The test loss and accuracy cells of a run of seeds: mean +- std, or where its seeds
  diverged."""
  if aggregate["status"] == "completed":
    stats = aggregate["aggregate"]
    return " | ".join(f"{stats[name]['mean']:.4f} +- {stats[name]['std']:.4f}"
                      for name in ("test_loss", "test_accuracy"))
  return f"{runs.divergence(aggregate)} | -"


def report(results: dict, step_times: dict) -> str:
  """The markdown report: one table row per (model, optimizer, estimator); `step_times` holds
  each model's step-time report, if there is one."""
  lines = ["| model | optimizer | estimator | learning rate | seeds | test loss | test accuracy | "
           + " | ".join(f"steps to val. loss {t}" for t in TARGETS) + " | step time vs backprop |",
           "|---|---|---|---:|---:|---:|---:|" + "---:|" * len(TARGETS) + "---:|"]
  for (model, optimizer, name), run_list in results.items():
    ratios = {row["name"]: row["ratio"] for row in step_times[model]["rows"]
              } if model in step_times else {}
    ratio = ratios.get(STEP_TIME_NAMES[name])
    if not run_list:
      not_run = why_not(model, name) or "not run"
      lines.append(f"| {runs.LABELS[model]} | {runs.LABELS[optimizer]} | {name} | {not_run} | "
                   + " | ".join(["-"] * (4 + len(TARGETS))) + " |")
    for run in run_list:
      steps, losses = validation_curves(run)
      cell = lambda s: "-" if s is None else f"{s:,}"
      lines.append(f"| {runs.LABELS[model]} | {runs.LABELS[optimizer]} | {name} | "
                   f"{run['config']['learning_rate']:g} | {run['aggregate']['num_seeds']} | "
                   + _test_cells(run["aggregate"]) + " | "
                   + " | ".join(cell(steps_to(steps, losses, t)) for t in TARGETS)
                   + f" | {'-' if ratio is None else f'{ratio:.2f}x'} |")
  return "\n".join(lines)


def plot(results: dict, path: str) -> None:
  """Validation loss against steps, one panel per model and optimizer: the seeds' mean and
  range."""
  panels = list(dict.fromkeys((model, optimizer) for model, optimizer, _ in results))
  figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
  for axis, (model, optimizer) in zip(axes[0], panels):
    for name, run_list in ((key[2], value) for key, value in results.items()
                           if key[:2] == (model, optimizer)):
      if not run_list:
        continue
      run = run_list[-1]  # the learning rate whose run completed, if one did
      steps, losses = validation_curves(run)
      line, = axis.plot(steps, np.nanmean(losses, 0), color=COLOURS(SIDES.index(name)),
                        label=f"{name}, γ {run['config']['learning_rate']:g}")
      axis.fill_between(steps, np.nanmin(losses, 0), np.nanmax(losses, 0),
                        color=line.get_color(), alpha=0.2)
    axis.set(yscale="log", xlabel="training step", ylabel="validation loss",
             title=f"MNIST {runs.LABELS[model]}, {runs.LABELS[optimizer]}")
    axis.grid(True, which="major", alpha=0.3)
    axis.legend(fontsize="small")
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)


def why_not(model: str, name: str):
  """Why estimator `name` cannot train `model` (the report's cell), or None if it can:
  losses per slice need blocks of one layer, which the MLP has, and any model with local
  losses per layer (the CNN's blocks are two convolutions); heads reading patches need conv
  maps, which the MLP lacks."""
  options = ESTIMATORS[name]
  if options.get("local_heads.patches", 1) != 1 and model == "mlp":
    return "needs conv maps"
  if (options.get("local_heads.slices", 1) != 1 and model != "mlp"
      and options.get("local_heads.loss_per") != "layer"):
    return "needs one-layer blocks"
  return None


def read_step_times(paths, models) -> tuple[dict, dict]:
  """The path and the content of each of `paths` (estimator_step_time JSON reports) by the model
  it times, for the models of `models`; a path that is not there is skipped. UserError if two
  time one model."""
  found, times = {}, {}
  for path in paths:
    report_json = workdir_files.read_json(path) if os.path.isfile(path) else None
    model = report_json and report_json["model"]
    if model in models and model in found:
      raise cli.UserError(f"--step_times: {found[model]} and {path} both time the {model}")
    if model in models:
      found[model], times[model] = path, report_json
  return found, times


def run_all(args) -> str:
  """Steps 1-3 for every model of `args.models` and optimizer of `args.optimizers` (and the
  tuned estimators of `args.estimators`), then the report and its figure, written to `args.out`
  (refused if there, unless `args.overwrite`); returns the report."""
  for flag, given, known in (("models", args.models, MODELS),
                             ("optimizers", args.optimizers, OPTIMIZERS),
                             ("estimators", args.estimators, tuple(ESTIMATORS))):
    if set(given) - set(known) or not given:
      raise cli.UserError(f"--{flag}={','.join(given)}: choose from {','.join(known)}")
  if args.num_seeds < 2:
    raise cli.UserError(f"--num_seeds={args.num_seeds}: the report gives mean +- std over seeds; "
                        "use at least 2")
  figure_path = os.path.splitext(args.out)[0] + ".png"
  existing = [p for p in (args.out, figure_path) if os.path.exists(p)]
  if existing and not args.overwrite:
    raise cli.UserError(f"{', '.join(existing)}: already there; pass --overwrite to replace")
  step_time_paths, step_times = read_step_times(args.step_times, args.models)
  setups = [(model, optimizer) for model in args.models for optimizer in args.optimizers]
  names = [name for name in SIDES if name in ("forward", *args.estimators, "backprop")]
  if args.report_only:
    dirs = {(*setup, name): finished_runs(*setup, name, args) for setup in setups
            for name in names}
  else:
    dirs = {(*setup, name): tuned_runs(*setup, name, args) if not why_not(setup[0], name) else []
            for setup in setups for name in args.estimators}
    for setup in setups:
      dirs[(*setup, "forward")] = [table1_run(*setup, "fwd", args)]
      dirs[(*setup, "backprop")] = [table1_run(*setup, "bp", args)]
  results = {(*setup, name): [runs.load_run(record(run_dir, args))
                              for run_dir in dirs[(*setup, name)]]
             for setup in setups for name in names}
  machines = sorted({workdir_files.format_machine(run["machine"])
                     for run_list in results.values() for run in run_list if run["machine"]})
  options = (f"--models={','.join(args.models)} --optimizers={','.join(args.optimizers)} "
             f"--estimators={','.join(args.estimators)} "
             f"--num_seeds={args.num_seeds} --tune_epochs={args.tune_epochs}"
             + (f" --epochs={args.epochs}" if args.epochs else "")
             + ("" if [os.path.abspath(path) for path in args.step_times] == list(STEP_TIMES)
                else " --step_times=" + ",".join(os.path.relpath(os.path.abspath(path), runs.REPO)
                                                 for path in args.step_times))
             + (" --report_only" if args.report_only else ""))
  text = ["# Gradient estimators on MNIST against backprop", "",
          f"Made by `python -m experiments.estimators_mnist {options}`; the module's docstring "
          f"says what each row is. Trained on: {'; '.join(machines) or 'unrecorded'}.", "",
          report(results, step_times), ""]
  for model, times in step_times.items():
    text += [f"Step times of the {runs.LABELS[model]}: `benchmarks/estimator_step_time.py` "
             f"({os.path.relpath(step_time_paths[model], runs.REPO)}), on "
             f"{workdir_files.format_machine(times['machine'])}, load average "
             f"{times['machine']['load_average_at_start']:.1f} at start.", ""]
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  plot(results, figure_path)
  workdir_files.write_text(args.out, "\n".join(text))
  return "\n".join(text)


def main(argv):
  if len(argv) > 1:
    raise cli.UserError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  print(run_all(FLAGS))
  print(f"wrote {FLAGS.out} and its figure", file=sys.stderr)


def _define_flags():
  """The command line (defined only when run, so that tests can import this)."""
  runs.define_data_flags()
  flags.DEFINE_string("workdir", os.path.join(runs.REPO, "runs", "estimators_mnist"),
                      "Where the sweeps and runs go.")
  flags.DEFINE_string("table1_root", os.path.join(runs.REPO, "runs", "table1"),
                      "Where Table I's runs are (experiments.table1 --workdir_root).")
  flags.DEFINE_integer("num_seeds", 3, "Seeds of every final run.")
  flags.DEFINE_integer("tune_epochs", 2, "Epochs of every tuning trial.")
  flags.DEFINE_integer("epochs", None, "Shorten every final run to this many epochs (then "
                       "Table I's runs are not read but trained, as short).")
  flags.DEFINE_list("models", ["mlp"], "Models to run, in this order: mlp, cnn.")
  flags.DEFINE_list("optimizers", list(OPTIMIZERS), "Optimizers to run, in this order.")
  flags.DEFINE_list("estimators", list(ESTIMATORS), "Tuned estimators to run, in this order; "
                    "forward and backprop are always in the report.")
  flags.DEFINE_string("records", records.ESTIMATOR_RUNS_RECORDS, "Where the reported runs' "
                      "records go, from which a fresh clone's --report_only reads them.")
  flags.DEFINE_list("step_times", list(STEP_TIMES), "benchmarks/estimator_step_time.py's JSON "
                    "reports to read the step times from, at most one per model.")
  flags.DEFINE_string("out", os.path.join(runs.REPO, "experiments", "results",
                                          "estimators_mnist.md"), "The markdown report.")
  flags.DEFINE_bool("report_only", False, "Train nothing: report the finished runs there are "
                    "(a missing one is a row 'not run').")
  flags.DEFINE_bool("overwrite", False, "Replace --out and its figure if they exist.")


FLAGS = flags.FLAGS

if __name__ == "__main__":
  _define_flags()
  cli.run(main)

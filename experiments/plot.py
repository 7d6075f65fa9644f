"""The paper's Figures 1 and 2, and loss against wall-clock time, from the runs' metrics.jsonl.

  python -m experiments.plot                     # the paper's hyperparameters
  python -m experiments.plot --variant=tuned     # the sweep-tuned runs (files end in _tuned)

Reads the runs `experiments.table1` trains (`--workdir_root`, default runs/table1; per row the
run at the paper's length, else the longest shortened one; of a run of several seeds, the mean
curve over the seeds with the band from the lowest to the highest) and writes under `--out_dir`
(default experiments/results):
  figure2_mnist.png   MNIST: {MLP, CNN} x {SGD, Nesterov, Adam}, forward gradient vs backprop
                      training loss over iterations (the paper's Figure 2)
  figure1_cifar.png   the same for CIFAR-10 with SGD (the paper's Figure 1)
  wallclock.png       every pair's training loss against wall-clock minutes: per-step speed and
                      convergence together, the comparison that decides whether forward
                      gradients save time
  sweeps.png          final validation loss against learning rate for every row swept into
                      `--sweep_root/<row>` or `<row>_<E>ep` (fgjax.sweep), if any
A missing run leaves its curve out, its legend entry says "not run yet", and the output lists it.
The y axis is logarithmic where the curves span more than a factor of 20.

Each PNG records the rows it draws. The default place is the published one, so that figures of
the published runs update it in place; a figure that would replace one drawing more rows (or one
that does not record its rows, as a fresh clone's published figures) stops the script with one
line before anything is written, unless `--overwrite`.
"""

import math
import os
from typing import Optional

from absl import flags
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
from matplotlib import ticker  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
from PIL import Image  # pylint: disable=g-import-not-at-top,wrong-import-position

from experiments import runs  # pylint: disable=g-import-not-at-top,wrong-import-position
from fgjax import cli  # pylint: disable=g-import-not-at-top,wrong-import-position
from fgjax import paper  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
ROWS_KEY = "Table I rows"  # the PNG text entry listing the rows a figure draws

STYLE = {"fwd": {"color": "tab:red", "label": "forward gradient"},
         "bp": {"color": "tab:blue", "label": "backprop"}}
MNIST_MODELS = ("mlp", "cnn")
OPTIMIZERS = ("sgd", "nesterov", "adam")


def _train_loss_rows(metrics: list) -> list:
  return [r for r in metrics if "train_loss" in r and r["train_loss"] is not None]


def load_curves(root: str, sweep_root: str, variant: str, row: str):
  """The row's run: (train-loss rows of each seed, label suffix), or None when it has not run."""
  workdir = runs.find_variant_run(root, sweep_root, row, variant)
  if workdir is None:
    return None
  run = runs.load_run(workdir)
  seeds = [_train_loss_rows(runs.workdir_files.read_metrics(d))
           for d in runs.trial_dirs(run).values()]
  suffix = ""
  if run["config"]["num_epochs"] < runs.row_config(row).num_epochs:
    suffix = f" ({run['summary']['epochs_completed']} ep., shortened)"
  if run["aggregate"]:
    suffix += f" (mean and range of {run['aggregate']['num_seeds']} seeds)"
  if run["summary"]["status"] != "completed":
    suffix += f" ({run['summary']['status']})"
  return seeds, suffix


def _spread(seeds: list) -> tuple:
  """The steps all seeds share, with the mean, lowest and highest train loss at each."""
  by_step = [{r["step"]: r for r in rows} for rows in seeds]
  common = sorted(set.intersection(*(set(rows) for rows in by_step)))
  values = np.array([[rows[step]["train_loss"] for step in common] for rows in by_step])
  elapsed = np.array([[rows[step]["elapsed_seconds"] for step in common] for rows in by_step])
  return (np.array(common), elapsed.mean(axis=0), values.mean(axis=0), values.min(axis=0),
          values.max(axis=0))


def _log_if_wide(ax, values) -> None:
  values = [v for v in values if v > 0 and math.isfinite(v)]
  if values and max(values) / min(values) > 20:
    ax.set_yscale("log")


def draw_pair(ax, root: str, sweep_root: str, variant: str, pair: str,
              x_key: str) -> list[str]:
  """Draws the pair's forward and backprop curves on `ax`; returns the rows drawn.

  A missing side gets a legend entry saying so; a panel with neither says "not run yet".
  """
  drawn, values = [], []
  scale = 1 / 60 if x_key == "elapsed_seconds" else 1  # wall-clock in minutes
  for method in ("fwd", "bp"):
    row = f"{pair}_{method}"
    curves = load_curves(root, sweep_root, variant, row)
    if curves is None or not curves[0]:
      ax.plot([], [], color=STYLE[method]["color"], ls=":",
              label=STYLE[method]["label"] + " (not run yet)")
      continue
    drawn.append(row)
    seeds, suffix = curves
    steps, elapsed, mean, low, high = _spread(seeds)
    xs = (steps if x_key == "step" else elapsed) * scale
    values += list(low) + list(high)
    ax.plot(xs, mean, lw=1.0, color=STYLE[method]["color"], label=STYLE[method]["label"] + suffix)
    if len(seeds) > 1:
      ax.fill_between(xs, low, high, color=STYLE[method]["color"], alpha=0.25, lw=0)
  if not drawn:
    ax.text(0.5, 0.5, "not run yet", transform=ax.transAxes, ha="center", va="center",
            color="gray")
    ax.set_xticks([])
    ax.set_yticks([])
    return drawn
  _log_if_wide(ax, values)
  ax.grid(True, which="major", alpha=0.3)
  ax.xaxis.set_major_locator(ticker.MaxNLocator(5))
  if x_key == "step":
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(
        lambda x, _: f"{x / 1000:g}k" if x else "0"))
  ax.legend(fontsize=8, loc="upper right")
  return drawn


def _title(pair: str) -> str:
  parts = pair.split("_")
  if parts[0] == "cifar":
    return "VGG CNN / SGD on CIFAR-10"
  return f"{runs.LABELS[parts[1]]} / {runs.LABELS[parts[2]]} on MNIST"


def figure2(root: str, sweep_root: str, variant: str) -> tuple:
  """The paper's Figure 2 from our runs, and the rows it draws."""
  fig, axes = plt.subplots(2, 3, figsize=(14, 7.5), constrained_layout=True)
  drawn = []
  for i, model in enumerate(MNIST_MODELS):
    for j, optimizer in enumerate(OPTIMIZERS):
      pair = f"mnist_{model}_{optimizer}"
      ax = axes[i, j]
      drawn += draw_pair(ax, root, sweep_root, variant, pair, "step")
      ax.set_title(_title(pair))
      ax.set_xlabel("iteration")
      ax.set_ylabel("training loss")
  fig.suptitle("Figure 2: MNIST training loss, forward gradient vs backprop "
               f"({variant} hyperparameters)")
  return fig, drawn


def figure1(root: str, sweep_root: str, variant: str) -> tuple:
  """The paper's Figure 1 from our runs, and the rows it draws."""
  fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
  drawn = draw_pair(ax, root, sweep_root, variant, "cifar", "step")
  ax.set_title(f"Figure 1: {_title('cifar')}, training loss ({variant} hyperparameters)")
  ax.set_xlabel("iteration")
  ax.set_ylabel("training loss")
  return fig, drawn


def wallclock(root: str, sweep_root: str, variant: str) -> tuple:
  """Every pair's training loss against wall-clock minutes, and the rows it draws."""
  pairs = [f"mnist_{m}_{o}" for m in MNIST_MODELS for o in OPTIMIZERS] + ["cifar"]
  fig, axes = plt.subplots(2, 4, figsize=(18, 7.5), constrained_layout=True)
  drawn = []
  for ax, pair in zip(axes.flat, pairs):
    drawn += draw_pair(ax, root, sweep_root, variant, pair, "elapsed_seconds")
    ax.set_title(_title(pair))
    ax.set_xlabel("wall-clock minutes")
    ax.set_ylabel("training loss")
  axes.flat[-1].axis("off")
  fig.suptitle(f"Training loss against wall-clock time ({variant} hyperparameters), compilation "
               "and evaluation included; each run's machine is in the Table I report")
  return fig, drawn


def sweeps(sweep_root: str) -> tuple:
  """Final validation loss against learning rate, one line per swept row, diverged as x; and the
  rows drawn. (None, []) when no row has been swept."""
  found = []
  for row in paper.TABLE_I_ROWS:
    results = runs.load_sweep(sweep_root, row)
    if results is not None:
      found.append((row, results))
  if not found:
    return None, []
  fig, ax = plt.subplots(figsize=(7.5, 5), constrained_layout=True)
  values, any_diverged = [], False
  for row, results in found:
    method = row.rsplit("_", 1)[1]
    # The best completed setting at each learning rate (others searched are minimised over).
    best_at, rates = {}, set()
    for s in results["settings"]:
      rate = s["hyperparameters"]["learning_rate"]
      rates.add(rate)
      if s["status"] == "completed":
        best_at[rate] = min(best_at.get(rate, math.inf), s["validation_loss"])
    searched = ", ".join(results["space"])
    label = (f"{row} ({results['epochs_per_trial']} ep./trial"
             + ("" if searched == "learning_rate" else f"; best over {searched}")
             + (f"; best γ {results['best']['hyperparameters']['learning_rate']:g})"
                if results.get("best") else ")"))
    done = sorted(best_at)
    line, = ax.plot(done, [best_at[r] for r in done], "o-",
                    color=STYLE[method]["color"] if len(found) <= 2 else None, label=label)
    values += list(best_at.values())
    diverged = sorted(rates - set(best_at))
    if diverged and best_at:
      any_diverged = True
      ax.plot(diverged, [max(best_at.values())] * len(diverged), "x", color=line.get_color(),
              ms=9, mew=2)
  ax.set_xscale("log")
  _log_if_wide(ax, values)
  ax.set_xlabel("learning rate γ")
  ax.set_ylabel("final validation loss")
  ax.set_title("Learning-rate sweeps" + (" (x: diverged, drawn at the top)" if any_diverged
                                         else ""))
  ax.grid(True, which="major", alpha=0.3)
  ax.legend(fontsize=8)
  return fig, [row for row, _ in found]


def rows_drawn(path: str) -> Optional[int]:
  """How many rows the PNG at `path` draws, as `save` records them; None if it does not say."""
  with Image.open(path) as image:
    rows = image.info.get(ROWS_KEY)
  return None if rows is None else len([row for row in rows.split(",") if row])


def save(figures: dict, overwrite: bool) -> None:
  """Writes each `figures[path] = (figure, rows drawn)` with its rows recorded, after checking
  that none would replace a figure of more rows (runs.refuse_fewer_rows)."""
  for path, (_, rows) in figures.items():
    if os.path.isfile(path):
      runs.refuse_fewer_rows(path, rows_drawn(path), len(rows), overwrite)
  for path, (fig, rows) in figures.items():
    fig.savefig(path, dpi=120, metadata={ROWS_KEY: ",".join(rows)})
    plt.close(fig)
    print(f"wrote {path}")


def _define_flags():
  """The command line (defined only when run, so that tests can import this)."""
  flags.DEFINE_string("workdir_root", os.path.join(runs.REPO, "runs", "table1"),
                      "Parent of the Table I runs (as experiments.table1 writes them).")
  flags.DEFINE_enum("variant", "paper", runs.VARIANTS, "The paper's or the tuned runs.")
  flags.DEFINE_string("sweep_root", os.path.join(runs.REPO, "runs", "sweeps"),
                      "Parent of the sweeps' workdirs, one per row.")
  flags.DEFINE_string("out_dir", os.path.join(runs.REPO, "experiments", "results"),
                      "Where the PNG files go.")
  flags.DEFINE_bool("overwrite", False, "Replace figures even if they draw more rows.")


def main(argv):
  del argv  # cli.run refuses positional arguments
  os.makedirs(FLAGS.out_dir, exist_ok=True)
  suffix = "" if FLAGS.variant == "paper" else "_tuned"
  out = lambda name: os.path.join(FLAGS.out_dir, f"{name}{suffix}.png")
  args = (FLAGS.workdir_root, FLAGS.sweep_root, FLAGS.variant)
  figures = {out("figure2_mnist"): figure2(*args), out("figure1_cifar"): figure1(*args),
             out("wallclock"): wallclock(*args)}
  if FLAGS.variant == "paper":
    fig, swept = sweeps(FLAGS.sweep_root)
    print(f"sweeps drawn: {', '.join(swept) if swept else 'none found'}")
    if fig is not None:
      figures[out("sweeps")] = (fig, swept)
  drawn = set(figures[out("figure2_mnist")][1] + figures[out("figure1_cifar")][1])
  missing = [row for row in paper.TABLE_I_ROWS if row not in drawn]
  if missing:
    print(f"missing runs ({FLAGS.variant}), left out of the figures: {', '.join(missing)}")
  save(figures, FLAGS.overwrite)


if __name__ == "__main__":
  _define_flags()
  cli.run(main)

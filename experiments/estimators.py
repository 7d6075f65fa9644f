"""How close each estimator's gradient is to the true one while it trains, on the embedded digits.

  python -m experiments.estimators                      # the configs' 50 epochs, a row per epoch
  python -m experiments.estimators --epochs=5 --every=4 --workdir=runs/est5 --out=runs/est5.png

Trains every side of configs/default.py (forward, forward_projection, activity, local_activity,
backprop) in `<--workdir>/<side>` (a finished run is read, not trained again) with
`diagnostics_every_steps=--every`, and `log_every_steps` no larger since a row is written at a
chunk's end. It draws, against training steps, each estimator's mean cosine similarity to the
true gradient and its relative variance E|ĝ - g|^2 / |g|^2 (fgjax.diagnostics), both on log
scales: the forward gradient's cosines are near sqrt(2 / (pi n)), below 1e-3 for the MLP's
n = 1.1M parameters, while backprop's are 1 (its variance, 0, is off the scale). A markdown table
(final test loss and accuracy, mean cosine and relative variance) is printed and written beside
the figure (`--out` with the suffix .md). Neither file is replaced unless `--overwrite`.
"""

import os

from absl import flags
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from fgjax import cli  # pylint: disable=g-import-not-at-top,wrong-import-position
from fgjax import config_loading  # pylint: disable=g-import-not-at-top,wrong-import-position
from fgjax import train  # pylint: disable=g-import-not-at-top,wrong-import-position
from fgjax import workdir as workdir_files  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIDES = ("forward", "forward_projection", "activity", "local_activity", "backprop")


def run_side(side: str, epochs, every: int, workdir: str) -> dict:
  """Trains (or reads the finished run of) one side; its summary and diagnostic rows."""
  config = config_loading.load_config(os.path.join(REPO, "configs", "default.py") + f":{side}")
  if epochs:
    config.num_epochs = epochs
  config.diagnostics_every_steps = every
  config.log_every_steps = min(config.log_every_steps, every)  # rows come at chunk ends
  run_dir = os.path.join(workdir, side)
  summary = train.train_and_evaluate(config, run_dir)
  rows = [row for row in workdir_files.read_metrics(run_dir) if "cosine" in row]
  return {"summary": summary, "rows": rows, "epochs": config.num_epochs}


def plot(results: dict, path: str) -> None:
  """Cosine and relative variance against steps, one curve per side."""
  figure, (cosine_axis, variance_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
  for side, result in results.items():
    steps = np.array([row["step"] for row in result["rows"]])
    for axis, name in ((cosine_axis, "cosine"), (variance_axis, "relative_variance")):
      values = np.array([np.nan if row[name] is None else row[name] for row in result["rows"]])
      shown = values > 0  # a log scale has no room for 0 (backprop's variance) or below
      axis.plot(steps[shown], values[shown], marker=".", label=side)
  cosine_axis.set(yscale="log", xlabel="training step", ylabel="cosine similarity to the gradient",
                  title="mean cosine of the estimate")
  variance_axis.set(yscale="log", xlabel="training step", ylabel="E|ĝ - g|² / |g|²",
                    title="relative variance of the estimate")
  cosine_axis.legend()
  for axis in (cosine_axis, variance_axis):
    axis.grid(True, which="major", alpha=0.3)
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)


def table(results: dict) -> str:
  """The markdown table of the sides' final test metrics and mean diagnostics."""
  fmt = lambda value, spec: "-" if value is None or not np.isfinite(value) else format(value, spec)
  mean = lambda rows, name: float(np.mean([r[name] for r in rows])) if rows and all(
      r[name] is not None for r in rows) else None
  lines = ["| estimator | status | test loss | test accuracy | mean cosine "
           "| mean relative variance |",
           "|---|---|---:|---:|---:|---:|"]
  for side, result in results.items():
    summary, rows = result["summary"], result["rows"]
    lines.append(f"| {side} | {summary['status']} | {fmt(summary['test_loss'], '.4f')} | "
                 f"{fmt(summary['test_accuracy'], '.4f')} | {fmt(mean(rows, 'cosine'), '.3g')} | "
                 f"{fmt(mean(rows, 'relative_variance'), '.3g')} |")
  return "\n".join(lines)


def _define_flags():
  """The command line (defined only when run, so that the module imports without it)."""
  flags.DEFINE_integer("epochs", None, "Epochs per side (default: the configs' 50).")
  flags.DEFINE_integer("every", 16, "Steps between diagnostic rows.", lower_bound=1)
  flags.DEFINE_string("workdir", os.path.join("runs", "estimators"), "Parent of the runs.")
  flags.DEFINE_string("out", os.path.join("experiments", "results", "estimator_diagnostics.png"),
                      "The figure; the table goes beside it with the suffix .md.")
  flags.DEFINE_bool("overwrite", False, "Replace existing output files.")


def main(argv):
  del argv  # cli.run refuses positional arguments
  markdown = os.path.splitext(FLAGS.out)[0] + ".md"
  existing = [path for path in (FLAGS.out, markdown) if os.path.exists(path)]
  if existing and not FLAGS.overwrite:
    raise cli.UserError(f"{', '.join(existing)}: already there; pass --overwrite to replace")
  results = {side: run_side(side, FLAGS.epochs, FLAGS.every, FLAGS.workdir) for side in SIDES}
  command = "python -m experiments.estimators" + (
      f" --epochs={FLAGS.epochs}" if FLAGS.epochs else "") + f" --every={FLAGS.every}"
  text = (f"# Gradient estimators against the true gradient while training\n\n"
          f"Made by `{command}`: configs/default.py's sides on the embedded digits, "
          f"{results['backprop']['epochs']} epoch(s), diagnostics (fgjax.diagnostics: 8 draws "
          f"on the first training batch) every {FLAGS.every} steps, on "
          f"{workdir_files.format_machine(workdir_files.describe_machine())}.\n\n"
          f"{table(results)}\n")
  print(text)
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
  plot(results, FLAGS.out)
  with open(markdown, "w", encoding="utf-8") as f:
    f.write(text)
  print(f"wrote {FLAGS.out} and {markdown}")


if __name__ == "__main__":
  _define_flags()
  cli.run(main)

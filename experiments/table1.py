"""Table I of Rike & Forland, reproduced: trains its rows and writes experiments/results/table1.md.

  python experiments/table1.py --rows=mnist_mlp_sgd_bp,mnist_mlp_sgd_fwd \
      --data_source=npz --data_path=../shared/data/mnist.npz     # rows at the paper's length
  python experiments/table1.py --rows=mnist_cnn_sgd_bp --epochs=2 \
      --data_source=npz --data_path=../shared/data/mnist.npz     # shortened, and labelled so
  python experiments/table1.py --tuned --rows=mnist_mlp_sgd_bp ...   # the sweep's best setting
  python experiments/table1.py --report_only                       # just rewrite the table

Each row trains `configs/<row>.py` with `fgjax.train.train_and_evaluate` into
`<workdir_root>/<row>` (`<row>_<E>ep` when `--epochs` shortens it; `tuned/<row>...` for the tuned
variant) and records the machine in `machine.json`. A workdir that already holds a summary.json is
not trained again, so an interrupted table resumes where it stopped.

The report covers all 14 rows whatever `--rows` ran: per row the run at the paper's length if there
is one, else the longest shortened one (labelled), else "not run". The tuned variant takes each
row's searched hyperparameters from `<sweep_root>/<row>/results.json` (written by
`python -m fgjax.sweep`; a sweep shortened into `<row>_<E>ep` is found too).

Steps to target: the first step at which the run's validation loss (measured after every epoch,
so the count is a whole number of epochs) is at or below the row's target, which is the lowest
non-zero test loss the paper reports for the row's pair (the forward-gradient and backprop rows of
the same model, optimizer and dataset): for MNIST the forward-gradient row's loss (the backprop
rows' 0.000 cannot be reached by a held-out loss), for CIFAR-10 backprop's 1.685. It asks: how
long does each method take to get where the better of the paper's two methods ended?
"""

import glob
import json
import math
import os
import sys

from absl import app
from absl import flags
from absl import logging

from fgjax import config_loading
from fgjax import paper
from fgjax import sweep
from fgjax import train
from fgjax.metrics_writer import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, "configs")
MACHINE_FILE = "machine.json"
VARIANTS = ("paper", "tuned")
LABELS = {"fwd": "forward gradient", "bp": "backprop", "mlp": "MLP", "cnn": "CNN",
          "vgg": "VGG CNN", "sgd": "SGD", "nesterov": "Nesterov", "adam": "Adam",
          "mnist": "MNIST", "cifar10": "CIFAR-10"}

FLAGS = flags.FLAGS


def row_config(row: str):
  return config_loading.load_config(os.path.join(CONFIG_DIR, f"{row}.py"))


def pair_name(row: str) -> str:
  """The row without its estimator suffix: what the forward and backprop rows share."""
  return row.rsplit("_", 1)[0]


def target_loss(row: str) -> float:
  """The lowest non-zero test loss the paper reports for the row's pair (module docstring)."""
  pair = pair_name(row)
  return min(loss for name, loss in paper.PAPER_TEST_LOSS.items()
             if pair_name(name) == pair and loss > 0)


def run_dir(root: str, row: str, variant: str, epochs) -> str:
  """Where a row's run lives: `<root>[/tuned]/<row>`, `_<E>ep` appended when shortened."""
  base = os.path.join(root, "tuned") if variant == "tuned" else root
  return os.path.join(base, row if epochs is None else f"{row}_{epochs}ep")


def find_run(root: str, row: str, variant: str):
  """The row's finished run: the paper's length if there, else the longest shortened one."""
  full = run_dir(root, row, variant, None)
  if os.path.isfile(os.path.join(full, train.SUMMARY_FILE)):
    return full
  shortened = [d for d in glob.glob(run_dir(root, row, variant, "*"))
               if os.path.isfile(os.path.join(d, train.SUMMARY_FILE))]
  return max(shortened, key=lambda d: int(d.rsplit("_", 1)[1][:-2]), default=None)


def load_run(workdir: str) -> dict:
  """A finished run's summary, config, metrics rows and machine (None if unrecorded)."""
  def read(name):
    path = os.path.join(workdir, name)
    if not os.path.isfile(path):
      return None
    with open(path, encoding="utf-8") as f:
      return json.load(f)

  return {"workdir": workdir, "summary": read(train.SUMMARY_FILE),
          "config": read(train.CONFIG_FILE), "metrics": read_metrics(workdir),
          "machine": read(MACHINE_FILE)}


def steps_to_target(metrics: list[dict], target: float):
  """The step of the first epoch row whose validation loss is <= target; None if none is."""
  for row in metrics:
    loss = row.get("validation_loss")
    if "epoch" in row and loss is not None and loss <= target:
      return row["step"]
  return None


def load_sweep(sweep_root: str, row: str):
  """The results.json of the row's sweep, `<sweep_root>/<row>` or `<sweep_root>/<row>_<E>ep`:
  of several, the one with the most epochs per trial; None if there is none."""
  found = []
  for workdir in [os.path.join(sweep_root, row), *glob.glob(os.path.join(sweep_root,
                                                                          f"{row}_*ep"))]:
    path = os.path.join(workdir, sweep.RESULTS_FILE)
    if os.path.isfile(path):
      with open(path, encoding="utf-8") as f:
        found.append(json.load(f))
  return max(found, key=lambda results: results["epochs_per_trial"], default=None)


def best_setting(sweep_root: str, row: str):
  """The searched hyperparameters of the row's sweep, or None if it has no successful one."""
  results = load_sweep(sweep_root, row)
  best = results and results["best"]
  return best and best["hyperparameters"]


def tuned_is_paper(sweep_root: str, row: str) -> bool:
  """Whether the row's sweep chose the paper's own setting: its tuned run is then the paper's."""
  setting = best_setting(sweep_root, row)
  return setting is not None and all(
      float(row_config(row)[name]) == value for name, value in setting.items())


def find_variant_run(root: str, sweep_root: str, row: str, variant: str):
  """find_run for a variant; a row whose sweep chose the paper's setting has its paper run as its
  tuned run."""
  if variant == "tuned" and tuned_is_paper(sweep_root, row):
    variant = "paper"
  return find_run(root, row, variant)


def configure(row: str, variant: str, args) -> tuple:
  """The row's config with the command line's overrides, and its workdir; None if the tuned
  variant has no sweep to take its setting from."""
  config = row_config(row)
  if variant == "tuned":
    setting = best_setting(args.sweep_root, row)
    if setting is None:
      return None, None
    config.update_from_flattened_dict(setting)
  for field, value in (("data.source", args.data_source), ("data.path", args.data_path),
                       ("data.tfds_data_dir", args.tfds_data_dir)):
    if value is not None:
      config.update_from_flattened_dict({field: value})
  if args.epochs is not None:
    config.num_epochs = args.epochs
  shortened = args.epochs if args.epochs is not None and args.epochs < row_config(row).num_epochs \
      else None
  return config, run_dir(args.workdir_root, row, variant, shortened)


def run_rows(rows, variant: str, args) -> None:
  """Trains each row not yet finished; a failing row is logged and the next one goes on."""
  for i, row in enumerate(rows, start=1):
    config, workdir = configure(row, variant, args)
    if config is None:
      logging.warning("[%d/%d] %s: no sweep results under %s/%s; skipped", i, len(rows), row,
                      args.sweep_root, row)
      continue
    if variant == "tuned" and tuned_is_paper(args.sweep_root, row):
      logging.info("[%d/%d] %s: the sweep chose the paper's setting; its run serves as the "
                   "tuned one", i, len(rows), row)
      continue
    if os.path.isfile(os.path.join(workdir, train.SUMMARY_FILE)):
      logging.info("[%d/%d] %s: already done in %s; skipped", i, len(rows), row, workdir)
      continue
    logging.info("[%d/%d] %s (%s, %d epochs) -> %s", i, len(rows), row, variant,
                 config.num_epochs, workdir)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, MACHINE_FILE), "w", encoding="utf-8") as f:
      json.dump(sweep.describe_machine(), f, indent=2)
    try:
      summary = train.train_and_evaluate(config, workdir)
    except Exception:  # pylint: disable=broad-except
      logging.exception("%s failed; going on with the next row", row)
      continue
    logging.info("%s: %s, test loss %s, test accuracy %s", row, summary["status"],
                 summary["test_loss"], summary["test_accuracy"])


def _fmt(value, spec=".4f") -> str:
  return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) \
      else format(value, spec)


def _loss(value) -> str:
  """A loss to 4 decimals, or in scientific notation when that would print it as 0.0000."""
  return _fmt(value, ".1e" if value is not None and 0 < value < 5e-4 else ".4f")


def _hyperparameters(config: dict) -> str:
  names = {"sgd": ("learning_rate", "decay"), "nesterov": ("learning_rate", "decay", "momentum"),
           "adam": ("learning_rate", "decay", "b1", "b2")}[config["optimizer"]]
  short = {"learning_rate": "γ", "decay": "decay", "momentum": "μ", "b1": "β1", "b2": "β2"}
  return ", ".join(f"{short[n]} {config[n]:g}" for n in names)


def _duration(seconds) -> str:
  if seconds is None:
    return "-"
  hours, rest = divmod(int(round(seconds)), 3600)
  return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def table_lines(root: str, sweep_root: str, variant: str,
                machines: dict) -> tuple[list[str], list[str]]:
  """The markdown table of one variant over all 14 rows, and the rows without a run."""
  header = ["row", "method", "hyperparameters", "epochs", "paper test loss", "our test loss",
            "test acc", "final train loss", "target val. loss", "steps to target",
            "steps", "wall-clock", "machine", "status"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  missing = []
  for row in paper.TABLE_I_ROWS:
    workdir = find_variant_run(root, sweep_root, row, variant)
    if workdir is None:
      missing.append(row)
      continue
    run = load_run(workdir)
    summary, config = run["summary"], run["config"]
    paper_epochs = row_config(row).num_epochs
    epochs = summary["epochs_completed"]
    epochs_text = f"{epochs}" if config["num_epochs"] == paper_epochs else \
        f"**{epochs} of {paper_epochs} (shortened)**"
    target = target_loss(row)
    reached = steps_to_target(run["metrics"], target)
    machine = sweep.format_machine(run["machine"])
    label = machines.setdefault(machine, f"M{len(machines) + 1}")
    status = summary["status"]
    if config["data"]["name"] != row_config(row).data.name:
      status += f" (data: {config['data']['name']})"
    if variant == "tuned" and tuned_is_paper(sweep_root, row):
      status += " (sweep chose the paper's setting: the paper run)"
    method = " / ".join(LABELS.get(p, p) for p in (row.rsplit("_", 1)[1], config["model"],
                                                   config["optimizer"], config["data"]["name"]))
    lines.append("| " + " | ".join([
        row, method, _hyperparameters(config), epochs_text,
        f"{paper.PAPER_TEST_LOSS[row]:.3f}", _fmt(summary["test_loss"]),
        _fmt(summary["test_accuracy"]), _loss(summary["train_loss"]), f"{target:.3f}",
        "not reached" if reached is None else str(reached), str(summary["steps"]),
        _duration(summary["wall_clock_seconds"]), label, status]) + " |")
  return lines, missing


def _lowest_epoch(run: dict, metric: str) -> dict:
  """The per-epoch metrics row with the lowest `metric` (e.g. "test_loss")."""
  epochs = [r for r in run["metrics"] if "epoch" in r and r.get(metric) is not None]
  return min(epochs, key=lambda r: r[metric])


def _backprop_evidence(run: dict) -> str:
  """One line of numbers on a backprop MNIST run: the bound its accuracy puts on its test loss,
  its final train loss, and its lowest test loss over the epochs."""
  summary = run["summary"]
  errors = 1 - summary["test_accuracy"]
  lowest = _lowest_epoch(run, "test_loss")
  return (f"test accuracy {summary['test_accuracy']:.4f}, so test loss >= ln 2 x {errors:.4f} "
          f"= {math.log(2) * errors:.4f}; ours {summary['test_loss']:.4f} after epoch "
          f"{summary['epochs_completed']}, lowest {lowest['test_loss']:.4f} at epoch "
          f"{lowest['epoch']}; final train loss {_loss(summary['train_loss'])}")


def tuning_notes(root: str, sweep_root: str) -> list[str]:
  """Each full-length tuned run against the paper-setting run of its row: final test loss and
  the epoch of the lowest validation loss, which shows whether the sweep's budget was long
  enough to rank the settings for the full run."""
  lines = []
  for row in paper.TABLE_I_ROWS:
    sweep_results = load_sweep(sweep_root, row)
    if sweep_results is None or tuned_is_paper(sweep_root, row):
      continue
    workdirs = {v: find_run(root, row, v) for v in VARIANTS}
    if None in workdirs.values():
      continue
    loaded = {v: load_run(w) for v, w in workdirs.items()}
    if any(r["config"]["num_epochs"] != row_config(row).num_epochs
           or r["summary"]["test_loss"] is None for r in loaded.values()):
      continue
    described = []
    for variant, name in (("paper", "paper's"),
                          ("tuned", f"{sweep_results['epochs_per_trial']}-epoch sweep's")):
      run = loaded[variant]
      lowest = _lowest_epoch(run, "validation_loss")
      described.append(f"{name} γ {run['config']['learning_rate']:g}: test loss "
                       f"{run['summary']['test_loss']:.4f}, lowest validation loss "
                       f"{lowest['validation_loss']:.4f} at epoch {lowest['epoch']}")
    lines.append(f"  - {row}: {'; '.join(described)}")
  if not lines:
    return []
  return [
      "- **Tuning on a short budget.** The sweeps rank settings by validation loss after a "
      "few epochs; the rows then train the paper's full length. Where the tuned row ends "
      "worse than the paper's setting, the sweep's budget was too short to rank the settings "
      "for a full run: a larger learning rate learns faster at first, and then the "
      "validation loss bottoms out and climbs. Our explanation for forward gradients, not "
      "measured here: the estimate's squared error is about n times the squared gradient "
      "(n = the number of parameters), so the noise in each update grows with the learning "
      "rate and the parameters drift. A fair search for forward gradients needs "
      "a budget as long as the run (or early stopping on the validation loss). Full-length "
      "runs, paper setting against tuned:", *lines]


def notes(root: str, sweep_root: str) -> list[str]:
  """Where our numbers differ from the paper's, with the numbers that show why."""
  evidence, forward = [], []
  for row in paper.TABLE_I_ROWS:
    workdir = find_run(root, row, "paper")
    if workdir is None:
      continue
    run = load_run(workdir)
    if run["summary"]["test_loss"] is None:
      continue
    if row.endswith("_bp") and paper.PAPER_TEST_LOSS[row] == 0:
      evidence.append(f"  - {row}: {_backprop_evidence(run)}")
    elif row.endswith("_fwd") and run["config"]["num_epochs"] == row_config(row).num_epochs:
      forward.append(f"{row} {run['summary']['test_loss']:.3f} against "
                     f"{paper.PAPER_TEST_LOSS[row]:.3f}")
  return [
      "## Where we differ from the paper, and why", "",
      "- **The paper's backprop test loss of 0.000.** A held-out cross-entropy cannot be 0.000 "
      "(below 0.0005) unless the network classifies almost every test image correctly and with "
      "near-certainty: a misclassified image has p(true class) <= 1/2 and so costs at least "
      "ln 2 = 0.693 nats, which bounds the mean test loss from below by 0.693 x the test error "
      "rate. An MNIST MLP or small CNN errs on 1-2% of the test images, so its test loss is at "
      "least ~0.007-0.014, and in practice several times more, since the mistakes of an "
      "overfit network are confident and cost far more than ln 2. We think the paper's 0.000 "
      "is a *training* loss, not a test loss: its Figure 2 plots training loss, and backprop's "
      "final train loss (listed below) rounds to 0.000. Our runs:",
      *(evidence or ["  - (no backprop MNIST run yet)"]),
      "- **Test loss rises while train loss falls.** Trained 50 epochs at a fixed learning "
      "rate with no regularisation, backprop overfits: its test (and validation) loss is "
      "lowest after some 10-20 epochs and then grows while accuracy stays flat (numbers "
      "above). The paper reports the final test loss, and so do we.",
      "- **Forward-gradient rows** depend on the tangent law and the directional-derivative "
      "clip (ours: N(0, I) tangents, <grad f, v> clipped to [-1, 1], and no gradient-norm "
      "bound, as the paper names none); the paper's functorch code may differ in what it does "
      "not state: its gradient-clipping norm, its initialisation (PyTorch's default differs "
      "from Flax's), its input scaling (ours: pixels / 255, no standardisation). We have not "
      "tested which of these matters."
      + (" Our full-length forward-gradient test losses against the paper's: "
         + "; ".join(forward)
         + "." if forward else ""),
      *tuning_notes(root, sweep_root),
      "- **CIFAR-10's dense head** is unspecified in the paper; ours is Dense 1024 -> ReLU -> "
      "Dense 10. Rows marked shortened cannot be compared with the paper's numbers; they "
      "show that the runs work and how fast each method starts.", ""]


def sweep_lines(sweep_root: str) -> list[str]:
  """One item per swept row: what was searched, the best setting next to the paper's, and every
  setting's final validation loss, best first."""
  lines = []
  for row in paper.TABLE_I_ROWS:
    results = load_sweep(sweep_root, row)
    if results is None:
      continue
    names = list(results["space"])
    paper_setting = ", ".join(f"{n} {row_config(row)[n]:g}" for n in names)
    best = results["best"]
    chosen = ("none (every setting diverged)" if best is None else
              ", ".join(f"{n} {v:g}" for n, v in best["hyperparameters"].items())
              + f" (validation loss {best['validation_loss']:.4f})")
    ranked = "; ".join(
        ", ".join(f"{s['hyperparameters'][n]:g}" for n in names) + ": "
        + (_fmt(s["validation_loss"]) if s["status"] == "completed" else "diverged")
        for s in results["settings"])
    lines.append(
        f"- **{row}**: {results['search']} search over {', '.join(names)}, "
        f"{results['num_settings']} settings x {results['seeds']} seed(s), "
        f"{results['epochs_per_trial']} epoch(s) per trial, "
        f"{_duration(results['wall_clock_seconds'])} on "
        f"{sweep.format_machine(results['machine'])}. Best: {chosen}; the paper's: "
        f"{paper_setting}. Final validation loss by {', '.join(names)}, best first: {ranked}.")
  return lines


def write_report(args) -> str:
  """Writes the table of both variants and the notes to `args.out`; returns its text."""
  machines = {}
  paper_lines, paper_missing = table_lines(args.workdir_root, args.sweep_root, "paper", machines)
  tuned_lines, tuned_missing = table_lines(args.workdir_root, args.sweep_root, "tuned", machines)
  out = ["# Table I, reproduced", "",
         "Rike & Forland's Table I next to our runs (`experiments/table1.py`; commands in "
         "experiments/README.md). Our test loss and accuracy are on the 10,000 held-out test "
         "images after the last epoch; the final train loss is the last epoch's mean; "
         "the target validation loss is the lowest non-zero test loss the paper reports for the "
         "row's forward/backprop pair, and steps to target the first epoch-end step at which "
         "our validation loss (10,000 images carved from the training split) reached it. "
         "Wall-clock includes compilation and evaluation, on machines at times shared with "
         "other jobs: compare with care. Rows marked *shortened* ran fewer epochs than the "
         "paper's.", "",
         "## The paper's hyperparameters", ""]
  out += paper_lines
  if paper_missing:
    out += ["", f"Not run yet: {', '.join(paper_missing)}."]
  out += ["", "## Tuned: each method's own best setting from a search on the validation split",
          "", "Each row's searched hyperparameters come from `python -m fgjax.sweep` (settings "
          "ranked by final validation loss after a short budget; details in "
          f"`{os.path.relpath(args.sweep_root, REPO)}/<row>[_<E>ep]/results.md`); the row then "
          "trains with them like the paper's row. Sweeps:", ""]
  out += sweep_lines(args.sweep_root) or ["No sweep yet."]
  out += [""]
  if len(tuned_missing) < len(paper.TABLE_I_ROWS):
    out += tuned_lines
    out += ["", f"Not tuned yet: {', '.join(tuned_missing)}."] if tuned_missing else []
  else:
    out += ["No tuned run yet: sweep a row, then `python experiments/table1.py --tuned "
            "--rows=<row> ...`."]
  out += ["", "Machines (from each run's machine.json; experiments/README.md says which runs "
          "shared the machine with other jobs):", ""]
  out += [f"- {label}: {machine}" for machine, label in machines.items()] or ["- (none)"]
  out += [""] + notes(args.workdir_root, args.sweep_root)
  text = "\n".join(out)
  os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
  with open(args.out, "w", encoding="utf-8") as f:
    f.write(text)
  return text


def _define_flags():
  """The command line (defined only when run, so that plot.py and tests can import this)."""
  flags.DEFINE_list("rows", list(paper.TABLE_I_ROWS), "Table I rows (config names) to train.")
  flags.DEFINE_integer("epochs", None, "Shorten every row to this many epochs (labelled as such).")
  flags.DEFINE_string("data_source", None, "Override data.source: tfds, npz or embedded.")
  flags.DEFINE_string("data_path", None, "Override data.path (the .npz file of data_source=npz).")
  flags.DEFINE_string("tfds_data_dir", None, "Override data.tfds_data_dir.")
  flags.DEFINE_string("workdir_root", os.path.join(REPO, "runs", "table1"), "Runs' parent dir.")
  flags.DEFINE_bool("tuned", False, "Train the tuned variant: rows with the sweep's best setting.")
  flags.DEFINE_string("sweep_root", os.path.join(REPO, "runs", "sweeps"),
                      "Parent of the sweeps' workdirs, one per row: <sweep_root>/<row>.")
  flags.DEFINE_bool("report_only", False, "Train nothing; just write the table.")
  flags.DEFINE_string("out", os.path.join(REPO, "experiments", "results", "table1.md"),
                      "The table to write.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  unknown = [row for row in FLAGS.rows if row not in paper.TABLE_I_ROWS]
  if unknown:
    raise app.UsageError(f"unknown rows {unknown}; choose from {list(paper.TABLE_I_ROWS)}")
  datasets = {row_config(row).data.name for row in FLAGS.rows}
  if FLAGS.data_path and len(datasets) > 1 and not FLAGS.report_only:
    raise app.UsageError(f"the rows use {sorted(datasets)}: one --data_path cannot serve them "
                         "all; run each dataset's rows in its own call")
  if not FLAGS.report_only:
    run_rows(FLAGS.rows, "tuned" if FLAGS.tuned else "paper", FLAGS)
  write_report(FLAGS)
  print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  _define_flags()
  sys.exit(app.run(main))

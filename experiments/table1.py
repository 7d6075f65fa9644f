"""Table I of Rike & Forland, reproduced: trains its rows and writes experiments/results/table1.md.

  MNIST="--data_source=npz --data_path=<data dir>/mnist.npz"
  python -m experiments.table1 --rows=mnist_mlp_sgd_bp,mnist_mlp_sgd_fwd $MNIST  # paper's length
  python -m experiments.table1 --rows=mnist_cnn_sgd_bp --epochs=2 $MNIST   # shortened, so labelled
  python -m experiments.table1 --rows=mnist_mlp_sgd_bp --num_seeds=3 $MNIST  # 3 seeds, one program
  python -m experiments.table1 --tuned --rows=mnist_mlp_sgd_bp $MNIST  # the sweep's best setting
  python -m experiments.table1 --report_only                          # just rewrite the table

where `python experiments/make_mnist_npz.py --output=<data dir>/mnist.npz` makes the .npz file.

Each row trains `configs/<row>.py` with `fgjax.train.train_and_evaluate` into its workdir under
`--workdir_root` (`experiments.runs` gives the layout: shortened, several seeds, tuned) and
records the machine in `machine.json`. A workdir that already holds a summary.json is not trained
again, so an interrupted table resumes where it stopped.

The report covers all 14 rows whatever `--rows` ran: per row the run at the paper's length if
there is one, else the longest shortened one (labelled), else "not run". A run of several seeds
shows the mean ± standard deviation over them of the test loss and accuracy. The tuned variant
takes each row's searched hyperparameters from its sweep (`python -m fgjax.sweep`). Below the
tables the report lists the numbers the findings in experiments/README.md rest on, computed from
the runs.

The report reads the runs' and sweeps' records in the repository (`experiments.records`:
experiments/results/runs/ and experiments/results/sweeps/), after exporting to them the runs and
sweeps under `--workdir_root` and `--sweep_root`, so that `--report_only` in a fresh clone, whose
runs/ is empty, rebuilds the published table from the records alone. The report's default place
is the published one, so that a report of the published runs updates it in place; a report with
fewer rows run than the file it would replace stops with one line instead, unless `--overwrite`.

Steps to target: the first step at which the run's validation loss (measured after every epoch,
so the count is a whole number of epochs) is at or below the row's target, which is the lowest
non-zero test loss the paper reports for the row's pair (the forward-gradient and backprop rows of
the same model, optimizer and dataset): for MNIST the forward-gradient row's loss (the backprop
rows' 0.000 cannot be reached by a held-out loss), for CIFAR-10 backprop's 1.685. It asks: how
long does each method take to get where the better of the paper's two methods ended?

The paper's statistic: the paper printed the mean loss of the last batch of a shuffled test loader,
the 16 images that 10,000 leave in batches of 64 (fgjax.paper), not the loss over the test set. So
next to our full-test-set loss the table shows, from every test example's final loss
(`test_losses.npz`, with the row's own loss, `config.loss`), the distribution of the mean over a
random 16-image subset (`subset_means`), and where the paper's value falls in it
(`compare_with_paper`).
"""

import math
import os
import types
from typing import Optional, Sequence

from absl import flags
from absl import logging
import numpy as np

from experiments import records
from experiments import runs
from fgjax import cli
from fgjax import default_config
from fgjax import paper
from fgjax import train
from fgjax import workdir as workdir_files

FLAGS = flags.FLAGS

# The paper's test loss is the mean over the last batch of a shuffled test loader: 10,000 test
# images in batches of 64 leave 16.
SUBSET_SIZE = 10_000 % 64
NUM_DRAWS = 10_000
PAPER_DECIMALS = 3  # Table I prints its losses to three decimals


def pair_name(row: str) -> str:
  """The row without its estimator suffix: what the forward and backprop rows share."""
  return row.rsplit("_", 1)[0]


def target_loss(row: str) -> float:
  """The lowest non-zero test loss the paper reports for the row's pair (module docstring)."""
  pair = pair_name(row)
  return min(loss for name, loss in paper.PAPER_TEST_LOSS.items()
             if pair_name(name) == pair and loss > 0)


def steps_to_target(metrics: list[dict], target: float):
  """The step of the first epoch row whose validation loss is <= target; None if none is."""
  for row in metrics:
    loss = row.get("validation_loss")
    if "epoch" in row and loss is not None and loss <= target:
      return row["step"]
  return None


def subset_means(losses_by_seed: Sequence[np.ndarray], size: int = SUBSET_SIZE,
                 draws: int = NUM_DRAWS, seed: int = 0) -> np.ndarray:
  """`draws` means of `size` per-example losses drawn without replacement (numpy's
  default_rng(seed)): the distribution of what the paper printed, one network's mean loss on a
  random last test batch.

  Each draw picks one seed's losses at random, then a subset of them: a subset never mixes seeds,
  since the paper's batch was scored by one network, and drawing the seed too widens the
  distribution by the seed-to-seed spread that the paper's single run also carried.
  """
  losses_by_seed = [np.asarray(losses, np.float64) for losses in losses_by_seed]
  if not losses_by_seed or min(len(losses) for losses in losses_by_seed) < size:
    raise ValueError(f"need at least {size} losses per seed")
  rng = np.random.default_rng(seed)
  which = rng.integers(len(losses_by_seed), size=draws)
  means = np.empty(draws)
  for i, s in enumerate(which):
    losses = losses_by_seed[s]
    means[i] = losses[rng.choice(len(losses), size, replace=False)].mean()
  return means


def compare_with_paper(means: np.ndarray, paper_value: float,
                       decimals: int = PAPER_DECIMALS) -> dict:
  """Where the paper's printed value falls among the subset means `means`: their `median`, the
  5-95 % band (`low`, `high`), the paper's `percentile` and a `verdict`.

  The comparison is at the paper's printed precision: each mean and the band's ends are rounded
  to `decimals` as the paper rounded its value (a printed 0.000 matches any mean below 0.0005).
  The percentile is the share of means below the paper's value plus half of those equal to it,
  so 0 exactly when the value is below every draw and 100 when above every draw. The verdict is
  "consistent" when the value lies inside the band, else "paper below our band" or "paper above
  our band".
  """
  scale = 10 ** decimals
  ticks = np.rint(np.asarray(means) * scale)
  paper = round(paper_value * scale)
  low, median, high = (float(q) for q in np.quantile(means, [0.05, 0.5, 0.95]))
  percentile = 100 * (np.mean(ticks < paper) + np.mean(ticks == paper) / 2)
  if paper < np.rint(low * scale):
    verdict = "paper below our band"
  elif paper > np.rint(high * scale):
    verdict = "paper above our band"
  else:
    verdict = "consistent"
  return {"median": median, "low": low, "high": high, "percentile": float(percentile),
          "verdict": verdict}


def paper_statistic(row: str, run: dict) -> tuple[Optional[dict], list[str]]:
  """compare_with_paper for a loaded run of `row`, from the per-example test losses of every seed
  that left them (subset_means), with the row's own loss; and what the reader must know about it
  (seeds without losses, a test split not the paper's size). None when no seed left losses."""
  name = os.path.basename(run["workdir"])
  loss = run["config"].get("loss") or runs.row_config(row).loss
  by_seed = {seed: runs.read_test_losses(d) for seed, d in runs.trial_dirs(run).items()}
  found = {seed: arrays[loss] for seed, arrays in by_seed.items() if arrays is not None}
  if not found:
    status = (run["aggregate"] or run["summary"])["status"]
    return None, [f"its run `{name}` " + (
        "predates per-example test losses (no test_losses.npz)" if status == "completed"
        else f"ended {status} and left no per-example test losses")]
  notes = []
  lacking = [str(seed) for seed in by_seed if seed not in found]
  if lacking:
    notes.append(f"from seeds {', '.join(str(s) for s in found)} of `{name}`; seed(s) "
                 f"{', '.join(lacking)} left no test_losses.npz")
  sizes = sorted({len(losses) for losses in found.values()})
  if sizes != [10_000]:
    notes.append(f"its test split has {', '.join(map(str, sizes))} images, not the paper's "
                 "10,000")
  means = subset_means(list(found.values()))
  return compare_with_paper(means, paper.PAPER_TEST_LOSS[row]), notes


def _percentile(value: float) -> str:
  if value == 0:
    return "below every draw"
  if value == 100:
    return "above every draw"
  return f"{value:.1f} %"


def configure(row: str, variant: str, args) -> tuple:
  """The row's config with the command line's overrides, and its workdir; None if the tuned
  variant has no sweep to take its setting from."""
  config = runs.row_config(row)
  if variant == "tuned":
    setting = runs.best_setting(args.sweep_root, row)
    if setting is None:
      return None, None
    config.update_from_flattened_dict(setting)
  for field, value in (("data.source", args.data_source), ("data.path", args.data_path),
                       ("data.tfds_data_dir", args.tfds_data_dir)):
    if value is not None:
      config.update_from_flattened_dict({field: value})
  if args.epochs is not None:
    config.num_epochs = args.epochs
  config.num_seeds = args.num_seeds
  paper_epochs = runs.row_config(row).num_epochs
  shortened = args.epochs if args.epochs is not None and args.epochs < paper_epochs else None
  return config, runs.run_dir(args.workdir_root, row, variant, shortened, args.num_seeds)


def run_rows(rows, variant: str, args) -> None:
  """Trains each row not yet finished; a failing row is logged and the next one goes on."""
  for i, row in enumerate(rows, start=1):
    config, workdir = configure(row, variant, args)
    if config is None:
      logging.warning("[%d/%d] %s: no sweep results under %s/%s; skipped", i, len(rows), row,
                      args.sweep_root, row)
      continue
    if variant == "tuned" and runs.tuned_is_paper(args.sweep_root, row):
      logging.info("[%d/%d] %s: the sweep chose the paper's setting; its run serves as the "
                   "tuned one", i, len(rows), row)
      continue
    restart = False
    if os.path.isfile(os.path.join(workdir, workdir_files.SUMMARY_FILE)):
      if variant == "paper" or runs.has_setting(workdir, runs.best_setting(args.sweep_root, row)):
        logging.info("[%d/%d] %s: already done in %s; skipped", i, len(rows), row, workdir)
        continue
      logging.info("[%d/%d] %s: %s holds a run of an earlier sweep's best; training it again",
                   i, len(rows), row, workdir)
      restart = True
    logging.info("[%d/%d] %s (%s, %d epochs, %d seed(s)) -> %s", i, len(rows), row, variant,
                 config.num_epochs, config.num_seeds, workdir)
    try:
      summary = runs.train_run(config, workdir, restart=restart)
    except Exception:  # pylint: disable=broad-except
      logging.exception("%s failed; going on with the next row", row)
      continue
    logging.info("%s: %s, test loss %s, test accuracy %s", row, summary["status"],
                 _measured(summary, "test_loss"), _measured(summary, "test_accuracy"))


def _fmt(value, spec=".4f") -> str:
  return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) \
      else format(value, spec)


def _loss(value) -> str:
  """A loss to 4 decimals, or in scientific notation when that would print it as 0.0000."""
  return _fmt(value, ".1e" if value is not None and 0 < value < 5e-4 else ".4f")


def _measured(summary: dict, key: str, count: bool = False) -> str:
  """`key` (test_loss, test_accuracy) of a workdir's summary: its value, or for several seeds
  the mean ± standard deviation over those that completed; `count` adds how many seeds."""
  if "aggregate" not in summary:
    return _fmt(summary[key]) + (" (1 seed)" if count else "")
  stats = summary["aggregate"][key]
  if stats is None:
    return "-"
  text = f"{_fmt(stats['mean'])} ± {_fmt(stats['std'])}"
  if count:
    n, total = stats.get("n", summary["num_seeds"]), summary["num_seeds"]
    text += f" ({n} seeds)" if n == total else f" ({n} of {total} seeds)"
  return text


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


# Fields a row's run may differ in from the row's config without being another experiment.
_RUN_FIELDS = ("data.", "num_epochs", "num_seeds", "seed", "trials_per_call", "log_every_steps",
               "eval_batch_size", "checkpoint_every_steps", "keep_checkpoints",
               "diagnostics_every_steps", "sharding.")


def config_changes(row: str, saved: dict, setting: Optional[dict] = None) -> list[str]:
  """How the config a run saved differs from the row's config now, with the searched `setting`
  applied (a tuned run), field by field (fields the saved config predates count at their
  default, which is what that run used)."""
  flat = lambda config: dict(train.flatten(config))
  ran = {**flat(default_config.base_config().to_dict()), **flat(saved)}
  now = {**flat(runs.row_config(row).to_dict()), **(setting or {})}
  return [f"{name} {ran.get(name)!r} (now {now.get(name)!r})" for name in sorted(now)
          if not name.startswith(_RUN_FIELDS) and ran.get(name) != now.get(name)]


def _row_label(row: str, run: dict) -> str:
  """The row's name, and which seed its per-run numbers are of when it ran several."""
  if run["aggregate"] is None:
    return row
  return f"{row} (seed {run['aggregate']['seeds'][0]} of {run['aggregate']['num_seeds']})"


def table_lines(root: str, sweep_root: str, variant: str,
                machines: dict) -> tuple[list[str], list[str]]:
  """The markdown table of one variant over all 14 rows followed by its numbered notes, and the
  rows without a run."""
  header = ["row", "method", "hyperparameters", "epochs", "paper test loss", "our test loss",
            "test acc", f"{SUBSET_SIZE}-image test loss: median [5 %, 95 %]",
            "paper's percentile", "verdict", "final train loss", "target val. loss",
            "steps to target", "steps", "wall-clock", "machine", "status"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  missing, notes = [], []
  for row in paper.TABLE_I_ROWS:
    workdir = runs.find_variant_run(root, sweep_root, row, variant)
    if workdir is None:
      missing.append(row)
      continue
    run = runs.load_run(workdir)
    summary, config = run["summary"], run["config"]
    whole = run["aggregate"] or summary
    paper_epochs = runs.row_config(row).num_epochs
    epochs = summary["epochs_completed"]
    shortened = config["num_epochs"] != paper_epochs
    epochs_text = f"**{epochs} of {paper_epochs} (shortened)**" if shortened else f"{epochs}"
    statistic, row_notes = paper_statistic(row, run)
    if statistic is None:
      band, percentile, verdict = "-", "-", "-"
    else:
      band = (f"{_loss(statistic['median'])} [{_loss(statistic['low'])}, "
              f"{_loss(statistic['high'])}]")
      percentile = _percentile(statistic["percentile"])
      verdict = statistic["verdict"] + (" (shortened run)" if shortened else "")
    for note in row_notes:
      notes.append(f"- ({len(notes) + 1}) {row}: {note}.")
      verdict += f" ({len(notes)})"
    target = target_loss(row)
    reached = steps_to_target(run["metrics"], target)
    machine = workdir_files.format_machine(run["machine"])
    label = machines.setdefault(machine, f"M{len(machines) + 1}")
    status = whole["status"]
    tuned = variant == "tuned" and not runs.tuned_is_paper(sweep_root, row)
    changes = config_changes(row, config, runs.best_setting(sweep_root, row) if tuned else None)
    if changes:
      notes.append(f"- ({len(notes) + 1}) {row}: ran an earlier config than "
                   f"configs/{row}.py: {'; '.join(changes)}.")
      status += f" ({len(notes)})"
    if config["data"]["name"] != runs.row_config(row).data.name:
      status += f" (data: {config['data']['name']})"
    if variant == "tuned" and runs.tuned_is_paper(sweep_root, row):
      status += " (sweep chose the paper's setting: the paper run)"
    method = " / ".join(runs.LABELS.get(p, p) for p in (
        row.rsplit("_", 1)[1], config["model"], config["optimizer"], config["data"]["name"]))
    lines.append("| " + " | ".join([
        row, method, _hyperparameters(config), epochs_text,
        f"{paper.PAPER_TEST_LOSS[row]:.3f}", _measured(whole, "test_loss", count=True),
        _measured(whole, "test_accuracy"), band, percentile, verdict,
        _loss(summary["train_loss"]), f"{target:.3f}",
        "not reached" if reached is None else str(reached), str(summary["steps"]),
        _duration(whole["wall_clock_seconds"]), label, status]) + " |")
  if notes:
    lines += ["", "Notes:", "", *notes]
  return lines, missing


def rows_run(report: str) -> int:
  """How many table rows of a report, both variants together, show a run."""
  return sum(line.split(" | ")[0].lstrip("| ") in paper.TABLE_I_ROWS
             for line in report.splitlines())


def _lowest_epoch(run: dict, metric: str) -> dict:
  """The per-epoch metrics row with the lowest `metric` (e.g. "test_loss")."""
  epochs = [r for r in run["metrics"] if "epoch" in r and r.get(metric) is not None]
  return min(epochs, key=lambda r: r[metric])


def _backprop_evidence(run: dict) -> str:
  """One line of numbers on a backprop MNIST run: the bound its accuracy puts on its test loss,
  its final test loss and its lowest over the epochs, and its final train loss."""
  summary = run["summary"]
  errors = 1 - summary["test_accuracy"]
  lowest = _lowest_epoch(run, "test_loss")
  return (f"test accuracy {summary['test_accuracy']:.4f}, so test loss >= ln 2 x {errors:.4f} "
          f"= {math.log(2) * errors:.4f}; ours {summary['test_loss']:.4f} after epoch "
          f"{summary['epochs_completed']}, lowest {lowest['test_loss']:.4f} at epoch "
          f"{lowest['epoch']}; final train loss {_loss(summary['train_loss'])}")


def _is_full_length(row: str, run: dict) -> bool:
  return run["config"]["num_epochs"] == runs.row_config(row).num_epochs


def tuning_lines(root: str, sweep_root: str) -> list[str]:
  """Each full-length tuned run against the paper-setting run of its row: final test loss and
  the epoch of the lowest validation loss, which shows whether the sweep's budget was long
  enough to rank the settings for the full run."""
  lines = []
  for row in paper.TABLE_I_ROWS:
    sweep_results = runs.load_sweep(sweep_root, row)
    if sweep_results is None or runs.tuned_is_paper(sweep_root, row):
      continue
    workdirs = {v: runs.find_variant_run(root, sweep_root, row, v) for v in runs.VARIANTS}
    if None in workdirs.values():
      continue
    loaded = {v: runs.load_run(w) for v, w in workdirs.items()}
    if any(not _is_full_length(row, r) or r["summary"]["test_loss"] is None
           for r in loaded.values()):
      continue
    described = []
    for variant, name in (("paper", "paper's"),
                          ("tuned", f"{sweep_results['epochs_per_trial']}-epoch sweep's")):
      run = loaded[variant]
      lowest = _lowest_epoch(run, "validation_loss")
      described.append(f"{name} {_hyperparameters(run['config'])}: test loss "
                       f"{run['summary']['test_loss']:.4f}, lowest validation loss "
                       f"{lowest['validation_loss']:.4f} at epoch {lowest['epoch']}")
    lines.append(f"  - {row}: {'; '.join(described)}")
  return lines


PAIR_MARGIN = 2.0  # standard errors a lead must exceed, in both metrics, to name a method ahead


def pair_verdict(forward: dict, backprop: dict) -> str:
  """Backprop's lead over the forward gradient from the two runs' statistics over seeds (a
  several-seed summary's "aggregate": metric -> mean, std, n): in test
  loss (forward's minus backprop's) and accuracy (backprop's minus forward's), each the
  difference of the means +- its standard error, and which method is ahead by more than
  PAIR_MARGIN standard errors in both (else no clear difference)."""
  leads = {}
  for metric, sign in (("test_loss", 1), ("test_accuracy", -1)):
    difference, error = runs.mean_difference(forward[metric], backprop[metric])
    leads[metric] = (sign * difference, error)
  if all(lead > PAIR_MARGIN * error for lead, error in leads.values()):
    verdict = "backprop ahead"
  elif all(-lead > PAIR_MARGIN * error for lead, error in leads.values()):
    verdict = "forward gradient ahead"
  else:
    verdict = "no clear difference"
  (loss, loss_error), (accuracy, accuracy_error) = leads.values()
  return (f"{verdict}: backprop's lead {loss:+.4f} ± {loss_error:.4f} in test loss, "
          f"{accuracy:+.4f} ± {accuracy_error:.4f} in accuracy "
          f"({forward['test_loss']['n']} and {backprop['test_loss']['n']} seeds)")


def pair_lines(root: str, sweep_root: str, variant: str) -> list[str]:
  """One line per forward-gradient / backprop pair whose two runs both have several seeds."""
  lines = []
  for row in paper.TABLE_I_ROWS:
    if not row.endswith("_fwd"):
      continue
    pair = row[:-len("_fwd")]
    found = [runs.find_variant_run(root, sweep_root, f"{pair}_{side}", variant)
             for side in ("fwd", "bp")]
    summaries = [runs.load_run(workdir)["aggregate"] if workdir else None for workdir in found]
    stats = [summary and summary["aggregate"] for summary in summaries]
    if all(stats and all(stats[metric] and stats[metric]["n"] > 1
                         for metric in ("test_loss", "test_accuracy")) for stats in stats):
      lines.append(f"  - {pair}: {pair_verdict(*stats)}")
  return lines


def measurements(root: str, sweep_root: str) -> list[str]:
  """The numbers the comparison with the paper rests on, computed from the runs (the findings
  drawn from them are in experiments/README.md)."""
  evidence, forward = [], []
  for row in paper.TABLE_I_ROWS:
    workdir = runs.find_run(root, row, "paper")
    if workdir is None:
      continue
    run = runs.load_run(workdir)
    if run["summary"]["test_loss"] is None:
      continue
    if row.endswith("_bp") and paper.PAPER_TEST_LOSS[row] == 0:
      evidence.append(f"  - {_row_label(row, run)}: {_backprop_evidence(run)}")
    elif row.endswith("_fwd") and _is_full_length(row, run):
      forward.append(f"{_row_label(row, run)} {run['summary']['test_loss']:.3f} against "
                     f"{paper.PAPER_TEST_LOSS[row]:.3f}")
  tuning = tuning_lines(root, sweep_root)
  nesterov = nesterov_lines(root, sweep_root)
  verdicts = [(f"- **Verdict per pair, {label}** (difference of the mean over seeds ± its "
               f"standard error; a method is ahead when it leads by more than {PAIR_MARGIN:g} "
               "standard errors in both test loss and accuracy):", lines)
              for label, variant in (("the paper's hyperparameters", "paper"),
                                     ("each method tuned", "tuned"))
              if (lines := pair_lines(root, sweep_root, variant))]
  return [
      "## Measurements behind the comparison with the paper", "",
      "Computed from the runs above; experiments/README.md discusses what the published runs' "
      "numbers show.", "",
      "- **Backprop rows the paper reports a test loss of 0.000 for.** A misclassified image "
      "costs at least ln 2 nats, so the test error rate bounds the test loss from below. "
      "Bound, final and lowest test loss, final train loss:",
      *(evidence or ["  - (no backprop MNIST run yet)"]),
      *(["- **Full-length forward-gradient rows**, our test loss against the paper's: "
         + "; ".join(forward) + "."] if forward else []),
      *(["- **Full-length tuned rows against the paper's setting**, the paper's setting "
         "first:", *tuning] if tuning else []),
      *(line for heading, lines in verdicts for line in (heading, *lines)),
      *(["- **Where the Nesterov runs evaluated the model.** Our parameters hold the look-ahead "
         "point theta + mu v, where the gradient is taken. The paper's forward-gradient code held "
         "theta and evaluated its validation and test losses there; torch.optim.SGD(nesterov="
         "True), in its backprop rows, holds and evaluates the look-ahead point. Training is the "
         "same either way; only the validation and test numbers move (config.nesterov_evaluate, "
         "\"base\" for theta). Runs from before that field evaluated the look-ahead point:",
         *nesterov] if nesterov else []), ""]


# How the report names a Nesterov run's evaluation point (config.nesterov_evaluate).
NESTEROV_POINTS = {"lookahead": "the look-ahead point theta + mu v (the parameters held)",
                   "base": "theta = parameters - mu v"}


def evaluation_point(config: dict) -> str:
  """Where a Nesterov run evaluated its model, from its saved config: "base" or "lookahead" (a
  run from before `nesterov_evaluate` existed evaluated the look-ahead point)."""
  return config.get("nesterov_evaluate", "lookahead")


def nesterov_lines(root: str, sweep_root: str) -> list[str]:
  """Where each Nesterov run in the tables evaluated its model, next to where its config now says
  (the paper's code: theta for the forward-gradient rows, torch's parameters, the look-ahead
  point, for backprop's)."""
  lines = []
  for row in paper.TABLE_I_ROWS:
    if runs.row_config(row).optimizer != "nesterov":
      continue
    now = runs.row_config(row).nesterov_evaluate
    for variant in runs.VARIANTS:
      workdir = runs.find_variant_run(root, sweep_root, row, variant)
      if workdir is None or (variant == "tuned" and runs.tuned_is_paper(sweep_root, row)):
        continue
      ran = evaluation_point(runs.load_run(workdir)["config"])
      lines.append(f"  - {row} ({variant}): evaluated at {NESTEROV_POINTS[ran]}"
                   + ("" if ran == now else f"; configs/{row}.py now evaluates at "
                      f"{NESTEROV_POINTS[now]}"))
  return lines


def sweep_lines(sweep_root: str) -> list[str]:
  """One item per swept row: what was searched, the best setting next to the paper's, and every
  setting's final validation loss, best first."""
  lines = []
  for row in paper.TABLE_I_ROWS:
    results = runs.load_sweep(sweep_root, row)
    if results is None:
      continue
    names = list(results["space"])
    paper_setting = ", ".join(f"{n} {runs.row_config(row)[n]:g}" for n in names)
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
        f"{workdir_files.format_machine(results['machine'])}. Best: {chosen}; the paper's: "
        f"{paper_setting}. Final validation loss by {', '.join(names)}, best first: {ranked}.")
  return lines


def report(args) -> str:
  """The table of both variants, the sweeps and the measurements, as markdown."""
  machines = {}
  paper_lines, paper_missing = table_lines(args.workdir_root, args.sweep_root, "paper", machines)
  tuned_lines, tuned_missing = table_lines(args.workdir_root, args.sweep_root, "tuned", machines)
  out = ["# Table I, reproduced", "",
         "Rike & Forland's Table I next to our runs (`experiments/table1.py`; commands in "
         "experiments/README.md). Our test loss and accuracy are on the 10,000 held-out test "
         "images after the last epoch (with several seeds: their mean ± standard deviation; the "
         "other per-run columns are then the first seed's, the wall-clock the whole run's); the "
         "final train loss is the last epoch's mean; the target validation loss is the lowest "
         "non-zero test loss the paper reports for the row's forward/backprop pair, and steps "
         "to target the first epoch-end step at which our validation loss (10,000 images carved "
         "from the training split) reached it. Wall-clock includes compilation and evaluation; "
         "the machine column names the machine each run ran on (listed below). Rows marked "
         "*shortened* ran fewer epochs than the paper's.", "",
         f"The paper's test loss is the mean loss of {SUBSET_SIZE} random test images (the last "
         "batch of a shuffled test loader), with the row's own loss (forward-gradient rows: the "
         "clamped cross-entropy). From every test image's final loss in our run, the "
         f"{SUBSET_SIZE}-image columns show the median and 5-95 % band of that mean over "
         f"{NUM_DRAWS:,} random {SUBSET_SIZE}-image subsets (with several seeds, each subset one "
         "seed's), the percentile at which the paper's value falls among them, and the verdict: "
         "consistent when the paper's value, at its printed three decimals, lies inside the "
         "band (experiments/README.md).", "",
         "## The paper's hyperparameters", ""]
  out += paper_lines
  if paper_missing:
    out += ["", f"Not run yet: {', '.join(paper_missing)}."]
  out += ["", "## Tuned: each method's own best setting from a search on the validation split",
          "", "Each row's searched hyperparameters come from `python -m fgjax.sweep` (settings "
          "ranked by final validation loss after the sweep's budget; `experiments.tune_table1` "
          "sweeps the learning rate at the full budget, then with `--refine` the other "
          "hyperparameters the paper tuned; details in each sweep's results.md, kept as "
          "`experiments/results/sweeps/<row>[_<E>ep[_<names>]].md`); "
          "the row then trains with them like the paper's row. Sweeps (of several for a row, "
          "the one that counts):", ""]
  out += sweep_lines(args.sweep_root) or ["No sweep yet."]
  out += [""]
  if len(tuned_missing) < len(paper.TABLE_I_ROWS):
    out += tuned_lines
    out += ["", f"Not tuned yet: {', '.join(tuned_missing)}."] if tuned_missing else []
  else:
    out += ["No tuned run yet: sweep a row, then `python -m experiments.table1 --tuned "
            "--rows=<row> ...`."]
  out += ["", "Machines (each run's machine.json):", ""]
  out += [f"- {label}: {machine}" for machine, label in machines.items()] or ["- (none)"]
  out += [""] + measurements(args.workdir_root, args.sweep_root)
  return "\n".join(out)


def write_report(args) -> str:
  """Writes the report to `args.out`, unless it would replace one of more rows run without
  `args.overwrite` (then exits with one line); returns its text."""
  text = report(args)
  if os.path.isfile(args.out):
    with open(args.out, encoding="utf-8") as f:
      before = rows_run(f.read())
    runs.refuse_fewer_rows(args.out, before, rows_run(text), args.overwrite)
  os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
  workdir_files.write_text(args.out, text)
  return text


def _define_flags():
  """The command line (defined only when run, so that tests can import this)."""
  flags.DEFINE_list("rows", list(paper.TABLE_I_ROWS), "Table I rows (config names) to train.")
  flags.DEFINE_integer("epochs", None, "Shorten every row to this many epochs (labelled as such).")
  flags.DEFINE_integer("num_seeds", 1, "Train seeds seed .. seed + num_seeds - 1 of each row "
                       "together (config.num_seeds); the report shows their mean ± std.")
  runs.define_data_flags()
  flags.DEFINE_string("tfds_data_dir", None, "Override data.tfds_data_dir.")
  flags.DEFINE_string("workdir_root", os.path.join(runs.REPO, "runs", "table1"),
                      "Runs' parent dir.")
  flags.DEFINE_bool("tuned", False, "Train the tuned variant: rows with the sweep's best setting.")
  flags.DEFINE_string("sweep_root", os.path.join(runs.REPO, "runs", "sweeps"),
                      "Parent of the sweeps' workdirs, one per row: <sweep_root>/<row>.")
  flags.DEFINE_bool("report_only", False, "Train nothing; just write the table.")
  flags.DEFINE_string("records_root", records.RUNS_RECORDS,
                      "The runs' records, which the report reads (experiments.records).")
  flags.DEFINE_string("sweep_records", records.SWEEP_RECORDS,
                      "The sweeps' records, which the report reads (experiments.records).")
  flags.DEFINE_string("out", os.path.join(runs.REPO, "experiments", "results", "table1.md"),
                      "The table to write.")
  flags.DEFINE_bool("overwrite", False, "Replace --out even if it shows more rows run.")


def main(argv):
  del argv  # cli.run refuses positional arguments
  unknown = [row for row in FLAGS.rows if row not in paper.TABLE_I_ROWS]
  if unknown:
    raise cli.UserError(f"unknown rows {unknown}; choose from {list(paper.TABLE_I_ROWS)}")
  if FLAGS.num_seeds < 1:
    raise cli.UserError(f"--num_seeds must be at least 1, not {FLAGS.num_seeds}")
  datasets = {runs.row_config(row).data.name for row in FLAGS.rows}
  if FLAGS.data_path and len(datasets) > 1 and not FLAGS.report_only:
    raise cli.UserError(f"the rows use {sorted(datasets)}: one --data_path cannot serve them "
                         "all; run each dataset's rows in its own call")
  if not FLAGS.report_only:
    run_rows(FLAGS.rows, "tuned" if FLAGS.tuned else "paper", FLAGS)
  write_report(export_records(FLAGS))
  print(f"wrote {FLAGS.out}")


def export_records(args) -> types.SimpleNamespace:
  """Exports the runs and sweeps under `args.workdir_root` and `args.sweep_root` to the records
  (`experiments.records`: `args.records_root`, `args.sweep_records`), and returns `args` for a
  report that reads the records, which a fresh clone holds too."""
  records.export_sweeps(args.sweep_root, args.sweep_records)
  records.export_runs(args.workdir_root, args.sweep_root, args.records_root)
  return types.SimpleNamespace(workdir_root=args.records_root, sweep_root=args.sweep_records,
                               out=args.out, overwrite=args.overwrite)


if __name__ == "__main__":
  _define_flags()
  cli.run(main)

"""Hyperparameter search on the validation split, many trials in one compiled program.

  python -m fgjax.sweep --config=configs/mnist_mlp_sgd_bp.py \
      --workdir=runs/sweeps/mnist_mlp_sgd_bp \
      --config.data.source=npz --config.data.path=data/mnist.npz \
      --learning_rate=1e-4:1:9 --epochs=3

Rike & Forland's point is that each method needs its own learning rate, tuned on held-out data.
This module tunes the optimizer's numeric hyperparameters of any config on its validation split
(the test split is never evaluated) and ranks the settings by final validation loss.

Search space: one flag per hyperparameter, each a spec string (none given: the config's value).
  --learning_rate, --decay               every optimizer
  --momentum                             nesterov
  --b1, --b2, --eps, --eps_root          adam
A spec is either a range `low:high:num`, `num` log-spaced values from `low` to `high` inclusive
(both > 0), or a list `v1,v2,...` of values (use a list for 0 or for momenta). A range's values
are rounded to 3 significant digits, so the printed value is the one trained; a list's are taken
as typed (b2 = 0.9995 must not become 1). `--learning_rate` defaults to `1e-5:1:11`.

  --search=grid     (default; the paper's protocol) every combination of the specs' values.
  --search=random   --num_trials settings drawn with --search_seed: a range is sampled
                    log-uniformly in [low, high] (its `num` is ignored), a list uniformly.
  --seeds=K         each setting trains with seeds config.seed, ..., config.seed + K - 1 (init,
                    data order, tangents); settings rank by their mean over seeds, as seeds are
                    never tuned.
  --epochs=E        the budget of every trial (default 3), whatever the config's num_epochs.
  --trials_per_call bounds memory: trials run at most this many per call, each call one
                    vmapped program (the last call is padded, so a sweep compiles once).
                    Default: the config's trials_per_call (see fgjax.default_config).

Each setting with each seed is one trial of fgjax.train's core (the trials of a call differ only
in their seed and in scalars held in the optimizer state), with the checkpoints, exact resume and
per-trial divergence policy of any run: a sweep killed half-way resumes when the same command is
run again; `--restart` starts it over. Where one small trial leaves an accelerator mostly idle, a
call of several trials costs little more than one; on a CPU core, about what they cost one after
another, minus repeated compilation and data loading (benchmarks/sweep_speedup.py).

Workdir:
  sweep.json                the search (space, epochs, seeds, base config and its overrides)
  trials/<id>/              a trial's files as fgjax.train writes them (config.json with
                            num_epochs = the budget, metrics.jsonl, summary.json; no test columns)
  checkpoints/              the trials' states while the sweep runs
  results.json, results.md  the settings ranked (diverged or non-finite ones last)
  best_config.py            the base config with the best setting; its docstring and results.md
                            give the one command that reruns it with `fgjax.main` at full length.
"""

import dataclasses
import itertools
import math
import os
import shlex
import time
from typing import Optional, Sequence, Union

from absl import flags
from absl import logging
from ml_collections import config_flags
import numpy as np

from fgjax import cli
from fgjax import config_loading
from fgjax import config_validation
from fgjax import default_config
from fgjax import optimizers
from fgjax import storage
from fgjax import train
from fgjax import workdir as files
from fgjax.errors import ConfigError

SEARCHES = ("grid", "random")
DEFAULT_LEARNING_RATES = "1e-5:1:11"
RESULTS_FILE = "results.json"
SWEEP_FILE = "sweep.json"
BEST_CONFIG_FILE = "best_config.py"


class SweepError(ConfigError):
  """A search space or sweep setting that cannot work; the message is one line for the user."""


@dataclasses.dataclass(frozen=True)
class LogRange:
  """`num` log-spaced values from `low` to `high` (grid), or log-uniform draws (random)."""
  low: float
  high: float
  num: int


Spec = Union[LogRange, tuple]  # a LogRange, or a tuple of explicit values


def _round(value: float) -> float:
  return float(f"{value:.3g}")


def parse_spec(name: str, text: str) -> Optional[Spec]:
  """Parses `low:high:num` or `v1,v2,...` (see the module docstring); '' means not searched."""
  text = text.strip()
  if not text:
    return None
  malformed = SweepError(f"--{name}={text!r}: expected low:high:num or a list v1,v2,...")
  parts = text.split(":")
  try:
    if len(parts) == 1:
      return tuple(float(v) for v in text.split(","))
    if len(parts) != 3:
      raise malformed
    low, high, num = float(parts[0]), float(parts[1]), int(parts[2])
  except ValueError:
    raise malformed from None
  if not 0 < low <= high or num < 1:
    raise SweepError(f"--{name}={text}: a range needs 0 < low <= high and num >= 1")
  return LogRange(low, high, num)


def grid_points(space: dict) -> list[dict]:
  """Every combination of the specs' values, in the order of `space`."""
  axes = [sorted({_round(v) for v in np.geomspace(spec.low, spec.high, spec.num)})
          if isinstance(spec, LogRange) else list(spec) for spec in space.values()]
  return [dict(zip(space, combo)) for combo in itertools.product(*axes)]


def random_points(space: dict, num_trials: int, seed: int) -> list[dict]:
  """`num_trials` settings: ranges sampled log-uniformly, lists uniformly (numpy, seeded)."""
  rng = np.random.default_rng(seed)

  def draw(spec):
    if isinstance(spec, LogRange):
      return _round(math.exp(rng.uniform(math.log(spec.low), math.log(spec.high))))
    return spec[rng.integers(len(spec))]

  return [{name: draw(spec) for name, spec in space.items()} for _ in range(num_trials)]


def make_trials(points: Sequence[dict], seeds: Sequence[int]) -> list[train.Trial]:
  """Each setting once per seed, settings outermost: trial k trains in `trials/<k:04d>`."""
  pairs = itertools.product(points, seeds)
  return [train.Trial(directory=os.path.join("trials", f"{k:04d}"), seed=int(seed),
                      hyperparameters=dict(point))
          for k, (point, seed) in enumerate(pairs)]


def check_space(config, space: dict) -> None:
  """Rejects hyperparameters unknown to fgjax.optimizers or unused by the config's optimizer."""
  used = optimizers.USED_BY.get(config.optimizer)
  if used is None:
    raise SweepError(f"unknown optimizer {config.optimizer!r}")
  for name in space:
    if name not in optimizers.HYPERPARAMETERS:
      raise SweepError(f"{name!r} is not a searchable hyperparameter; choose from "
                       f"{list(optimizers.HYPERPARAMETERS)}")
    if name not in used:
      raise SweepError(f"optimizer {config.optimizer!r} does not use {name!r}; it reads "
                       f"{list(used)}")


def trial_rows(trials: Sequence[train.Trial], summaries: Sequence[dict],
               seeds: int) -> list[dict]:
  """One row per trial: its index, setting, seed and hyperparameters, and its summary's result."""
  keys = ("status", "validation_loss", "validation_accuracy", "train_loss", "steps",
          "num_skipped_steps", "diverged_at_step")
  return [{"trial": k, "setting": k // seeds, "seed": trial.seed,
           "hyperparameters": trial.hyperparameters, **{key: summary.get(key) for key in keys}}
          for k, (trial, summary) in enumerate(zip(trials, summaries))]


def rank_settings(rows: Sequence[dict]) -> list[dict]:
  """Settings (a point with all its seeds) best first by mean final validation loss; one with a
  seed that diverged or ended with a non-finite loss after every completed one."""
  by_point = {}
  for row in rows:
    by_point.setdefault(row["setting"], []).append(row)
  settings = []
  for point, runs in by_point.items():
    losses = np.array([r["validation_loss"] for r in runs], np.float64)  # None: nan
    diverged = any(r["status"] != "completed" for r in runs) or not np.all(np.isfinite(losses))
    train_losses = [r["train_loss"] for r in runs if r["train_loss"] is not None]
    accuracies = [r["validation_accuracy"] for r in runs if r["validation_accuracy"] is not None]
    settings.append({
        "setting": point, "hyperparameters": runs[0]["hyperparameters"],
        "status": "diverged" if diverged else "completed",
        "validation_loss": float(np.mean(losses)),
        "validation_loss_std": float(np.std(losses)) if not diverged else None,
        "validation_accuracy": float(np.mean(accuracies)) if accuracies else None,
        "train_loss": float(np.mean(train_losses)) if train_losses else None,
        "seeds": [r["seed"] for r in runs], "trials": [r["trial"] for r in runs]})
  loss = lambda s: s["validation_loss"] if math.isfinite(s["validation_loss"]) else math.inf
  ranked = sorted(settings, key=lambda s: (s["status"] != "completed", loss(s), s["setting"]))
  return [{**setting, "rank": rank} for rank, setting in enumerate(ranked, start=1)]


def _format_value(value) -> str:
  return f"{value:g}" if isinstance(value, float) else str(value)


def rerun_command(config_spec: str, overrides: dict, workdir: str) -> str:
  """The `fgjax.main` command line training `config_spec` with `overrides` into `workdir`."""
  parts = ["python", "-m", "fgjax.main", f"--config={config_spec}"]
  parts += [f"--config.{name}={_format_value(value)}" for name, value in overrides.items()]
  parts.append(f"--workdir={workdir}")
  return " ".join(shlex.quote(part) for part in parts)


def _best_config_source(config_spec: str, overrides: dict, docstring: str) -> str:
  """A config file: `config_spec` (made absolute, so it loads from anywhere) plus `overrides`."""
  path, colon, argument = config_spec.partition(":")
  base = os.path.abspath(path) + colon + argument
  return "\n".join([
      f'"""{docstring}"""', "", "from fgjax import config_loading", "",
      f"BASE = {base!r}", f"OVERRIDES = {overrides!r}", "", "",
      "def get_config():", "  config = config_loading.load_config(BASE)",
      "  config.update_from_flattened_dict(OVERRIDES)", "  return config", ""])


def _format_table(ranked: list[dict], names: Sequence[str]) -> list[str]:
  header = ["rank", *names, "validation loss", "validation accuracy", "train loss", "status"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  fmt = lambda v: ("-" if v is None or not math.isfinite(v)
                   else f"{v:.4f}" if abs(v) < 1e4 else f"{v:.3g}")
  for s in ranked:
    loss = fmt(s["validation_loss"])
    if len(s["seeds"]) > 1 and s["validation_loss_std"] is not None:
      loss += f" ± {s['validation_loss_std']:.4f}"
    cells = [str(s["rank"]), *(_format_value(s["hyperparameters"][n]) for n in names), loss,
             fmt(s["validation_accuracy"]), fmt(s["train_loss"]), s["status"]]
    lines.append("| " + " | ".join(cells) + " |")
  return lines


def _describe(hyperparameters: dict) -> str:
  return ", ".join(f"{k}={_format_value(v)}" for k, v in hyperparameters.items())


def _best(setting: dict, config_spec: Optional[str], config_overrides: dict, workdir: str,
          epochs: int) -> dict:
  """results.json's `best`: `setting` and the command that reruns it at the config's full length;
  with a `config_spec`, it also writes `best_config.py`."""
  overrides = {**config_overrides, **setting["hyperparameters"]}
  rerun_dir = os.path.join("runs", f"{config_loading.run_name(config_spec or 'config')}_tuned")
  best = {**{key: setting[key] for key in ("setting", "hyperparameters", "validation_loss")},
          "command": rerun_command(config_spec or "<config>", overrides, rerun_dir)}
  if config_spec:
    best["config_file"] = os.path.join(workdir, BEST_CONFIG_FILE)
    doc = (f"The best setting of the sweep in {workdir}: {config_spec} with OVERRIDES "
           f"(validation loss {setting['validation_loss']:.4f} after {epochs} epoch(s)).\n\n"
           f"  python -m fgjax.main --config={best['config_file']} --workdir={rerun_dir}\n")
    files.write_text(best["config_file"], _best_config_source(config_spec, overrides, doc))
  return best


def sweep(config, workdir: str, *, space: dict, search: str = "grid",
          num_trials: Optional[int] = None, search_seed: int = 0, seeds: int = 1,
          epochs: int = 3, trials_per_call: Optional[int] = None,
          config_spec: Optional[str] = None, config_overrides: Optional[dict] = None,
          restart: bool = False) -> dict:
  """Runs the search over `space` (name -> Spec) and writes the workdir described above.

  `config_spec` and `config_overrides` (the config file and the command-line overrides that
  produced `config`) let the results name a command, and `best_config.py` a file, that rerun the
  best setting. A workdir holding this sweep, half-done, is resumed; one holding another search
  is refused unless `restart`. Returns the content of `results.json`.
  """
  if search not in SEARCHES:
    raise SweepError(f"unknown search {search!r}; choose one of {list(SEARCHES)}")
  if not space:
    raise SweepError("nothing to search: give at least one hyperparameter spec")
  if epochs < 1 or seeds < 1 or (trials_per_call is not None and trials_per_call < 1):
    raise SweepError(f"epochs, seeds and trials_per_call must be >= 1, got {epochs}, {seeds} "
                     f"and {trials_per_call}")
  if search == "random" and (num_trials is None or num_trials < 1):
    raise SweepError("--search=random needs --num_trials >= 1")
  check_space(config, space)
  config_validation.validate_workdir(workdir)  # before sweep.json is read from it
  points = grid_points(space) if search == "grid" else random_points(space, num_trials, search_seed)
  trials = make_trials(points, range(int(config.seed), int(config.seed) + seeds))
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.num_epochs, config.num_seeds = epochs, 1
    if trials_per_call is not None:
      config.trials_per_call = trials_per_call
  record = {"config": config_spec, "config_overrides": dict(config_overrides or {}),
            "search": search, "search_seed": search_seed,
            "space": {n: (dataclasses.asdict(s) if isinstance(s, LogRange) else list(s))
                      for n, s in space.items()},
            "num_settings": len(points), "seeds": seeds, "epochs_per_trial": epochs,
            "trials_per_call": train.trials_per_call(config, len(trials))}
  saved = None if restart else files.read_json(os.path.join(workdir, SWEEP_FILE))
  if saved is not None:  # overrides under the fields' current names, as train compares them
    saved["config_overrides"] = default_config.renamed(saved.get("config_overrides") or {})
    if {k: saved.get(k) for k in record} != files.json_safe(record):
      raise SweepError(f"{workdir!r} holds another sweep ({SWEEP_FILE} differs); use another "
                       "workdir, or start over with --restart")
  logging.info("%s search over %s: %d settings x %d seed(s) = %d trials", search, list(space),
               len(points), seeds, len(trials))
  start = time.time()
  storage.makedirs(workdir)
  files.write_json(os.path.join(workdir, SWEEP_FILE), {**record, "base_config": config.to_dict()})
  summaries = train.train_trials(config, workdir, trials, evaluate_test=False, restart=restart)
  rows = trial_rows(trials, summaries, seeds)
  ranked = rank_settings(rows)
  summary = {**record, "estimator": config.estimator, "model": config.model,
             "optimizer": config.optimizer, "dataset": config.data.name,
             "steps_per_trial": max(r["steps"] for r in rows),
             "wall_clock_seconds": time.time() - start,
             "machine": files.describe_machine(), "best": None, "settings": ranked,
             "trials": rows}
  if ranked[0]["status"] == "completed":
    summary["best"] = _best(ranked[0], config_spec, record["config_overrides"], workdir, epochs)
  summary = files.json_safe(summary)
  files.write_json(os.path.join(workdir, RESULTS_FILE), summary)
  files.write_text(os.path.join(workdir, "results.md"), format_results(summary))
  return summary


def format_results(summary: dict) -> str:
  """results.md: what was searched, the ranked settings, and how to rerun the best one."""
  overrides = summary["config_overrides"]
  names = list(summary["space"])
  lines = [f"# Sweep: {summary['estimator']} / {summary['model']} / {summary['optimizer']} on "
           f"{summary['dataset']}", "",
           f"- base config: `{summary['config'] or '(in-memory config)'}`"
           + (f" with {_describe(overrides)}" if overrides else ""),
           f"- {summary['search']} search over {', '.join(names)}: {summary['num_settings']} "
           f"settings x {summary['seeds']} seed(s), {summary['epochs_per_trial']} epoch(s) "
           f"({summary['steps_per_trial']} steps) per trial, ranked by final validation loss "
           "(mean over seeds); diverged settings last",
           f"- wall-clock {summary['wall_clock_seconds']:.0f} s for {len(summary['trials'])} "
           f"trials, {summary['trials_per_call']} per compiled call, on "
           f"{files.format_machine(summary['machine'])}", ""]
  lines += _format_table(summary["settings"], names)
  best = summary["best"]
  if best is None:
    return "\n".join(lines + ["", "Every setting diverged: no best setting.", ""])
  lines += ["", f"Best: {_describe(best['hyperparameters'])} (validation loss "
            f"{best['validation_loss']:.4f}). Rerun it at the config's full length with:", "",
            f"    {best['command']}", ""]
  if "config_file" in best:
    lines += [f"or with the config file `{best['config_file']}` it wrote.", ""]
  return "\n".join(lines)


FLAGS = flags.FLAGS


def _define_flags():
  config_flags.DEFINE_config_file("config", None, "Base config file (configs/*.py[:arg]).",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for the trials and the ranked results.")
  flags.DEFINE_enum("search", "grid", SEARCHES, "Grid (every combination) or random search.")
  flags.DEFINE_integer("num_trials", None, "Settings drawn by --search=random.")
  flags.DEFINE_integer("search_seed", 0, "Seed of --search=random's draws.")
  flags.DEFINE_integer("seeds", 1, "Seeds per setting (config.seed, config.seed + 1, ...).")
  flags.DEFINE_integer("epochs", 3, "Epochs each trial trains (the per-trial budget).")
  flags.DEFINE_integer("trials_per_call", None, "Trials vmapped into one compiled call "
                       "(default: see the module docstring).")
  flags.DEFINE_bool("restart", False, "Delete the sweep's trials and results and start over "
                    "instead of resuming.")
  for name in optimizers.HYPERPARAMETERS:
    flags.DEFINE_string(name, DEFAULT_LEARNING_RATES if name == "learning_rate" else "",
                        f"Search space of {name}: low:high:num (log-spaced) or v1,v2,...; "
                        "empty: the config's value.")
  flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  space = {name: spec for name in optimizers.HYPERPARAMETERS
           if (spec := parse_spec(name, FLAGS[name].value)) is not None}
  summary = sweep(FLAGS.config, FLAGS.workdir, space=space, search=FLAGS.search,
                  num_trials=FLAGS.num_trials, search_seed=FLAGS.search_seed,
                  seeds=FLAGS.seeds, epochs=FLAGS.epochs, trials_per_call=FLAGS.trials_per_call,
                  config_spec=config_flags.get_config_filename(FLAGS["config"]),
                  config_overrides=config_flags.get_override_values(FLAGS["config"]),
                  restart=FLAGS.restart)
  print(format_results(summary))
  return 0 if summary["best"] else 1


if __name__ == "__main__":
  _define_flags()
  cli.run(main)

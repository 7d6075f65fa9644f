"""Hyperparameter search on the validation split, many trials in one compiled program.

  python -m fgjax.sweep --config=configs/mnist_mlp_sgd_bp.py \
      --workdir=runs/sweeps/mnist_mlp_sgd_bp \
      --config.data.source=npz --config.data.path=../shared/data/mnist.npz \
      --learning_rate=1e-4:1:9 --epochs=3

Rike & Forland's point is that each method needs its own learning rate, tuned on held-out data.
This module tunes the optimizer's numeric hyperparameters of any config on its validation split
(the test split is never evaluated) and ranks the settings by final validation loss.

Search space: one flag per hyperparameter, each a spec string (none given: the config's value).
  --learning_rate, --decay               every optimizer
  --momentum                             nesterov
  --b1, --b2, --eps                      adam
A spec is either a range `low:high:num`, `num` log-spaced values from `low` to `high` inclusive
(both > 0), or a list `v1,v2,...` of values (use a list for 0 or for momenta). Values are rounded to
3 significant digits, so the printed value is the one trained. `--learning_rate` defaults to
`1e-5:1:11` (two points per decade).

  --search=grid     (default; the paper's protocol) every combination of the specs' values.
  --search=random   --num_trials settings drawn with --search_seed: a range is sampled
                    log-uniformly in [low, high] (its `num` is ignored), a list uniformly.
  --seeds=K         each setting trains with seeds config.seed, ..., config.seed + K - 1 (init,
                    data order, tangents); settings rank by their mean over seeds, as seeds are
                    never tuned.
  --epochs=E        the budget of every trial (default 3), whatever the config's num_epochs.
  --trials_per_call bounds memory: trials run in groups of at most this many, each group one
                    vmapped program (the last group is padded, so a sweep compiles once). On
                    XLA:CPU, convolutional models run one trial per call (see
                    effective_trials_per_call).

Trials differ only in scalars that live in the optimizer state (`opt_state.hyperparams`, see
fgjax.optimizers) and in their seed, so the compiled training chunk of fgjax.programs is vmapped
over per-trial TrainStates: one program trains a whole group, compiled once for the sweep, and
computes what the same trials trained one by one with `fgjax.main` would, up to float rounding
(a batched matmul may sum in another order; tests/test_sweep.py checks rtol 1e-5). Where one
small trial leaves an accelerator mostly idle, a group should cost little more than one trial; on
a CPU core, which one trial already keeps busy, it costs about what the trials cost one after
another, minus their repeated compilation and data loading (benchmarks/sweep_speedup.py).

Workdir:
  sweep.json                the search (space, epochs, seeds, base config and its overrides)
  trials/<id>/config.json   the trial's full config (num_epochs = the budget)
  trials/<id>/metrics.jsonl train-loss rows every log_every_steps steps and per-epoch validation
                            rows, in fgjax.train's format (no test columns)
  trials/<id>/result.json   final validation loss / accuracy, last epoch's train loss, diverged
  results.json, results.md  the settings ranked (diverged or non-finite ones last)
  best_config.py            the base config with the best setting; its docstring and results.md
                            give the one command that reruns it with `fgjax.main` at full length.
"""

import dataclasses
import functools
import itertools
import json
import math
import os
import platform
import shlex
import sys
import time
from typing import Callable, Optional, Sequence, Union

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from fgjax import config_validation
from fgjax import data
from fgjax import models
from fgjax import optimizers
from fgjax import programs
from fgjax.config_loading import ConfigError
from fgjax.data import DataError

SEARCHES = ("grid", "random")
# The hyperparameters each optimizer reads; searching one it ignores would waste trials.
USED_BY = {
    "sgd": ("learning_rate", "decay"),
    "nesterov": ("learning_rate", "decay", "momentum"),
    "adam": ("learning_rate", "decay", "b1", "b2", "eps"),
}
DEFAULT_LEARNING_RATES = "1e-5:1:11"
RESULTS_FILE = "results.json"
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
      return tuple(_round(float(v)) for v in text.split(","))
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
  axes = []
  for spec in space.values():
    if isinstance(spec, LogRange):
      values = np.geomspace(spec.low, spec.high, spec.num) if spec.num > 1 else [spec.low]
      axes.append(sorted({_round(v) for v in values}))
    else:
      axes.append(list(spec))
  return [dict(zip(space, combo)) for combo in itertools.product(*axes)]


def random_points(space: dict, num_trials: int, seed: int) -> list[dict]:
  """`num_trials` settings: ranges sampled log-uniformly, lists uniformly (numpy, seeded)."""
  rng = np.random.default_rng(seed)
  points = []
  for _ in range(num_trials):
    point = {}
    for name, spec in space.items():
      if isinstance(spec, LogRange):
        point[name] = _round(math.exp(rng.uniform(math.log(spec.low), math.log(spec.high))))
      else:
        point[name] = spec[rng.integers(len(spec))]
    points.append(point)
  return points


@dataclasses.dataclass(frozen=True)
class Trial:
  """One training run of the sweep: a setting (`point` indexes it) with one seed."""
  index: int
  point: int
  hyperparameters: dict
  seed: int

  @property
  def name(self) -> str:
    return f"{self.index:04d}"


def make_trials(points: Sequence[dict], seeds: Sequence[int]) -> list[Trial]:
  """Each setting once per seed, settings outermost."""
  pairs = itertools.product(enumerate(points), seeds)
  return [Trial(index=i, point=p, hyperparameters=dict(hp), seed=int(seed))
          for i, ((p, hp), seed) in enumerate(pairs)]


def trial_config(config, trial: Trial, epochs: int):
  """The base config with the trial's hyperparameters, seed and epoch budget."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    for name, value in trial.hyperparameters.items():
      config[name] = value
    config.seed = trial.seed
    config.num_epochs = epochs
  return config


def check_space(config, space: dict) -> None:
  """Rejects hyperparameters unknown to fgjax.optimizers or unused by the config's optimizer,
  and configs that shard a run over devices (a sweep's trials share one device)."""
  if config.get("sharding") and config.sharding.data_parallel:
    raise SweepError("a sweep trains its trials vmapped on one device: set "
                     "sharding.data_parallel=False")
  used = USED_BY.get(config.optimizer)
  if used is None:
    raise SweepError(f"unknown optimizer {config.optimizer!r}")
  for name in space:
    if name not in optimizers.HYPERPARAMETERS:
      raise SweepError(f"{name!r} is not a searchable hyperparameter; choose from "
                       f"{list(optimizers.HYPERPARAMETERS)}")
    if name not in used:
      raise SweepError(f"optimizer {config.optimizer!r} does not use {name!r}; it reads "
                       f"{list(used)}")


def _stack(trees):
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _groups(trials: list[Trial], size: int) -> list[tuple[list[Trial], int]]:
  """Splits `trials` into groups of `size`, each with its number of real trials: the last group
  is padded with repeats of its last trial, so that every group has the compiled shape."""
  groups = []
  for i in range(0, len(trials), size):
    group = trials[i:i + size]
    groups.append((group + [group[-1]] * (size - len(group)), len(group)))
  return groups


@dataclasses.dataclass
class TrialResult:
  trial: Trial
  status: str  # "completed" or "diverged"
  validation_loss: float
  validation_accuracy: float
  train_loss: Optional[float]  # mean finite loss of the last epoch; None if diverged
  steps: int
  num_skipped_steps: int
  diverged_at_step: Optional[int]
  params: Optional[dict] = None  # final parameters, only when run_trials(keep_params=True)

  def to_json(self) -> dict:
    row = {"trial": self.trial.index, "setting": self.trial.point, "seed": self.trial.seed,
           "hyperparameters": self.trial.hyperparameters}
    row.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("trial", "params")})
    return row


def _finite_or_none(value: float) -> Optional[float]:
  return float(value) if np.isfinite(value) else None


class _JsonLines:
  """Per-trial metrics.jsonl files, written afresh."""

  def __init__(self, paths: Sequence[Optional[str]]):
    self._files = [None if p is None else open(p, "w", encoding="utf-8") for p in paths]

  def write(self, index: int, row: dict) -> None:
    if self._files[index] is not None:
      self._files[index].write(json.dumps(row) + "\n")

  def close(self) -> None:
    for f in self._files:
      if f is not None:
        f.close()


def initial_states(config, dataset, group: Sequence[Trial], epochs: int):
  """The group's stacked step-0 TrainStates and data-order keys, each trial's as fgjax.train
  derives them from its seed, with the trial's hyperparameters in `opt_state.hyperparams`."""
  states, data_rngs = [], []
  for trial in group:
    params = models.create_model(config.model, dataset.image_shape, dataset.num_classes,
                                 trial.seed).params
    tangent_rng, data_rng = jax.random.split(jax.random.PRNGKey(trial.seed))
    tx = optimizers.build_optimizer(trial_config(config, trial, epochs))
    states.append(programs.init_state(params, tx, tangent_rng))
    data_rngs.append(data_rng)
  return _stack(states), jnp.stack(data_rngs)


@dataclasses.dataclass(frozen=True)
class Programs:
  """The jitted functions every trial of a sweep over `config`'s kind shares, vmapped over a
  leading trial axis of the states, keys and parameters (not of the data)."""
  chunk: Callable  # (states, images, labels, orders, first_batch, num_steps) -> (states, losses)
  orders: Callable  # (data_rngs, epoch, labels) -> each trial's example order of the epoch
  validate: Callable  # (params, images, labels, weights) -> {"loss", "accuracy"}, per trial


def make_programs(config, dataset) -> Programs:
  """fgjax.programs's chunk, epoch order and evaluation for `config`, vmapped over trials.

  Only `opt_state.hyperparams` differs between trials, so one update function serves them all.
  Where fgjax.programs says a model does not scan well (convolutions on XLA:CPU), the chunk
  runs one vmapped step per call from a host loop, as fgjax.train does.
  """
  apply = models.create_model(config.model, dataset.image_shape, dataset.num_classes, 0).apply
  loss_fn = programs.make_loss_fn(apply, dataset.pixel_mean, dataset.pixel_std)
  scan = programs.scans_well(config.model)
  train_chunk = programs.make_train_chunk(
      programs.make_train_step(loss_fn, optimizers.build_optimizer(config), config),
      int(config.batch_size), scan=scan)

  @functools.partial(jax.jit, static_argnames="num_steps", donate_argnames="states")
  def vmapped_chunk(states, images, labels, orders, first_batch, num_steps):
    run = lambda state, order: train_chunk(state, images, labels, order, first_batch,
                                           num_steps=num_steps)
    return jax.vmap(run)(states, orders)

  def host_loop_chunk(states, images, labels, orders, first_batch, num_steps):
    losses = []
    for i in range(num_steps):
      states, loss = vmapped_chunk(states, images, labels, orders, first_batch + i,
                                   num_steps=1)
      losses.append(loss)
    return states, jnp.concatenate(losses, axis=1)

  return Programs(
      chunk=vmapped_chunk if scan else host_loop_chunk,
      orders=jax.jit(jax.vmap(programs.epoch_order, in_axes=(0, None, None))),
      validate=jax.jit(jax.vmap(programs.make_evaluate(loss_fn), in_axes=(0, None, None, None))))


def effective_trials_per_call(config, trials_per_call: int) -> int:
  """`trials_per_call`, except 1 for models that do not scan well (convolutions on XLA:CPU):
  vmapped over trials, their convolutions become grouped ones, which XLA:CPU runs several times
  slower than the same convolutions one trial at a time."""
  if trials_per_call > 1 and not programs.scans_well(config.model):
    logging.warning("%s on %s: trials run one per call (vmapped convolutions are slow there)",
                    config.model, jax.default_backend())
    return 1
  return trials_per_call


def _mean_finite(losses: np.ndarray) -> float:
  """Each row's mean over its finite entries (in float64, as fgjax.train); NaN if none."""
  finite = np.isfinite(losses)
  sums = np.where(finite, losses, 0).sum(axis=-1, dtype=np.float64)
  with np.errstate(invalid="ignore", divide="ignore"):
    return sums / finite.sum(axis=-1)


def run_trials(config, trials: Sequence[Trial], *, epochs: int, trials_per_call: int,
               workdir: Optional[str] = None, keep_params: bool = False) -> list[TrialResult]:
  """Trains `trials` (all of `config`'s kind) for `epochs` each, `trials_per_call` at a time.

  Each group of trials is one vmapped call of fgjax.programs's compiled chunk per
  `config.log_every_steps` steps; every trial gets the init, data order and tangents that
  `fgjax.train.train_and_evaluate` gives its seed, and its own optimizer hyperparameters. With a
  `workdir`, writes `trials/<id>/{config.json,metrics.jsonl,result.json}`.
  """
  if trials_per_call < 1 or epochs < 1:
    raise SweepError(f"trials_per_call and epochs must be >= 1, got {trials_per_call} and "
                     f"{epochs}")
  trials_per_call = effective_trials_per_call(config, trials_per_call)
  dataset = data.load_dataset(config.data)
  batch_size = int(config.batch_size)
  steps_per_epoch = len(dataset.train) // batch_size
  if steps_per_epoch < 1:
    raise SweepError(f"batch_size {batch_size} exceeds the {len(dataset.train)} training "
                     "examples")
  programs = make_programs(config, dataset)
  train_images = jax.device_put(dataset.train.images)
  train_labels = jax.device_put(dataset.train.labels)
  validation = jax.device_put(programs.batch_for_eval(
      dataset.validation.images, dataset.validation.labels, config.eval_batch_size))
  groups = _groups(list(trials), min(trials_per_call, len(trials)))
  total_steps = steps_per_epoch * epochs
  logging.info("%s / %s / %s on %s: %d trials of %d epochs (%d steps each) in %d group(s) of %d",
               config.estimator, config.model, config.optimizer, dataset.name, len(trials),
               epochs, total_steps, len(groups), len(groups[0][0]))
  results, start, last_log = [], time.time(), time.time()
  for group_index, (group, num_real) in enumerate(groups):
    states, data_rngs = initial_states(config, dataset, group, epochs)
    paths = [None] * len(group)
    for i, trial in enumerate(group[:num_real] if workdir else []):
      trial_dir = os.path.join(workdir, "trials", trial.name)
      os.makedirs(trial_dir, exist_ok=True)
      _write_json(os.path.join(trial_dir, "config.json"),
                  trial_config(config, trial, epochs).to_dict())
      paths[i] = os.path.join(trial_dir, "metrics.jsonl")
    writer = _JsonLines(paths)
    for epoch in range(epochs):
      orders = programs.orders(data_rngs, epoch, train_labels)
      epoch_losses = []
      for first_batch in range(0, steps_per_epoch, config.log_every_steps):
        num_steps = min(config.log_every_steps, steps_per_epoch - first_batch)
        states, losses = programs.chunk(states, train_images, train_labels, orders,
                                        first_batch, num_steps=num_steps)
        losses, alive = np.asarray(losses), np.asarray(states.diverged_at) < 0
        epoch_losses.append(losses)
        step, chunk_means = int(states.step[0]), _mean_finite(losses)
        for i in np.flatnonzero(alive & np.isfinite(chunk_means)):
          writer.write(i, {"step": step, "train_loss": float(chunk_means[i]),
                           "elapsed_seconds": time.time() - start})
        if time.time() - last_log > 10:
          last_log = time.time()
          best = np.min(chunk_means[:num_real], where=alive[:num_real], initial=np.inf)
          logging.info("group %d/%d, epoch %d/%d, step %d/%d: %d/%d trials alive, best chunk "
                       "loss %.4f | %.0f s", group_index + 1, len(groups), epoch + 1, epochs,
                       step, total_steps, alive[:num_real].sum(), num_real, best,
                       time.time() - start)
      train_losses = _mean_finite(np.concatenate(epoch_losses, axis=1))
      metrics = jax.device_get(programs.validate(states.params, *validation))
      for i in np.flatnonzero(np.asarray(states.diverged_at) < 0):
        writer.write(i, {"step": step, "epoch": epoch + 1,
                         "epoch_train_loss": _finite_or_none(train_losses[i]),
                         "validation_loss": _finite_or_none(metrics["loss"][i]),
                         "validation_accuracy": float(metrics["accuracy"][i]),
                         "elapsed_seconds": time.time() - start})
    writer.close()
    final = jax.device_get(states)
    for i, trial in enumerate(group[:num_real]):
      diverged_at = int(final.diverged_at[i])
      loss = float(metrics["loss"][i])
      diverged = diverged_at >= 0 or not np.isfinite(loss)
      result = TrialResult(
          trial=trial, status="diverged" if diverged else "completed", validation_loss=loss,
          validation_accuracy=float(metrics["accuracy"][i]),
          train_loss=None if diverged else _finite_or_none(train_losses[i]),
          steps=int(final.step[i]), num_skipped_steps=int(final.num_skipped[i]),
          diverged_at_step=diverged_at if diverged_at >= 0 else None,
          params=jax.tree.map(lambda leaf, i=i: leaf[i], final.params) if keep_params else None)
      if workdir is not None:
        _write_json(os.path.join(workdir, "trials", trial.name, "result.json"),
                    _json_safe(result.to_json()))
      results.append(result)
    logging.info("group %d/%d done: %d of %d trials in %.0f s", group_index + 1, len(groups),
                 len(results), len(trials), time.time() - start)
  return results


def rank_settings(results: Sequence[TrialResult]) -> list[dict]:
  """Settings (a point with all its seeds) best first by mean final validation loss.

  A setting any of whose seeds diverged or ended with a non-finite loss ranks after every
  completed one, whatever its loss.
  """
  by_point = {}
  for result in results:
    by_point.setdefault(result.trial.point, []).append(result)
  settings = []
  for point, runs in by_point.items():
    losses = np.array([r.validation_loss for r in runs])
    diverged = any(r.status != "completed" for r in runs) or not np.all(np.isfinite(losses))
    train_losses = [r.train_loss for r in runs if r.train_loss is not None]
    settings.append({
        "setting": point, "hyperparameters": runs[0].trial.hyperparameters,
        "status": "diverged" if diverged else "completed",
        "validation_loss": float(np.mean(losses)),
        "validation_loss_std": float(np.std(losses)) if not diverged else None,
        "validation_accuracy": float(np.mean([r.validation_accuracy for r in runs])),
        "train_loss": float(np.mean(train_losses)) if train_losses else None,
        "seeds": [r.trial.seed for r in runs], "trials": [r.trial.index for r in runs]})
  key = lambda s: (s["status"] != "completed", not math.isfinite(s["validation_loss"]),
                   s["validation_loss"] if math.isfinite(s["validation_loss"]) else 0.0,
                   s["setting"])
  ranked = sorted(settings, key=key)
  for rank, setting in enumerate(ranked, start=1):
    setting["rank"] = rank
  return ranked


def _write_json(path: str, obj) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


def _json_safe(obj):
  """JSON has no NaN or infinity: non-finite floats become None."""
  if isinstance(obj, float):
    return obj if math.isfinite(obj) else None
  if isinstance(obj, dict):
    return {k: _json_safe(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_json_safe(v) for v in obj]
  return obj


def describe_machine() -> dict:
  """CPU model, CPU counts, jax version and accelerator: what timings depend on."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      cpu = next((line.split(":", 1)[1].strip() for line in f
                  if line.startswith("model name")), cpu)
  except OSError:
    pass
  return {"cpu": cpu, "cpus_on_machine": os.cpu_count(),
          "cpus_used": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
          else os.cpu_count(),
          "jax": jax.__version__, "backend": jax.default_backend(),
          "device": jax.devices()[0].device_kind}


def format_machine(machine: Optional[dict]) -> str:
  if not machine:
    return "unknown"
  text = f"{machine['cpu']}, {machine['cpus_used']} of {machine['cpus_on_machine']} CPUs"
  if machine.get("backend") not in (None, "cpu"):
    text += f", {machine['device']}"
  return text + f", jax {machine['jax']}"


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


def sweep(config, workdir: str, *, space: dict, search: str = "grid",
          num_trials: Optional[int] = None, search_seed: int = 0, seeds: int = 1,
          epochs: int = 3, trials_per_call: int = 8, config_spec: Optional[str] = None,
          config_overrides: Optional[dict] = None) -> dict:
  """Runs the search over `space` (name -> Spec) and writes the workdir described above.

  `config_spec` and `config_overrides` (the config file and the command-line overrides that
  produced `config`) let the results name a command, and `best_config.py` a file, that rerun the
  best setting. Returns the content of `results.json`.
  """
  if search not in SEARCHES:
    raise SweepError(f"unknown search {search!r}; choose one of {list(SEARCHES)}")
  if not space:
    raise SweepError("nothing to search: give at least one hyperparameter spec")
  if epochs < 1 or seeds < 1:
    raise SweepError(f"epochs and seeds must be >= 1, got {epochs} and {seeds}")
  check_space(config, space)
  trials_per_call = effective_trials_per_call(config, trials_per_call)
  if search == "grid":
    points = grid_points(space)
  else:
    if not num_trials or num_trials < 1:
      raise SweepError("--search=random needs --num_trials >= 1")
    points = random_points(space, num_trials, search_seed)
  trials = make_trials(points, range(int(config.seed), int(config.seed) + seeds))
  for trial in trials[::seeds]:  # one trial per setting: its seeds differ only in the seed
    config_validation.validate(trial_config(config, trial, epochs))
  os.makedirs(workdir, exist_ok=True)
  record = {"config": config_spec, "config_overrides": dict(config_overrides or {}),
            "search": search, "search_seed": search_seed,
            "space": {n: (dataclasses.asdict(s) if isinstance(s, LogRange) else list(s))
                      for n, s in space.items()},
            "num_settings": len(points), "seeds": seeds, "epochs_per_trial": epochs,
            "trials_per_call": trials_per_call}
  _write_json(os.path.join(workdir, "sweep.json"), {**record, "base_config": config.to_dict()})
  logging.info("%s search over %s: %d settings x %d seed(s) = %d trials", search, list(space),
               len(points), seeds, len(trials))
  start = time.time()
  results = run_trials(config, trials, epochs=epochs, trials_per_call=trials_per_call,
                       workdir=workdir)
  ranked = rank_settings(results)
  summary = {**record, "estimator": config.estimator, "model": config.model,
             "optimizer": config.optimizer, "dataset": config.data.name,
             "steps_per_trial": results[0].steps, "wall_clock_seconds": time.time() - start,
             "machine": describe_machine(), "best": None, "settings": ranked,
             "trials": [r.to_json() for r in results]}
  best = ranked[0]
  if best["status"] == "completed":
    overrides = {**record["config_overrides"], **best["hyperparameters"]}
    path, _, argument = (config_spec or "config").partition(":")
    stem = "_".join(filter(None, [os.path.splitext(os.path.basename(path))[0], argument]))
    rerun_dir = os.path.join("runs", f"{stem}_tuned")
    summary["best"] = {"setting": best["setting"], "hyperparameters": best["hyperparameters"],
                       "validation_loss": best["validation_loss"],
                       "command": rerun_command(config_spec or "<config>", overrides, rerun_dir)}
    if config_spec:
      best_file = os.path.join(workdir, BEST_CONFIG_FILE)
      summary["best"]["config_file"] = best_file
      doc = (f"The best setting of the sweep in {workdir}: {config_spec} with OVERRIDES "
             f"(validation loss {best['validation_loss']:.4f} after {epochs} epoch(s)).\n\n"
             f"  python -m fgjax.main --config={best_file} --workdir={rerun_dir}\n")
      with open(best_file, "w", encoding="utf-8") as f:
        f.write(_best_config_source(config_spec, overrides, doc))
  summary = _json_safe(summary)
  _write_json(os.path.join(workdir, RESULTS_FILE), summary)
  with open(os.path.join(workdir, "results.md"), "w", encoding="utf-8") as f:
    f.write(format_results(summary))
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
           f"{format_machine(summary['machine'])}", ""]
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
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file("config", None, "Base config file (configs/*.py[:arg]).",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for the trials and the ranked results.")
  flags.DEFINE_enum("search", "grid", SEARCHES, "Grid (every combination) or random search.")
  flags.DEFINE_integer("num_trials", None, "Settings drawn by --search=random.")
  flags.DEFINE_integer("search_seed", 0, "Seed of --search=random's draws.")
  flags.DEFINE_integer("seeds", 1, "Seeds per setting (config.seed, config.seed + 1, ...).")
  flags.DEFINE_integer("epochs", 3, "Epochs each trial trains (the per-trial budget).")
  flags.DEFINE_integer("trials_per_call", 8, "Trials vmapped into one compiled call.")
  for name in optimizers.HYPERPARAMETERS:
    flags.DEFINE_string(name, DEFAULT_LEARNING_RATES if name == "learning_rate" else "",
                        f"Search space of {name}: low:high:num (log-spaced) or v1,v2,...; "
                        "empty: the config's value.")
  flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  try:
    space = {name: spec for name in optimizers.HYPERPARAMETERS
             if (spec := parse_spec(name, FLAGS[name].value)) is not None}
    summary = sweep(FLAGS.config, FLAGS.workdir, space=space, search=FLAGS.search,
                    num_trials=FLAGS.num_trials, search_seed=FLAGS.search_seed,
                    seeds=FLAGS.seeds, epochs=FLAGS.epochs,
                    trials_per_call=FLAGS.trials_per_call,
                    config_spec=config_flags.get_config_filename(FLAGS["config"]),
                    config_overrides=config_flags.get_override_values(FLAGS["config"]))
  except (ConfigError, DataError) as error:  # SweepError included
    print(f"error: {error}", file=sys.stderr)
    return 2
  with open(os.path.join(FLAGS.workdir, "results.md"), encoding="utf-8") as f:
    print(f.read())
  return 0 if summary["best"] else 1


if __name__ == "__main__":
  _define_flags()
  sys.exit(app.run(main))

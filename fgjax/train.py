"""`train_and_evaluate(config, workdir)`: one training run, from config to summary.

Writes into `workdir`: `config.json`, `metrics.jsonl` (a row per chunk of steps and per epoch),
TensorBoard events under `tensorboard/`, checkpoints under `checkpoints/`, and `summary.json`
when the run ends.

Chunks. Steps run in chunks, each one jitted `lax.scan`: a chunk ends at the next multiple of
`log_every_steps` within its epoch or at the epoch's end. The boundaries are a function of the step
alone, so a resumed run compiles and runs exactly the chunks of an uninterrupted one. A checkpoint
is saved at the first chunk end at or past each multiple of `checkpoint_every_steps`, and at the
end of the run.

Resume. Rerunning on a workdir that holds a checkpoint continues from the newest valid one, with
results bit-identical to an uninterrupted run: the checkpoint holds the whole train state and what
the loop carries between chunks, data order depends only on (seed, epoch) and tangents only on
(seed, step). Metrics rows past the restored step are dropped and written again. A finished run
(one with `summary.json`) is not trained again. The saved `config.json` must match the config in
every field but `NON_RESULT_FIELDS`; `restart=True` deletes the run's files and starts over.

Failing safely. The config and workdir are validated and the data loaded before anything is
written. A non-finite loss or gradient never reaches the parameters: with `on_nonfinite="stop"`
the run ends with status "diverged" and keeps its last good checkpoint; with "skip" the step is
not applied and counted.
"""

import json
import os
import shutil
import time
from typing import Iterator, Optional

from absl import logging
import jax
import numpy as np

from fgjax import checkpointing
from fgjax import config_validation
from fgjax import data
from fgjax import models
from fgjax import optimizers
from fgjax import sharding
from fgjax import programs
from fgjax.config_loading import ConfigError
from fgjax.metrics_writer import METRICS_FILE, MetricWriter, read_metrics

SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.json"
TENSORBOARD_DIR = "tensorboard"
# What `restart=True` deletes; other files in a workdir are left alone.
RUN_FILES = (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, TENSORBOARD_DIR,
             checkpointing.CHECKPOINT_DIR)
# Config fields that cannot change a run's parameters, metrics or summary, so a run may resume
# with other values. Every other field, new ones included, must match the saved config:
# `log_every_steps` sets the chunks (the compiled programs) and the metrics rows, and
# `eval_batch_size` the summation order of the evaluation.
NON_RESULT_FIELDS = ("checkpoint_every_steps", "keep_checkpoints", "data.tfds_data_dir",
                     "data.download")


def _write_json(path: str, obj: dict) -> None:
  """Writes `obj` atomically: readers never see a half-written file."""
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


class _Progress:
  """Logs step, loss, speed and ETA at most every `every_seconds`."""

  def __init__(self, total_steps: int, every_seconds: float = 10.0):
    self._total, self._every = total_steps, every_seconds
    self._start = self._last = time.time()
    self._first_step = None

  def update(self, step: int, epoch: int, loss: float) -> None:
    now = time.time()
    if self._first_step is None:
      self._first_step, self._start = step, now  # the first chunk includes compilation
      return
    if now - self._last < self._every and step < self._total:
      return
    self._last = now
    rate = (step - self._first_step) / max(now - self._start, 1e-9)
    eta = (self._total - step) / rate if rate > 0 else float("inf")
    logging.info("step %d/%d (epoch %d) loss %.4f | %.1f steps/s | ETA %s", step, self._total,
                 epoch + 1, loss, rate, time.strftime("%H:%M:%S", time.gmtime(eta)))


def chunks(start_step: int, steps_per_epoch: int, total_steps: int,
           log_every_steps: int) -> Iterator[tuple[int, int, int]]:
  """`(epoch, first_batch, num_steps)` of each chunk from `start_step` to `total_steps`."""
  step = start_step
  while step < total_steps:
    epoch, first_batch = divmod(step, steps_per_epoch)
    num_steps = min(log_every_steps - first_batch % log_every_steps,
                    steps_per_epoch - first_batch)
    yield epoch, first_batch, num_steps
    step += num_steps


def _flatten(tree: dict, prefix: str = "") -> dict:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def config_differences(saved: dict, current: dict) -> list[str]:
  """`field (saved X, now Y)` for each result-affecting field where two config dicts differ."""
  saved, current = _flatten(saved), _flatten(current)
  missing = "<absent>"
  return [f"{name} (saved {saved.get(name, missing)!r}, now {current.get(name, missing)!r})"
          for name in sorted(saved.keys() | current.keys())
          if name not in NON_RESULT_FIELDS and saved.get(name, missing) != current.get(
              name, missing)]


def _read_finished_run(config, workdir: str) -> Optional[dict]:
  """Checks a workdir's earlier run against `config`; returns its summary if it has finished.

  Raises ConfigError if the workdir holds another experiment, or run files without a config.
  """
  config_path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(config_path):
    present = [name for name in RUN_FILES if os.path.exists(os.path.join(workdir, name))]
    if present:
      raise ConfigError(f"workdir {workdir!r} holds {', '.join(present)} but no {CONFIG_FILE}, "
                        "so it cannot be resumed safely; start over with --restart")
    return None
  try:
    with open(config_path, encoding="utf-8") as f:
      saved = json.load(f)
  except (OSError, ValueError) as error:
    raise ConfigError(f"cannot read {config_path} ({error}); start over with --restart") from None
  current = json.loads(json.dumps(config.to_dict()))
  differences = config_differences(saved, current)
  if differences:
    raise ConfigError(
        f"workdir {workdir!r} holds a run of another config: {'; '.join(differences)}. "
        "Use another workdir, or start over with --restart")
  summary_path = os.path.join(workdir, SUMMARY_FILE)
  if not os.path.exists(summary_path):
    return None
  with open(summary_path, encoding="utf-8") as f:
    return json.load(f)


def _remove_run_files(workdir: str) -> None:
  for name in RUN_FILES:
    path = os.path.join(workdir, name)
    if os.path.isdir(path):
      shutil.rmtree(path)
    elif os.path.exists(path):
      os.remove(path)


def _create_model(config, dataset: data.Dataset) -> models.Model:
  """The config's model for the dataset's images; a shape it cannot take is a ConfigError."""
  try:
    return models.create_model(config.model, dataset.image_shape, dataset.num_classes,
                               config.seed)
  except ValueError as error:
    raise ConfigError(f"model {config.model!r} on {dataset.name}: {error}") from None


def _last_finite(losses: np.ndarray) -> Optional[float]:
  finite = losses[np.isfinite(losses)]
  return float(finite[-1]) if finite.size else None


def train_and_evaluate(config, workdir: str, restart: bool = False) -> dict:
  """Trains `config` in `workdir`, resuming it if it holds a checkpoint; returns the summary.

  The summary is also written to `<workdir>/summary.json`. `restart=True` deletes the run files
  of an earlier run in `workdir` (`RUN_FILES`) and trains from the start.

  Raises ConfigError, DataError or CheckpointError (one-line messages for the user) before any
  training; ConfigError and DataError also before anything is written.
  """
  config_validation.validate(config)
  config_validation.validate_workdir(workdir)
  if not restart:
    finished = _read_finished_run(config, workdir)
    if finished is not None:
      logging.info("%s already holds a finished run (status %s after %d steps); nothing to do "
                   "(start over with --restart)", workdir, finished["status"], finished["steps"])
      return finished
  dataset = data.load_dataset(config.data)
  steps_per_epoch = len(dataset.train) // config.batch_size
  if steps_per_epoch < 1:
    raise ConfigError(f"batch_size {config.batch_size} exceeds the {len(dataset.train)} "
                      f"training examples of {dataset.name}")
  total_steps = steps_per_epoch * config.num_epochs

  # The train state of step 0, and the compiled functions.
  model = _create_model(config, dataset)
  tx = optimizers.build_optimizer(config)
  tangent_rng, data_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  state = programs.init_state(model.params, tx, tangent_rng)
  loss_fn = programs.make_loss_fn(model.apply, dataset.pixel_mean, dataset.pixel_std)
  train_loss_fn, place = sharding.data_parallel(config, loss_fn)  # config.sharding
  train_chunk = programs.make_train_chunk(programs.make_train_step(train_loss_fn, tx, config),
                                    config.batch_size, scan=programs.scans_well(config.model))
  evaluate = programs.make_evaluate(loss_fn)

  # Everything above only read; from here on the workdir is written.
  if restart:
    _remove_run_files(workdir)
  os.makedirs(workdir, exist_ok=True)
  _write_json(os.path.join(workdir, CONFIG_FILE), config.to_dict())
  checkpoints = checkpointing.Checkpoints(
      os.path.join(workdir, checkpointing.CHECKPOINT_DIR), config.keep_checkpoints)
  with checkpoints:
    restored = checkpoints.restore(state)
    # What the loop carries between chunks: a checkpoint saves it with the state.
    carry = {"epoch_loss_sum": 0.0, "epoch_loss_count": 0, "last_finite_loss": None,
             "train_seconds": 0.0, "elapsed_seconds": 0.0}
    if restored is not None:
      state, carry = restored.state, restored.progress
      logging.info("resuming %s from step %d of %d", workdir, restored.step, total_steps)
    start_step = int(state.step)

    # Placement: every array the compiled functions read goes onto the device(s) here.
    state = place(state)
    train_images = place(dataset.train.images)
    train_labels = place(dataset.train.labels)
    eval_splits = {
        name: place(programs.batch_for_eval(split.images, split.labels, config.eval_batch_size))
        for name, split in (("validation", dataset.validation), ("test", dataset.test))}

    logging.info("%s / %s / %s on %s: %d parameters, %d steps of batch %d (%d epochs)",
                 config.estimator, config.model, config.optimizer, dataset.name,
                 models.num_params(model.params), total_steps, config.batch_size,
                 config.num_epochs)
    writer = MetricWriter(workdir, start_step)
    eval_rows = [row for row in read_metrics(workdir) if "epoch" in row]
    eval_row = eval_rows[-1] if eval_rows else {}
    progress = _Progress(total_steps)
    start = time.time() - carry["elapsed_seconds"]
    status, diverged_at = "completed", -1
    order_epoch, order = None, None
    for epoch, first_batch, num_steps in chunks(start_step, steps_per_epoch, total_steps,
                                                config.log_every_steps):
      if epoch != order_epoch:
        order_epoch, order = epoch, programs.epoch_order(data_rng, epoch, train_labels)
      first_step = epoch * steps_per_epoch + first_batch
      chunk_start = time.time()
      state, losses = train_chunk(state, train_images, train_labels, order, first_batch,
                                  num_steps=num_steps)
      losses = np.asarray(losses)
      carry["train_seconds"] += time.time() - chunk_start
      diverged_at = int(state.diverged_at)
      if diverged_at >= 0:  # steps from `diverged_at` on were not applied
        losses = losses[:diverged_at - first_step]
      last_finite = _last_finite(losses)
      if last_finite is not None:
        carry["last_finite_loss"] = last_finite
      if diverged_at >= 0:
        status = "diverged"
        break
      step = first_step + num_steps
      finite = losses[np.isfinite(losses)]
      carry["epoch_loss_sum"] += float(np.sum(finite, dtype=np.float64))
      carry["epoch_loss_count"] += int(finite.size)
      carry["elapsed_seconds"] = time.time() - start
      chunk_loss = float(np.mean(finite)) if finite.size else None
      writer.write({"step": step, "train_loss": chunk_loss,
                    "elapsed_seconds": carry["elapsed_seconds"]})
      progress.update(step, epoch, float("nan") if chunk_loss is None else chunk_loss)
      if first_batch + num_steps == steps_per_epoch:
        eval_row = _evaluate_epoch(evaluate, state.params, eval_splits, step, epoch, carry,
                                   config.num_epochs)
        eval_row["elapsed_seconds"] = carry["elapsed_seconds"] = time.time() - start
        writer.write(eval_row)
        carry["epoch_loss_sum"], carry["epoch_loss_count"] = 0.0, 0
      if (step // config.checkpoint_every_steps > first_step // config.checkpoint_every_steps
          or step == total_steps):
        checkpoints.save(state, carry)
    writer.close()
    last_good = checkpoints.latest_step()
  if status == "diverged":
    logging.error("diverged: non-finite loss or gradient at step %d (last finite loss %s); "
                  "stopped, keeping the last good checkpoint (step %s)", diverged_at,
                  carry["last_finite_loss"], last_good)

  steps = diverged_at if status == "diverged" else int(state.step)
  train_seconds = carry["train_seconds"]  # of every session, the chunks a kill lost excluded
  summary = {
      "status": status,
      "estimator": config.estimator, "model": config.model, "optimizer": config.optimizer,
      "dataset": dataset.name,
      "steps": steps, "epochs_completed": eval_row.get("epoch", 0),
      "train_loss": eval_row.get("epoch_train_loss"),
      "validation_loss": eval_row.get("validation_loss"),
      "validation_accuracy": eval_row.get("validation_accuracy"),
      "test_loss": eval_row.get("test_loss"), "test_accuracy": eval_row.get("test_accuracy"),
      "num_skipped_steps": int(state.num_skipped),
      "wall_clock_seconds": time.time() - start,
      "train_steps_per_second": steps / train_seconds if train_seconds else None,
  }
  if status == "diverged":
    summary.update(diverged_at_step=diverged_at, last_finite_loss=carry["last_finite_loss"],
                   last_checkpoint_step=last_good)
  _write_json(os.path.join(workdir, SUMMARY_FILE), summary)
  return summary


def _evaluate_epoch(evaluate, params, eval_splits: dict, step: int, epoch: int, carry: dict,
                    num_epochs: int) -> dict:
  """The metrics row of an epoch's end: mean train loss, and validation and test metrics."""
  metrics = {f"{name}_{key}": float(value)
             for name, split in eval_splits.items()
             for key, value in evaluate(params, *split).items()}
  count = carry["epoch_loss_count"]
  row = {"step": step, "epoch": epoch + 1,
         "epoch_train_loss": carry["epoch_loss_sum"] / count if count else None, **metrics}
  logging.log_every_n_seconds(
      logging.INFO, "epoch %d/%d: train %s | validation %.4f (acc %.4f) | test %.4f (acc %.4f)",
      10, epoch + 1, num_epochs, row["epoch_train_loss"], metrics["validation_loss"],
      metrics["validation_accuracy"], metrics["test_loss"], metrics["test_accuracy"])
  return row

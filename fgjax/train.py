"""`train_and_evaluate(config, workdir)`: one training run, from config to summary.

Writes into `workdir`: `config.json`, `metrics.jsonl` (a row per `log_every_steps` steps and per
epoch), TensorBoard events under `tensorboard/`, and `summary.json` when the run ends.
"""

import json
import os
import time

from absl import logging
import jax
import numpy as np

from fgjax import data
from fgjax import models
from fgjax import optimizers
from fgjax import train_step as ts
from fgjax.metrics_writer import MetricWriter

SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.json"


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


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains `config` and returns the summary also written to `<workdir>/summary.json`."""
  dataset = data.load_dataset(config.data)
  steps_per_epoch = len(dataset.train) // config.batch_size
  if steps_per_epoch < 1:
    raise ValueError(f"batch_size {config.batch_size} exceeds the {len(dataset.train)} "
                     "training examples")
  model = models.create_model(config.model, dataset.image_shape, dataset.num_classes,
                              config.seed)
  tx = optimizers.build_optimizer(config)
  tangent_rng, data_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  state = ts.init_state(model.params, tx, tangent_rng)
  loss_fn = ts.make_loss_fn(model.apply, dataset.pixel_mean, dataset.pixel_std)
  train_chunk = ts.make_train_chunk(ts.make_train_step(loss_fn, tx, config), config.batch_size)
  evaluate = ts.make_evaluate(loss_fn)

  os.makedirs(workdir, exist_ok=True)
  _write_json(os.path.join(workdir, CONFIG_FILE), config.to_dict())
  train_images = jax.device_put(dataset.train.images)
  train_labels = jax.device_put(dataset.train.labels)
  eval_splits = {
      name: jax.device_put(ts.batch_for_eval(split.images, split.labels, config.eval_batch_size))
      for name, split in (("validation", dataset.validation), ("test", dataset.test))}
  total_steps = steps_per_epoch * config.num_epochs
  logging.info("%s / %s / %s on %s: %d parameters, %d steps of batch %d (%d epochs)",
               config.estimator, config.model, config.optimizer, dataset.name,
               models.num_params(model.params), total_steps, config.batch_size,
               config.num_epochs)

  writer = MetricWriter(workdir)
  progress = _Progress(total_steps)
  start = time.time()
  train_seconds = 0.0
  status, last_finite_loss, eval_row = "completed", None, {}
  for epoch in range(config.num_epochs):
    order = ts.epoch_order(data_rng, epoch, train_labels)
    epoch_losses = []
    for first_batch in range(0, steps_per_epoch, config.log_every_steps):
      num_steps = min(config.log_every_steps, steps_per_epoch - first_batch)
      chunk_start = time.time()
      state, losses = train_chunk(state, train_images, train_labels, order, first_batch,
                                  num_steps=num_steps)
      losses = np.asarray(losses)
      train_seconds += time.time() - chunk_start
      finite = losses[np.isfinite(losses)]
      if finite.size:
        last_finite_loss = float(finite[-1])
      if int(state.diverged_at) >= 0:
        status = "diverged"
        break
      epoch_losses.append(losses)
      writer.write({"step": int(state.step), "train_loss": float(np.mean(finite)),
                    "elapsed_seconds": time.time() - start})
      progress.update(int(state.step), epoch, float(np.mean(finite)))
    if status == "diverged":
      logging.error("diverged: non-finite loss or gradient at step %d (last finite loss %s); "
                    "stopping", int(state.diverged_at), last_finite_loss)
      break
    metrics = {f"{name}_{key}": float(value)
               for name, split in eval_splits.items()
               for key, value in evaluate(state.params, *split).items()}
    eval_row = {"step": int(state.step), "epoch": epoch + 1,
                "epoch_train_loss": float(np.nanmean(np.concatenate(epoch_losses))),
                **metrics, "elapsed_seconds": time.time() - start}
    writer.write(eval_row)
    logging.log_every_n_seconds(
        logging.INFO, "epoch %d/%d: train %.4f | validation %.4f (acc %.4f) | test %.4f "
        "(acc %.4f)", 10, epoch + 1, config.num_epochs, eval_row["epoch_train_loss"],
        metrics["validation_loss"], metrics["validation_accuracy"], metrics["test_loss"],
        metrics["test_accuracy"])
  writer.close()

  steps = int(state.step)
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
    summary.update(diverged_at_step=int(state.diverged_at), last_finite_loss=last_finite_loss)
  _write_json(os.path.join(workdir, SUMMARY_FILE), summary)
  return summary

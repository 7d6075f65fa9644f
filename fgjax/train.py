"""The training core: T >= 1 trials of one config, trained together, from config to summaries.

A trial is one training run: a seed (parameter init, data order, tangents) and, for a sweep, the
optimizer hyperparameters it sets (they live in the optimizer state, so trials share one compiled
update). A plain run is one trial; `config.num_seeds` makes one trial per seed; `fgjax.sweep` makes
one per setting and seed. `train_trials` trains them `trials_per_call` at a time: the trials of a
call share one compiled program, vmapped over them; calls run one after another. Each trial writes
its files (`fgjax.workdir` names them) into its own directory; a call's checkpoints hold all its
trials' states. Steps run in `chunks`, each one compiled call followed by the events of `_Loop`.

Resume. Rerunning on a workdir that holds a checkpoint continues from the newest valid one, with
results bit-identical to an uninterrupted run: the checkpoint holds the whole train state and what
the loop carries between chunks (`fgjax.progress`), CRC-checked; data order depends only on (seed,
epoch) and tangents only on (seed, step). Metrics rows past the restored step are dropped and
written again; rows missing before it stop the run. A finished trial (one with `summary.json`) is
not trained again. Saved configs must match in every field but `NON_RESULT_FIELDS`; `restart=True`
deletes the run's files and starts over. A run holds a lock on its workdir while it writes. SIGTERM
or Ctrl-C (`fgjax.preemption`) and the deadline of `stopping_by` stop a run at a chunk's end,
after a checkpoint of that step, so that the rerun loses nothing.

Failing safely. The config and workdir are validated and the data loaded before anything is
written. A non-finite loss or gradient never reaches the parameters: with `on_nonfinite="stop"`
the trial ends with status "diverged" (its parameters frozen at the last good step while the
call's other trials go on); with "skip" the step is not applied and counted.
"""

import contextlib
import dataclasses
import io
import os
import time
from typing import Callable, Iterator, NamedTuple, Optional, Sequence

from absl import logging
import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh
import numpy as np

from fgjax import checkpointing
from fgjax import compilation
from fgjax import config_validation
from fgjax import data
from fgjax import default_config
from fgjax import diagnostics
from fgjax import estimators
from fgjax import models
from fgjax import optimizers
from fgjax import preemption
from fgjax import programs
from fgjax import sharding
from fgjax import storage
from fgjax import workdir as files
from fgjax.errors import CheckpointError, ConfigError, WorkdirError
from fgjax.metrics_writer import MetricWriter
from fgjax.progress import Progress, TrialProgress

# A trial's files, which `restart=True` deletes; other files in a workdir are left alone.
TRIAL_FILES = (files.CONFIG_FILE, files.METRICS_FILE, files.SUMMARY_FILE, files.TENSORBOARD_DIR,
               files.TEST_LOSSES_FILE)
# Config fields that cannot change a run's parameters, metrics or summary, so a run may resume
# with other values. Every other field, new ones included, must match the saved config:
# `log_every_steps` sets the chunks (the compiled programs) and the metrics rows, and
# `eval_batch_size` the summation order of the evaluation.
NON_RESULT_FIELDS = ("checkpoint_every_steps", "keep_checkpoints", "data.tfds_data_dir",
                     "data.download", "diagnostics_every_steps")
SUMMARY_STATISTICS = ("test_loss", "test_accuracy", "validation_loss", "validation_accuracy")


class Stopped(BaseException):
  """Training reached the deadline of `stopping_by` and stopped after checkpointing; the same call
  resumes it. A BaseException, like KeyboardInterrupt, so that handlers of a failed run (which
  log it and go on with the next) let it through."""


_deadline = [None]  # the time.time() by which training stops (`stopping_by`); None: never


@contextlib.contextmanager
def stopping_by(deadline: Optional[float]):
  """Within this context, training that would run a chunk of steps past `deadline` (a
  time.time(); None: no deadline) checkpoints and raises `Stopped` instead. A chunk is assumed
  to last as long as the longest one so far. The first chunk of a call always runs, so that
  every call makes progress; it and an epoch's evaluation may overrun the deadline."""
  before, _deadline[0] = _deadline[0], deadline
  try:
    yield
  finally:
    _deadline[0] = before


@dataclasses.dataclass(frozen=True)
class Trial:
  """One training run: its directory in the workdir ("" is the workdir itself), its seed, and the
  optimizer hyperparameters it sets (names of fgjax.optimizers.HYPERPARAMETERS)."""
  directory: str
  seed: int
  hyperparameters: dict = dataclasses.field(default_factory=dict)


def trial_config(config, trial: Trial):
  """The config that trains `trial` alone: its seed and hyperparameters, one seed."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.update(trial.hyperparameters)
    config.seed = trial.seed
    config.num_seeds = 1
  return config


def seed_trials(config) -> list[Trial]:
  """The trials of `config.num_seeds` seeds from `config.seed`: the workdir itself for one seed,
  `seed_<s>/` for each of several."""
  if config.num_seeds == 1:
    return [Trial("", int(config.seed))]
  return [Trial(f"seed_{seed}", seed)
          for seed in range(int(config.seed), int(config.seed) + int(config.num_seeds))]


def trials_per_call(config, num_trials: int) -> int:
  """How many trials one compiled program trains: `config.trials_per_call`, else all, or one
  where vmapping does not pay (convolutions on XLA:CPU) and in data-parallel runs."""
  if config.trials_per_call is not None:
    if config.sharding.data_parallel and config.trials_per_call > 1:
      raise ConfigError("a data-parallel run trains one trial per call: set trials_per_call=1")
    return min(int(config.trials_per_call), num_trials)
  if config.sharding.data_parallel or not programs.scans_well(config.model):
    return 1
  return num_trials


class Chunk(NamedTuple):
  """`num_steps` steps from `first_step`, the first of them on batch `first_batch` of `epoch`."""
  epoch: int
  first_batch: int
  num_steps: int
  first_step: int
  ends_epoch: bool

  @property
  def end(self) -> int:
    """The step the chunk ends at: the trials' step after it."""
    return self.first_step + self.num_steps

  def passes_multiple_of(self, every: int) -> bool:
    """Whether the chunk reaches or passes a multiple of `every` after its first step."""
    return self.end // every > self.first_step // every


def chunks(start_step: int, steps_per_epoch: int, total_steps: int,
           log_every_steps: int) -> Iterator[Chunk]:
  """Each chunk from `start_step` to `total_steps`: a chunk ends at the next multiple of
  `log_every_steps` within its epoch or at the epoch's end, so that a resumed run compiles and
  runs exactly the chunks of an uninterrupted one."""
  step = start_step
  while step < total_steps:
    epoch, first_batch = divmod(step, steps_per_epoch)
    num_steps = min(log_every_steps - first_batch % log_every_steps,
                    steps_per_epoch - first_batch)
    yield Chunk(epoch, first_batch, num_steps, step,
                ends_epoch=first_batch + num_steps == steps_per_epoch)
    step += num_steps


def flatten(tree: dict, prefix: str = "") -> dict:
  """A nested dict as one dict of dotted names."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def config_differences(saved: dict, current: dict) -> list[str]:
  """`field (saved X, now Y)` for each result-affecting field where two config dicts differ. A
  field that `saved` lacks, one added to fgjax after it was written, counts as its default; one
  renamed since counts under its new name (`default_config.renamed`)."""
  saved = {**flatten(files.json_safe(default_config.base_config().to_dict())),
           **default_config.renamed(flatten(saved))}
  current = flatten(current)
  missing = "<absent>"
  return [f"{name} (saved {saved.get(name, missing)!r}, now {current.get(name, missing)!r})"
          for name in sorted((saved.keys() | current.keys()) - set(NON_RESULT_FIELDS))
          if saved.get(name, missing) != current.get(name, missing)]


def _config_dict(config) -> dict:
  return files.json_safe(config.to_dict())


def _read_finished(config, run_dir: str) -> Optional[dict]:
  """Checks a directory's earlier run against `config`; returns its summary if it has finished.
  ConfigError if the directory holds another experiment, or run files without a config."""
  try:
    saved = files.read_json(os.path.join(run_dir, files.CONFIG_FILE))
  except WorkdirError as error:
    raise WorkdirError(f"{error}; start over with --restart") from None
  if saved is None:
    present = [name for name in TRIAL_FILES if name != files.SUMMARY_FILE
               and storage.exists(os.path.join(run_dir, name))]
    if present:
      raise ConfigError(f"{run_dir!r} holds {', '.join(present)} but no {files.CONFIG_FILE}, "
                        "so it cannot be resumed safely; start over with --restart")
    return None
  differences = config_differences(saved, _config_dict(config))
  if differences:
    raise ConfigError(
        f"{run_dir!r} holds a run of another config: {'; '.join(differences)}. "
        "Use another workdir, or start over with --restart")
  try:
    return files.read_json(os.path.join(run_dir, files.SUMMARY_FILE))
  except WorkdirError as error:
    logging.warning("%s; writing it again from the run's last checkpoint", error)
    return None


class _Call:
  """The compiled functions that train the trials of one call, and the layout they take them in:
  several trials vmapped over a leading trial axis, or one without it (the plain program, which
  data parallelism needs). Checkpoints and results always have the trial axis."""

  def __init__(self, train_step, evaluate, example_losses, diagnose, config, size: int):
    self.vmapped, self.size, self.batch_size = size > 1, size, int(config.batch_size)
    self.chunk = programs.make_train_chunk(train_step, self.batch_size,
                                           scan=programs.scans_well(config.model),
                                           vmapped=self.vmapped,
                                           fed=config.sharding.data_parallel)
    over_trials = lambda f, axes: compilation.jit(jax.vmap(f, in_axes=axes) if self.vmapped
                                                  else f)
    self.orders = over_trials(programs.epoch_order, (0, None, None))  # data keys, epoch, labels
    point = optimizers.evaluation_point(config)
    at_point = lambda f: lambda state, *split: f(point(state.params, state.opt_state), *split)
    self._evaluate = over_trials(at_point(evaluate), (0, None, None, None))
    self._example_losses = over_trials(at_point(example_losses), (0, None, None, None))
    keyed = lambda params, images, labels, seed, step: diagnose(
        params, images, labels, jax.random.fold_in(jax.random.PRNGKey(seed), step))
    self._diagnose = over_trials(keyed, (0, None, None, 0, None))

  def program_layout(self, with_trial_axis):
    """A tree with a leading trial axis in the layout of the compiled functions."""
    return with_trial_axis if self.vmapped else jax.tree.map(lambda leaf: leaf[0],
                                                             with_trial_axis)

  def with_trial_axis(self, program_layout):
    """Host copies of a tree in the compiled functions' layout, with the leading trial axis."""
    host = jax.tree.map(np.asarray, program_layout)
    return host if self.vmapped else jax.tree.map(lambda leaf: leaf[None], host)

  def evaluate(self, states, split) -> dict:
    """Each trial's metrics of `split` at its evaluation point (`optimizers.evaluation_point`)."""
    return self.with_trial_axis(self._evaluate(states, *split))

  def example_losses(self, states, split) -> dict:
    """Every example's losses of `split` for each trial, at its evaluation point (gathered from
    every process where the split is spread over several)."""
    return self.with_trial_axis(
        multihost_utils.process_allgather(self._example_losses(states, *split), tiled=True))

  def diagnose(self, params, arrays, seeds: Sequence[int], step: int) -> dict:
    """`fgjax.diagnostics` of every trial on the first batch of the training split, the trial of
    seed s drawing from fold_in(PRNGKey(s), step): a function of the state and step alone."""
    seeds = np.array(list(seeds) + [seeds[-1]] * (self.size - len(seeds)), np.int32)
    images, labels = (array[:self.batch_size] for array in arrays)
    return self.with_trial_axis(self._diagnose(params, images, labels,
                                               self.program_layout(seeds), np.int32(step)))


@dataclasses.dataclass(frozen=True)
class _Run:
  """What every call of a run trains with."""
  config: object
  dataset: data.Dataset
  call: _Call
  place: Callable  # puts an array on the devices, laid out as the run's sharding says
  mesh: Optional[Mesh]  # the data-parallel mesh; None on one device
  arrays: tuple  # the training split's images and labels: placed, or on the host with a mesh
  eval_splits: dict  # each evaluated split's name: its evaluation batches, on the devices
  steps_per_epoch: int
  total_steps: int

  def batches(self, order, chunk: Chunk) -> tuple:
    """`call.chunk`'s arguments between the state and `num_steps` for `chunk` of an epoch in
    example `order`: the training split and `order`, for the compiled chunk to gather its batches
    on the devices; or, data parallel, the chunk's batches, this process's rows gathered here."""
    if self.mesh is None:
      return (*self.arrays, order, chunk.first_batch)
    size = int(self.config.batch_size)
    first = chunk.first_batch * size
    indices = np.asarray(order)[first:first + chunk.num_steps * size].reshape(-1, size)
    return (*sharding.gather_batches(self.mesh, self.arrays, indices), None, 0)


class _Log:
  """Logs progress at most every 10 seconds: step, trials alive, loss, speed and ETA."""

  def __init__(self, total_steps: int, num_trials: int):
    self._total, self._trials = total_steps, num_trials
    self._last, self._first_step, self._start = time.time(), None, None

  def update(self, step: int, epoch: int, losses: Sequence[float]) -> None:
    now = time.time()
    if self._first_step is None:
      self._first_step, self._start = step, now  # the first chunk includes compilation
      return
    if now - self._last < 10:
      return
    self._last = now
    rate = (step - self._first_step) / max(now - self._start, 1e-9)
    eta = time.strftime("%H:%M:%S", time.gmtime((self._total - step) / rate)) if rate else "-"
    alive = f", {len(losses)}/{self._trials} trials" if self._trials > 1 else ""
    loss = f"{np.mean(losses):.4f}" if losses else "-"
    logging.info("step %d/%d (epoch %d%s) loss %s | %.1f steps/s | ETA %s", step, self._total,
                 epoch + 1, alive, loss, rate, eta)


def _learning_rate(config, step: int) -> float:
  return float(config.learning_rate) * float(np.exp(-float(config.decay) * step))


def _round(value) -> str:
  return "-" if value is None else f"{value:.4f}"


def _write_test_losses(path: str, example_losses: dict, num_examples: int) -> None:
  """Saves every test example's loss, atomically: the first `num_examples` of the evaluation
  batches, the padding after them dropped."""
  if not files.is_writer():
    return
  buffer = io.BytesIO()
  np.savez(buffer, **{name: np.asarray(values).reshape(-1)[:num_examples]
                      for name, values in example_losses.items()})
  storage.write_bytes(path, buffer.getvalue())


def train_trials(config, workdir: str, trials: Sequence[Trial], *, evaluate_test: bool = True,
                 restart: bool = False) -> list[dict]:
  """Trains `trials` of `config` in `workdir`, resuming what a checkpoint holds; returns each
  trial's summary (also in its directory's `summary.json`). `evaluate_test=False` (a sweep) never
  evaluates the test split. Raises ConfigError, DataError or WorkdirError (one-line messages for
  the user); ConfigError and DataError before anything is written."""
  config_validation.validate(config)
  config_validation.validate_workdir(workdir)
  configs = [trial_config(config, trial) for trial in trials]
  for trial_cfg in configs:
    config_validation.validate(trial_cfg)
  dirs = [os.path.join(workdir, trial.directory) if trial.directory else workdir
          for trial in trials]
  lock = files.Lock(workdir)

  def lock_existing_workdir():  # before any work, so that a second run on it stops at once
    if storage.isdir(workdir):
      lock.acquire()

  files.on_writer(lock_existing_workdir)
  try:
    with preemption.handle_signals():
      return _train_trials(config, workdir, trials, configs, dirs, lock, evaluate_test, restart)
  finally:
    lock.release()


def _train_trials(config, workdir, trials, configs, dirs, lock, evaluate_test, restart):
  """train_trials past its checks; `lock` is taken here if it is not yet."""
  finished = [None] * len(trials)
  if not restart:
    if len(trials) > 1 or trials[0].directory:
      _read_finished(config, workdir)
    finished = [_read_finished(c, d) for c, d in zip(configs, dirs)]
    if all(finished):
      logging.info("%s already holds the finished run; nothing to do (start over with "
                   "--restart)", workdir)
      return finished

  run = _prepare_run(config, len(trials), evaluate_test)

  # Everything above only read; from here on the workdir is written.
  storage.makedirs(workdir)
  lock.acquire()
  if restart and files.is_writer():  # the other processes wait for it in Checkpoints
    storage.remove([os.path.join(workdir, name) for name in
                    (files.CHECKPOINT_DIR, files.CHECKPOINT_LOG, files.SUMMARY_FILE, *TRIAL_FILES)]
                   + [os.path.join(d, name) for d in dirs for name in TRIAL_FILES])
  files.write_json(os.path.join(workdir, files.CONFIG_FILE), _config_dict(config))
  for trial_cfg, run_dir in zip(configs, dirs):
    storage.makedirs(run_dir)
    files.write_json(os.path.join(run_dir, files.CONFIG_FILE), _config_dict(trial_cfg))
  summaries = []
  calls = range(0, len(trials), run.call.size)
  for c, first in enumerate(calls):
    members = slice(first, first + run.call.size)
    if all(finished[members]):
      summaries += finished[members]
      continue
    if len(calls) > 1:
      logging.info("call %d/%d: trials %s", c + 1, len(calls),
                   ", ".join(trial.directory for trial in trials[members]))
    # A call's checkpoints keep the directory name that workdirs written before have.
    checkpoint_dir = os.path.join(workdir, files.CHECKPOINT_DIR,
                                  *([f"group_{c:04d}"] if len(calls) > 1 else []))
    summaries += _train_call(run, configs[members], dirs[members], checkpoint_dir)
  return summaries


def _prepare_run(config, num_trials: int, evaluate_test: bool) -> _Run:
  """Loads the data onto the devices and builds the compiled call; writes nothing. Raises
  ConfigError or DataError."""
  dataset = data.load_dataset(config.data)
  steps_per_epoch = len(dataset.train) // config.batch_size
  if steps_per_epoch < 1:
    raise ConfigError(f"batch_size {config.batch_size} exceeds the {len(dataset.train)} "
                      f"training examples of {dataset.name}")
  total_steps = steps_per_epoch * int(config.num_epochs)
  call_size = trials_per_call(config, num_trials)
  try:
    model = create_model(config, dataset, int(config.seed))
  except ValueError as error:
    raise ConfigError(f"model {config.model!r} on {dataset.name}: {error}") from None
  loss_fn = programs.make_loss_fn(model.apply, dataset.pixel_mean, dataset.pixel_std,
                                  config.loss, perturbed=model.perturbed)
  train_loss_fn, place, mesh = sharding.data_parallel(config, loss_fn)  # config.sharding
  tx = optimizers.build_optimizer(config)
  call = _Call(programs.make_train_step(train_loss_fn, tx, config),
                programs.make_evaluate(loss_fn, config.loss),
                programs.make_example_losses(loss_fn),
                diagnostics.make_diagnostics(loss_fn, config), config, call_size)
  logging.info("%s / %s / %s on %s: %d parameters, %d trial(s) of %d steps of batch %d "
               "(%d epoch(s)), %d per compiled call", config.estimator, config.model,
               config.optimizer, dataset.name, models.num_params(model.params), num_trials,
               total_steps, config.batch_size, config.num_epochs, call_size)
  names = ("validation", "test") if evaluate_test else ("validation",)
  eval_splits = {name: _eval_batches(getattr(dataset, name), config.eval_batch_size, place, mesh)
                 for name in names}
  arrays = (dataset.train.images, dataset.train.labels)
  if mesh is None:
    arrays = tuple(place(array) for array in arrays)
  return _Run(config, dataset, call, place, mesh, arrays, eval_splits, steps_per_epoch,
              total_steps)


def _eval_batches(split, batch_size: int, place: Callable, mesh: Optional[Mesh]) -> tuple:
  """A split's evaluation batches (`programs.batch_for_eval`) on the devices: placed whole, or
  over a data-parallel mesh, each process feeding only its rows of each batch, the batch rounded
  up to a multiple of the devices (the added rows, like the split's padding, weigh zero), so
  that the devices evaluate the split once between them."""
  if mesh is None:
    return place(programs.batch_for_eval(split.images, split.labels, batch_size))
  batch_size = -(-batch_size // mesh.size) * mesh.size
  rows = sharding.own_rows(mesh, batch_size)
  return tuple(sharding.global_batches(mesh, array[:, rows], batch_size)
               for array in programs.batch_for_eval(split.images, split.labels, batch_size))


def local_heads(config) -> Optional[models.LocalHeads]:
  """`config.local_heads` for the local-loss estimators; None for the others."""
  local = estimators.get(config.estimator).local_heads
  return models.LocalHeads(**config.local_heads) if local else None


def create_model(config, dataset, seed: int) -> models.Model:
  """The config's model for the dataset, initialised from `seed`, with its `local_heads`."""
  return models.create_model(config.model, dataset.image_shape, dataset.num_classes, seed,
                             init=config.init, local_heads=local_heads(config))


def _initial_states(run: _Run, configs: Sequence):
  """The step-0 TrainStates and data-order keys of a call's trials, with a leading trial axis,
  padded to the call's size with repeats of the last (so every call has the compiled shape)."""
  states, data_rngs = [], []
  for trial_cfg in list(configs) + [configs[-1]] * (run.call.size - len(configs)):
    params = create_model(run.config, run.dataset, int(trial_cfg.seed)).params
    tangent_rng, data_rng = jax.random.split(jax.random.PRNGKey(int(trial_cfg.seed)))
    tx = optimizers.build_optimizer(trial_cfg)
    states.append(jax.device_get(programs.init_state(params, tx, tangent_rng)))
    data_rngs.append(np.asarray(data_rng))
  return jax.tree.map(lambda *leaves: np.stack(leaves), *states), np.stack(data_rngs)


def _train_call(run: _Run, configs: Sequence, dirs: Sequence[str],
                checkpoint_dir: str) -> list[dict]:
  """Trains the trials of one call to the end (see the module docstring); returns their
  summaries."""
  initial, data_rngs = _initial_states(run, configs)
  # orbax's warnings and errors go to <checkpoint_dir>.log, not the terminal
  with checkpointing.Checkpoints(checkpoint_dir, run.config.keep_checkpoints,
                                 checkpoint_dir + ".log") as checkpoints:
    initial, progress = _restore(checkpoints, checkpoint_dir, initial, dirs, run.total_steps)
    loop = _Loop(run, configs, dirs, checkpoints, initial, data_rngs, progress)
    for number, chunk in enumerate(chunks(loop.step, run.steps_per_epoch, run.total_steps,
                                          run.config.log_every_steps), 1):
      losses, seconds = loop.run_chunk(chunk)
      alive_losses = loop.record_losses(chunk, losses, seconds)
      if not loop.running:
        break
      loop.log.update(chunk.end, chunk.epoch, alive_losses)
      if chunk.ends_epoch:
        loop.end_of_epoch(chunk)
      loop.maybe_diagnose(chunk)
      stop = preemption.stop_requested(number)
      loop.maybe_checkpoint(chunk, stop)
      loop.maybe_stop(stop)
    final = loop.finish()
    last_good = checkpoints.latest_step()
  wall_clock = time.time() - loop.start
  summaries = [loop.summary(i, final, last_good, wall_clock) for i in range(len(dirs))]
  for run_dir, summary in zip(dirs, summaries):
    files.write_json(os.path.join(run_dir, files.SUMMARY_FILE), summary)
  return summaries


def _restore(checkpoints: checkpointing.Checkpoints, checkpoint_dir: str, initial,
             dirs: Sequence[str], total_steps: int) -> tuple[object, Progress]:
  """The call's TrainStates (trial axis) and progress to start from: the newest valid
  checkpoint's, else `initial` at step 0. CheckpointError if its progress cannot be read."""
  restored = checkpoints.restore(initial)
  if restored is None:
    if any(storage.exists(os.path.join(d, files.METRICS_FILE)) for d in dirs):
      logging.warning("%s holds no checkpoint: training from the start", checkpoint_dir)
    return initial, Progress([TrialProgress() for _ in dirs])
  try:
    progress = Progress.from_json(restored.progress)
  except ValueError as error:
    raise CheckpointError(f"checkpoint {restored.step} in {checkpoint_dir}: {error}; start over "
                          "with --restart") from None
  logging.info("resuming %s from step %d of %d", checkpoint_dir, restored.step, total_steps)
  return restored.state, progress


def _hyperparameters(config) -> dict:
  """The config's fields as TensorBoard's HParams dashboard takes them: flat, of scalars."""
  return {name: value for name, value in files.json_safe(flatten(config.to_dict())).items()
          if isinstance(value, (int, float, str, bool))}


def _open_writers(configs: Sequence, dirs: Sequence[str], start_step: int,
                  running: Sequence[int]) -> list[MetricWriter]:
  """Each trial's metrics writer, resuming at `start_step`. WorkdirError if the rows of a
  `running` trial end before that step."""
  writers = [MetricWriter(d, start_step, _hyperparameters(c)) for d, c in zip(dirs, configs)]
  for i in running:
    if start_step and files.is_writer() and writers[i].last_step != start_step:
      raise WorkdirError(
          f"{os.path.join(dirs[i], files.METRICS_FILE)} ends at step {writers[i].last_step} but "
          f"the checkpoint is at step {start_step}: rows are missing; start over with --restart")
  return writers


class _Loop:
  """One call's training in this process, from its restored step. Each event of a chunk of steps
  is a public method, called in the order `_train_call` lists; `running` and `summary` report on
  the trials. A trial trains until its progress holds why it diverged.
  """

  def __init__(self, run: _Run, configs: Sequence, dirs: Sequence[str],
               checkpoints: checkpointing.Checkpoints, initial, data_rngs, progress: Progress):
    self.run, self.configs, self.dirs, self.checkpoints = run, configs, dirs, checkpoints
    self.data_rngs, self.progress = run.call.program_layout(data_rngs), progress
    self.step = self.saved_step = int(np.max(initial.step))
    self.states = run.place(run.call.program_layout(initial))
    self.writers = _open_writers(configs, dirs, self.step, self.running)
    self.log = _Log(run.total_steps, len(configs))
    self.start = time.time() - progress.elapsed_seconds
    self._orders = None  # the epoch's example order, drawn at its first chunk
    self._chunk_began, self._longest_chunk = None, 0.0

  @property
  def running(self) -> list[int]:
    """The trials still training."""
    return [i for i, trial in enumerate(self.progress.trials) if trial.diverged_reason is None]

  def run_chunk(self, chunk: Chunk) -> tuple[np.ndarray, float]:
    """Runs the chunk's steps; returns their losses, [trial, step] (padding trials included),
    and the seconds they took."""
    self._chunk_began = time.time()
    if self._orders is None or chunk.first_batch == 0:
      self._orders = self.run.call.orders(self.data_rngs, chunk.epoch, self.run.arrays[1])
    began = time.time()
    batches = self.run.batches(self._orders, chunk)
    self.states, losses = self.run.call.chunk(self.states, *batches, num_steps=chunk.num_steps)
    losses = np.asarray(losses).reshape(self.run.call.size, chunk.num_steps)
    seconds = time.time() - began
    self.progress.train_seconds += seconds
    self.step = chunk.end
    self.progress.elapsed_seconds = time.time() - self.start
    return losses, seconds

  def record_losses(self, chunk: Chunk, losses: np.ndarray, seconds: float) -> list[float]:
    """Adds each running trial's finite losses of the chunk to its epoch's sums and writes its
    chunk row, or stops it if it diverged. Returns the chunk's mean loss of each running trial."""
    diverged_at = np.asarray(self.states.diverged_at).reshape(self.run.call.size)
    alive_losses = []
    for i in self.running:
      trial = self.progress.trials[i]
      applied = losses[i] if diverged_at[i] < 0 else losses[i][:diverged_at[i] - chunk.first_step]
      finite = applied[np.isfinite(applied)]
      if finite.size:
        trial.last_finite_loss = float(finite[-1])
      if diverged_at[i] >= 0:
        self._stop_diverged(i, losses[i][diverged_at[i] - chunk.first_step], diverged_at[i])
        continue
      trial.add_losses(finite)
      chunk_loss = float(np.mean(finite)) if finite.size else None
      alive_losses += [] if chunk_loss is None else [chunk_loss]
      self.writers[i].write({"step": chunk.end, "train_loss": chunk_loss,
                             "learning_rate": _learning_rate(self.configs[i], chunk.end),
                             "steps_per_second": chunk.num_steps / seconds,
                             "elapsed_seconds": self.progress.elapsed_seconds})
    return alive_losses

  def _stop_diverged(self, i: int, loss: float, step: int) -> None:
    """Stops trial `i`, which diverged with `loss` at `step`, and says why: a non-finite value, or
    the loss guard."""
    trial, ratio = self.progress.trials[i], self.configs[i].max_loss_ratio
    first_loss = float(np.asarray(self.states.first_loss).reshape(self.run.call.size)[i])
    trial.diverged_reason = "non-finite loss or gradient"
    if np.isfinite(loss) and ratio is not None and loss > ratio * first_loss:
      trial.diverged_reason = (f"loss {loss:.4g} above max_loss_ratio {ratio:g} x the first "
                               f"step's {first_loss:.4g}")
    logging.error("%s diverged: %s at step %d (last finite loss %s)", self.dirs[i],
                  trial.diverged_reason, step, _round(trial.last_finite_loss))

  def end_of_epoch(self, chunk: Chunk) -> None:
    """Evaluates the trials and writes and logs each running trial's row of the epoch's end."""
    metrics = {name: self.run.call.evaluate(self.states, split)
               for name, split in self.run.eval_splits.items()}
    for i in self.running:
      trial = self.progress.trials[i]
      row = {"step": chunk.end, "epoch": chunk.epoch + 1,
             "epoch_train_loss": trial.epoch_train_loss(),
             **{f"{split}_{key}": float(values[i]) for split, result in metrics.items()
                for key, values in result.items()},
             "elapsed_seconds": time.time() - self.start}
      self.writers[i].write(row)
      _log_epoch(self.dirs[i] if len(self.dirs) > 1 else "", row, self.run.config.num_epochs)
      trial.end_epoch(row)

  def maybe_diagnose(self, chunk: Chunk) -> None:
    """Writes each running trial's `fgjax.diagnostics` row at each multiple of
    `diagnostics_every_steps` the chunk reaches."""
    every = self.run.config.diagnostics_every_steps
    if not every or not chunk.passes_multiple_of(every):
      return
    values = self.run.call.diagnose(self.states.params, self.run.arrays,
                                     [int(c.seed) for c in self.configs], chunk.end)
    for i in self.running:
      self.writers[i].write({"step": chunk.end, **{k: float(v[i]) for k, v in values.items()}})

  def maybe_checkpoint(self, chunk: Chunk, stop: Optional[int]) -> None:
    """Checkpoints at the first chunk end at or past each multiple of `checkpoint_every_steps`,
    at the end, and when a signal asks the run to `stop`."""
    if (chunk.passes_multiple_of(self.run.config.checkpoint_every_steps)
        or chunk.end == self.run.total_steps or stop):
      self._save()

  def _save(self) -> None:
    for writer in self.writers:
      writer.flush()  # every row up to the checkpoint's step is durable before it
    self.checkpoints.save(self.run.call.with_trial_axis(self.states), self.progress.to_json())
    self.saved_step = self.step

  def maybe_stop(self, stop: Optional[int]) -> None:
    """Ends this process's training before the next chunk, its checkpoint saved: raises
    preemption.Stopped when a signal asks the run to `stop`, and Stopped when the next chunk
    would pass the deadline of `stopping_by`."""
    self._longest_chunk = max(self._longest_chunk, time.time() - self._chunk_began)
    if self.step == self.run.total_steps:
      return
    if stop:
      self._close_writers()
      self.checkpoints.wait()  # a failed save is a WorkdirError instead
      raise preemption.Stopped(stop, self.checkpoints.latest_step(), self.checkpoints.directory)
    if _deadline[0] is not None and time.time() + self._longest_chunk > _deadline[0]:
      if self.step > self.saved_step:
        self._save()
      self._close_writers()
      logging.info("%s: stopped at step %d of %d by the deadline; the same command resumes it",
                   self.checkpoints.directory, self.step, self.run.total_steps)
      raise Stopped(self.step)

  def _close_writers(self) -> None:
    for writer in self.writers:
      writer.close()

  def finish(self):
    """Closes the writers and writes each running trial's per-example test losses; returns the
    final TrainStates with the trial axis, for `summary`."""
    self._close_writers()
    test = self.run.eval_splits.get("test")
    if test is not None and self.running:
      example_losses = self.run.call.example_losses(self.states, test)
      for i in self.running:
        _write_test_losses(os.path.join(self.dirs[i], files.TEST_LOSSES_FILE),
                           {k: v[i] for k, v in example_losses.items()},
                           len(self.run.dataset.test.labels))
    return self.run.call.with_trial_axis(self.states)

  def summary(self, i: int, final, last_good: Optional[int], wall_clock: float) -> dict:
    """Trial `i`'s summary.json from the `final` states: its status, last evaluation, steps and
    speed; `last_good` is the newest checkpoint's step."""
    trial, config = self.progress.trials[i], self.run.config
    diverged_at = int(final.diverged_at[i])
    train_seconds = self.progress.train_seconds
    summary = {
        "status": "diverged" if diverged_at >= 0 else "completed",
        "estimator": config.estimator, "model": config.model, "optimizer": config.optimizer,
        "dataset": self.run.dataset.name, "seed": int(self.configs[i].seed),
        "steps": diverged_at if diverged_at >= 0 else int(final.step[i]),
        "epochs_completed": trial.last_eval.get("epoch", 0),
        "train_loss": trial.last_eval.get("epoch_train_loss"),
        **{name: trial.last_eval.get(name) for name in SUMMARY_STATISTICS},
        "num_skipped_steps": int(final.num_skipped[i]),
        "wall_clock_seconds": wall_clock,
        "train_steps_per_second": self.step / train_seconds if train_seconds else None,
    }
    if diverged_at >= 0:
      summary.update(diverged_at_step=diverged_at, last_finite_loss=trial.last_finite_loss,
                     diverged_reason=trial.diverged_reason, last_checkpoint_step=last_good)
    nonfinite = sorted(k for k, v in summary.items() if isinstance(v, float) and not np.isfinite(v))
    if nonfinite:
      summary["nonfinite_fields"] = nonfinite  # written as null: JSON has no NaN or infinity
    return summary


def _log_epoch(name: str, row: dict, num_epochs: int) -> None:
  """Logs a trial's row of an epoch's end; `name` (its directory, or "") prefixes it."""
  logging.info("%sepoch %d/%d: train %s | validation %s (acc %s)%s", f"{name}: " if name else "",
               row["epoch"], num_epochs, _round(row["epoch_train_loss"]),
               _round(row["validation_loss"]), _round(row["validation_accuracy"]),
               f" | test {_round(row['test_loss'])} (acc {_round(row['test_accuracy'])})"
               if "test_loss" in row else "")


def aggregate(summaries: Sequence[dict]) -> dict:
  """The run summary of several seeds: each seed's summary and mean, std, min and max of the
  test and validation metrics over the seeds that completed."""
  completed = [s for s in summaries if s["status"] == "completed"]
  stats = {}
  for name in SUMMARY_STATISTICS:
    values = np.array([s[name] for s in completed if s.get(name) is not None], np.float64)
    stats[name] = ({"mean": float(values.mean()), "std": float(values.std()),
                    "min": float(values.min()), "max": float(values.max()), "n": len(values)}
                   if values.size else None)
  return {"status": "completed" if len(completed) == len(summaries) else "diverged",
          **{key: summaries[0][key] for key in ("estimator", "model", "optimizer", "dataset")},
          "num_seeds": len(summaries), "seeds": [s["seed"] for s in summaries],
          "num_diverged": len(summaries) - len(completed),
          "wall_clock_seconds": max(s["wall_clock_seconds"] for s in summaries),
          "aggregate": stats, "per_seed": {str(s["seed"]): s for s in summaries}}


def train_and_evaluate(config, workdir: str, restart: bool = False) -> dict:
  """Trains `config` (its `num_seeds` seeds) in `workdir`, resuming it if it holds a checkpoint;
  returns the summary, also written to `<workdir>/summary.json`: the run's own for one seed, the
  `aggregate` of several (each seed's own is in `<workdir>/seed_<s>/`)."""
  summaries = train_trials(config, workdir, seed_trials(config), restart=restart)
  if len(summaries) == 1:
    return summaries[0]
  summary = aggregate(summaries)
  files.write_json(os.path.join(workdir, files.SUMMARY_FILE), summary)
  return summary

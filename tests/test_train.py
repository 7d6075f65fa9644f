"""fgjax.train end to end on the embedded digits: exact resume after SIGKILL, refusing to mix
experiments, divergence policies, damaged checkpoints, and bad input that writes nothing.

Runs are short: 16 steps per epoch, a chunk (metrics row) every 4 steps and a checkpoint every 16.
"""

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from fgjax import config_loading
from fgjax import progress
from fgjax import train
from fgjax import programs
from fgjax import workdir as files
from fgjax.errors import CheckpointError, ConfigError, DataError, WorkdirError
from fgjax.metrics_writer import MetricWriter
from fgjax.workdir import read_metrics
from test_metrics_writer import tensorboard_scalars  # pylint: disable=g-bad-import-order

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, "configs", "default.py")
STEPS_PER_EPOCH = 16  # 1,078 training digits // batch 64
# 4 epochs: 64 steps, checkpoints at 16, 32, 48 and 64 (the last 3 kept).
OVERRIDES = {"num_epochs": 4, "log_every_steps": 4, "checkpoint_every_steps": 16}
TOTAL_STEPS = 4 * STEPS_PER_EPOCH
WALL_CLOCK = ("wall_clock_seconds", "train_steps_per_second", "elapsed_seconds",
              "steps_per_second")


def digits_config(side: str, **changes):
  """configs/default.py:`side` with OVERRIDES and `changes` (a dict updates a config group)."""
  config = config_loading.load_config(f"{DEFAULT_CONFIG}:{side}")
  for name, value in {**OVERRIDES, **changes}.items():
    if isinstance(value, dict):
      config[name].update(value)
    else:
      setattr(config, name, value)
  return config


def cli(estimator: str, workdir: str, *flags: str) -> list[str]:
  """The `fgjax.main` command that trains `digits_config(estimator)`."""
  return ([sys.executable, "-m", "fgjax.main", f"--config={DEFAULT_CONFIG}:{estimator}",
           f"--workdir={workdir}"]
          + [f"--config.{name}={value}" for name, value in OVERRIDES.items()] + list(flags))


def checkpoint_steps(workdir: str) -> list[int]:
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def checkpoint_state(workdir: str, step: int) -> dict:
  """A checkpoint's train state as nested dicts of numpy arrays, read by orbax directly."""
  with ocp.CheckpointManager(os.path.join(workdir, "checkpoints"),
                             options=ocp.CheckpointManagerOptions(read_only=True)) as manager:
    return manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore())).state


def read_json(path: str) -> dict:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def metrics_rows(workdir: str) -> list[dict]:
  """metrics.jsonl without its wall-clock columns."""
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    rows = [json.loads(line) for line in f]
  return [{k: v for k, v in row.items() if k not in WALL_CLOCK} for row in rows]


def snapshot(directory: str) -> dict:
  """Every file under `directory` with its bytes; None if it does not exist."""
  if not os.path.exists(directory):
    return None
  if os.path.isfile(directory):
    with open(directory, "rb") as f:
      return {"": f.read()}
  files = {}
  for root, _, names in os.walk(directory):
    for name in set(names) - {".lock"}:  # a run's lock on its workdir changes nothing in it
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        files[os.path.relpath(path, directory)] = f.read()
  return files


def assert_same_run(expected_workdir: str, workdir: str) -> None:
  """Same final train state bit for bit, same summary numbers, same metrics rows."""
  assert checkpoint_steps(workdir)[-1] == checkpoint_steps(expected_workdir)[-1] == TOTAL_STEPS
  expected = checkpoint_state(expected_workdir, TOTAL_STEPS)
  got = checkpoint_state(workdir, TOTAL_STEPS)
  assert jax.tree.structure(expected) == jax.tree.structure(got)
  for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
    assert a.dtype == b.dtype and np.array_equal(a, b)
  numbers = lambda s: {k: v for k, v in s.items() if k not in WALL_CLOCK}
  assert numbers(read_json(os.path.join(workdir, "summary.json"))) == numbers(
      read_json(os.path.join(expected_workdir, "summary.json")))
  assert metrics_rows(workdir) == metrics_rows(expected_workdir)


def assert_checkpoints_finite(workdir: str) -> None:
  for step in checkpoint_steps(workdir):
    for leaf in jax.tree.leaves(checkpoint_state(workdir, step)):
      assert np.isfinite(leaf).all(), f"non-finite value in checkpoint {step}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """Uninterrupted runs of both estimators: {estimator: workdir}. Tests copy, never change them."""
  runs = {}
  for estimator in ("forward", "backprop"):
    workdir = str(tmp_path_factory.mktemp(f"reference_{estimator}"))
    summary = train.train_and_evaluate(digits_config(estimator), workdir)
    assert summary["status"] == "completed" and summary["steps"] == TOTAL_STEPS
    assert checkpoint_steps(workdir) == [32, 48, 64]
    runs[estimator] = workdir
  return runs


def _kill_each_after_its_first_checkpoint(processes: dict, workdirs: dict) -> dict:
  """SIGKILLs each process once its workdir holds a checkpoint; returns the newest steps."""
  killed_at, deadline = {}, time.time() + 300
  while len(killed_at) < len(processes):
    for name, process in processes.items():
      if name in killed_at:
        continue
      if checkpoint_steps(workdirs[name]):
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at[name] = checkpoint_steps(workdirs[name])[-1]
        assert not os.path.exists(os.path.join(workdirs[name], "summary.json")), name
      else:
        assert process.poll() is None, f"{name} ended before its first checkpoint"
    assert time.time() < deadline, "no checkpoint within 300 s"
    time.sleep(0.01)
  return killed_at


def test_sigkilled_runs_resume_bit_identically(reference, tmp_path, caplog):
  """Both estimators' CLI runs, side by side, killed after their first checkpoint; then rerun
  (in this process, to spare two interpreter starts) and compared with uninterrupted runs."""
  estimators = ("forward", "backprop")
  workdirs = {e: str(tmp_path / e) for e in estimators}
  logs = {e: open(tmp_path / f"{e}.log", "w", encoding="utf-8") for e in estimators}
  processes = {e: subprocess.Popen(cli(e, workdirs[e]), stdout=logs[e],
                                   stderr=subprocess.STDOUT) for e in estimators}
  try:
    killed_at = _kill_each_after_its_first_checkpoint(processes, workdirs)
  finally:
    for process in processes.values():
      if process.poll() is None:
        process.kill()
    for log in logs.values():
      log.close()
  assert all(step < TOTAL_STEPS for step in killed_at.values()), killed_at

  for estimator in estimators:
    with caplog.at_level("INFO"):
      summary = train.train_and_evaluate(digits_config(estimator), workdirs[estimator])
    assert summary["status"] == "completed"
    assert f"from step {killed_at[estimator]} of {TOTAL_STEPS}" in caplog.text
    assert_same_run(reference[estimator], workdirs[estimator])
    # TensorBoard holds every row once, with no damaged record (the reader would drop the rest)
    rows = metrics_rows(workdirs[estimator])
    for tag, values in tensorboard_scalars(workdirs[estimator]).items():
      assert tag in WALL_CLOCK or values == [(row["step"], pytest.approx(row[tag]))
                                             for row in rows if tag in row], tag


def test_finished_run_is_a_no_op(reference, caplog):
  workdir = reference["backprop"]
  before = snapshot(workdir)
  with caplog.at_level("INFO"):
    summary = train.train_and_evaluate(digits_config("backprop"), workdir)
  assert "already holds the finished run; nothing to do" in caplog.text
  assert summary == read_json(os.path.join(workdir, "summary.json"))
  assert snapshot(workdir) == before


def test_other_experiment_is_refused_but_checkpoint_fields_may_change(reference):
  workdir = reference["forward"]
  before = snapshot(workdir)
  with pytest.raises(ConfigError) as error:
    train.train_and_evaluate(digits_config("forward", learning_rate=0.5, log_every_steps=8),
                             workdir)
  assert str(error.value) == (
      f"{workdir!r} holds a run of another config: learning_rate (saved 0.003, now 0.5); "
      "log_every_steps (saved 4, now 8). Use another workdir, or start over with --restart")
  summary = train.train_and_evaluate(
      digits_config("forward", checkpoint_every_steps=5, keep_checkpoints=1), workdir)
  assert summary["status"] == "completed"
  assert snapshot(workdir) == before


def test_a_run_saved_before_a_field_existed_counts_it_at_its_default(reference, tmp_path):
  """A config field added to fgjax after a run was written is absent from its config.json: the
  run is still the same experiment when the field has its default, another one otherwise."""
  workdir = str(tmp_path / "run")
  shutil.copytree(reference["forward"], workdir)
  saved = read_json(os.path.join(workdir, "config.json"))
  del saved["unit_groups"], saved["max_loss_ratio"]
  with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
    json.dump(saved, f)
  assert train.train_and_evaluate(digits_config("forward"), workdir)["status"] == "completed"
  with pytest.raises(ConfigError, match=r"max_loss_ratio \(saved 10.0, now None\)"):
    train.train_and_evaluate(digits_config("forward", max_loss_ratio=None), workdir)


def test_a_run_saved_with_the_flat_local_head_fields_resumes_under_their_new_names(reference,
                                                                                  tmp_path):
  """Runs written before `local_heads` was a block saved its fields flat (local_groups, ...):
  they compare as the block's fields, so the same experiment resumes and another is named."""
  workdir = str(tmp_path / "run")
  shutil.copytree(reference["forward"], workdir)
  saved = read_json(os.path.join(workdir, "config.json"))
  del saved["local_heads"]
  saved.update(local_groups=1, local_group_head="separate", local_loss_per="layer",
               local_head_patches=1)
  with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
    json.dump(saved, f)
  with pytest.raises(ConfigError, match=r"run of another config: local_heads.loss_per \(saved "
                     r"'layer', now 'block'\)\. Use"):
    train.train_and_evaluate(digits_config("forward"), workdir)
  assert train.train_and_evaluate(digits_config("forward", local_heads={"loss_per": "layer"}),
                                  workdir)["status"] == "completed"


def test_corrupted_latest_checkpoint_falls_back_and_ends_identically(reference, tmp_path, caplog):
  workdir = str(tmp_path / "run")
  shutil.copytree(reference["backprop"], workdir)
  os.remove(os.path.join(workdir, "summary.json"))  # as if killed after its last checkpoint
  state_dir = os.path.join(workdir, "checkpoints", str(TOTAL_STEPS), "state")
  files = [os.path.join(root, n) for root, _, names in os.walk(state_dir) for n in names]
  largest = max(files, key=os.path.getsize)
  with open(largest, "r+b") as f:
    f.seek(os.path.getsize(largest) // 2)
    f.write(b"\x5a" * 16)
  with caplog.at_level("INFO"):
    summary = train.train_and_evaluate(digits_config("backprop"), workdir)
  assert summary["status"] == "completed"
  assert f"checkpoint {TOTAL_STEPS} in" in caplog.text and "corrupted" in caplog.text
  assert f"from step {TOTAL_STEPS - 16} of {TOTAL_STEPS}" in caplog.text
  assert_same_run(reference["backprop"], workdir)


def test_run_killed_after_its_last_checkpoint_only_writes_its_summary(reference, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(reference["forward"], workdir)
  os.remove(os.path.join(workdir, "summary.json"))
  summary = train.train_and_evaluate(digits_config("forward"), workdir)
  assert summary["status"] == "completed"
  assert_same_run(reference["forward"], workdir)


def test_resumed_metrics_drop_rows_past_the_checkpoint_and_a_cut_line(tmp_path):
  rows = [{"step": 4, "train_loss": 2.0}, {"step": 8, "train_loss": 1.9},
          {"step": 8, "epoch": 1, "test_loss": 1.8}, {"step": 12, "train_loss": 1.7}]
  with open(tmp_path / "metrics.jsonl", "w", encoding="utf-8") as f:
    f.writelines(json.dumps(row) + "\n" for row in rows)
    f.write('{"step": 16, "train_lo')  # killed mid-write
  writer = MetricWriter(str(tmp_path), start_step=8)
  writer.write({"step": 12, "train_loss": 1.6})
  writer.close()
  assert read_metrics(str(tmp_path)) == rows[:3] + [{"step": 12, "train_loss": 1.6}]


def poison_steps(monkeypatch, steps):
  """Makes the training loss NaN at the given steps, inside the real compiled step and guard."""
  make_train_step = programs.make_train_step

  def poisoned_make_train_step(loss_fn, tx, config):
    now = {}

    def poisoned_loss_fn(params, images, labels):
      loss, logits = loss_fn(params, images, labels)
      return jnp.where(now["poisoned"], jnp.nan, loss), logits

    train_step = make_train_step(poisoned_loss_fn, tx, config)

    def step(state, images, labels):
      now["poisoned"] = jnp.isin(state.step, jnp.asarray(steps))  # traced with the step
      return train_step(state, images, labels)

    return step

  monkeypatch.setattr(programs, "make_train_step", poisoned_make_train_step)


def test_stop_policy_ends_cleanly_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
  poison_steps(monkeypatch, [37])
  workdir = str(tmp_path / "run")
  config = digits_config("backprop", num_epochs=3)
  summary = train.train_and_evaluate(config, workdir)
  assert summary["status"] == "diverged"
  assert summary["diverged_at_step"] == summary["steps"] == 37
  assert np.isfinite(summary["last_finite_loss"])
  assert summary["last_checkpoint_step"] == 32 and summary["epochs_completed"] == 2
  assert checkpoint_steps(workdir) == [16, 32]
  assert_checkpoints_finite(workdir)
  assert max(row["step"] for row in metrics_rows(workdir)) == 36  # the chunk of 37 is dropped
  assert read_json(os.path.join(workdir, "summary.json")) == summary
  assert train.train_and_evaluate(config, workdir) == summary  # finished: not trained again


def test_skip_policy_counts_skipped_steps(tmp_path, monkeypatch):
  poison_steps(monkeypatch, [5, 6, 37])
  workdir = str(tmp_path / "run")
  summary = train.train_and_evaluate(
      digits_config("backprop", num_epochs=3, on_nonfinite="skip"), workdir)
  assert summary["status"] == "completed" and summary["steps"] == 48
  assert summary["num_skipped_steps"] == 3
  assert np.isfinite(summary["test_loss"]) and np.isfinite(summary["train_loss"])
  assert checkpoint_steps(workdir) == [16, 32, 48]
  assert_checkpoints_finite(workdir)
  assert all(row["train_loss"] is None or np.isfinite(row["train_loss"])
             for row in metrics_rows(workdir) if "train_loss" in row)


def test_restart_with_a_huge_learning_rate_diverges_cleanly_from_the_cli(reference, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(reference["backprop"], workdir)
  with open(os.path.join(workdir, "notes.txt"), "w", encoding="utf-8") as f:
    f.write("not a run file")
  result = subprocess.run(cli("backprop", workdir, "--config.learning_rate=1e30", "--restart"),
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 1, result.stderr[-3000:]
  assert result.stdout.startswith("diverged: non-finite loss or gradient at step 1 (last finite "
                                  "loss ")
  assert "no checkpoint before it" in result.stdout and "Traceback" not in result.stderr
  summary = read_json(os.path.join(workdir, "summary.json"))
  assert summary["status"] == "diverged" and summary["diverged_at_step"] == 1
  assert checkpoint_steps(workdir) == []  # the old run's are gone, and none was saved
  assert os.path.exists(os.path.join(workdir, "notes.txt"))
  assert read_json(os.path.join(workdir, "config.json"))["learning_rate"] == 1e30


def write_npz(path, drop=(), **arrays) -> str:
  """A small npz dataset of 8x8 images, with `arrays` replacing (or adding) some and `drop` gone."""
  rng = np.random.default_rng(0)
  good = {"x_train": rng.integers(0, 256, (200, 8, 8), dtype=np.uint8),
          "y_train": rng.integers(0, 10, 200),
          "x_test": rng.integers(0, 256, (50, 8, 8), dtype=np.uint8),
          "y_test": rng.integers(0, 10, 50)}
  good.update(arrays)
  np.savez(path, **{name: a for name, a in good.items() if name not in drop})
  return str(path)


def npz_config(path: str):
  config = digits_config("backprop")
  config.data.name, config.data.source, config.data.path = "mine", "npz", path
  config.data.validation_size = 20
  return config


def _garbage_file(path) -> str:
  with open(path, "wb") as f:
    f.write(b"not a zip archive")
  return str(path)


# (id, tmp_path -> config, error type, the message, exactly)
BAD_INPUTS = [
    ("unknown_model", lambda tmp: digits_config("forward", model="resnet"), ConfigError,
     "invalid config: model 'resnet' is unknown; choose one of ['cnn', 'mlp', 'vgg']"),
    ("unknown_optimizer", lambda tmp: digits_config("forward", optimizer="rmsprop"), ConfigError,
     "invalid config: optimizer 'rmsprop' is unknown; choose one of ['adam', 'nesterov', 'sgd']"),
    ("unknown_estimator", lambda tmp: digits_config("forward", estimator="reverse"), ConfigError,
     "invalid config: estimator 'reverse' is unknown; choose one of ['activity', 'backprop', "
     "'forward', 'local_activity', 'local_backprop']"),
    ("unknown_source", lambda tmp: digits_config("forward", data={"source": "web"}), ConfigError,
     "invalid config: data.source 'web' is unknown; choose one of ['embedded', 'npz', 'tfds']"),
    ("unknown_dataset", lambda tmp: digits_config("forward", data={"name": "mnist2"}),
     ConfigError, "invalid config: data.name 'mnist2' is not an embedded dataset; choose one of "
     "['digits']"),
    ("bad_numbers", lambda tmp: digits_config(
        "forward", learning_rate=-1.0, batch_size=0, num_epochs=0, momentum=1.0, b1=-0.1,
        b2=1.0, decay=-1.0), ConfigError,
     "invalid config: batch_size must be >= 1, got 0; num_epochs must be >= 1, got 0; "
     "learning_rate must be > 0, got -1.0; decay must be >= 0, got -1.0; momentum must be in "
     "[0, 1), got 1.0; b1 must be in [0, 1), got -0.1; b2 must be in [0, 1), got 1.0"),
    ("model_too_big_for_the_images", lambda tmp: digits_config("forward", model="cnn"),
     ConfigError, "model 'cnn' on digits: input shape (8, 8, 1) is too small for 2 conv blocks "
     "with VALID padding"),
    ("patches_on_the_mlp",
     lambda tmp: digits_config("local_activity", local_heads={"patches": 2}),
     ConfigError, "model 'mlp' on digits: local_heads.patches=2 splits conv feature maps into "
     "patches; the MLP has none"),
    ("batch_larger_than_the_data", lambda tmp: digits_config("forward", batch_size=5000),
     ConfigError, "batch_size 5000 exceeds the 1078 training examples of digits"),
    ("missing_data_file", lambda tmp: npz_config(str(tmp / "absent.npz")), DataError,
     "data.path '{tmp}/absent.npz': no such file"),
    ("not_an_npz", lambda tmp: npz_config(_garbage_file(tmp / "garbage.npz")), DataError,
     "data.path '{tmp}/garbage.npz' is not a .npz file"),
    ("wrong_array_names", lambda tmp: npz_config(write_npz(
        tmp / "names.npz", drop=("x_train",), images=np.zeros((200, 8, 8), np.uint8))),
     DataError, "data.path '{tmp}/names.npz': missing arrays ['x_train']"),
    ("float_images", lambda tmp: npz_config(write_npz(
        tmp / "float.npz", x_train=np.zeros((200, 8, 8), np.float32))),
     DataError, "{tmp}/float.npz train: images must be uint8 pixels 0..255, got dtype float32"),
    ("labels_of_wrong_shape", lambda tmp: npz_config(write_npz(
        tmp / "shape.npz", y_train=np.zeros(199, np.int64))),
     DataError, "{tmp}/shape.npz train: labels must have shape (200,), got (199,)"),
    ("negative_labels", lambda tmp: npz_config(write_npz(
        tmp / "negative.npz", y_test=np.full(50, -1))),
     DataError, "{tmp}/negative.npz test: labels must be >= 0, found -1"),
]


@pytest.mark.parametrize("make_config,error_type,message",
                         [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, make_config, error_type, message):
  config = make_config(tmp_path)
  message = message.format(tmp=tmp_path)
  new_workdir = str(tmp_path / "new" / "run")
  existing = tmp_path / "existing"
  existing.mkdir()
  (existing / "notes.txt").write_text("mine")
  before = snapshot(str(existing))
  for workdir in (new_workdir, str(existing)):
    with pytest.raises(error_type) as error:
      train.train_and_evaluate(config, workdir)
    assert str(error.value).startswith(message), str(error.value)
    assert "\n" not in str(error.value)
  assert not os.path.exists(tmp_path / "new")
  assert snapshot(str(existing)) == before


def test_workdir_that_cannot_be_created_is_refused(tmp_path):
  (tmp_path / "file").write_text("x")
  with pytest.raises(ConfigError, match=r"workdir '.*/file/run' cannot be created: "
                                        r"'.*/file' is not a directory"):
    train.train_and_evaluate(digits_config("forward"), str(tmp_path / "file" / "run"))


def test_cli_reports_bad_input_in_one_line_with_status_2(tmp_path):
  """A bad config, a malformed data file and a workdir that cannot be created, through
  `python -m fgjax.main`, run side by side."""
  (tmp_path / "file").write_text("x")
  data_workdir = tmp_path / "data_run"
  data_workdir.mkdir()
  (data_workdir / "notes.txt").write_text("mine")
  names = write_npz(tmp_path / "names.npz", drop=("y_test",))
  cases = [
      (cli("forward", str(tmp_path / "config_run"), "--config.optimizer=rmsprop",
           "--config.learning_rate=-1"),
       str(tmp_path / "config_run"),
       "error: invalid config: optimizer 'rmsprop' is unknown; choose one of ['adam', "
       "'nesterov', 'sgd']; learning_rate must be > 0, got -1.0"),
      (cli("forward", str(data_workdir), "--config.data.source=npz", "--config.data.name=mine",
           f"--config.data.path={names}", "--config.data.validation_size=20"),
       str(data_workdir),
       f"error: data.path '{names}': missing arrays ['y_test']; an npz dataset needs ['x_train', "
       f"'y_train', 'x_test', 'y_test'] (found ['x_test', 'x_train', 'y_train'])"),
      (cli("forward", str(tmp_path / "file" / "run")), str(tmp_path / "file"),
       f"error: workdir '{tmp_path}/file/run' cannot be created: '{tmp_path}/file' is not a "
       "directory"),
  ]
  before = [snapshot(workdir) for _, workdir, _ in cases]
  processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for command, _, _ in cases]
  for process, (_, workdir, expected), files in zip(processes, cases, before):
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 2, stderr
    assert stderr.strip() == expected and stdout == ""
    assert snapshot(workdir) == files


def sweep_cli(workdir: str) -> list[str]:
  """The `fgjax.sweep` command of a two-setting search over `digits_config("forward")`."""
  return ([sys.executable, "-m", "fgjax.sweep", f"--config={DEFAULT_CONFIG}:forward",
           f"--workdir={workdir}", "--learning_rate=1e-3,3e-3", "--epochs=4"]
          + [f"--config.{name}={value}" for name, value in OVERRIDES.items()
             if name != "num_epochs"])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """A 3-seed run and a 2-setting sweep, each trained without interruption: {kind: workdir}."""
  seeds = str(tmp_path_factory.mktemp("seeds"))
  summary = train.train_and_evaluate(digits_config("forward", num_seeds=3), seeds)
  assert summary["status"] == "completed" and summary["num_seeds"] == 3
  sweep_dir = str(tmp_path_factory.mktemp("sweep"))
  result = subprocess.run(sweep_cli(sweep_dir), capture_output=True, text=True, timeout=600,
                          check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return {"seeds": seeds, "sweep": sweep_dir}


def trial_dirs(workdir: str) -> list[str]:
  found = [os.path.dirname(os.path.join(root, name)) for root, _, names in os.walk(workdir)
           for name in names if name == "metrics.jsonl"]
  return sorted(os.path.relpath(d, workdir) for d in found)


def test_seeds_write_their_summaries_and_an_aggregate_and_seed_0_is_the_plain_run(
    reference, uninterrupted):
  workdir = uninterrupted["seeds"]
  aggregate = read_json(os.path.join(workdir, "summary.json"))
  assert trial_dirs(workdir) == ["seed_0", "seed_1", "seed_2"]
  per_seed = [read_json(os.path.join(workdir, f"seed_{s}", "summary.json")) for s in range(3)]
  assert [s["seed"] for s in per_seed] == aggregate["seeds"] == [0, 1, 2]
  assert aggregate["per_seed"] == {str(s["seed"]): s for s in per_seed}
  losses = np.array([s["test_loss"] for s in per_seed])
  assert len(set(losses)) == 3  # the seeds differ
  stats = aggregate["aggregate"]["test_loss"]
  np.testing.assert_allclose([stats["mean"], stats["std"], stats["min"], stats["max"]],
                             [losses.mean(), losses.std(), losses.min(), losses.max()])
  plain = read_json(os.path.join(reference["forward"], "summary.json"))
  np.testing.assert_allclose(per_seed[0]["test_loss"], plain["test_loss"], rtol=1e-5)
  np.testing.assert_allclose(per_seed[0]["test_accuracy"], plain["test_accuracy"], rtol=1e-5)


@pytest.mark.parametrize("kind", ["seeds", "sweep"])
def test_sigkilled_seeds_and_sweeps_resume_to_the_same_result(uninterrupted, tmp_path, kind):
  workdir = str(tmp_path / kind)
  command = (cli("forward", workdir, "--config.num_seeds=3") if kind == "seeds"
             else sweep_cli(workdir))
  with open(tmp_path / "log", "w", encoding="utf-8") as log:
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
      killed_at = _kill_each_after_its_first_checkpoint({kind: process}, {kind: workdir})
    finally:
      if process.poll() is None:
        process.kill()
  assert killed_at[kind] < TOTAL_STEPS
  result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  expected = uninterrupted[kind]
  assert trial_dirs(workdir) == trial_dirs(expected)
  numbers = lambda s: {k: v for k, v in s.items() if k not in WALL_CLOCK}
  for trial in trial_dirs(expected):
    assert metrics_rows(os.path.join(workdir, trial)) == metrics_rows(
        os.path.join(expected, trial))
    assert numbers(read_json(os.path.join(workdir, trial, "summary.json"))) == numbers(
        read_json(os.path.join(expected, trial, "summary.json")))


def test_a_second_run_on_a_held_workdir_stops_at_once(tmp_path):
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  with files.Lock(workdir):
    with pytest.raises(WorkdirError, match=r"is in use by process \d+ on "):
      train.train_and_evaluate(digits_config("forward"), workdir)
  assert os.listdir(workdir) == [".lock"]


def test_an_edited_progress_record_is_caught_and_the_run_falls_back(reference, tmp_path, caplog):
  workdir = str(tmp_path / "run")
  shutil.copytree(reference["backprop"], workdir)
  os.remove(os.path.join(workdir, "summary.json"))
  progress_dir = os.path.join(workdir, "checkpoints", str(TOTAL_STEPS), "progress")
  path = os.path.join(progress_dir, "metadata")  # orbax's JSON item
  record = read_json(path)
  record["progress"]["train_seconds"] += 9.0
  with open(path, "w", encoding="utf-8") as f:
    json.dump(record, f)
  with caplog.at_level("INFO"):
    train.train_and_evaluate(digits_config("backprop"), workdir)
  assert "CRC-32" in caplog.text and f"from step {TOTAL_STEPS - 16} of" in caplog.text
  assert_same_run(reference["backprop"], workdir)


def test_a_half_finished_run_whose_metrics_were_deleted_is_refused(reference, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(reference["forward"], workdir)
  os.remove(os.path.join(workdir, "summary.json"))
  os.remove(os.path.join(workdir, "metrics.jsonl"))
  with pytest.raises(WorkdirError, match="ends at step None but the checkpoint is at step 64: "
                                         "rows are missing"):
    train.train_and_evaluate(digits_config("forward"), workdir)


def test_a_run_leaves_its_per_example_test_losses(reference):
  summary = read_json(os.path.join(reference["forward"], "summary.json"))
  with np.load(os.path.join(reference["forward"], "test_losses.npz")) as saved:
    assert sorted(saved.files) == ["clamped_cross_entropy", "cross_entropy"]
    plain, clamped = saved["cross_entropy"], saved["clamped_cross_entropy"]
  assert plain.shape == clamped.shape == (359,)  # every digits test image, no padding
  assert np.all(clamped <= plain + 1e-6)
  np.testing.assert_allclose(plain.mean(), summary["test_loss"], rtol=1e-5)


@pytest.mark.parametrize("damage,why", [
    ("file", "it is a file, not a directory"),
    ("dangling_symlink", "it is a link to .*/absent, which does not exist")])
def test_a_checkpoints_path_that_is_not_a_directory_is_one_line(tmp_path, damage, why):
  workdir = tmp_path / "run"
  workdir.mkdir()
  if damage == "file":
    (workdir / "checkpoints").write_text("x")
  else:
    os.symlink(tmp_path / "absent", workdir / "checkpoints")
  with pytest.raises(WorkdirError, match=rf"^cannot write checkpoints in .*/run/checkpoints: "
                                         rf"{why}; move it away or use another workdir$"):
    train.train_and_evaluate(digits_config("forward"), str(workdir))


def test_a_damaged_summary_of_a_finished_run_is_written_again(reference, tmp_path, caplog):
  workdir = str(tmp_path / "run")
  shutil.copytree(reference["forward"], workdir)
  with open(os.path.join(workdir, "summary.json"), "r+", encoding="utf-8") as f:
    f.truncate(40)
  with caplog.at_level("INFO"):
    summary = train.train_and_evaluate(digits_config("forward"), workdir)
  assert "writing it again from the run's last checkpoint" in caplog.text
  assert summary["status"] == "completed"
  assert_same_run(reference["forward"], workdir)


def test_a_damaged_config_is_refused_in_one_line(reference, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(reference["forward"], workdir)
  with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
    f.write("{")
  with pytest.raises(WorkdirError, match=r"cannot read .*config\.json \(.*\); start over with "
                                         r"--restart$"):
    train.train_and_evaluate(digits_config("forward"), workdir)


def test_a_checkpoint_write_that_fails_is_one_line_and_keeps_the_earlier_ones(
    reference, tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  shutil.copytree(reference["backprop"], workdir)
  os.remove(os.path.join(workdir, "summary.json"))
  shutil.rmtree(os.path.join(workdir, "checkpoints", str(TOTAL_STEPS)))

  def disk_full(*args, **kwargs):
    raise ValueError('RESOURCE_EXHAUSTED: Error writing "params/0" in OCDBT database\nmore')

  monkeypatch.setattr(ocp.CheckpointManager, "save", disk_full)
  with pytest.raises(WorkdirError, match=r"cannot write checkpoint 64 in .* \(ValueError: "
                                         r"RESOURCE_EXHAUSTED: .*\); checkpoints up to step 48 "
                                         r"are kept$"):
    train.train_and_evaluate(digits_config("backprop"), workdir)
  assert checkpoint_steps(workdir) == [32, 48]
  monkeypatch.undo()
  train.train_and_evaluate(digits_config("backprop"), workdir)
  assert_same_run(reference["backprop"], workdir)


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_a_loss_that_blows_up_under_the_clip_is_a_divergence_under_both_policies(tmp_path,
                                                                                  policy):
  """The clipped forward gradient keeps every value finite at a huge learning rate; the loss
  guard still stops the run instead of letting it 'complete' at a loss of 1e24."""
  config = digits_config("forward", learning_rate=1e6, on_nonfinite=policy, num_epochs=1)
  summary = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["status"] == "diverged" and summary["diverged_at_step"] == 1
  assert summary["diverged_reason"].startswith("loss ") and "above max_loss_ratio 10 x" in (
      summary["diverged_reason"])
  config.max_loss_ratio = None
  summary = train.train_and_evaluate(config, str(tmp_path / "unguarded"))
  assert summary["status"] == "completed" and summary["test_loss"] > 100


def test_skipped_steps_are_reported_by_the_exit_status(tmp_path):
  """Every step non-finite under "skip": the run completes without a single update, and says so
  in its last line and its exit status; its summary stays strict JSON."""
  result = subprocess.run(cli("forward", str(tmp_path / "run"), "--config.on_nonfinite=skip",
                              "--config.learning_rate=1e30", "--config.max_loss_ratio=None",
                              "--config.jvp_clip=None", "--config.num_epochs=1"),
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 1, result.stderr[-3000:]
  summary = read_json(str(tmp_path / "run" / "summary.json"))
  assert summary["num_skipped_steps"] >= STEPS_PER_EPOCH - 1
  assert result.stdout.startswith("completed: ") and (
      f"; {summary['num_skipped_steps']} steps skipped (non-finite)" in result.stdout)


def test_nesterov_evaluate_moves_the_evaluation_alone(tmp_path):
  """"base" evaluates theta = parameters - mu v: the same training (train losses), other
  validation and test losses, and per-example test losses that match the test loss."""
  runs = {}
  for point in ("lookahead", "base"):
    config = digits_config("backprop", num_epochs=1, optimizer="nesterov", momentum=0.9,
                           nesterov_evaluate=point)
    workdir = str(tmp_path / point)
    runs[point] = (train.train_and_evaluate(config, workdir), metrics_rows(workdir))
    with np.load(os.path.join(workdir, files.TEST_LOSSES_FILE)) as saved:
      np.testing.assert_allclose(saved["cross_entropy"].mean(), runs[point][0]["test_loss"],
                                 rtol=1e-5)
  (lookahead, lookahead_rows), (base, base_rows) = runs["lookahead"], runs["base"]
  assert [r.get("train_loss") for r in lookahead_rows] == [r.get("train_loss") for r in base_rows]
  for name in ("validation_loss", "test_loss"):
    assert abs(lookahead[name] - base[name]) > 1e-4, name


def test_a_deadline_checkpoints_and_stops_and_the_same_call_resumes(reference, tmp_path):
  """A deadline already past: one chunk runs (every call makes progress), its state is
  checkpointed and the run stops; run again, it ends exactly as an uninterrupted run."""
  workdir = str(tmp_path / "run")
  with train.stopping_by(time.time()), pytest.raises(train.Stopped):
    train.train_and_evaluate(digits_config("backprop"), workdir)
  assert checkpoint_steps(workdir) == [4]
  assert [row["step"] for row in metrics_rows(workdir)] == [4]
  assert not os.path.exists(os.path.join(workdir, "summary.json"))
  with train.stopping_by(time.time() + 3600):
    assert train.train_and_evaluate(digits_config("backprop"), workdir)["status"] == "completed"
  assert_same_run(reference["backprop"], workdir)


def stop_after_one_chunk_saving_progress_as(to_json, workdir: str, monkeypatch) -> dict:
  """Trains `workdir` for one chunk (a deadline already past) with `to_json` writing the progress
  record; returns the record of the checkpoint it leaves."""
  with monkeypatch.context() as patch:
    patch.setattr(progress.Progress, "to_json", to_json)
    with train.stopping_by(time.time()), pytest.raises(train.Stopped):
      train.train_and_evaluate(digits_config("backprop"), workdir)
  return read_json(os.path.join(workdir, "checkpoints", "4", "progress", "metadata"))["progress"]


def version_1(record: progress.Progress) -> dict:
  """The progress record as fgjax wrote it before it had a version: no "version", and a trial's
  "diverged_reason" only once it diverged."""
  trials = [{k: v for k, v in dataclasses.asdict(trial).items()
             if k != "diverged_reason" or v is not None} for trial in record.trials]
  return {"train_seconds": record.train_seconds, "elapsed_seconds": record.elapsed_seconds,
          "trials": trials}


def test_a_checkpoint_with_a_progress_record_of_version_1_resumes_identically(
    reference, tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  record = stop_after_one_chunk_saving_progress_as(version_1, workdir, monkeypatch)
  assert sorted(record) == ["elapsed_seconds", "train_seconds", "trials"]
  assert sorted(record["trials"][0]) == ["epoch_loss_count", "epoch_loss_sum", "last_eval",
                                         "last_finite_loss"]
  assert record["trials"][0]["epoch_loss_count"] == 4
  train.train_and_evaluate(digits_config("backprop"), workdir)
  assert_same_run(reference["backprop"], workdir)


def test_a_progress_record_of_a_newer_version_is_refused_in_one_line(tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  newer = lambda record: {**dataclasses.asdict(record), "version": progress.VERSION + 1}
  stop_after_one_chunk_saving_progress_as(newer, workdir, monkeypatch)
  with pytest.raises(CheckpointError, match=(
      rf"^checkpoint 4 in {re.escape(workdir)}/checkpoints: its progress record has version "
      rf"{progress.VERSION + 1}; this fgjax reads versions 1 and {progress.VERSION}; start over "
      r"with --restart$")):
    train.train_and_evaluate(digits_config("backprop"), workdir)
  assert checkpoint_steps(workdir) == [4]


def test_a_disk_full_before_the_start_is_one_line(small_disk):
  workdir = os.path.join(small_disk(1, full=True), "run")
  os.mkdir(workdir)
  with pytest.raises(WorkdirError, match=r"^cannot write .*/run/\.lock: No space left on device$"):
    train.train_and_evaluate(digits_config("forward"), workdir)


def test_a_disk_filled_while_training_is_one_line_and_orbax_logs_stay_quiet(small_disk, caplog):
  """Another program fills the disk once the first checkpoint is written; whichever write fails
  next (a metrics row, TensorBoard, the next checkpoint) says so in one line."""
  disk = small_disk(12)
  workdir = os.path.join(disk, "run")

  def fill_after_the_first_checkpoint():
    while not checkpoint_steps(workdir):
      time.sleep(0.005)
    small_disk.fill(disk)

  filler = threading.Thread(target=fill_after_the_first_checkpoint, daemon=True)
  filler.start()
  with caplog.at_level("INFO"), pytest.raises(WorkdirError) as error:
    train.train_and_evaluate(digits_config("forward", num_epochs=20), workdir)
  assert re.search(r"(?i)no space left on device", str(error.value))
  assert "\n" not in str(error.value)
  assert not [r for r in caplog.records if f"{os.sep}orbax{os.sep}" in r.pathname]

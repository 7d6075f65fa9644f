"""fgjax.checkpointing: exact round trips, the non-finite save guard, and falling back past
damaged checkpoints."""

import errno
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from fgjax import checkpointing
from fgjax import default_config
from fgjax import optimizers
from fgjax import programs


def make_state(step: int = 0, seed: int = 0) -> programs.TrainState:
  """A small TrainState with Adam's injected-hyperparameter state, at `step`."""
  config = default_config.base_config()
  config.optimizer = "adam"
  rng = np.random.default_rng(seed)
  params = {"dense": {"kernel": jnp.asarray(rng.normal(size=(64, 32)), jnp.float32),
                      "bias": jnp.asarray(rng.normal(size=(32,)), jnp.float32)},
            "head": {"kernel": jnp.asarray(rng.normal(size=(32, 10)), jnp.float32)}}
  state = programs.init_state(params, optimizers.build_optimizer(config), jax.random.PRNGKey(seed))
  return state.replace(step=jnp.asarray(step, jnp.int32))


def assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert np.asarray(x).dtype == np.asarray(y).dtype
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def save_steps(directory, steps, keep=3):
  with checkpointing.Checkpoints(directory, keep) as checkpoints:
    for step in steps:
      assert checkpoints.save(make_state(step, seed=step), {"step_seen": step})


def restore(directory):
  with checkpointing.Checkpoints(directory, 3) as checkpoints:
    return checkpoints.restore(make_state())


def test_round_trip_is_exact_and_copies_what_it_saves(tmp_path):
  state = make_state(step=7, seed=1)
  progress = {"epoch_loss_sum": 1.25, "last_finite_loss": None, "count": 3}
  with checkpointing.Checkpoints(str(tmp_path), keep=2) as checkpoints:
    assert checkpoints.save(state, progress)
    progress["count"] = 99  # after save() returned: must not reach the checkpoint
  restored = restore(str(tmp_path))
  assert restored.step == 7
  assert isinstance(restored.state, programs.TrainState)
  assert_trees_equal(restored.state, state)
  assert restored.progress == {"epoch_loss_sum": 1.25, "last_finite_loss": None, "count": 3}


def test_keeps_the_newest_and_restores_the_latest(tmp_path):
  save_steps(str(tmp_path), [4, 8, 12, 16], keep=2)
  assert sorted(os.listdir(tmp_path)) == ["12", "16"]
  restored = restore(str(tmp_path))
  assert restored.step == 16 and restored.progress == {"step_seen": 16}
  assert_trees_equal(restored.state, make_state(16, seed=16))


def test_no_checkpoint_restores_none(tmp_path):
  assert restore(str(tmp_path)) is None


@pytest.mark.parametrize("bad", [
    lambda s: s.replace(params={**s.params, "head": {"kernel": s.params["head"]["kernel"].at[
        0, 0].set(jnp.nan)}}),
    lambda s: s.replace(opt_state=jax.tree.map(lambda x: x * jnp.inf, s.opt_state)),
    lambda s: s.replace(diverged_at=jnp.asarray(3, jnp.int32)),
], ids=["nan_param", "inf_opt_state", "diverged"])
def test_nonfinite_or_diverged_state_is_never_saved(tmp_path, bad):
  with checkpointing.Checkpoints(str(tmp_path), 3) as checkpoints:
    assert checkpoints.save(make_state(4), {})
    assert not checkpoints.save(bad(make_state(8)), {})
    assert checkpoints.latest_step() == 4
  assert sorted(os.listdir(tmp_path)) == ["4"]


def _largest_file(directory):
  files = [os.path.join(root, name) for root, _, names in os.walk(directory) for name in names]
  return max(files, key=os.path.getsize)


def _truncate(step_dir):
  path = _largest_file(os.path.join(step_dir, "state"))
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def _overwrite_bytes(step_dir):
  """Same length, different bytes: orbax reads this without complaint; the CRC-32 catches it."""
  path = _largest_file(os.path.join(step_dir, "state"))
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    f.write(b"\x5a" * 16)


def _empty_every_file(step_dir):
  for root, _, names in os.walk(step_dir):
    for name in names:
      open(os.path.join(root, name), "w").close()


def _remove_metadata(step_dir):
  os.remove(os.path.join(step_dir, "state", "_METADATA"))


@pytest.mark.parametrize("damage", [_truncate, _overwrite_bytes, _empty_every_file,
                                    _remove_metadata])
def test_damaged_latest_falls_back_to_the_previous(tmp_path, caplog, damage):
  save_steps(str(tmp_path), [4, 8])
  damage(str(tmp_path / "8"))
  with caplog.at_level(logging.WARNING):
    restored = restore(str(tmp_path))
  assert restored.step == 4
  assert_trees_equal(restored.state, make_state(4, seed=4))
  assert any("checkpoint 8" in r.getMessage() and "corrupted" in r.getMessage()
             for r in caplog.records)
  assert sorted(os.listdir(tmp_path)) == ["4"]  # the resumed run will write step 8 again


def test_no_valid_checkpoint_is_a_clear_error_and_deletes_nothing(tmp_path):
  save_steps(str(tmp_path), [4, 8])
  _truncate(str(tmp_path / "4"))
  _overwrite_bytes(str(tmp_path / "8"))
  with pytest.raises(checkpointing.CheckpointError, match=r"no valid checkpoint .*\[4, 8\]"):
    restore(str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == ["4", "8"]


def test_a_save_that_fails_in_the_background_is_one_error_however_orbax_raises_it(
    tmp_path, monkeypatch):
  """orbax reports a failed background save from wait_until_finished, and again from close (as
  a raw OSError): the caller sees one WorkdirError in plain words, and nothing of orbax's after
  it."""
  def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  checkpoints = checkpointing.Checkpoints(str(tmp_path), 3)
  assert checkpoints.save(make_state(4), {})
  checkpoints.wait()
  assert checkpoints.save(make_state(8), {})
  monkeypatch.setattr(ocp.CheckpointManager, "wait_until_finished", disk_full)
  monkeypatch.setattr(ocp.CheckpointManager, "close", disk_full)
  with pytest.raises(checkpointing.WorkdirError, match=(
      r"^no space left on device while saving checkpoint 8 in .*; checkpoints up to step 4 "
      r"are kept$")):
    checkpoints.close()
  # What orbax's threads log of the failed save after that stays off the terminal.
  late = logging.LogRecord("absl", logging.ERROR, os.path.join("site-packages", "orbax", "x.py"),
                           1, "RESOURCE_EXHAUSTED", None, None)
  assert not logging.getLogger("absl").filter(late)


def test_processes_that_see_different_checkpoints_stop(tmp_path, monkeypatch):
  save_steps(str(tmp_path), [4])
  # What the processes of a multi-host run would report when only process 0 sees the workdir.
  monkeypatch.setattr(checkpointing.files, "on_every_process", lambda step: [step, -1])
  with pytest.raises(checkpointing.WorkdirError, match=r"different checkpoints .* \[4, -1\]"):
    restore(str(tmp_path))

"""fgjax.progress: the record's epoch sums, its JSON round trip, reading the record of version 1
(before the record had a version), and refusing in one line what it cannot read."""

import json

import numpy as np
import pytest

from fgjax import progress
from fgjax.progress import Progress, TrialProgress

ROW = {"step": 16, "epoch": 1, "epoch_train_loss": 0.5, "validation_loss": 0.25,
       "validation_accuracy": 0.875, "elapsed_seconds": 3.0}


def sample() -> Progress:
  """Two trials: one mid-epoch after an evaluation, one that diverged."""
  return Progress([TrialProgress(1.5, 3, 0.5, dict(ROW)),
                   TrialProgress(last_finite_loss=2.0,
                                 diverged_reason="non-finite loss or gradient")],
                  train_seconds=4.25, elapsed_seconds=6.5)


def test_epoch_sums_add_in_float64_and_restart_at_the_epoch_end():
  trial = TrialProgress()
  assert trial.epoch_train_loss() is None
  trial.add_losses(np.array([1e8, 1.0, 1.0], np.float32))  # 1e8 + 1 is not a float32
  trial.add_losses(np.array([], np.float32))
  assert trial.epoch_loss_sum == 1e8 + 2 and trial.epoch_loss_count == 3
  trial.end_epoch(ROW)
  assert (trial.epoch_loss_sum, trial.epoch_loss_count, trial.last_eval) == (0.0, 0, ROW)


def test_the_json_record_reads_back_equal_and_is_a_copy():
  state = sample()
  record = state.to_json()
  state.trials[0].last_eval["step"] = 99
  assert record["version"] == progress.VERSION
  assert Progress.from_json(json.loads(json.dumps(record))) == sample()


def test_a_record_of_version_1_is_read():
  """The record as fgjax wrote it before the record had a version: no "version", and a trial's
  "diverged_reason" only once it diverged."""
  record = {"train_seconds": 4.25, "elapsed_seconds": 6.5, "trials": [
      {"epoch_loss_sum": 1.5, "epoch_loss_count": 3, "last_finite_loss": 0.5,
       "last_eval": dict(ROW)},
      {"epoch_loss_sum": 0.0, "epoch_loss_count": 0, "last_finite_loss": 2.0, "last_eval": {},
       "diverged_reason": "non-finite loss or gradient"}]}
  assert Progress.from_json(record) == sample()


@pytest.mark.parametrize("damage,message", [
    (lambda r: r.update(version=3), "its progress record has version 3; this fgjax reads "
                                    "versions 1 and 2"),
    (lambda r: r.pop("trials"), "its progress record lacks the list of trials"),
    (lambda r: r.update(steps=4), "its progress record's top-level fields are not this fgjax's: "
                                  "missing [], unknown ['steps']"),
    (lambda r: r["trials"][1].pop("last_eval"), "its progress record's trial fields are not "
                                                "this fgjax's: missing ['last_eval'], unknown []"),
])
def test_a_record_it_cannot_read_is_refused_in_one_line(damage, message):
  record = sample().to_json()
  damage(record)
  with pytest.raises(ValueError) as error:
    Progress.from_json(record)
  assert str(error.value) == message

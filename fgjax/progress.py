"""What the training loop carries between chunks of steps for the trials of a call, and its JSON.

A checkpoint saves it beside the call's train state (`fgjax.checkpointing`), so that a resumed
run goes on with the epoch's loss sums, the time counters and each trial's last evaluation exactly
where the checkpoint left them. Its JSON record, written by `Progress.to_json`:

  {"version": 2, "train_seconds": float, "elapsed_seconds": float,
   "trials": [{"epoch_loss_sum": float, "epoch_loss_count": int,
               "last_finite_loss": float | null, "last_eval": {metrics row},
               "diverged_reason": str | null}, ...]}

Version 1, written before the record had a version, is the same record without "version", where a
trial's "diverged_reason" is present only once the trial diverged; `Progress.from_json` reads it
too.
"""

import dataclasses
from typing import Optional

import numpy as np

VERSION = 2


@dataclasses.dataclass
class TrialProgress:
  """One trial's share of the progress."""
  epoch_loss_sum: float = 0.0  # the current epoch's finite training losses so far, summed
  epoch_loss_count: int = 0  # how many losses that sum adds up
  last_finite_loss: Optional[float] = None  # None before the first
  last_eval: dict = dataclasses.field(default_factory=dict)  # the last epoch end's metrics row
  diverged_reason: Optional[str] = None  # None while the trial has not diverged

  def add_losses(self, finite_losses) -> None:
    """Adds a chunk's finite training losses (an array) to the epoch's sums."""
    self.epoch_loss_sum += float(np.sum(finite_losses, dtype=np.float64))
    self.epoch_loss_count += int(finite_losses.size)

  def epoch_train_loss(self) -> Optional[float]:
    """The mean finite training loss of the epoch so far; None if there is none."""
    return self.epoch_loss_sum / self.epoch_loss_count if self.epoch_loss_count else None

  def end_epoch(self, row: dict) -> None:
    """Keeps the epoch's metrics row for the summary and starts the next epoch's sums."""
    self.last_eval = row
    self.epoch_loss_sum, self.epoch_loss_count = 0.0, 0


@dataclasses.dataclass
class Progress:
  """The progress of the trials of a call (one TrialProgress each, in the call's order)."""
  trials: list[TrialProgress]
  train_seconds: float = 0.0  # in chunks of steps over every session (chunks a kill lost excluded)
  elapsed_seconds: float = 0.0  # the run's wall clock at its last chunk's end, over every session

  def to_json(self) -> dict:
    """The JSON record of the module docstring (a copy: later changes do not reach it)."""
    return {"version": VERSION, **dataclasses.asdict(self)}

  @classmethod
  def from_json(cls, record) -> "Progress":
    """The Progress of a record of version 2 or 1; ValueError, in one line, for any other."""
    if not isinstance(record, dict):
      raise ValueError("its progress record is not a JSON object")
    fields = dict(record)
    version = fields.pop("version", 1)
    if version not in (1, VERSION):
      raise ValueError(f"its progress record has version {version!r}; this fgjax reads "
                       f"versions 1 and {VERSION}")
    trials = fields.get("trials")
    if not isinstance(trials, list) or not all(isinstance(trial, dict) for trial in trials):
      raise ValueError("its progress record lacks the list of trials")
    if version == 1:
      trials = [{"diverged_reason": None, **trial} for trial in trials]
    fields["trials"] = [_from_fields(TrialProgress, trial, "trial") for trial in trials]
    return _from_fields(cls, fields, "top-level")


def _from_fields(cls, fields: dict, what: str):
  """`cls(**fields)` if `fields` names exactly the fields of the dataclass `cls` (`what` it
  holds, for the error)."""
  names = {field.name for field in dataclasses.fields(cls)}
  if fields.keys() != names:
    raise ValueError(f"its progress record's {what} fields are not this fgjax's: missing "
                     f"{sorted(names - fields.keys())}, unknown {sorted(fields.keys() - names)}")
  return cls(**fields)

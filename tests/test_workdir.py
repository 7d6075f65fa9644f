"""fgjax.workdir: strict atomic JSON, the workdir lock, reading runs back."""

import errno
import json
import multiprocessing
import os

import pytest

from fgjax import workdir as files
from fgjax.errors import WorkdirError


def test_json_is_strict_with_nonfinite_values_as_null(tmp_path):
  path = str(tmp_path / "s.json")
  files.write_json(path, {"loss": float("nan"), "rows": [float("inf"), 1.5], "n": 3})
  text = open(path, encoding="utf-8").read()
  assert "NaN" not in text and "Infinity" not in text
  assert json.loads(text) == {"loss": None, "rows": [None, 1.5], "n": 3}


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path, monkeypatch):
  path = str(tmp_path / "s.json")
  files.write_json(path, {"old": 1})
  real_replace = os.replace

  def disk_full(src, dst):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(os, "replace", disk_full)
  with pytest.raises(WorkdirError, match=r"cannot write .*s\.json: No space left on device"):
    files.write_json(path, {"new": 2})
  monkeypatch.setattr(os, "replace", real_replace)
  assert os.listdir(tmp_path) == ["s.json"]
  assert files.read_json(path) == {"old": 1}


def test_damaged_json_is_one_line(tmp_path):
  (tmp_path / "s.json").write_text('{"status": "compl')
  with pytest.raises(WorkdirError, match=r"cannot read .*s\.json \("):
    files.read_json(str(tmp_path / "s.json"))
  assert files.read_json(str(tmp_path / "absent.json")) is None


def test_metrics_rows_without_a_step_or_cut_short_are_skipped(tmp_path):
  (tmp_path / "metrics.jsonl").write_text(
      '{"step": 4, "train_loss": 2.0}\n{"train_loss": 1.0}\n[1, 2]\n{"step": 8, "tr')
  assert files.read_metrics(str(tmp_path)) == [{"step": 4, "train_loss": 2.0}]


def _hold_lock(workdir, ready, release):
  with files.Lock(workdir):
    ready.set()
    release.wait(60)


def test_the_lock_is_exclusive_across_processes_and_released_by_a_kill(tmp_path):
  workdir = str(tmp_path)
  context = multiprocessing.get_context("spawn")
  ready, release = context.Event(), context.Event()
  holder = context.Process(target=_hold_lock, args=(workdir, ready, release))
  holder.start()
  try:
    assert ready.wait(60)
    with pytest.raises(WorkdirError, match=rf"is in use by process {holder.pid} on "):
      with files.Lock(workdir):
        pass
  finally:
    holder.kill()  # a killed holder leaves no stale lock
    holder.join()
  with files.Lock(workdir):
    pass

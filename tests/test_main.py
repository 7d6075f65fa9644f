"""The command line end to end: a short run on the embedded digits writes its files and learns."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.join(os.path.dirname(__file__), "..")


def _run_cli(workdir, *flags):
  return subprocess.run(
      [sys.executable, "-m", "fgjax.main", f"--workdir={workdir}", *flags],
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("estimator", ["forward", "backprop"])
def test_short_digits_run_writes_files_and_lowers_the_loss(tmp_path, estimator):
  workdir = tmp_path / estimator
  result = _run_cli(workdir, f"--config=configs/default.py:{estimator}",
                    "--config.num_epochs=6")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "test accuracy" in result.stdout
  for name in ("config.json", "metrics.jsonl", "summary.json"):
    assert (workdir / name).is_file(), name
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir / "tensorboard"))
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["estimator"] == estimator and saved["num_epochs"] == 6
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  epochs = [row for row in rows if "epoch" in row]
  assert [row["epoch"] for row in epochs] == list(range(1, 7))
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["status"] == "completed" and summary["estimator"] == estimator
  assert summary["steps"] == 6 * ((1797 - 360 - 360) // 64)  # digits: test 360, validation 360
  # Untrained, the loss is about ln(10) = 2.30; both estimators must get below it.
  first_chunk_loss = rows[0]["train_loss"]
  assert summary["train_loss"] < first_chunk_loss
  assert summary["test_loss"] < 2.2
  assert summary["test_accuracy"] > 0.2

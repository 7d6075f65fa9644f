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


@pytest.mark.parametrize("flags,message", [
    (["--config=configs/default.py:forward", "--config.learnig_rate=0.1"],
     "error: config has no field 'learnig_rate'; did you mean 'learning_rate'?"),
    (["--config=configs/default.py:local_activity", "--config.local_groups=4"],
     "error: config has no field 'local_groups'; it is 'local_heads.slices' now"),
    (["--config=configs/absent.py"],
     "error: cannot load the config: [Errno 2] No such file or directory: 'configs/absent.py'"),
    (["--config=configs/default.py:forward", "--config.num_epochs=abc"],
     "error: flag --config.num_epochs=abc: invalid literal for int() with base 10: 'abc'"),
], ids=["misspelt_field", "renamed_field", "missing_file", "malformed_value"])
def test_command_line_mistakes_are_one_line_with_status_2(tmp_path, flags, message):
  result = _run_cli(tmp_path / "run", *flags)
  assert (result.returncode, result.stderr.strip(), result.stdout) == (2, message, "")
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("source,message", [
    ("def get_config():\n  raise ValueError('no such model')\n",
     "ValueError: no such model (raised at line 2)"),
    ("def get_config():\n  return {'model': 'mlp'}\n",
     "get_config() returned dict, not an ml_collections.ConfigDict"),
    ("CONFIG = {}\n", "it defines no get_config()"),
], ids=["raises", "returns_a_dict", "no_get_config"])
def test_a_config_file_that_fails_is_one_line_naming_it(tmp_path, source, message):
  path = tmp_path / "bad.py"
  path.write_text(source)
  result = _run_cli(tmp_path / "run", f"--config={path}")
  assert (result.returncode, result.stderr.strip()) == (
      2, f"error: cannot load the config {path}: {message}")


def test_a_disk_that_fills_up_mid_save_is_one_line(small_disk):
  """A real full disk: the second checkpoint (4 MB each) does not fit. orbax's own errors go to
  checkpoints.log while there is room, never to the terminal."""
  workdir = os.path.join(small_disk(6), "run")
  result = _run_cli(workdir, "--config=configs/default.py:forward", "--config.num_epochs=2",
                    "--config.checkpoint_every_steps=16")
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      f"error: no space left on device while saving checkpoint 32 in {workdir}/checkpoints; "
      "checkpoints up to step 16 are kept")
  assert "Traceback" not in result.stderr and "orbax" not in result.stderr
  with open(os.path.join(workdir, "checkpoints.log"), encoding="utf-8") as f:
    assert "No space left on device" in f.read()


def test_none_switches_an_optional_field_off_from_the_command_line(tmp_path):
  result = _run_cli(tmp_path / "run", "--config=configs/default.py:forward",
                    "--config.jvp_clip=None", "--config.num_epochs=1")
  assert result.returncode == 0, result.stderr[-2000:]
  assert json.loads((tmp_path / "run" / "config.json").read_text())["jvp_clip"] is None

"""fgjax.compare: the side-by-side table, and config overrides for every config."""

import json
import os
import subprocess
import sys

from fgjax import compare


def test_format_table_aligns_runs():
  summary = {"estimator": "forward", "status": "completed", "steps": 10, "test_loss": 0.51234,
             "test_accuracy": 0.9, "wall_clock_seconds": 12.34}
  diverged = dict(summary, estimator="backprop", status="diverged", test_loss=None,
                  test_accuracy=None)
  lines = compare.format_table([("a", summary), ("longer_name", diverged)]).splitlines()
  assert len(lines) == 3
  assert lines[1].split() == ["a", "forward", "completed", "1", "0.5123", "0.9000", "12.3"]
  assert lines[2].split()[4:6] == ["-", "-"]
  assert len({line.index("estimator") if i == 0 else None for i, line in enumerate(lines)}) == 2


def test_format_table_shows_the_spread_over_seeds():
  stats = lambda mean, std: {"mean": mean, "std": std, "min": 0.0, "max": 1.0, "n": 3}
  summary = {"estimator": "forward", "status": "completed", "num_seeds": 3,
             "wall_clock_seconds": 5.0,
             "aggregate": {"test_loss": stats(0.5, 0.01), "test_accuracy": stats(0.9, 0.02)}}
  line = compare.format_table([("a", summary)]).splitlines()[1]
  assert "0.5000 ± 0.0100" in line and "0.9000 ± 0.0200" in line and line.split()[3] == "3"


def _compare(tmp_path, *flags):
  repo = os.path.join(os.path.dirname(__file__), "..")
  return subprocess.run([sys.executable, "-m", "fgjax.compare", f"--workdir={tmp_path}", *flags],
                        cwd=repo, capture_output=True, text=True, timeout=300, check=False)


def test_config_overrides_apply_to_every_config(tmp_path):
  result = _compare(tmp_path, "--configs=configs/default.py:forward,configs/default.py:backprop",
                    "--config.num_epochs=1", "--config.num_seeds=2", "--config.jvp_clip=None")
  assert result.returncode == 0, result.stderr[-2000:]
  for name in ("default_forward", "default_backprop"):
    with open(tmp_path / name / "seed_1" / "config.json", encoding="utf-8") as f:
      saved = json.load(f)
    assert (saved["num_epochs"], saved["seed"], saved["jvp_clip"]) == (1, 1, None)
  assert [line.split()[3] for line in result.stdout.splitlines()[1:]] == ["2", "2"]


def test_a_bad_override_is_one_line(tmp_path):
  result = _compare(tmp_path, "--config.learnig_rate=0.1")
  assert (result.returncode, result.stderr.strip()) == (
      2, "error: config has no field 'learnig_rate'; did you mean 'learning_rate'?")
  assert not os.listdir(tmp_path)

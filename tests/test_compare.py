"""fgjax.compare: run names and the side-by-side table."""

from fgjax import compare


def test_run_name():
  assert compare.run_name("configs/default.py:forward") == "default_forward"
  assert compare.run_name("configs/mnist_mlp_sgd_bp.py") == "mnist_mlp_sgd_bp"


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

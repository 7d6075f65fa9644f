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
  assert lines[1].split() == ["a", "forward", "completed", "10", "0.5123", "0.9000", "12.3"]
  assert lines[2].split()[4:6] == ["-", "-"]
  assert len({line.index("estimator") if i == 0 else None for i, line in enumerate(lines)}) == 2

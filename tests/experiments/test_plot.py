"""experiments/plot.py: draws what exists from hand-written workdirs and names what is missing."""

import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "experiments"))
import plot  # pylint: disable=g-import-not-at-top,wrong-import-position
import table1  # pylint: disable=g-import-not-at-top,wrong-import-position


def write_run(workdir, row, epochs, losses, status="completed"):
  os.makedirs(workdir)
  config = table1.row_config(row)
  config.num_epochs = epochs
  with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
    json.dump(config.to_dict(), f)
  with open(os.path.join(workdir, "summary.json"), "w", encoding="utf-8") as f:
    json.dump({"status": status, "epochs_completed": epochs}, f)
  with open(os.path.join(workdir, "metrics.jsonl"), "w", encoding="utf-8") as f:
    for i, loss in enumerate(losses):
      f.write(json.dumps({"step": 100 * (i + 1), "train_loss": loss,
                          "elapsed_seconds": 2.0 * (i + 1)}) + "\n")


def test_figures_draw_existing_runs_and_report_missing_ones(tmp_path):
  root = str(tmp_path / "runs")
  write_run(os.path.join(root, "mnist_mlp_sgd_bp"), "mnist_mlp_sgd_bp", 50,
            [2.0, 0.3, 0.01, 1e-4])
  write_run(os.path.join(root, "mnist_mlp_sgd_fwd"), "mnist_mlp_sgd_fwd", 50, [2.2, 1.0, 0.5])
  write_run(os.path.join(root, "mnist_cnn_adam_bp_2ep"), "mnist_cnn_adam_bp", 2, [2.0, 0.2])
  write_run(os.path.join(root, "cifar_fwd_3ep"), "cifar_fwd", 3, [2.3, 9.0], status="diverged")
  out = tmp_path / "out"
  out.mkdir()
  runs = (root, str(tmp_path / "sweeps"), "paper")
  missing = plot.figure2(*runs, str(out / "figure2_mnist.png"))
  assert "mnist_cnn_adam_fwd" in missing and "mnist_mlp_sgd_bp" not in missing
  assert len(missing) == 12 - 3
  assert plot.figure1(*runs, str(out / "figure1_cifar.png")) == ["cifar_bp"]
  plot.wallclock(*runs, str(out / "wallclock.png"))
  assert plot.load_curves(*runs, "mnist_cnn_adam_bp")[1] == " (2 ep., shortened)"
  assert plot.load_curves(*runs, "cifar_fwd")[1].endswith("(diverged)")

  sweep_dir = tmp_path / "sweeps" / "mnist_mlp_sgd_bp_3ep"  # a shortened sweep is found too
  sweep_dir.mkdir(parents=True)
  settings = [{"hyperparameters": {"learning_rate": lr}, "status": status, "validation_loss": v}
              for lr, status, v in ((0.01, "completed", 0.3), (0.1, "completed", 0.1),
                                    (10.0, "diverged", None))]
  (sweep_dir / "results.json").write_text(json.dumps(
      {"settings": settings, "epochs_per_trial": 3, "space": {"learning_rate": [0.01, 0.1, 10.0]},
       "best": {"hyperparameters": {"learning_rate": 0.1}}}))
  assert plot.sweeps(str(tmp_path / "sweeps"), str(out / "sweeps.png")) == ["mnist_mlp_sgd_bp"]
  for name in ("figure2_mnist", "figure1_cifar", "wallclock", "sweeps"):
    assert (out / f"{name}.png").stat().st_size > 10_000

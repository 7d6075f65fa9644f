"""experiments/plot.py: draws what exists from hand-written workdirs, names what is missing, and
does not replace a figure of more rows."""

import json
import os
import shutil

import pytest
from PIL import Image

from experiments import plot
from experiments import runs


def write_run(workdir, row, epochs, losses, status="completed"):
  os.makedirs(workdir)
  config = runs.row_config(row)
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
  args = (root, str(tmp_path / "sweeps"), "paper")
  figures = {str(out / "figure2_mnist.png"): plot.figure2(*args),
             str(out / "figure1_cifar.png"): plot.figure1(*args),
             str(out / "wallclock.png"): plot.wallclock(*args)}
  assert figures[str(out / "figure2_mnist.png")][1] == [
      "mnist_mlp_sgd_fwd", "mnist_mlp_sgd_bp", "mnist_cnn_adam_bp"]
  assert figures[str(out / "figure1_cifar.png")][1] == ["cifar_fwd"]
  assert len(figures[str(out / "wallclock.png")][1]) == 4
  assert plot.load_curves(*args, "mnist_cnn_adam_bp")[1] == " (2 ep., shortened)"
  assert plot.load_curves(*args, "cifar_fwd")[1].endswith("(diverged)")

  sweep_dir = tmp_path / "sweeps" / "mnist_mlp_sgd_bp_3ep"  # a shortened sweep is found too
  sweep_dir.mkdir(parents=True)
  settings = [{"hyperparameters": {"learning_rate": lr}, "status": status, "validation_loss": v}
              for lr, status, v in ((0.01, "completed", 0.3), (0.1, "completed", 0.1),
                                    (10.0, "diverged", None))]
  (sweep_dir / "results.json").write_text(json.dumps(
      {"settings": settings, "epochs_per_trial": 3, "space": {"learning_rate": [0.01, 0.1, 10.0]},
       "best": {"hyperparameters": {"learning_rate": 0.1}}}))
  assert plot.sweeps(str(tmp_path / "empty")) == (None, [])
  figures[str(out / "sweeps.png")] = plot.sweeps(str(tmp_path / "sweeps"))
  assert figures[str(out / "sweeps.png")][1] == ["mnist_mlp_sgd_bp"]
  plot.save(figures, overwrite=False)
  for path, (_, rows) in figures.items():
    assert os.path.getsize(path) > 10_000 and plot.rows_drawn(path) == len(rows)


def test_a_figure_of_fewer_rows_does_not_replace_one_of_more(tmp_path):
  root, sweep_root = str(tmp_path / "runs"), str(tmp_path / "sweeps")
  path = str(tmp_path / "figure1_cifar.png")
  Image.new("RGB", (8, 8)).save(path)  # a figure from before figures recorded their rows
  published = open(path, "rb").read()
  assert plot.rows_drawn(path) is None
  with pytest.raises(SystemExit, match="an unrecorded number of rows run"):
    plot.save({path: plot.figure1(root, sweep_root, "paper")}, overwrite=False)
  assert open(path, "rb").read() == published

  write_run(os.path.join(root, "cifar_bp_1ep"), "cifar_bp", 1, [2.3, 2.0])
  plot.save({path: plot.figure1(root, sweep_root, "paper")}, overwrite=True)
  assert plot.rows_drawn(path) == 1
  shutil.rmtree(root)
  with pytest.raises(SystemExit, match=r"\(1 rows run\) with 0 rows run"):
    plot.save({path: plot.figure1(root, sweep_root, "paper")}, overwrite=False)
  assert plot.rows_drawn(path) == 1


def test_a_run_of_several_seeds_draws_their_mean_and_range(tmp_path):
  workdir = tmp_path / "runs" / "mnist_mlp_sgd_fwd_3seeds"
  for seed, losses in enumerate(([2.0, 1.0], [3.0, 2.0], [1.0, 0.0])):
    write_run(str(workdir / f"seed_{seed}"), "mnist_mlp_sgd_fwd", 50, losses)
  (workdir / "summary.json").write_text(json.dumps(
      {"status": "completed", "num_seeds": 3, "seeds": [0, 1, 2], "aggregate": {}}))
  seeds, suffix = plot.load_curves(str(tmp_path / "runs"), str(tmp_path / "sweeps"), "paper",
                                   "mnist_mlp_sgd_fwd")
  assert suffix == " (mean and range of 3 seeds)"
  steps, elapsed, mean, low, high = plot._spread(seeds)  # pylint: disable=protected-access
  assert steps.tolist() == [100, 200] and elapsed.tolist() == [2.0, 4.0]
  assert (mean.tolist(), low.tolist(), high.tolist()) == ([2.0, 1.0], [1.0, 0.0], [3.0, 2.0])

"""The Colab notebook runs top to bottom on a CPU, where it falls back to its small config and
says so, with absl's INFO progress lines in its outputs; it finds this environment's JAX, Flax,
optax and orbax within fgjax's supported range, and says that a local workdir is lost with the
runtime."""

import json
import os

import nbformat
from nbclient import NotebookClient

NOTEBOOK_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "notebooks")
NOTEBOOK = os.path.join(NOTEBOOK_DIR, "colab_tpu.ipynb")


def test_colab_notebook_runs_on_cpu(tmp_path, monkeypatch):
  monkeypatch.delenv("FGJAX_NOTEBOOK_SMALL", raising=False)  # small because the runtime is a CPU
  monkeypatch.setenv("FGJAX_NOTEBOOK_WORKDIR", str(tmp_path))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  NotebookClient(notebook, timeout=300, kernel_name="python3",
                 resources={"metadata": {"path": NOTEBOOK_DIR}}).execute()
  for name in ("forward", "backprop"):
    with open(tmp_path / name / "summary.json", encoding="utf-8") as f:
      summary = json.load(f)
    assert summary["status"] == "completed" and summary["epochs_completed"] == 4
  assert (tmp_path / "curves.png").stat().st_size > 0
  outputs = "".join(output.get("text", "") for cell in notebook.cells
                    for output in cell.get("outputs", []))
  assert "One device: nothing to exchange" in outputs
  assert "no TPU or GPU: training the small stand-in" in outputs
  assert "epoch 4/4: train" in outputs  # training progress, logged by absl at INFO level
  assert "supported versions: jax " in outputs
  assert f"WORKDIR {tmp_path} is on this runtime's disk: it is lost with the runtime" in outputs

"""How far a data-parallel run drifts from a one-device run, against the drift that rounding
alone causes: two one-device runs whose initial parameters differ by one float ulp.

  python -m experiments.drift                      # the default forward config, 4 CPU devices
  python -m experiments.drift --config=configs/default.py:backprop --epochs=5

The devices are XLA's simulated CPU devices (`--xla_force_host_platform_device_count`), so this
runs on any machine. Prints, per epoch, the test loss of the reference run and the absolute
differences |reference - one ulp| and |reference - data parallel|; when both grow alike, the
data-parallel difference is rounding amplified by the training dynamics, not a defect.
"""

import argparse
import dataclasses
import os
import sys
import tempfile

NUM_DEVICES = 4
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + f" --xla_force_host_platform_device_count={NUM_DEVICES}")

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from fgjax import config_loading  # pylint: disable=g-import-not-at-top,wrong-import-position
from fgjax import models  # pylint: disable=g-import-not-at-top,wrong-import-position
from fgjax import train  # pylint: disable=g-import-not-at-top,wrong-import-position
from fgjax import workdir as workdir_files  # pylint: disable=g-import-not-at-top,wrong-import-position


def _test_losses(config, workdir: str) -> list[float]:
  train.train_and_evaluate(config, workdir)
  return [row["test_loss"] for row in workdir_files.read_metrics(workdir) if "epoch" in row]


def _one_ulp_up(create_model):
  """`create_model` whose parameters are each moved up by one float ulp."""
  def create(*args, **kwargs):
    model = create_model(*args, **kwargs)
    nudge = lambda tree: {k: nudge(v) if isinstance(v, dict) else
                          np.nextafter(np.asarray(v), np.inf).astype(np.asarray(v).dtype)
                          for k, v in tree.items()}
    return dataclasses.replace(model, params=nudge(model.params))
  return create


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/default.py:forward")
  parser.add_argument("--epochs", type=int, default=None, help="default: the config's")
  args = parser.parse_args()
  config = config_loading.load_config(args.config)
  if args.epochs:
    config.num_epochs = args.epochs
  with tempfile.TemporaryDirectory() as tmp:
    reference = _test_losses(config, os.path.join(tmp, "reference"))
    create_model = models.create_model
    models.create_model = _one_ulp_up(create_model)
    try:
      ulp = _test_losses(config, os.path.join(tmp, "ulp"))
    finally:
      models.create_model = create_model
    config.sharding.data_parallel = True
    config.sharding.num_devices = NUM_DEVICES
    parallel = _test_losses(config, os.path.join(tmp, "parallel"))
  print(f"{args.config}: test loss per epoch, and how far each run is from the reference, on "
        f"{workdir_files.format_machine(workdir_files.describe_machine())}\n")
  print("| epoch | reference | one ulp apart | 4 devices |\n|---:|---:|---:|---:|")
  for epoch, (r, u, p) in enumerate(zip(reference, ulp, parallel), start=1):
    print(f"| {epoch} | {r:.6f} | {abs(r - u):.2e} | {abs(r - p):.2e} |")
  sys.stdout.flush()


if __name__ == "__main__":
  main()

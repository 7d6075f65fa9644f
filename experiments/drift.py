"""How far a data-parallel run drifts from a one-device run, against the drift that rounding
alone causes: two one-device runs whose initial parameters differ by one float ulp.

  python -m experiments.drift --config=configs/default.py:forward    # 4 CPU devices
  python -m experiments.drift --config=configs/default.py:backprop --config.num_epochs=5

The devices are XLA's simulated CPU devices (`--xla_force_host_platform_device_count`), so this
runs on any machine. Prints, per epoch, the test loss of the reference run and the absolute
differences |reference - one ulp| and |reference - data parallel|; when both grow alike, the
data-parallel difference is rounding amplified by the training dynamics, not a defect.
"""

import dataclasses
import os
import sys
import tempfile

NUM_DEVICES = 4
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + f" --xla_force_host_platform_device_count={NUM_DEVICES}")

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from fgjax import cli  # pylint: disable=g-import-not-at-top,wrong-import-position
from fgjax import models  # pylint: disable=g-import-not-at-top,wrong-import-position
from fgjax import train  # pylint: disable=g-import-not-at-top,wrong-import-position
from fgjax import workdir as workdir_files  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS


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


def main(argv):
  del argv  # cli.run refuses positional arguments
  config = FLAGS.config
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
  print(f"{config_flags.get_config_filename(FLAGS['config'])}: test loss per epoch, and how far "
        f"each run is from the reference, on "
        f"{workdir_files.format_machine(workdir_files.describe_machine())}\n")
  print("| epoch | reference | one ulp apart | 4 devices |\n|---:|---:|---:|---:|")
  for epoch, (r, u, p) in enumerate(zip(reference, ulp, parallel), start=1):
    print(f"| {epoch} | {r:.6f} | {abs(r - u):.2e} | {abs(r - p):.2e} |")
  sys.stdout.flush()


if __name__ == "__main__":
  config_flags.DEFINE_config_file("config", None, "The config to run (configs/*.py[:arg]).")
  flags.mark_flag_as_required("config")
  cli.run(main)

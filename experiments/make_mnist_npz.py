"""Writes MNIST from tensorflow-datasets as an .npz file for `--config.data.source=npz`.

    python experiments/make_mnist_npz.py --output=DIR/mnist.npz  # from tfds's default data dir
    python experiments/make_mnist_npz.py --download --tfds_data_dir=DIR/tfds --output=DIR/mnist.npz

The file holds x_train, y_train, x_test and y_test: images (N, 28, 28) uint8 and labels uint8,
compressed: the layout of the Keras mnist.npz (11 MB), with the examples in tfds's order. They are
read by fgjax's own tfds reader from a prepared tfds dir (no TensorFlow needed); with --download,
MNIST is first downloaded and prepared there as array_record (this needs TensorFlow: pip install
fgjax[prepare]). A folder holding both, mnist.npz and tfds/, is what the real-data tests read
through $FGJAX_TEST_DATA.

An existing output file is kept unless --overwrite is given; the file appears only once complete.
"""

import os

from absl import flags
import numpy as np

from fgjax import cli
from fgjax import default_config
from fgjax.data import tfds_source
from fgjax.errors import UserError

FLAGS = flags.FLAGS


def _define_flags():
  """The command line (defined only when run, so that tests can import this)."""
  flags.DEFINE_string("output", None, "The .npz file to write.", required=True)
  flags.DEFINE_string("tfds_data_dir", None,
                      "The tfds dir holding (or to hold) mnist; default: tfds's own.")
  flags.DEFINE_bool("download", False, "Download and prepare MNIST first if the tfds dir lacks it.")
  flags.DEFINE_bool("overwrite", False, "Replace an existing --output.")


def load_mnist(tfds_data_dir, download: bool) -> dict[str, np.ndarray]:
  """The four arrays of the .npz, read (and with `download`, first prepared) by fgjax's reader."""
  config = default_config.base_config().data
  config.name, config.tfds_data_dir, config.download = "mnist", tfds_data_dir, download
  train, test, _ = tfds_source.load_tfds(config)
  arrays = {}
  for name, split in (("train", train), ("test", test)):
    arrays[f"x_{name}"] = split.images.reshape(split.images.shape[:3])  # drop the channel axis
    arrays[f"y_{name}"] = split.labels.astype(np.uint8)  # ten classes
  return arrays


def write_npz(path: str, arrays: dict[str, np.ndarray], overwrite: bool) -> None:
  """Writes `arrays` to `path` through a temporary file beside it, so that no partial file is
  left; refuses to replace an existing file unless `overwrite`."""
  _refuse_to_overwrite(path, overwrite)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  partial = f"{path}.{os.getpid()}.tmp"
  try:
    with open(partial, "wb") as f:  # a file object: np.savez would append .npz to a name
      np.savez_compressed(f, **arrays)
    os.replace(partial, path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)


def _refuse_to_overwrite(path: str, overwrite: bool) -> None:
  if os.path.exists(path) and not overwrite:
    raise UserError(f"{path} exists; pass --overwrite to replace it")


def make_npz(output: str, tfds_data_dir=None, download: bool = False,
             overwrite: bool = False) -> str:
  """Writes MNIST to `output` (the module docstring says how); returns the line that says what
  it wrote. UserError, before anything is loaded or written, if `output` exists and not
  `overwrite`, or if the tfds dir cannot serve MNIST."""
  _refuse_to_overwrite(output, overwrite)  # before loading, or downloading
  try:
    arrays = load_mnist(tfds_data_dir, download)
  except UserError as error:  # its advice names fgjax.main's flags; say which are this script's
    raise UserError(f"{error} (this script's flags: --tfds_data_dir, --download)") from None
  write_npz(output, arrays, overwrite)
  sizes = ", ".join(f"{name} {array.shape} {array.dtype}" for name, array in arrays.items())
  return f"wrote {output}: {sizes}"


def main(argv):
  del argv  # cli.run refuses positional arguments
  print(make_npz(FLAGS.output, FLAGS.tfds_data_dir, FLAGS.download, FLAGS.overwrite))


if __name__ == "__main__":
  _define_flags()
  cli.run(main)

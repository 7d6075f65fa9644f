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

import argparse
import os
import sys

import numpy as np

from fgjax import default_config
from fgjax.data import tfds_source
from fgjax.errors import UserError


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--output", required=True, help="the .npz file to write")
  parser.add_argument("--tfds_data_dir", default=None,
                      help="the tfds dir holding (or to hold) mnist; default: tfds's own")
  parser.add_argument("--download", action="store_true",
                      help="download and prepare MNIST first if the tfds dir lacks it")
  parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
  return parser.parse_args(argv)


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
    raise FileExistsError(f"{path} exists; pass --overwrite to replace it")


def main(argv=None) -> None:
  args = parse_args(argv)
  try:
    _refuse_to_overwrite(args.output, args.overwrite)  # before loading, or downloading
    arrays = load_mnist(args.tfds_data_dir, args.download)
  except FileExistsError as error:
    sys.exit(f"make_mnist_npz: {error}")
  except UserError as error:  # its advice names fgjax.main's flags; say which are this script's
    sys.exit(f"make_mnist_npz: {error} (this script's flags: --tfds_data_dir, --download)")
  write_npz(args.output, arrays, args.overwrite)
  sizes = ", ".join(f"{name} {array.shape} {array.dtype}" for name, array in arrays.items())
  print(f"wrote {args.output}: {sizes}")


if __name__ == "__main__":
  main()

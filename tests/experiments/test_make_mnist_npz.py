"""experiments/make_mnist_npz.py on a mocked tfds MNIST: the file fgjax's npz source reads, and
an existing file kept unless --overwrite."""

import os
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments import make_mnist_npz
from fgjax.data import npz
from fgjax.errors import UserError

NUM_MOCK_EXAMPLES = 32


@pytest.fixture
def mock_mnist():
  """tfds serving random MNIST examples from its code, without files or network (as in
  tests/data/test_tfds_source.py)."""
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                              num_examples=NUM_MOCK_EXAMPLES), \
       mock.patch.object(tfds.core.DatasetBuilder, "is_prepared", return_value=True):
    yield


@pytest.mark.usefixtures("mock_mnist")
def test_writes_the_keras_layout_that_the_npz_source_reads(tmp_path):
  path = tmp_path / "new" / "mnist.npz"
  assert make_mnist_npz.make_npz(str(path)).startswith(f"wrote {path}: x_train (32, 28, 28)")
  with np.load(path) as arrays:
    assert sorted(arrays) == ["x_test", "x_train", "y_test", "y_train"]
    for split in ("train", "test"):
      x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
      assert x.shape == (NUM_MOCK_EXAMPLES, 28, 28) and x.dtype == np.uint8
      assert y.shape == (NUM_MOCK_EXAMPLES,) and y.dtype == np.uint8 and y.max() < 10
  train, test = npz.load_npz(str(path))
  assert train.images.shape == test.images.shape == (NUM_MOCK_EXAMPLES, 28, 28, 1)
  assert [p.name for p in path.parent.iterdir()] == ["mnist.npz"]  # no temporary file left


@pytest.mark.usefixtures("mock_mnist")
def test_an_existing_file_is_kept_unless_overwrite(tmp_path):
  path = tmp_path / "mnist.npz"
  path.write_bytes(b"precious")
  with pytest.raises(UserError, match="exists; pass --overwrite to replace it"):
    make_mnist_npz.make_npz(str(path))
  assert path.read_bytes() == b"precious"
  make_mnist_npz.make_npz(str(path), overwrite=True)
  assert npz.load_npz(str(path))[0].images.shape[0] == NUM_MOCK_EXAMPLES


def test_unprepared_data_is_an_error_naming_the_scripts_flags(tmp_path):
  with pytest.raises(UserError) as error:
    make_mnist_npz.make_npz(str(tmp_path / "mnist.npz"), tfds_data_dir=str(tmp_path))
  message = str(error.value)
  assert "is not prepared in" in message and "--tfds_data_dir, --download" in message
  assert "\n" not in message and not (tmp_path / "mnist.npz").exists()


def test_the_command_line_says_a_mistake_in_one_line(tmp_path):
  """The absl command line: an existing --output is one `error:` line and exit status 2."""
  path = tmp_path / "mnist.npz"
  path.write_bytes(b"precious")
  script = os.path.join(os.path.dirname(make_mnist_npz.__file__), "make_mnist_npz.py")
  done = subprocess.run([sys.executable, script, f"--output={path}"], capture_output=True,
                        text=True, check=False)
  assert done.returncode == 2
  assert done.stderr.strip() == f"error: {path} exists; pass --overwrite to replace it"

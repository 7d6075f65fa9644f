"""data.source="npz": a local file with x_train, y_train, x_test, y_test; every malformed file is
a one-line DataError, raised at once."""

import time

import ml_collections
import numpy as np
import pytest

from fgjax import data
from fgjax.data import npz
from fgjax.data.dataset import DataError


def _arrays(n_train=40, n_test=10, shape=(6, 6)):
  rng = np.random.default_rng(0)
  return {"x_train": rng.integers(0, 256, (n_train,) + shape, dtype=np.uint8),
          "y_train": rng.integers(0, 3, n_train),
          "x_test": rng.integers(0, 256, (n_test,) + shape, dtype=np.uint8),
          "y_test": rng.integers(0, 3, n_test)}


def _data_config(path):
  config = ml_collections.ConfigDict()
  config.name, config.source, config.path = "toy", "npz", str(path)
  config.validation_size, config.split_seed, config.normalization = 8, 0, "unit"
  return config


def test_reads_the_four_arrays(tmp_path):
  arrays = _arrays()
  np.savez(tmp_path / "toy.npz", **arrays)
  dataset = data.load_dataset(_data_config(tmp_path / "toy.npz"))
  assert dataset.image_shape == (6, 6, 1)
  assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (32, 8, 10)
  assert dataset.num_classes == 3
  np.testing.assert_array_equal(dataset.test.images[..., 0], arrays["x_test"])
  np.testing.assert_array_equal(dataset.test.labels, arrays["y_test"])


def _malformed(name, message, **changes):
  """A test case: valid arrays with `changes` (None removes an array), and the error expected."""
  arrays = _arrays()
  arrays.update(changes)
  return pytest.param({k: v for k, v in arrays.items() if v is not None}, message, id=name)


@pytest.mark.parametrize("arrays, message", [
    _malformed("missing arrays", "missing arrays ['y_test']", y_test=None),
    _malformed("float images", "must be uint8", x_train=np.zeros((40, 6, 6), np.float32)),
    _malformed("int64 images", "must be uint8", x_test=np.zeros((10, 6, 6), np.int64)),
    _malformed("float labels", "labels must be integers", y_train=np.zeros(40)),
    _malformed("flat images", "must have shape (N, H, W) or (N, H, W, C)",
               x_train=np.zeros((40, 36), np.uint8)),
    _malformed("too few labels", "labels must have shape (40,)", y_train=np.zeros(39, np.int64)),
    _malformed("2-d labels", "labels must have shape (10,)", y_test=np.zeros((10, 1), np.int64)),
    _malformed("train and test differ", "differ in shape", x_test=np.zeros((10, 7, 6), np.uint8)),
    _malformed("empty split", "the split is empty", x_test=np.zeros((0, 6, 6), np.uint8),
               y_test=np.zeros(0, int)),
    _malformed("negative label", "labels must be >= 0",
               y_test=np.array([0, 1, -1, 2, 0, 1, 1, 2, 0, 0])),
    _malformed("label beyond int32", "labels must be < 2**31", y_train=np.full(40, 2**31)),
])
def test_malformed_arrays_are_one_line_errors(tmp_path, arrays, message):
  np.savez(tmp_path / "bad.npz", **arrays)
  start = time.monotonic()
  with pytest.raises(DataError) as error:
    data.load_dataset(_data_config(tmp_path / "bad.npz"))
  assert time.monotonic() - start < 10
  assert message in str(error.value) and "\n" not in str(error.value)


def test_missing_file(tmp_path):
  with pytest.raises(DataError, match=r"data.path '.*nowhere.npz': no such file$"):
    npz.load_npz(str(tmp_path / "nowhere.npz"))


def test_no_path():
  with pytest.raises(DataError, match="needs data.path"):
    npz.load_npz("")


@pytest.mark.parametrize("content", [b"not a zip file at all", b"PK\x03\x04 truncated zip", b""])
def test_not_an_npz_file(tmp_path, content):
  path = tmp_path / "garbage.npz"
  path.write_bytes(content)
  with pytest.raises(DataError, match="is not a readable .npz file") as error:
    npz.load_npz(str(path))
  assert "\n" not in str(error.value)


def test_pickled_object_arrays_are_refused(tmp_path):
  arrays = _arrays()
  arrays["y_train"] = np.array([{"label": 0}] * 40, dtype=object)
  np.savez(tmp_path / "pickled.npz", **arrays)
  with pytest.raises(DataError, match="an array cannot be read"):
    npz.load_npz(str(tmp_path / "pickled.npz"))


def test_a_single_npy_array_is_refused(tmp_path):
  path = tmp_path / "x.npy"
  np.save(path, np.zeros((3, 28, 28), np.uint8))
  with pytest.raises(DataError, match="single array"):
    npz.load_npz(str(path))

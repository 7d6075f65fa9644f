"""data.source="npz": a local file with x_train, y_train, x_test, y_test; every malformed file is
a one-line DataError, raised at once."""

import io
import time
import zipfile

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
    _malformed("an image dimension of 0", "have no pixels", x_train=np.zeros((40, 0, 8), np.uint8)),
    _malformed("5-d images", "must have shape (N, H, W) or (N, H, W, C)",
               x_test=np.zeros((10, 6, 6, 1, 1), np.uint8)),
    _malformed("more labels than images", "labels must have shape (10,)",
               y_test=np.zeros(11, np.int64)),
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


@pytest.mark.parametrize("content", [b"not a zip file at all", b"PK\x03\x04 truncated zip", b"",
                                     np.random.default_rng(0).bytes(4096),
                                     b"x_train,y_train\n1,2\n"])
def test_not_an_npz_file(tmp_path, content):
  path = tmp_path / "garbage.npz"
  path.write_bytes(content)
  with pytest.raises(DataError, match=r"^data.path '.*garbage.npz' is not a .npz file \(") as error:
    npz.load_npz(str(path))
  assert "\n" not in str(error.value)


def test_a_directory_is_not_an_npz_file(tmp_path):
  with pytest.raises(DataError, match=r"^data.path '.*' is a directory, not a .npz file$"):
    npz.load_npz(str(tmp_path))


def _npy_header(shape, dtype="<u1") -> bytes:
  """The bytes of a .npy file's magic and header alone: it declares an array but holds no data."""
  buffer = io.BytesIO()
  np.lib.format.write_array_header_1_0(
      buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
  return buffer.getvalue()


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_header_declaring_more_data_than_the_file_holds_is_refused_before_reading(
    tmp_path, compression):
  path = tmp_path / "huge.npz"
  with zipfile.ZipFile(path, "w", compression) as archive:
    for name, array in _arrays().items():
      archive.writestr(name + ".npy", _npy_header((10**12, 8, 8)) if name == "x_train" else
                       _npy_header(array.shape, array.dtype.str) + array.tobytes())
  start = time.monotonic()
  with pytest.raises(DataError, match=r"x_train declares shape \(1000000000000, 8, 8\) of uint8 "
                     r"\(64,000,000,000,000 bytes\), more than its zip member holds \(0 bytes\); "
                     "the file is truncated or corrupt$"):
    npz.load_npz(str(path))
  assert time.monotonic() - start < 5


def test_well_compressed_arrays_are_read(tmp_path):
  arrays = _arrays()
  arrays["x_train"] = np.zeros((50000, 6, 6), np.uint8)  # deflate's best case: ~1000-fold
  arrays["y_train"] = np.arange(50000) % 3
  np.savez_compressed(tmp_path / "zeros.npz", **arrays)
  train, _ = npz.load_npz(str(tmp_path / "zeros.npz"))
  assert train.images.shape == (50000, 6, 6, 1)


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

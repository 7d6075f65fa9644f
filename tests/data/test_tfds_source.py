"""data.source="tfds": mocked mnist and cifar10, the bulk PNG decoder, and the one-line errors for
data that is missing, offline or not an image-classification dataset."""

import io
import struct
import time
import urllib.error
import zlib
from unittest import mock

import jax
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from fgjax import data
from fgjax import default_config
from fgjax import train_step as ts
from fgjax.data import tfds_source
from fgjax.data.dataset import DataError

NUM_MOCK_EXAMPLES = 64


@pytest.fixture
def mock_tfds():
  """tfds serving random examples of any dataset from its code, without files or network.

  `mock_data` leaves `is_prepared()` False (there are no files), and fgjax asks it first. Its
  builders report the tfrecord format, so these tests read through tfds's example-by-example
  decoding; the bulk array_record path is tested on real MNIST (test_real_mnist.py) and by the
  decoder tests below.
  """
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                              num_examples=NUM_MOCK_EXAMPLES), \
       mock.patch.object(tfds.core.DatasetBuilder, "is_prepared", return_value=True):
    yield


def _data_config(name, **overrides):
  config = default_config.base_config().data
  config.name = name
  config.validation_size = 16
  config.update(overrides)
  return config


@pytest.mark.usefixtures("mock_tfds")
@pytest.mark.parametrize("name, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_mock_dataset_has_the_info_shapes_and_classes(name, shape):
  dataset = data.load_dataset(_data_config(name))
  assert dataset.image_shape == shape and dataset.num_classes == 10
  assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (
      NUM_MOCK_EXAMPLES - 16, 16, NUM_MOCK_EXAMPLES)
  for split in (dataset.train, dataset.validation, dataset.test):
    assert split.images.dtype == np.uint8 and split.images.shape[1:] == shape
    assert split.labels.dtype == np.int32
    assert 0 <= split.labels.min() and split.labels.max() < 10
  assert len(np.unique(dataset.train.images.reshape(len(dataset.train), -1), axis=0)) > 1


@pytest.mark.usefixtures("mock_tfds")
@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_mock_splits_batch_for_training_and_evaluation(name):
  dataset = data.load_dataset(_data_config(name))
  order = np.asarray(ts.epoch_order(jax.random.PRNGKey(0), 0, dataset.train.labels))
  assert sorted(order) == list(range(len(dataset.train)))
  batch = dataset.train.images[order[:8]]
  assert batch.shape == (8,) + dataset.image_shape and batch.dtype == np.uint8
  images, labels, weights = ts.batch_for_eval(dataset.test.images, dataset.test.labels, 10)
  assert images.shape == (7, 10) + dataset.image_shape and labels.shape == weights.shape == (7, 10)
  assert weights.sum() == NUM_MOCK_EXAMPLES
  np.testing.assert_array_equal(images.reshape((70,) + dataset.image_shape)[:NUM_MOCK_EXAMPLES],
                                dataset.test.images)


# A PNG encoder choosing each row's filter, so that every filter of the PNG spec (section 9) is
# exercised; PIL's encoder picks filters itself and rarely uses some.
def _chunk(kind, payload):
  return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
      ">I", zlib.crc32(kind + payload))


def _png(image, kinds, extra_chunks=b"", idat_parts=1):
  height, width, channels = image.shape
  x = image.reshape(height, width * channels).astype(np.int16)
  left = np.pad(x, ((0, 0), (channels, 0)))[:, :-channels]
  above = np.pad(x, ((1, 0), (0, 0)))[:-1]
  upper_left = np.pad(above, ((0, 0), (channels, 0)))[:, :-channels]
  p = left + above - upper_left
  pa, pb, pc = np.abs(p - left), np.abs(p - above), np.abs(p - upper_left)
  paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, above, upper_left))
  predictions = (np.zeros_like(x), left, above, (left + above) // 2, paeth)
  rows = b"".join(bytes([k]) + ((x[r] - predictions[k][r]) % 256).astype(np.uint8).tobytes()
                  for r, k in enumerate(kinds))
  stream = zlib.compress(rows)
  cut = len(stream) // idat_parts
  idats = b"".join(_chunk(b"IDAT", stream[i * cut:(i + 1) * cut if i < idat_parts - 1 else None])
                   for i in range(idat_parts))
  header = struct.pack(">IIBBBBB", width, height, 8, {1: 0, 2: 4, 3: 2, 4: 6}[channels], 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + extra_chunks + idats
          + _chunk(b"IEND", b""))


def _pil_decode(encoded):
  return np.asarray(Image.open(io.BytesIO(encoded)))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_decode_images_undoes_every_png_filter(channels):
  rng = np.random.default_rng(channels)
  shape = (6, 7, channels)
  images = rng.integers(0, 256, (30,) + shape, dtype=np.uint8)
  images[::3] //= 8  # smooth images too, where predictions are close
  kinds = rng.integers(0, 5, (30, 6))
  kinds[:5] = np.arange(5)[:, None]  # every filter on every row, the first included
  encoded = [_png(image, k) for image, k in zip(images, kinds)]
  for image, png in zip(images, encoded):  # the test's encoder is right
    np.testing.assert_array_equal(_pil_decode(png).reshape(shape), image)
  np.testing.assert_array_equal(tfds_source.decode_images(encoded, shape), images)


def test_other_encodings_are_decoded_one_by_one_in_order():
  rng = np.random.default_rng(0)
  shape = (8, 8, 3)
  images = rng.integers(0, 256, (6,) + shape, dtype=np.uint8)
  kinds = [4] * 8
  jpeg, palette = io.BytesIO(), io.BytesIO()
  Image.fromarray(images[4]).save(jpeg, "JPEG", quality=95)
  Image.fromarray(images[5]).convert("P").save(palette, "PNG")
  encoded = [_png(images[0], kinds),
             _png(images[1], kinds, extra_chunks=_chunk(b"tEXt", b"Comment\x00hello")),
             _png(images[2], kinds, idat_parts=3),
             _png(images[3], kinds),
             jpeg.getvalue(), palette.getvalue()]
  decoded = tfds_source.decode_images(encoded, shape)
  np.testing.assert_array_equal(decoded[:4], images[:4])
  np.testing.assert_array_equal(decoded[4], _pil_decode(encoded[4]))
  np.testing.assert_array_equal(
      decoded[5], np.asarray(Image.open(io.BytesIO(encoded[5])).convert("RGB")))


@pytest.mark.parametrize("encoded, message", [
    (b"definitely not an image", "an image cannot be decoded"),
    (_png(np.zeros((5, 8, 3), np.uint8), [0] * 5), "an image has shape (5, 8, 3)"),
])
def test_undecodable_images_are_one_line_errors(encoded, message):
  with pytest.raises(DataError, match="^cifar: ") as error:
    tfds_source.decode_images([encoded], (8, 8, 3), "cifar")
  assert message in str(error.value) and "\n" not in str(error.value)


def _load_error(**overrides):
  """The DataError of load_tfds with these data config fields, checked to be one line and fast."""
  start = time.monotonic()
  with pytest.raises(DataError) as error:
    tfds_source.load_tfds(_data_config(**overrides))
  assert time.monotonic() - start < 10
  assert "\n" not in str(error.value)
  return str(error.value)


THREE_WAYS = ("--config.data.tfds_data_dir=", "--config.data.download=True",
              "--config.data.source=npz --config.data.path=")


def test_unknown_dataset_names_suggest_close_ones():
  assert "unknown tfds dataset data.name='mnistt'; did you mean 'mnist'" in _load_error(
      name="mnistt")
  assert "catalog" in _load_error(name="no_such_dataset_at_all")


def test_bad_version_is_one_line():
  assert "cannot be loaded at version 9.9.9" in _load_error(name="mnist:9.9.9")


def test_not_an_image_classification_dataset(tmp_path):
  message = _load_error(name="imdb_reviews", tfds_data_dir=str(tmp_path))
  assert "fgjax needs an 'image'" in message and "['label', 'text']" in message


def test_unprepared_without_download_names_the_three_ways(tmp_path):
  message = _load_error(name="cifar10", tfds_data_dir=str(tmp_path))
  assert f"'cifar10/3.0.2' is not prepared in {tmp_path} and data.download is False" in message
  assert all(way in message for way in THREE_WAYS)


@pytest.fixture
def tensorflow_installed(monkeypatch):
  """find_spec finds TensorFlow; download_and_prepare must not run (it would retry for minutes)."""
  find_spec = tfds_source.importlib.util.find_spec
  monkeypatch.setattr(tfds_source.importlib.util, "find_spec",
                      lambda name, *args: mock.sentinel.spec if name == "tensorflow"
                      else find_spec(name, *args))
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                      mock.Mock(side_effect=AssertionError("download_and_prepare was called")))


def test_download_without_tensorflow_says_how_to_install_it(tmp_path, monkeypatch):
  find_spec = tfds_source.importlib.util.find_spec
  monkeypatch.setattr(tfds_source.importlib.util, "find_spec",
                      lambda name, *args: None if name == "tensorflow" else find_spec(name, *args))
  message = _load_error(name="mnist", tfds_data_dir=str(tmp_path), download=True)
  assert "needs TensorFlow, which is not installed" in message
  assert "pip install fgjax[prepare]" in message and all(way in message for way in THREE_WAYS)


@pytest.mark.usefixtures("tensorflow_installed")
def test_offline_download_stops_before_tfds_retries(tmp_path, monkeypatch):
  monkeypatch.setattr(tfds_source.urllib.request, "urlopen", mock.Mock(
      side_effect=urllib.error.URLError("[Errno -3] Temporary failure in name resolution")))
  message = _load_error(name="mnist", tfds_data_dir=str(tmp_path), download=True)
  assert "its download host storage.googleapis.com cannot be reached" in message
  assert all(way in message for way in THREE_WAYS)


@pytest.mark.usefixtures("tensorflow_installed")
def test_a_silent_network_stops_at_the_probe_timeout(tmp_path, monkeypatch):
  monkeypatch.setattr(tfds_source, "PROBE_TIMEOUT_SECONDS", 0.5)
  monkeypatch.setattr(tfds_source.urllib.request, "urlopen",
                      lambda *args, **kwargs: time.sleep(60))  # a hung DNS lookup, say
  start = time.monotonic()
  message = _load_error(name="cifar10", tfds_data_dir=str(tmp_path), download=True)
  assert time.monotonic() - start < 5
  assert "its download host www.cs.toronto.edu cannot be reached" in message


def test_an_http_error_status_means_the_host_is_reachable(monkeypatch):
  def urlopen(request, timeout):
    del timeout
    if "down.example" in request.full_url:
      raise urllib.error.URLError("connection refused")
    raise urllib.error.HTTPError(request.full_url, 405, "Method Not Allowed", {}, None)

  monkeypatch.setattr(tfds_source.urllib.request, "urlopen", urlopen)
  urls = ["https://up.example/a", "https://up.example/b", "http://down.example/c"]
  unreachable_hosts = tfds_source._unreachable_hosts  # pylint: disable=protected-access
  assert unreachable_hosts(urls) == ["down.example"]

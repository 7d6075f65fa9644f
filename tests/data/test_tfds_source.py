"""data.source="tfds": mocked mnist and cifar10, the bulk image decoder, and the one-line errors
for data that is missing, offline or not an image-classification dataset."""

import io
import time
import urllib.error
from unittest import mock

import jax
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from fgjax import data
from fgjax import default_config
from fgjax import programs
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
  order = np.asarray(programs.epoch_order(jax.random.PRNGKey(0), 0, dataset.train.labels))
  assert sorted(order) == list(range(len(dataset.train)))
  batch = dataset.train.images[order[:8]]
  assert batch.shape == (8,) + dataset.image_shape and batch.dtype == np.uint8
  images, labels, weights = programs.batch_for_eval(dataset.test.images, dataset.test.labels, 10)
  assert images.shape == (7, 10) + dataset.image_shape and labels.shape == weights.shape == (7, 10)
  assert weights.sum() == NUM_MOCK_EXAMPLES
  np.testing.assert_array_equal(images.reshape((70,) + dataset.image_shape)[:NUM_MOCK_EXAMPLES],
                                dataset.test.images)


def _encode(image, fmt="PNG", mode=None):
  """An image (H, W, C) encoded as tfds stores it in a record."""
  out = io.BytesIO()
  picture = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)
  (picture.convert(mode) if mode else picture).save(out, fmt)
  return out.getvalue()


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_decode_images_returns_the_encoded_pixels(channels):
  images = np.random.default_rng(channels).integers(0, 256, (5, 6, 7, channels), dtype=np.uint8)
  decoded = tfds_source.decode_images([_encode(image) for image in images], (6, 7, channels))
  assert decoded.dtype == np.uint8
  np.testing.assert_array_equal(decoded, images)


def test_decode_images_converts_other_encodings_to_the_datasets_channels():
  images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
  jpeg, palette = _encode(images[0], "JPEG"), _encode(images[1], mode="P")
  decoded = tfds_source.decode_images([jpeg, palette], (8, 8, 3))
  np.testing.assert_array_equal(decoded[0], np.asarray(Image.open(io.BytesIO(jpeg))))
  np.testing.assert_array_equal(
      decoded[1], np.asarray(Image.open(io.BytesIO(palette)).convert("RGB")))


@pytest.mark.parametrize("encoded, message", [
    (b"definitely not an image", "an image cannot be decoded"),
    (_encode(np.zeros((5, 8, 3), np.uint8)), "an image is 8x5 pixels, the dataset says 8x8"),
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
  def hung(*args, **kwargs):  # a hung DNS lookup, say, that times out long after the probe's
    del args, kwargs
    time.sleep(60)
    raise TimeoutError("timed out")

  monkeypatch.setattr(tfds_source.urllib.request, "urlopen", hung)
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

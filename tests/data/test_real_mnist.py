"""Real MNIST: a prepared tfds dir (mnist/3.0.1, array_record) read without TensorFlow, checked
against an mnist.npz of the same data and the official class counts, and one epoch of the paper's
backprop MLP on it.

The data lies outside the repository, in the folder $FGJAX_TEST_DATA names (the `real_data_dir`
fixture of conftest.py): without it these tests are skipped, saying how to make it; CI sets
FGJAX_REQUIRE_TEST_DATA=1, which turns that skip into a failure.
"""

import collections
import json
import os
import shutil
import time

import numpy as np
import pytest

from fgjax import config_loading
from fgjax import data
from fgjax import train
from fgjax.data import npz
from fgjax.data import tfds_source
from fgjax.data.dataset import DataError

REPO = os.path.join(os.path.dirname(__file__), "..", "..")
Paths = collections.namedtuple("Paths", "npz tfds_dir mnist_dir")

# yann.lecun.com/exdb/mnist: examples per digit 0..9.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def paths(real_data_dir):
  """mnist.npz, the tfds dir and its MNIST variant, in the folder of real test data."""
  tfds_dir = os.path.join(real_data_dir, "tfds")
  return Paths(os.path.join(real_data_dir, "mnist.npz"), tfds_dir,
               os.path.join(tfds_dir, "mnist", "3.0.1"))


def _data_config(tfds_data_dir, **overrides):
  config = config_loading.load_config(os.path.join(REPO, "configs", "mnist_mlp_sgd_bp.py")).data
  config.tfds_data_dir = tfds_data_dir
  config.update(overrides)
  return config


@pytest.fixture(scope="module")
def mnist(paths):
  """(train, test, num_classes, CPU seconds) read from the prepared tfds dir."""
  start = time.process_time()
  train_split, test_split, num_classes = tfds_source.load_tfds(_data_config(paths.tfds_dir))
  return train_split, test_split, num_classes, time.process_time() - start


def _pairs(split):
  """The multiset of (image, label) pairs of a split."""
  images = split.images.reshape(len(split), -1)
  return collections.Counter(zip(map(bytes, images), split.labels.tolist()))


def test_tfds_mnist_has_the_official_sizes_and_class_counts(mnist):
  train_split, test_split, num_classes, _ = mnist
  assert num_classes == 10
  assert train_split.images.shape == (60000, 28, 28, 1) and test_split.images.shape == (
      10000, 28, 28, 1)
  assert train_split.images.dtype == np.uint8 and train_split.labels.dtype == np.int32
  assert np.bincount(train_split.labels).tolist() == TRAIN_COUNTS
  assert np.bincount(test_split.labels).tolist() == TEST_COUNTS


def test_tfds_mnist_equals_the_npz_pairs(mnist, paths):
  train_split, test_split, _, _ = mnist
  npz_train, npz_test = npz.load_npz(paths.npz)
  assert _pairs(train_split) == _pairs(npz_train)
  assert _pairs(test_split) == _pairs(npz_test)


def test_tfds_mnist_loads_without_tfds_per_example_decoding(mnist):
  # CPU time, not wall time: the machine is shared. tfds's own per-example decoding takes ~15 s,
  # reading the records whole 3-6 s; the bound only tells the two apart.
  assert mnist[3] < 10.0


def test_one_epoch_of_the_papers_backprop_mlp_reaches_93_percent(tmp_path, paths):
  config = config_loading.load_config(os.path.join(REPO, "configs", "mnist_mlp_sgd_bp.py"))
  config.num_epochs = 1
  config.data.tfds_data_dir = paths.tfds_dir
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["status"] == "completed" and summary["epochs_completed"] == 1
  assert summary["test_accuracy"] >= 0.93, summary


def test_a_dataset_prepared_as_tfrecord_says_how_to_fix_it(tmp_path, paths):
  variant = tmp_path / "mnist" / "3.0.1"
  variant.mkdir(parents=True)
  shutil.copy(os.path.join(paths.mnist_dir, "features.json"), variant)
  with open(os.path.join(paths.mnist_dir, "dataset_info.json"), encoding="utf-8") as f:
    info = json.load(f)
  info["fileFormat"] = "tfrecord"  # what tfds.load prepares by default
  (variant / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
  with pytest.raises(DataError, match="prepared as tfrecord .* which cannot be read without "
                     "TensorFlow; prepare it as array_record") as error:
    tfds_source.load_tfds(_data_config(str(tmp_path)))
  assert "\n" not in str(error.value)


def test_load_dataset_carves_10000_validation_examples_from_train(paths):
  dataset = data.load_dataset(_data_config(None, source="npz", path=paths.npz))
  assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (50000, 10000, 10000)
  assert dataset.num_classes == 10 and dataset.image_shape == (28, 28, 1)

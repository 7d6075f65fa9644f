"""Real MNIST: the prepared tfds dir in ../shared/data/tfds (mnist/3.0.1, array_record) read
without TensorFlow, checked against ../shared/data/mnist.npz and the official class counts, and
one epoch of the paper's backprop MLP on it.

CI clones the repository with a copy of `shared/` beside it; without it these tests fail (they
never skip): the tfds path is only known to work if it is tested on real data.
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
SHARED_DATA = os.path.join(REPO, "..", "shared", "data")
TFDS_DIR = os.path.join(SHARED_DATA, "tfds")
NPZ_PATH = os.path.join(SHARED_DATA, "mnist.npz")
MNIST_DIR = os.path.join(TFDS_DIR, "mnist", "3.0.1")

# yann.lecun.com/exdb/mnist: examples per digit 0..9.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _data_config(**overrides):
  config = config_loading.load_config(os.path.join(REPO, "configs", "mnist_mlp_sgd_bp.py")).data
  config.tfds_data_dir = TFDS_DIR
  config.update(overrides)
  return config


@pytest.fixture(scope="module")
def mnist():
  """(train, test, num_classes, CPU seconds) read from the prepared tfds dir."""
  for path in (MNIST_DIR, NPZ_PATH):
    assert os.path.exists(path), f"{path} is missing: the real-data tests need ../shared/data"
  start = time.process_time()
  train_split, test_split, num_classes = tfds_source.load_tfds(_data_config())
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


def test_tfds_mnist_equals_the_npz_pairs(mnist):
  train_split, test_split, _, _ = mnist
  npz_train, npz_test = npz.load_npz(NPZ_PATH)
  assert _pairs(train_split) == _pairs(npz_train)
  assert _pairs(test_split) == _pairs(npz_test)


def test_tfds_mnist_loads_in_under_5_cpu_seconds(mnist):
  # CPU time, not wall time: the machine is shared. tfds's own per-example decoding takes ~15 s.
  assert mnist[3] < 5.0


def test_one_epoch_of_the_papers_backprop_mlp_reaches_93_percent(tmp_path):
  config = config_loading.load_config(os.path.join(REPO, "configs", "mnist_mlp_sgd_bp.py"))
  config.num_epochs = 1
  config.data.tfds_data_dir = TFDS_DIR
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["status"] == "completed" and summary["epochs_completed"] == 1
  assert summary["test_accuracy"] >= 0.93, summary


def test_a_dataset_prepared_as_tfrecord_says_how_to_fix_it(tmp_path):
  variant = tmp_path / "mnist" / "3.0.1"
  variant.mkdir(parents=True)
  shutil.copy(os.path.join(MNIST_DIR, "features.json"), variant)
  with open(os.path.join(MNIST_DIR, "dataset_info.json"), encoding="utf-8") as f:
    info = json.load(f)
  info["fileFormat"] = "tfrecord"  # what tfds.load prepares by default
  (variant / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
  with pytest.raises(DataError, match="prepared as tfrecord .* which cannot be read without "
                     "TensorFlow; prepare it as array_record") as error:
    tfds_source.load_tfds(_data_config(tfds_data_dir=str(tmp_path)))
  assert "\n" not in str(error.value)


def test_load_dataset_carves_10000_validation_examples_from_train():
  dataset = data.load_dataset(_data_config(source="npz", path=NPZ_PATH))
  assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (50000, 10000, 10000)
  assert dataset.num_classes == 10 and dataset.image_shape == (28, 28, 1)

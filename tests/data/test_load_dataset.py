"""load_dataset's class count: data.num_classes, the source's own or the labels', checked against
the labels before any model is built; odd files end in one `error:` line from the command line."""

import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from ml_collections import config_dict

from fgjax import data
from fgjax.data import tfds_source
from fgjax.data.dataset import DataError, Split

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write(path, y_train, y_test, x_train=None):
  y_train, y_test = np.asarray(y_train), np.asarray(y_test)
  images = lambda n: np.random.default_rng(0).integers(0, 256, (n, 6, 6), dtype=np.uint8)
  np.savez(path, x_train=images(len(y_train)) if x_train is None else x_train, y_train=y_train,
           x_test=images(len(y_test)), y_test=y_test)
  return str(path)


def _config(path="", num_classes=None, source="npz", name="toy"):
  config = ml_collections.ConfigDict()
  config.name, config.source, config.path = name, source, str(path)
  config.num_classes = config_dict.placeholder(int)
  config.num_classes = num_classes
  config.validation_size, config.split_seed, config.normalization = 4, 0, "unit"
  return config


def _load(tmp_path, y_train, y_test, num_classes=None):
  return data.load_dataset(_config(_write(tmp_path / "toy.npz", y_train, y_test), num_classes))


ALL_THREE = np.arange(30) % 3


def test_the_class_count_is_one_more_than_the_largest_label(tmp_path):
  assert _load(tmp_path, ALL_THREE, [0, 1, 2, 1]).num_classes == 3


def test_data_num_classes_may_exceed_the_labels_with_a_warning(tmp_path, caplog):
  assert _load(tmp_path, ALL_THREE, [0, 1, 2], num_classes=5).num_classes == 5
  assert "the training split has no example of 2 of the 5 classes: 3, 4" in caplog.text


@pytest.mark.parametrize("y_train, y_test, num_classes, message", [
    (ALL_THREE, [0, 2**31 - 1], None, "the largest label, 2147483647, makes 2147483648 classes, "
     "of which only 4 occur; set data.num_classes=2147483648 if that many classes are really "
     "meant"),
    (np.append(ALL_THREE, 100000), [0, 1], None, "makes 100001 classes, of which only 4 occur"),
    (ALL_THREE % 2 + 1000, [1000, 1001], None, "makes 1002 classes, of which only 2 occur"),
    (ALL_THREE * 3, [0, 3, 6], None, "the largest label, 6, makes 7 classes, of which only 3"),
    (ALL_THREE, [0, 1, 3], 3, "labels must be < 3 (the number of classes), found 3"),
    (np.zeros(30, int), [0, 1], None, "every training label is 0; a classifier needs examples "
     "of at least 2 classes"),
    (np.full(30, 4), [4], 10, "every training label is 4"),
    (ALL_THREE, [0], 1, "data.num_classes must be >= 2"),
])
def test_implausible_labels_are_one_line_errors(tmp_path, y_train, y_test, num_classes, message):
  with pytest.raises(DataError) as error:
    _load(tmp_path, y_train, y_test, num_classes)
  assert message in str(error.value) and "\n" not in str(error.value)


def test_a_dense_label_set_of_more_than_1000_classes_needs_data_num_classes(tmp_path):
  labels = np.arange(1200)
  with pytest.raises(DataError, match="makes 1200 classes, of which only 1200 occur; set "
                     "data.num_classes=1200"):
    _load(tmp_path, labels, labels[:10])
  assert _load(tmp_path, labels, labels[:10], num_classes=1200).num_classes == 1200


def test_classes_missing_from_a_split_are_warned_of_by_name(tmp_path, caplog):
  dataset = _load(tmp_path, ALL_THREE % 2 * 2, [0, 1, 2, 3])  # no 1 or 3 in training
  assert dataset.num_classes == 4
  assert "toy: the training split has no example of 2 of the 4 classes: 1, 3" in caplog.text
  assert "the test split" not in caplog.text
  caplog.clear()
  _load(tmp_path, ALL_THREE, [0, 0, 2])
  assert "toy: the test split has no example of 1 of the 3 classes: 1" in caplog.text


def test_a_source_class_count_must_match_data_num_classes(monkeypatch):
  split = Split(np.zeros((20, 4, 4, 1), np.uint8), np.arange(20, dtype=np.int32) % 10)
  monkeypatch.setattr(tfds_source, "load_tfds", lambda config: (split, split, 10))
  assert data.load_dataset(_config(source="tfds", name="mnist")).num_classes == 10
  assert data.load_dataset(_config(source="tfds", name="mnist", num_classes=10)).num_classes == 10
  with pytest.raises(DataError, match=r"^data.num_classes=12, but mnist has 10 classes; leave "
                     r"data.num_classes unset \(None\) or match it$"):
    data.load_dataset(_config(source="tfds", name="mnist", num_classes=12))
  with pytest.raises(DataError, match="data.num_classes=7, but digits has 10 classes"):
    data.load_dataset(_config(source="embedded", name="digits", num_classes=7))


@pytest.mark.parametrize("make_file, message", [
    (lambda tmp: _write(tmp / "flat.npz", np.arange(600) % 3, [0, 1, 2],
                        x_train=np.zeros((600, 0, 8), np.uint8)),
     "train: images of shape (600, 0, 8) have no pixels"),
    (lambda tmp: _write(tmp / "label.npz", np.append(ALL_THREE, 2**31 - 1), [0, 1]),
     "set data.num_classes=2147483648 if that many classes are really meant"),
])
def test_the_command_line_prints_one_error_line_and_exits_2(tmp_path, make_file, message):
  path = make_file(tmp_path)
  result = subprocess.run(
      [sys.executable, "-m", "fgjax.main", "--config=configs/default.py:forward",
       f"--workdir={tmp_path / 'run'}", "--config.data.source=npz", f"--config.data.path={path}"],
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  errors = [line for line in (result.stdout + result.stderr).splitlines()
            if line.startswith("error:")]
  assert result.returncode == 2, result.stderr[-2000:]
  assert len(errors) == 1 and message in errors[0], errors
  assert "Traceback" not in result.stderr

"""Loading a run's dataset: `load_dataset(config.data)`.

Sources: "embedded" (a dataset inside an installed package; no download), "npz" (a local file)
and "tfds" (tensorflow-datasets). Every source yields uint8 train and test splits; the validation
split is carved from train with `data.split_seed`, so it never depends on the training seed.
The number of classes is `data.num_classes` when set, else the source's own (tfds, embedded), else
one more than the largest label (npz), refused when that looks like a mistake.
"""

import numpy as np
from absl import logging

from fgjax.data.dataset import DataError, Dataset, Split, carve_validation, pixel_statistics

SOURCES = ("embedded", "tfds", "npz")
# A class count derived from the labels must be at most this, and half of its classes must occur.
MAX_DERIVED_CLASSES = 1000

__all__ = ["DataError", "Dataset", "Split", "SOURCES", "load_dataset"]


def _load_train_test(data_config) -> tuple[Split, Split, int | None]:
  source = data_config.source
  if source == "embedded":
    from fgjax.data import embedded  # pylint: disable=g-import-not-at-top
    if data_config.name not in embedded.EMBEDDED:
      raise DataError(f"unknown embedded dataset {data_config.name!r}; "
                      f"choose one of {list(embedded.EMBEDDED)}")
    return embedded.load_digits()
  if source == "npz":
    from fgjax.data import npz  # pylint: disable=g-import-not-at-top
    return *npz.load_npz(data_config.path), None
  if source == "tfds":
    from fgjax.data import tfds_source  # pylint: disable=g-import-not-at-top
    return tfds_source.load_tfds(data_config)
  raise DataError(f"unknown data.source {source!r}; choose one of {list(SOURCES)}")


def load_dataset(data_config) -> Dataset:
  """Loads train / validation / test splits as described by the `data` config group."""
  train, test, source_classes = _load_train_test(data_config)
  num_classes = _num_classes(data_config, train, test, source_classes)
  train, validation = carve_validation(train, int(data_config.validation_size),
                                       int(data_config.split_seed))
  mean, std = pixel_statistics(train, data_config.normalization)
  return Dataset(name=data_config.name, train=train, validation=validation, test=test,
                 num_classes=num_classes, pixel_mean=mean, pixel_std=std)


def _num_classes(data_config, train: Split, test: Split, source_classes: int | None) -> int:
  """The model's class count, checked against the labels; classes a split lacks are warned of."""
  name, wanted = data_config.name, data_config.get("num_classes")
  if wanted is not None and wanted < 2:
    raise DataError(f"data.num_classes must be >= 2 (a classifier needs two classes), got {wanted}")
  if wanted is not None and source_classes is not None and wanted != source_classes:
    raise DataError(f"data.num_classes={wanted}, but {name} has {source_classes} classes; "
                    "leave data.num_classes unset (None) or match it")
  train_classes, test_classes = np.unique(train.labels), np.unique(test.labels)
  if len(train_classes) < 2:
    raise DataError(f"{name}: every training label is {train_classes[0]}; a classifier needs "
                    "examples of at least 2 classes")
  largest = int(max(train_classes[-1], test_classes[-1]))
  num_classes = wanted if wanted is not None else source_classes
  if num_classes is None:
    num_classes, present = largest + 1, len(np.union1d(train_classes, test_classes))
    if num_classes > MAX_DERIVED_CLASSES or present < num_classes / 2:
      raise DataError(f"{name}: the largest label, {largest}, makes {num_classes} classes, of "
                      f"which only {present} occur; set data.num_classes={num_classes} if that "
                      "many classes are really meant")
  elif largest >= num_classes:
    raise DataError(f"{name}: labels must be < {num_classes} (the number of classes), "
                    f"found {largest}")
  for split, classes in (("training", train_classes), ("test", test_classes)):
    absent = np.setdiff1d(np.arange(num_classes), classes)
    if absent.size:
      listed = ", ".join(map(str, absent[:10])) + (", ..." if absent.size > 10 else "")
      logging.warning("%s: the %s split has no example of %d of the %d classes: %s", name, split,
                      absent.size, num_classes, listed)
  return num_classes

"""Loading a run's dataset: `load_dataset(config.data)`.

Sources: "embedded" (a dataset inside an installed package; no download), "npz" (a local file)
and "tfds" (tensorflow-datasets). Every source yields uint8 train and test splits; the validation
split is carved from train with `data.split_seed`, so it never depends on the training seed.
"""

from fgjax.data.dataset import DataError, Dataset, Split, carve_validation, pixel_statistics

SOURCES = ("embedded", "tfds", "npz")

__all__ = ["DataError", "Dataset", "Split", "SOURCES", "load_dataset"]


def _load_train_test(data_config) -> tuple[Split, Split, int]:
  source = data_config.source
  if source == "embedded":
    from fgjax.data import embedded  # pylint: disable=g-import-not-at-top
    if data_config.name not in embedded.EMBEDDED:
      raise DataError(f"unknown embedded dataset {data_config.name!r}; "
                      f"choose one of {list(embedded.EMBEDDED)}")
    return embedded.load_digits()
  if source == "npz":
    from fgjax.data import npz  # pylint: disable=g-import-not-at-top
    train, test = npz.load_npz(data_config.path)
    return train, test, int(max(train.labels.max(), test.labels.max())) + 1
  if source == "tfds":
    from fgjax.data import tfds_source  # pylint: disable=g-import-not-at-top
    return tfds_source.load_tfds(data_config)
  raise DataError(f"unknown data.source {source!r}; choose one of {list(SOURCES)}")


def load_dataset(data_config) -> Dataset:
  """Loads train / validation / test splits as described by the `data` config group."""
  train, test, num_classes = _load_train_test(data_config)
  if int(max(train.labels.max(), test.labels.max())) >= num_classes:
    raise DataError(f"{data_config.name}: labels must be < {num_classes}")
  train, validation = carve_validation(train, int(data_config.validation_size),
                                       int(data_config.split_seed))
  mean, std = pixel_statistics(train, data_config.normalization)
  return Dataset(name=data_config.name, train=train, validation=validation, test=test,
                 num_classes=num_classes, pixel_mean=mean, pixel_std=std)

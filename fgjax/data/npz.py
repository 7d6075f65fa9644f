"""A local `.npz` file with arrays x_train, y_train, x_test, y_test."""

import os
import zipfile

import numpy as np

from fgjax.data.dataset import DataError, Split, as_split

REQUIRED = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: str) -> tuple[Split, Split]:
  """Reads and checks the four arrays; every problem is a one-line DataError."""
  if not path:
    raise DataError("data.source='npz' needs data.path, the .npz file to read")
  if not os.path.isfile(path):
    raise DataError(f"data.path {path!r}: no such file")
  try:
    archive = np.load(path, allow_pickle=False)
  except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
    raise DataError(f"data.path {path!r} is not a readable .npz file ({error})") from None
  if not isinstance(archive, np.lib.npyio.NpzFile):
    raise DataError(f"data.path {path!r} holds a single array, not an .npz archive of "
                    f"{list(REQUIRED)}")
  with archive:
    missing = [name for name in REQUIRED if name not in archive.files]
    if missing:
      raise DataError(f"data.path {path!r}: missing arrays {missing}; an npz dataset needs "
                      f"{list(REQUIRED)} (found {sorted(archive.files)})")
    try:
      arrays = {name: archive[name] for name in REQUIRED}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
      raise DataError(f"data.path {path!r}: an array cannot be read ({error})") from None
  train = as_split(arrays["x_train"], arrays["y_train"], f"{path} train")
  test = as_split(arrays["x_test"], arrays["y_test"], f"{path} test")
  if train.images.shape[1:] != test.images.shape[1:]:
    raise DataError(f"data.path {path!r}: train images {train.images.shape[1:]} and test images "
                    f"{test.images.shape[1:]} differ in shape")
  return train, test

"""A local `.npz` file with arrays x_train, y_train, x_test, y_test.

The arrays' .npy headers are checked before any array is read: a malformed file or one whose
headers declare more data than it can hold stops with a one-line DataError, not a huge allocation.
"""

import math
import os
import zipfile
import zlib

import numpy as np

from fgjax.data.dataset import DataError, Split, as_split, check_layout

REQUIRED = ("x_train", "y_train", "x_test", "y_test")
# Deflate (np.savez_compressed) shrinks data at most 1032-fold; other zip methods count the same.
_MAX_COMPRESSION_RATIO = 1032
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}


def load_npz(path: str) -> tuple[Split, Split]:
  """Reads and checks the four arrays; every problem is a one-line DataError."""
  if not path:
    raise DataError("data.source='npz' needs data.path, the .npz file to read")
  if os.path.isdir(path):
    raise DataError(f"data.path {path!r} is a directory, not a .npz file")
  if not os.path.isfile(path):
    raise DataError(f"data.path {path!r}: no such file")
  try:
    with open(path, "rb") as f:
      if f.read(6) == b"\x93NUMPY":
        raise DataError(f"data.path {path!r} holds a single array, not an .npz archive of "
                        f"{list(REQUIRED)}")
    archive = zipfile.ZipFile(path)
  except zipfile.BadZipFile:
    raise DataError(f"data.path {path!r} is not a .npz file (not a zip archive, as np.savez "
                    "writes)") from None
  except OSError as error:
    raise DataError(f"data.path {path!r} cannot be read ({error})") from None
  with archive:
    members = {name.removesuffix(".npy"): name for name in archive.namelist()}
    missing = [name for name in REQUIRED if name not in members]
    if missing:
      raise DataError(f"data.path {path!r}: missing arrays {missing}; an npz dataset needs "
                      f"{list(REQUIRED)} (found {sorted(members)})")
    infos = {name: archive.getinfo(members[name]) for name in REQUIRED}
    headers = {name: _header(archive, info, path, name) for name, info in infos.items()}
    for split in ("train", "test"):
      check_layout(*headers[f"x_{split}"], *headers[f"y_{split}"], f"{path} {split}")
    if headers["x_train"][0][1:] != headers["x_test"][0][1:]:
      raise DataError(f"data.path {path!r}: train images {headers['x_train'][0][1:]} and test "
                      f"images {headers['x_test'][0][1:]} differ in shape")
    try:
      arrays = {name: np.lib.format.read_array(archive.open(info), allow_pickle=False)
                for name, info in infos.items()}
    except _READ_ERRORS as error:
      raise DataError(f"data.path {path!r}: an array cannot be read ({error})") from None
  return (as_split(arrays["x_train"], arrays["y_train"], f"{path} train"),
          as_split(arrays["x_test"], arrays["y_test"], f"{path} test"))


def _header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: str,
            name: str) -> tuple[tuple, np.dtype]:
  """The (shape, dtype) that member `info` declares, refused unless the file can hold that data."""
  try:
    with archive.open(info) as member:
      version = np.lib.format.read_magic(member)
      if version not in _HEADER_READERS:
        raise ValueError(f"unsupported .npy format version {version}")
      shape, _, dtype = _HEADER_READERS[version](member)
      header_bytes = member.tell()
  except _READ_ERRORS as error:
    raise DataError(f"data.path {path!r}: an array cannot be read ({name}: {error})") from None
  if dtype.hasobject:
    raise DataError(f"data.path {path!r}: an array cannot be read ({name} holds pickled Python "
                    "objects, which are not loaded)")
  declared = math.prod(shape) * dtype.itemsize
  # The zip directory's sizes are checked too: the compressed size against the file's, and the
  # uncompressed size against what the compressed bytes can expand to.
  room = min(info.file_size, info.compress_size * _MAX_COMPRESSION_RATIO) - header_bytes
  if declared > room or info.compress_size > os.path.getsize(path):
    raise DataError(f"data.path {path!r}: {name} declares shape {shape} of {dtype} "
                    f"({declared:,} bytes), more than its zip member holds "
                    f"({max(room, 0):,} bytes); the file is truncated or corrupt")
  return shape, dtype

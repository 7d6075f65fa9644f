"""Decoding many small images of one shape fast: the PNGs of a tfds dataset, all at once."""

import io
import struct
import zlib

import numpy as np
from PIL import Image

from fgjax.data.dataset import DataError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_PNG_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> gray, gray+alpha, RGB, RGBA
_PIL_MODE = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
CHANNELS = tuple(_PIL_MODE)  # the channel counts decode_images handles


def decode_images(encoded: list[bytes], shape: tuple, what: str = "images") -> np.ndarray:
  """Decodes encoded images, all of shape (H, W, C), into one uint8 array (N, H, W, C).

  PIL decodes one small PNG in ~100 us, mostly Python overhead: most of a load. Here the zlib
  stream of each simple 8-bit PNG is inflated alone (a few us) and PNG's row filters are undone
  for all images at once (`_unfilter`). Images that are not such simple PNGs (JPEG, extra chunks,
  several IDAT chunks, interlacing, palettes) are decoded one by one with PIL.
  """
  height, width, channels = shape
  header = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOR_TYPE[channels], 0, 0, 0)
  prefix = _PNG_SIGNATURE + _png_chunk(b"IHDR", header)[:-4]  # signature, IHDR without its CRC
  row_bytes = 1 + width * channels
  images = np.empty((len(encoded), height, width, channels), np.uint8)
  simple, rows = [], []
  for i, data in enumerate(encoded):
    filtered = _simple_png_rows(data, prefix, height * row_bytes)
    if filtered is None:
      images[i] = _decode_one(data, shape, what)
    else:
      simple.append(i)
      rows.append(filtered)
  if simple:
    filtered = np.frombuffer(b"".join(rows), np.uint8).reshape(len(simple), height, row_bytes)
    images[simple] = _unfilter(filtered, channels).reshape(len(simple), height, width, channels)
  return images


def _unfilter(rows: np.ndarray, channels: int) -> np.ndarray:
  """Undoes PNG's row filters (None, Sub, Up, Average, Paeth; PNG spec section 9) of images
  stacked as (N, H, 1 + W * C) filter-type-prefixed rows; returns their bytes (N, H, W * C).

  Sub depends only on the row itself, so all Sub rows are undone at once. Up, Average and Paeth
  depend on the row above, so rows go in order, each for all images at once; Average and Paeth
  also depend on the pixel to the left, so theirs go pixel by pixel, vectorised over the images.
  Sums are uint8 (or masked to 8 bits): PNG's arithmetic is modulo 256.
  """
  kinds = rows[:, :, 0]
  count, height, row_bytes = rows.shape[0], rows.shape[1], rows.shape[2] - 1
  width = row_bytes // channels
  out = np.zeros((count, height + 1, row_bytes), np.uint8)  # row 0: zeros above the first row
  out[:, 1:] = rows[:, :, 1:]  # None: the bytes as they are
  sub = kinds == 1  # x + left: a running sum per channel
  out[:, 1:][sub] = np.cumsum(out[:, 1:][sub].reshape(-1, width, channels), axis=1,
                              dtype=np.uint8).reshape(-1, row_bytes)
  for r in range(1, height + 1):
    kind = kinds[:, r - 1]
    up = np.flatnonzero(kind == 2)  # x + above
    out[up, r] += out[up, r - 1]
    for filter_kind in (3, 4):  # Average: x + (left + above) // 2; Paeth: x + paeth(l, a, al)
      which = np.flatnonzero(kind == filter_kind)
      if not which.size:
        continue
      x = out[which, r].reshape(-1, width, channels).astype(np.int16)
      b = out[which, r - 1].reshape(-1, width, channels).astype(np.int16)
      a = c = np.zeros_like(x[:, 0])
      for w in range(width):
        if filter_kind == 3:
          x[:, w] = (x[:, w] + (a + b[:, w]) // 2) & 255
        else:
          p = a + b[:, w] - c
          pa, pb, pc = np.abs(p - a), np.abs(p - b[:, w]), np.abs(p - c)
          x[:, w] = (x[:, w] + np.where((pa <= pb) & (pa <= pc), a,
                                        np.where(pb <= pc, b[:, w], c))) & 255
        a, c = x[:, w], b[:, w]
      out[which, r] = x.reshape(-1, row_bytes)
  return out[:, 1:]


def _simple_png_rows(data: bytes, prefix: bytes, size: int):
  """The `size` bytes of filtered rows of a PNG made of the signature and IHDR `prefix`, one IDAT
  chunk and IEND; None for any other encoded image."""
  idat_size = int.from_bytes(data[33:37], "big")
  if not (data[:29] == prefix and data[37:41] == b"IDAT" and len(data) == 57 + idat_size
          and data[-12:] == _PNG_IEND):
    return None
  try:
    rows = zlib.decompress(data[41:41 + idat_size])
  except zlib.error:
    return None
  return rows if len(rows) == size else None


def _png_chunk(kind: bytes, data: bytes) -> bytes:
  return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _decode_one(data: bytes, shape: tuple, what: str) -> np.ndarray:
  """One encoded image, in any format PIL reads, converted to the dataset's channels."""
  try:
    image = Image.open(io.BytesIO(data))
    image = image.convert(_PIL_MODE[shape[-1]]) if image.mode != _PIL_MODE[shape[-1]] else image
    pixels = np.asarray(image, np.uint8)
  except (OSError, ValueError) as error:
    raise DataError(f"{what}: an image cannot be decoded ({error})") from None
  if pixels.reshape(pixels.shape[:2] + (-1,)).shape != shape:
    raise DataError(f"{what}: an image has shape {pixels.shape}, the dataset says {shape}")
  return pixels.reshape(shape)

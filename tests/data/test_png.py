"""fgjax.data.png: the bulk PNG decoder against PIL, on every filter and on other encodings."""

import io
import struct
import zlib

import numpy as np
from PIL import Image
import pytest

from fgjax.data import png
from fgjax.data.dataset import DataError


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
  for image, one in zip(images, encoded):  # the test's encoder is right
    np.testing.assert_array_equal(_pil_decode(one).reshape(shape), image)
  np.testing.assert_array_equal(png.decode_images(encoded, shape), images)


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
  decoded = png.decode_images(encoded, shape)
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
    png.decode_images([encoded], (8, 8, 3), "cifar")
  assert message in str(error.value) and "\n" not in str(error.value)

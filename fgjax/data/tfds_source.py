"""tensorflow-datasets as a source: any tfds image-classification dataset with an `image`
(tfds.features.Image, fixed size, uint8) and a `label` (tfds.features.ClassLabel) feature.

Reading a prepared dataset needs no TensorFlow: array_record files are read in bulk and their
PNGs decoded together (about 2.5 s of CPU time for MNIST's 70,000 images, where tfds's own
example-by-example decoding takes ~15 s). Preparing a dataset (`data.download=True`) needs
TensorFlow, `pip install fgjax[prepare]`, and a network: when either is missing, loading stops at
once with a one-line DataError that says how else to provide the data, rather than entering tfds's
download retry loop (minutes, with no timeout).
"""

import difflib
import importlib.util
import io
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from fgjax.data.dataset import DataError, Split, as_split

SPLITS = ("train", "test")
# How long a download host may take to answer before the run stops as offline.
PROBE_TIMEOUT_SECONDS = 5.0

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_PNG_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> gray, gray+alpha, RGB, RGBA
_PIL_MODE = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def load_tfds(data_config) -> tuple[Split, Split, int]:
  """The train and test splits of tfds dataset `data.name` and its number of classes, read from
  `data.tfds_data_dir` (tfds's default when None), prepared first if `data.download`."""
  name, data_dir = data_config.name, data_config.tfds_data_dir
  builder = _builder(name, data_dir)
  shape, num_classes = _image_classification_info(builder)
  if not builder.is_prepared():
    if not data_config.download:
      raise _not_available(builder, "data.download is False")
    _prepare(builder, name, data_dir)
    builder = _builder(name, data_dir)
  train, test = (_read_split(builder, split, shape) for split in SPLITS)
  return train, test, num_classes


def _builder(name: str, data_dir):
  """`tfds.builder`, with tfds's multi-line errors for a bad name turned into one line."""
  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.DatasetNotFoundError:
    close = difflib.get_close_matches(name, tfds.list_builders(with_community_datasets=False))
    hint = (f"did you mean {' or '.join(repr(c) for c in close)}?" if close else
            "see https://www.tensorflow.org/datasets/catalog")
    raise DataError(f"unknown tfds dataset data.name={name!r}; {hint}") from None
  except (ValueError, AssertionError) as error:  # a bad config, version or name syntax
    message = str(error).splitlines()[0].rstrip(": ")
    raise DataError(f"tfds dataset data.name={name!r}: {message}") from None


def _not_available(builder, why: str) -> DataError:
  return DataError(
      f"tfds dataset {builder.info.full_name!r} is not prepared in {builder.data_dir_root} and "
      f"{why}; provide it in one of three ways: a prepared tfds dir "
      "(--config.data.tfds_data_dir=DIR), --config.data.download=True on a networked machine "
      "with TensorFlow (pip install fgjax[prepare]), or a local npz file "
      "(--config.data.source=npz --config.data.path=FILE.npz)")


def _prepare(builder, name: str, data_dir) -> None:
  """Downloads and prepares the dataset as array_record, the format readable without TensorFlow."""
  if importlib.util.find_spec("tensorflow") is None:
    raise _not_available(builder, "preparing it (data.download=True) needs TensorFlow, which is "
                         "not installed")
  unreachable = _unreachable_hosts(builder.url_infos or {})
  if unreachable:
    hosts = ("hosts " if len(unreachable) > 1 else "host ") + ", ".join(unreachable)
    raise _not_available(builder, f"its download {hosts} cannot be reached")
  tfds.builder(name, data_dir=data_dir, file_format="array_record").download_and_prepare()


def _unreachable_hosts(urls) -> list[str]:
  """The hosts among `urls` that do not answer a HEAD request within PROBE_TIMEOUT_SECONDS.

  tfds's downloader retries an unreachable host for minutes and passes no timeout, so a network
  that drops packets silently would hang it: probing first (honouring proxy settings, in daemon
  threads so that a hung DNS lookup cannot hold the run either) makes an offline run stop at once.
  """
  first_url = {}
  for url in urls:
    first_url.setdefault(urllib.parse.urlsplit(url).netloc, url)
  answered = set()

  def probe(host: str, url: str) -> None:
    try:
      urllib.request.urlopen(urllib.request.Request(url, method="HEAD"),
                             timeout=PROBE_TIMEOUT_SECONDS).close()
    except urllib.error.HTTPError:
      pass  # an HTTP error status is an answer
    except (OSError, ValueError):
      return
    answered.add(host)

  threads = [threading.Thread(target=probe, args=item, daemon=True) for item in first_url.items()]
  for thread in threads:
    thread.start()
  deadline = time.monotonic() + PROBE_TIMEOUT_SECONDS
  for thread in threads:
    thread.join(max(0.0, deadline - time.monotonic()))
  return sorted(set(first_url) - answered)


def _image_classification_info(builder) -> tuple[tuple, int]:
  """The image shape (H, W, C) and number of classes, from the dataset's info."""
  features = builder.info.features
  image = features["image"] if "image" in features else None
  label = features["label"] if "label" in features else None
  if not (isinstance(image, tfds.features.Image) and isinstance(label, tfds.features.ClassLabel)):
    raise DataError(f"tfds dataset {builder.info.full_name!r} has features {sorted(features)}; "
                    "fgjax needs an 'image' (tfds.features.Image) and a 'label' "
                    "(tfds.features.ClassLabel)")
  if (None in image.shape or image.shape[-1] not in _PIL_MODE
      or np.dtype(image.np_dtype) != np.uint8):
    raise DataError(f"tfds dataset {builder.info.full_name!r} has images of shape {image.shape} "
                    f"and dtype {np.dtype(image.np_dtype)}; fgjax needs fixed-size uint8 images "
                    "with 1 to 4 channels")
  return tuple(image.shape), label.num_classes


def _read_split(builder, split: str, shape: tuple) -> Split:
  """One split as a Split: array_record files in bulk; other random-access formats (parquet)
  example by example through tfds's own decoding."""
  what = f"tfds {builder.info.full_name} {split}"
  in_bulk = builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
  try:
    source = builder.as_data_source(split, deserialize_method=(
        tfds.decode.DeserializeMethod.RAW_BYTES if in_bulk else
        tfds.decode.DeserializeMethod.DESERIALIZE_AND_DECODE))
  except NotImplementedError:  # tfds reads only random-access formats without TensorFlow
    raise DataError(
        f"{what}: prepared as {builder.info.file_format.value} in {builder.data_dir}, which cannot "
        "be read without TensorFlow; prepare it as array_record (--config.data.download=True with "
        "a new --config.data.tfds_data_dir)") from None
  except (KeyError, ValueError) as error:  # e.g. a dataset without this split
    raise DataError(f"{what}: {str(error).splitlines()[0]}") from None
  if in_bulk:
    images, labels = _parse_records(source.__getitems__(range(len(source))), shape, what)
  else:
    examples = [source[i] for i in range(len(source))]
    images = np.stack([example["image"] for example in examples])
    labels = np.array([example["label"] for example in examples])
  return as_split(images, labels, what)


def _parse_records(records, shape: tuple, what: str) -> tuple[np.ndarray, np.ndarray]:
  """Serialized tf.train.Examples -> uint8 images (N, H, W, C) and int64 labels (N,)."""
  encoded, labels = [], np.empty(len(records), np.int64)
  for i, record in enumerate(records):
    feature = tf_example_pb2.Example.FromString(record).features.feature
    encoded.append(feature["image"].bytes_list.value[0])
    labels[i] = feature["label"].int64_list.value[0]
  return decode_images(encoded, shape, what), labels


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

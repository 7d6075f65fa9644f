"""tensorflow-datasets as a source: any tfds image-classification dataset with an `image`
(tfds.features.Image, fixed size, uint8) and a `label` (tfds.features.ClassLabel) feature.

Reading a prepared dataset needs no TensorFlow: array_record files are read in bulk and their images
decoded by Pillow into one array (about 3 s of CPU time for MNIST's 70,000 images, where tfds's
own example-by-example decoding takes ~15 s). Preparing a dataset (`data.download=True`) needs
TensorFlow, `pip install fgjax[prepare]`, and a network: when either is missing, loading stops at
once with a one-line DataError that says how else to provide the data, rather than entering tfds's
download retry loop (minutes, with no timeout).
"""

import difflib
import importlib.util
import io
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from fgjax.data.dataset import DataError, Split, as_split

# How long a download host may take to answer before the run stops as offline.
PROBE_TIMEOUT_SECONDS = 5.0
# Pillow's image mode for each channel count fgjax reads: gray, gray+alpha, RGB, RGBA.
PIL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


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
  train, test = (_read_split(builder, split, shape) for split in ("train", "test"))
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
  """The hosts among `urls` that do not answer a HEAD request (through any proxy) within
  PROBE_TIMEOUT_SECONDS, probed in daemon threads so that a hung DNS lookup cannot hold the run."""
  url_of = {urllib.parse.urlsplit(url).netloc: url for url in urls}  # one URL per host
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

  threads = [threading.Thread(target=probe, args=item, daemon=True) for item in url_of.items()]
  for thread in threads:
    thread.start()
  deadline = time.monotonic() + PROBE_TIMEOUT_SECONDS
  for thread in threads:
    thread.join(max(0.0, deadline - time.monotonic()))
  return sorted(set(url_of) - answered)


def _image_classification_info(builder) -> tuple[tuple, int]:
  """The image shape (H, W, C) and number of classes, from the dataset's info."""
  features = builder.info.features
  image = features["image"] if "image" in features else None
  label = features["label"] if "label" in features else None
  if not (isinstance(image, tfds.features.Image) and isinstance(label, tfds.features.ClassLabel)):
    raise DataError(f"tfds dataset {builder.info.full_name!r} has features {sorted(features)}; "
                    "fgjax needs an 'image' (tfds.features.Image) and a 'label' "
                    "(tfds.features.ClassLabel)")
  if (None in image.shape or image.shape[-1] not in PIL_MODES
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
  """Encoded images (PNG, JPEG: any format Pillow reads) -> one uint8 array (N, H, W, C), made
  without a NumPy array per image. Images of another mode (a palette, say) are converted to
  `shape`'s channels; an image of another size, or not an image, is a one-line DataError."""
  height, width, channels = shape
  mode = PIL_MODES[channels]
  pixels = bytearray()
  for data in encoded:
    try:
      image = Image.open(io.BytesIO(data))
      image = image if image.mode == mode else image.convert(mode)
      raw = image.tobytes()
    except (OSError, ValueError) as error:
      raise DataError(f"{what}: an image cannot be decoded ({error})") from None
    if image.size != (width, height):
      raise DataError(f"{what}: an image is {image.width}x{image.height} pixels, the dataset "
                      f"says {width}x{height}")
    pixels += raw
  return np.frombuffer(pixels, np.uint8).reshape((len(encoded),) + tuple(shape))

"""In-memory image-classification datasets: uint8 NHWC images and int32 labels per split."""

import dataclasses

import numpy as np

from fgjax.errors import DataError  # pylint: disable=unused-import (re-exported)


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # uint8, (N, H, W, C)
  labels: np.ndarray  # int32, (N,)

  def __len__(self) -> int:
    return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Train / validation / test splits and what a model needs to know about them."""
  name: str
  train: Split
  validation: Split
  test: Split
  num_classes: int
  pixel_mean: np.ndarray  # float32, (C,): images are fed as (x - mean) / std
  pixel_std: np.ndarray

  @property
  def image_shape(self) -> tuple:
    return tuple(self.train.images.shape[1:])


def check_layout(image_shape: tuple, image_dtype, label_shape: tuple, label_dtype,
                 what: str) -> None:
  """Raises a DataError unless the shapes and dtypes can make a non-empty Split. It needs no array
  data, so that a file's array headers are checked before anything large is read."""
  if len(image_shape) not in (3, 4):
    raise DataError(f"{what}: images must have shape (N, H, W) or (N, H, W, C), "
                    f"got {tuple(image_shape)}")
  if np.dtype(image_dtype) != np.uint8:
    raise DataError(f"{what}: images must be uint8 pixels 0..255, got dtype {image_dtype}")
  if len(label_shape) != 1 or label_shape[0] != image_shape[0]:
    raise DataError(f"{what}: labels must have shape ({image_shape[0]},), got {tuple(label_shape)}")
  if not np.issubdtype(label_dtype, np.integer):
    raise DataError(f"{what}: labels must be integers, got dtype {label_dtype}")
  if image_shape[0] == 0:
    raise DataError(f"{what}: the split is empty")
  if 0 in image_shape[1:]:
    raise DataError(f"{what}: images of shape {tuple(image_shape)} have no pixels")


def as_split(images, labels, what: str) -> Split:
  """Checks and converts arrays into a Split; images may be (N, H, W) or (N, H, W, C) uint8."""
  images, labels = np.asarray(images), np.asarray(labels)
  check_layout(images.shape, images.dtype, labels.shape, labels.dtype, what)
  if images.ndim == 3:
    images = images[..., None]
  if labels.min() < 0:
    raise DataError(f"{what}: labels must be >= 0, found {labels.min()}")
  if labels.max() > np.iinfo(np.int32).max:  # int32 would wrap them around silently
    raise DataError(f"{what}: labels must be < 2**31, found {labels.max()}")
  return Split(images=images, labels=labels.astype(np.int32))


def carve_validation(train: Split, validation_size: int, seed: int) -> tuple[Split, Split]:
  """Moves `validation_size` examples, chosen by a permutation from `seed`, out of `train`."""
  if not 0 < validation_size < len(train):
    raise DataError(f"data.validation_size must be in [1, {len(train) - 1}] for a training "
                    f"split of {len(train)} examples, got {validation_size}")
  order = np.random.default_rng(seed).permutation(len(train))
  held_out, kept = np.sort(order[:validation_size]), np.sort(order[validation_size:])
  take = lambda idx: Split(train.images[idx], train.labels[idx])
  return take(kept), take(held_out)


def pixel_statistics(train: Split, normalization: str) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel (mean, std) for "unit" scaling to [0, 1] or "standardize" on the train split."""
  channels = train.images.shape[-1]
  if normalization == "unit":
    return np.zeros(channels, np.float32), np.full(channels, 255.0, np.float32)
  if normalization == "standardize":
    # From each channel's histogram of the 256 pixel values: exact, and without a float copy of
    # the images (1.2 GB for CIFAR-10's training split).
    values = np.arange(256, dtype=np.float64)
    counts = np.stack([np.bincount(train.images[..., c].ravel(), minlength=256)
                       for c in range(channels)]).astype(np.float64)
    mean = counts @ values / counts.sum(1)
    std = np.sqrt(np.sum(counts * (values - mean[:, None]) ** 2, 1) / counts.sum(1))
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)
  raise DataError(
      f"unknown data.normalization {normalization!r}; choose 'unit' or 'standardize'")

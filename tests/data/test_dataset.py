"""The split helpers every source shares: as_split, carve_validation, pixel_statistics."""

import numpy as np
import pytest

from fgjax.data.dataset import DataError, Split, as_split, carve_validation, pixel_statistics


def _split(n=100, shape=(4, 4, 1), seed=0):
  rng = np.random.default_rng(seed)
  return Split(rng.integers(0, 256, (n,) + shape, dtype=np.uint8), np.arange(n, dtype=np.int32))


def test_as_split_adds_a_channel_axis_and_makes_labels_int32():
  split = as_split(np.zeros((3, 5, 6), np.uint8), np.array([0, 7, 2], np.uint8), "x")
  assert split.images.shape == (3, 5, 6, 1)
  assert split.labels.dtype == np.int32 and list(split.labels) == [0, 7, 2]
  assert len(split) == 3


@pytest.mark.parametrize("images, labels, message", [
    (np.zeros((3, 5), np.uint8), np.zeros(3, np.int64), "must have shape (N, H, W)"),
    (np.zeros((3, 5, 5, 1, 1), np.uint8), np.zeros(3, np.int64), "must have shape (N, H, W)"),
    (np.zeros((3, 5, 5), np.float32), np.zeros(3, np.int64), "uint8"),
    (np.zeros((3, 5, 5), np.uint8), np.zeros(4, np.int64), "labels must have shape (3,)"),
    (np.zeros((3, 5, 5), np.uint8), np.zeros((3, 1), np.int64), "labels must have shape (3,)"),
    (np.zeros((3, 5, 5), np.uint8), np.zeros(3, np.float32), "labels must be integers"),
    (np.zeros((0, 5, 5), np.uint8), np.zeros(0, np.int64), "empty"),
    (np.zeros((3, 0, 5), np.uint8), np.zeros(3, np.int64), "images of shape (3, 0, 5) have no"),
    (np.zeros((3, 5, 5, 0), np.uint8), np.zeros(3, np.int64), "have no pixels"),
    (np.zeros((3, 5, 5), np.uint8), np.array([0, -1, 2]), "labels must be >= 0"),
    (np.zeros((3, 5, 5), np.uint8), np.array([0, 2**32, 2]), "labels must be < 2**31"),
])
def test_as_split_rejects_malformed_arrays_in_one_line(images, labels, message):
  with pytest.raises(DataError, match="^what: ") as error:
    as_split(images, labels, "what")
  assert message in str(error.value) and "\n" not in str(error.value)


def test_carve_validation_moves_a_seeded_subset_out_of_train():
  train = _split(100)
  kept, held_out = carve_validation(train, 30, seed=1)
  assert (len(kept), len(held_out)) == (70, 30)
  # Labels are example ids here: the two parts are disjoint, cover train and keep its order.
  assert sorted(np.concatenate([kept.labels, held_out.labels])) == list(range(100))
  assert all(np.diff(kept.labels) > 0) and all(np.diff(held_out.labels) > 0)
  np.testing.assert_array_equal(kept.images, train.images[kept.labels])
  np.testing.assert_array_equal(held_out.images, train.images[held_out.labels])
  again = carve_validation(train, 30, seed=1)[1]
  other = carve_validation(train, 30, seed=2)[1]
  np.testing.assert_array_equal(again.labels, held_out.labels)
  assert not np.array_equal(other.labels, held_out.labels)


@pytest.mark.parametrize("size", [0, -1, 100, 101])
def test_carve_validation_rejects_sizes_that_leave_a_split_empty(size):
  with pytest.raises(DataError, match=r"validation_size must be in \[1, 99\]"):
    carve_validation(_split(100), size, seed=0)


def test_unit_scaling_maps_pixels_to_0_1():
  mean, std = pixel_statistics(_split(shape=(4, 4, 3)), "unit")
  assert mean.dtype == std.dtype == np.float32
  np.testing.assert_array_equal(mean, [0, 0, 0])
  np.testing.assert_array_equal(std, [255, 255, 255])


def test_standardize_gives_the_train_split_per_channel_mean_and_std():
  train = _split(500, shape=(6, 5, 3))
  train.images[..., 1] //= 4  # channels with different statistics
  train.images[..., 2] = 7  # a constant channel: std clamped away from 0
  mean, std = pixel_statistics(train, "standardize")
  pixels = train.images.reshape(-1, 3).astype(np.float64)
  np.testing.assert_allclose(mean, pixels.mean(0), rtol=1e-6)
  np.testing.assert_allclose(std[:2], pixels.std(0)[:2], rtol=1e-6)
  assert mean[2] == 7 and std[2] == np.float32(1e-6)


def test_unknown_normalization_is_a_data_error():
  with pytest.raises(DataError, match="unknown data.normalization 'zscore'"):
    pixel_statistics(_split(), "zscore")

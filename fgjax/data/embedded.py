"""Datasets that ship inside an installed package, for runs that need no download."""

import numpy as np

from fgjax.data.dataset import Split, as_split

# scikit-learn's digits have no official test split: a fixed 20% of them is ours, the same for
# every run and seed, so that test numbers stay comparable.
_DIGITS_TEST_FRACTION = 0.2
_DIGITS_SPLIT_SEED = 20260101

EMBEDDED = ("digits",)


def load_digits() -> tuple[Split, Split, int]:
  """scikit-learn's 1,797 handwritten 8x8 digits (UCI), pixels 0..16 rescaled to uint8 0..255."""
  from sklearn.datasets import load_digits as sklearn_digits  # pylint: disable=g-import-not-at-top

  digits = sklearn_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
  labels = digits.target
  order = np.random.default_rng(_DIGITS_SPLIT_SEED).permutation(len(labels))
  num_test = int(round(len(labels) * _DIGITS_TEST_FRACTION))
  test, train = np.sort(order[:num_test]), np.sort(order[num_test:])
  return (as_split(images[train], labels[train], "digits train"),
          as_split(images[test], labels[test], "digits test"), 10)

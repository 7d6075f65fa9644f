"""Fixtures shared by the experiments' tests."""

import numpy as np
import pytest

from fgjax.data import embedded


@pytest.fixture
def tiny_mnist(tmp_path) -> str:
  """The path of a stand-in for MNIST's .npz: Table I's rows carve 10,000 validation images, so
  the embedded digits are tiled to 10,064 training images (one batch of 64 left to train on),
  with 100 test images."""
  train_split, test_split, _ = embedded.load_digits()
  path = str(tmp_path / "tiny.npz")
  np.savez(path, x_train=np.resize(train_split.images[..., 0], (10064, 8, 8)),
           y_train=np.resize(train_split.labels, (10064,)),
           x_test=test_split.images[:100, ..., 0], y_test=test_split.labels[:100])
  return path

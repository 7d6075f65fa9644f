"""Rike & Forland, "Testing forward gradients performance for Adam and SGD with momentum":
what their Table I reports, and the setup its rows share.

The hyperparameters of each row live in its config file (`configs/<row>.py`); this module holds
the setup common to all rows and the paper's reported test losses, which the reproduction
scripts print next to ours.
"""

from fgjax import default_config

# Table I's test loss after the row's epochs, by config name.
PAPER_TEST_LOSS = {
    "mnist_mlp_sgd_fwd": 0.332, "mnist_mlp_sgd_bp": 0.000,
    "mnist_mlp_nesterov_fwd": 0.270, "mnist_mlp_nesterov_bp": 0.000,
    "mnist_mlp_adam_fwd": 0.283, "mnist_mlp_adam_bp": 0.000,
    "mnist_cnn_sgd_fwd": 0.548, "mnist_cnn_sgd_bp": 0.000,
    "mnist_cnn_nesterov_fwd": 0.559, "mnist_cnn_nesterov_bp": 0.000,
    "mnist_cnn_adam_fwd": 0.669, "mnist_cnn_adam_bp": 0.000,
    "cifar_fwd": 6.955, "cifar_bp": 1.685,
}

TABLE_I_ROWS = tuple(PAPER_TEST_LOSS)


def row_config(dataset: str, model: str, optimizer: str, estimator: str):
  """The setup shared by Table I's rows: batch 64, 50 MNIST / 100 CIFAR-10 epochs, a validation
  split of 10,000 training examples, and, for forward gradients, the directional derivative
  clipped to [-1, 1] as the paper did. The caller sets the row's own hyperparameters."""
  config = default_config.base_config()
  config.estimator = estimator
  config.model = model
  config.optimizer = optimizer
  config.batch_size = 64
  config.num_epochs = 100 if dataset == "cifar10" else 50
  config.log_every_steps = 100
  config.data.name = dataset
  config.data.source = "tfds"
  config.data.validation_size = 10000
  if estimator == "forward":
    config.jvp_clip = 1.0
  return config

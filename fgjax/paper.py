"""Rike & Forland, "Testing forward gradients performance for Adam and SGD with momentum":
what their Table I reports, and the setup its rows share.

The hyperparameters of each row live in its config file (`configs/<row>.py`); this module holds
the setup common to all rows and the paper's reported test losses, which the reproduction
scripts print next to ours.
"""

from fgjax import default_config

# Table I's test loss after the row's epochs, by config name. The code printed the mean loss of
# the last batch of a shuffled test loader (10,000 mod 64 = 16 examples), with the row's training
# loss: clamped cross-entropy for forward rows (at most ~15.94 per example), plain for backprop.
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


def row_config(dataset: str, model: str, optimizer: str, forward: bool):
  """The setup shared by Table I's rows, as the paper's code ran it: its forward-gradient code
  (`forward`, estimator "forward") or its backprop code (estimator "backprop").

  All rows: batch 64, 50 MNIST / 100 CIFAR-10 epochs, a validation split of 10,000 training
  examples, pixels / 255, and PyTorch's default initialisation (init="torch").
  Forward rows minimise the clamped cross-entropy of the authors' loss.py; backprop rows the plain
  one (nn.CrossEntropyLoss). Forward SGD and Nesterov clip the directional derivative to [-1, 1];
  the forward Adam class was never given its clip, and puts its 1e-8 inside the square root
  (eps=0, eps_root=1e-8), where torch.optim.Adam, in the backprop rows, adds eps=1e-8 outside it.
  The caller sets the row's own hyperparameters.
  """
  config = default_config.base_config()
  config.estimator = "forward" if forward else "backprop"
  config.model = model
  config.optimizer = optimizer
  config.init = "torch"
  config.batch_size = 64
  config.num_epochs = 100 if dataset == "cifar10" else 50
  config.log_every_steps = 100
  config.data.name = dataset
  config.data.source = "tfds"
  config.data.validation_size = 10000
  config.data.normalization = "unit"
  config.loss = "clamped_cross_entropy" if forward else "cross_entropy"
  config.jvp_clip = 1.0 if forward and optimizer != "adam" else None
  if optimizer == "adam":
    config.eps, config.eps_root = (0.0, 1e-8) if forward else (1e-8, 0.0)
  return config

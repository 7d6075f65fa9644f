"""Table I row: forward gradient, MNIST CNN (4 conv 64, dense 1024), MNIST, SGD with Nesterov momentum, 50 epochs, batch 64.

  python -m fgjax.main --config=configs/mnist_cnn_nesterov_fwd.py --workdir=runs/mnist_cnn_nesterov_fwd

Paper's test loss: 0.559. Ours: experiments/results/table1.md (python -m experiments.table1).

As the paper's code ran it:
- PyTorch's default initialisation (init="torch"), as the code's nn.Linear and nn.Conv2d had.
- Trained on the clamped cross-entropy of the code's loss.py (loss="clamped_cross_entropy").
- The directional derivative is clipped to [-1, 1], as the paper did; the paper
  names no gradient-norm bound, so grad_clip_norm stays off.
- Nesterov in the code's look-ahead form, v <- mu v - gamma_t g(theta + mu v); the
  parameters hold the look-ahead point theta + mu v.
- Evaluated at theta, as the code's optimizer class holds it (nesterov_evaluate="base"):
  validation and test losses of theta = parameters - mu v, not of the look-ahead point.
"""

from fgjax import paper


def get_config():
  config = paper.row_config("mnist", "cnn", "nesterov", forward=True)
  config.learning_rate = 0.0001
  config.decay = 0.0001
  config.momentum = 0.9
  config.nesterov_evaluate = "base"
  return config

"""Table I row: forward gradient, MLP (1024-1024-10), MNIST, SGD with Nesterov momentum, 50 epochs, batch 64.

  python -m fgjax.main --config=configs/mnist_mlp_nesterov_fwd.py --workdir=runs/mnist_mlp_nesterov_fwd

Paper's test loss: 0.270. Ours: experiments/results/table1.md (python -m experiments.table1).

As the paper's code ran it:
- PyTorch's default initialisation (init="torch"), as the code's nn.Linear and nn.Conv2d had.
- Trained on the clamped cross-entropy of the code's loss.py (loss="clamped_cross_entropy").
- The directional derivative is clipped to [-1, 1], as the paper did; the paper
  names no gradient-norm bound, so grad_clip_norm stays off.
- Nesterov in the code's look-ahead form, v <- mu v - gamma_t g(theta + mu v); the
  parameters hold the look-ahead point theta + mu v.
- Evaluated at theta, as the code's optimizer class holds it (nesterov_evaluate="base"):
  validation and test losses of theta = parameters - mu v, not of the look-ahead point.
- decay 1e-6, where Table I prints 1e-5: the code passed no decay, so its
  optimizer's default 1e-6 applied.
"""

from fgjax import paper


def get_config():
  config = paper.row_config("mnist", "mlp", "nesterov", forward=True)
  config.learning_rate = 0.00032
  config.decay = 1e-06
  config.momentum = 0.367
  config.nesterov_evaluate = "base"
  return config

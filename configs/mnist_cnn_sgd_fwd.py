"""Table I row: forward gradient, MNIST CNN (4 conv 64, dense 1024), MNIST, SGD, 50 epochs, batch 64.

  python -m fgjax.main --config=configs/mnist_cnn_sgd_fwd.py --workdir=runs/mnist_cnn_sgd_fwd

Paper's test loss: 0.548. Ours: experiments/results/table1.md (python -m experiments.table1).

As the paper's code ran it:
- PyTorch's default initialisation (init="torch"), as the code's nn.Linear and nn.Conv2d had.
- Trained on the clamped cross-entropy of the code's loss.py (loss="clamped_cross_entropy").
- The directional derivative is clipped to [-1, 1], as the paper did; the paper
  names no gradient-norm bound, so grad_clip_norm stays off.
"""

from fgjax import paper


def get_config():
  config = paper.row_config("mnist", "cnn", "sgd", forward=True)
  config.learning_rate = 0.000398
  config.decay = 1e-05
  return config

"""Table I row: forward gradient, MNIST CNN (4 conv 64, dense 1024), MNIST, SGD with Nesterov momentum, 50 epochs, batch 64.

  python -m fgjax.main --config=configs/mnist_cnn_nesterov_fwd.py --workdir=runs/mnist_cnn_nesterov_fwd

Paper's test loss: 0.559. Ours: experiments/results/table1.md (experiments/table1.py).
The directional derivative is clipped to [-1, 1], as the paper did; the paper
names no gradient-norm bound, so grad_clip_norm stays off.
"""

from fgjax import paper


def get_config():
  config = paper.row_config("mnist", "cnn", "nesterov", "forward")
  config.learning_rate = 0.0001
  config.decay = 0.0001
  config.momentum = 0.9
  return config

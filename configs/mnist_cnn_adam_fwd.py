"""Table I row: forward gradient, MNIST CNN (4 conv 64, dense 1024), MNIST, Adam, 50 epochs, batch 64.

  python -m fgjax.main --config=configs/mnist_cnn_adam_fwd.py --workdir=runs/mnist_cnn_adam_fwd

Paper's test loss: 0.669. Ours: experiments/results/table1.md (experiments/table1.py).
The directional derivative is clipped to [-1, 1], as the paper did; the paper
names no gradient-norm bound, so grad_clip_norm stays off.
"""

from fgjax import paper


def get_config():
  config = paper.row_config("mnist", "cnn", "adam", "forward")
  config.learning_rate = 0.00025
  config.decay = 0.0001
  config.b1 = 0.9
  config.b2 = 0.9999
  return config

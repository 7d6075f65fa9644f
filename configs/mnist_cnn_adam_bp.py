"""Table I row: backprop, MNIST CNN (4 conv 64, dense 1024), MNIST, Adam, 50 epochs, batch 64.

  python -m fgjax.main --config=configs/mnist_cnn_adam_bp.py --workdir=runs/mnist_cnn_adam_bp

Paper's test loss: 0.000. Ours: experiments/results/table1.md (experiments/table1.py).
"""

from fgjax import paper


def get_config():
  config = paper.row_config("mnist", "cnn", "adam", "backprop")
  config.learning_rate = 0.000236
  config.decay = 0
  config.b1 = 0.9
  config.b2 = 0.999
  return config

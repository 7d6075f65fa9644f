"""Table I row: forward gradient, MLP (1024-1024-10), MNIST, Adam, 50 epochs, batch 64.

  python -m fgjax.main --config=configs/mnist_mlp_adam_fwd.py --workdir=runs/mnist_mlp_adam_fwd

Paper's test loss: 0.283. Ours: experiments/results/table1.md (experiments/table1.py).
The directional derivative is clipped to [-1, 1], as the paper did; the paper
names no gradient-norm bound, so grad_clip_norm stays off.
"""

from fgjax import paper


def get_config():
  config = paper.row_config("mnist", "mlp", "adam", "forward")
  config.learning_rate = 0.0005
  config.decay = 5e-05
  config.b1 = 0.99
  config.b2 = 0.999
  return config

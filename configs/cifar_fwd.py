"""Table I row: forward gradient, VGG-style CNN (64-128-256 blocks, dense 1024), CIFAR-10, SGD, 100 epochs, batch 64.

  python -m fgjax.main --config=configs/cifar_fwd.py --workdir=runs/cifar_fwd

Paper's test loss: 6.955. Ours: experiments/results/table1.md (experiments/table1.py).
The directional derivative is clipped to [-1, 1], as the paper did; the paper
names no gradient-norm bound, so grad_clip_norm stays off.
The paper leaves the dense head unsaid: ours is Dense 1024 -> ReLU -> Dense 10.
CIFAR-10 must be prepared once with tfds on a networked machine (see README).
"""

from fgjax import paper


def get_config():
  config = paper.row_config("cifar10", "vgg", "sgd", "forward")
  config.learning_rate = 0.000433
  config.decay = 1e-06
  return config

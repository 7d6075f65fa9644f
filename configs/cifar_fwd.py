"""Table I row: forward gradient, VGG-style CNN (64-128-256 blocks, dense 4096), CIFAR-10, SGD, 100 epochs, batch 64.

  python -m fgjax.main --config=configs/cifar_fwd.py --workdir=runs/cifar_fwd

Paper's test loss: 6.955. Ours: experiments/results/table1.md (python -m experiments.table1).

As the paper's code ran it:
- PyTorch's default initialisation (init="torch"), as the code's nn.Linear and nn.Conv2d had.
- Trained on the clamped cross-entropy of the code's loss.py (loss="clamped_cross_entropy").
- The directional derivative is clipped to [-1, 1], as the paper did; the paper
  names no gradient-norm bound, so grad_clip_norm stays off.
- The paper leaves the dense part unsaid; the code's CifarNet, followed here, has
  Dense 4096 -> ReLU -> Dense 10.
CIFAR-10 must be prepared once with tfds on a networked machine (see docs/running.md).
"""

from fgjax import paper


def get_config():
  config = paper.row_config("cifar10", "vgg", "sgd", forward=True)
  config.learning_rate = 0.000433
  config.decay = 1e-06
  return config

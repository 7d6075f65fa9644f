"""Table I row: backprop, VGG-style CNN (64-128-256 blocks, dense 4096), CIFAR-10, SGD, 100 epochs, batch 64.

  python -m fgjax.main --config=configs/cifar_bp.py --workdir=runs/cifar_bp

Paper's test loss: 1.685. Ours: experiments/results/table1.md (python -m experiments.table1).

As the paper's code ran it:
- PyTorch's default initialisation (init="torch"), as the code's nn.Linear and nn.Conv2d had.
- Trained on the plain cross-entropy (nn.CrossEntropyLoss).
- The paper leaves the dense part unsaid; the code's CifarNet, followed here, has
  Dense 4096 -> ReLU -> Dense 10.
CIFAR-10 must be prepared once with tfds on a networked machine (see docs/running.md).
"""

from fgjax import paper


def get_config():
  config = paper.row_config("cifar10", "vgg", "sgd", forward=False)
  config.learning_rate = 0.01
  config.decay = 0.0001
  return config

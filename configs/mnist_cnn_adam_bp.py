"""Table I row: backprop, MNIST CNN (4 conv 64, dense 1024), MNIST, Adam, 50 epochs, batch 64.

  python -m fgjax.main --config=configs/mnist_cnn_adam_bp.py --workdir=runs/mnist_cnn_adam_bp

Paper's test loss: 0.000. Ours: experiments/results/table1.md (python -m experiments.table1).

As the paper's code ran it:
- PyTorch's default initialisation (init="torch"), as the code's nn.Linear and nn.Conv2d had.
- Trained on the plain cross-entropy (nn.CrossEntropyLoss).
- torch.optim.Adam's defaults: eps=1e-8 outside the square root (eps_root=0).
"""

from fgjax import paper


def get_config():
  config = paper.row_config("mnist", "cnn", "adam", forward=False)
  config.learning_rate = 0.000236
  config.decay = 0
  config.b1 = 0.9
  config.b2 = 0.999
  return config

"""Table I row: backprop, MNIST CNN (4 conv 64, dense 1024), MNIST, SGD with Nesterov momentum, 50 epochs, batch 64.

  python -m fgjax.main --config=configs/mnist_cnn_nesterov_bp.py --workdir=runs/mnist_cnn_nesterov_bp

Paper's test loss: 0.000. Ours: experiments/results/table1.md (python -m experiments.table1).

As the paper's code ran it:
- PyTorch's default initialisation (init="torch"), as the code's nn.Linear and nn.Conv2d had.
- Trained on the plain cross-entropy (nn.CrossEntropyLoss).
- torch.optim.SGD(nesterov=True) at a constant step size, where it equals the
  look-ahead form; its parameters are the look-ahead point, where it also evaluated
  the model (nesterov_evaluate="lookahead").
"""

from fgjax import paper


def get_config():
  config = paper.row_config("mnist", "cnn", "nesterov", forward=False)
  config.learning_rate = 0.01
  config.decay = 0
  config.momentum = 0.783
  config.nesterov_evaluate = "lookahead"
  return config

"""Table I row: forward gradient, MNIST CNN (4 conv 64, dense 1024), MNIST, Adam, 50 epochs, batch 64.

  python -m fgjax.main --config=configs/mnist_cnn_adam_fwd.py --workdir=runs/mnist_cnn_adam_fwd

Paper's test loss: 0.669. Ours: experiments/results/table1.md (python -m experiments.table1).

As the paper's code ran it:
- PyTorch's default initialisation (init="torch"), as the code's nn.Linear and nn.Conv2d had.
- Trained on the clamped cross-entropy of the code's loss.py (loss="clamped_cross_entropy").
- No directional-derivative clip (jvp_clip=None): the code never passed one to its
  forward Adam, though the paper says it clipped in all models. The 1e-8 is added
  inside the square root, m_hat / sqrt(v_hat + 1e-8): eps=0, eps_root=1e-8.
"""

from fgjax import paper


def get_config():
  config = paper.row_config("mnist", "cnn", "adam", forward=True)
  config.learning_rate = 0.00025
  config.decay = 0.0001
  config.b1 = 0.9
  config.b2 = 0.9999
  return config

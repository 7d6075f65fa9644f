"""Table I row: forward gradient, MLP (1024-1024-10), MNIST, Adam, 50 epochs, batch 64.

  python -m fgjax.main --config=configs/mnist_mlp_adam_fwd.py --workdir=runs/mnist_mlp_adam_fwd

Paper's test loss: 0.283. Ours: experiments/results/table1.md (python -m experiments.table1).

As the paper's code ran it:
- PyTorch's default initialisation (init="torch"), as the code's nn.Linear and nn.Conv2d had.
- Trained on the clamped cross-entropy of the code's loss.py (loss="clamped_cross_entropy").
- No directional-derivative clip (jvp_clip=None): the code never passed one to its
  forward Adam, though the paper says it clipped in all models. The 1e-8 is added
  inside the square root, m_hat / sqrt(v_hat + 1e-8): eps=0, eps_root=1e-8.
"""

from fgjax import paper


def get_config():
  config = paper.row_config("mnist", "mlp", "adam", forward=True)
  config.learning_rate = 0.0005
  config.decay = 5e-05
  config.b1 = 0.99
  config.b2 = 0.999
  return config

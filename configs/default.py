"""The default comparison: forward gradient vs backprop on the embedded `digits` dataset.

scikit-learn's 1,797 8x8 handwritten digits ship inside the installed package, so this runs with
no download. `get_config("forward")` and `get_config("backprop")` give the two sides; each uses
the paper's MLP, SGD, batch 64.

  python -m fgjax.compare --workdir=runs/default            # both sides, a table at the end
  python -m fgjax.main --config=configs/default.py:forward --workdir=runs/default_fwd
"""

from fgjax import default_config


def get_config(estimator: str = "forward"):
  config = default_config.base_config()
  config.estimator = estimator
  config.model = "mlp"
  config.optimizer = "sgd"
  config.num_epochs = 50
  config.log_every_steps = 17
  config.data.name = "digits"
  config.data.source = "embedded"
  config.data.validation_size = 360
  if estimator == "forward":
    config.learning_rate = 3e-3
    config.jvp_clip = 1.0
  else:
    config.learning_rate = 0.1
  return config

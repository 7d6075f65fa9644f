"""The default comparison: gradient estimators vs backprop on the embedded `digits` dataset.

scikit-learn's 1,797 8x8 handwritten digits ship inside the installed package, so this runs with
no download. `get_config(name)` gives one side, each with the paper's MLP, SGD and batch 64:

- "forward": the weight-perturbation forward gradient (one tangent, jvp_clip 1);
- "backprop": the exact gradient;
- "activity": activity perturbation of the model's loss (Ren et al., 2023), 32 tangents;
- "local_activity": activity perturbation with a local loss per block, 32 tangents;
- "forward_projection": the forward gradient of 8 tangents, projected onto their span (Flügel
  et al.) rather than averaged.

The settings of the last three were chosen on the validation split by a few runs of 6 and 12
epochs (96 and 192 steps), the other settings as here. activity and local_activity: learning rates
0.001-0.3 with 1, 4, 16 or 32 tangents, and with one tangent global-norm or derivative clipping,
which helped little. The noise grows with the units that share one derivative per example
(2,058 in the MLP, 1,034 per local block) and falls as 1 / K; with 32 tangents a rate of 0.1
reached validation losses of 0.17 (activity) and 0.23 (local_activity) after 192 steps, backprop
0.19 after 96; 0.3 diverged.
forward_projection: learning rates 1e3, 3e3, 5e3 and 1e4. With K = 8 tangents in n = 1.1M
dimensions the projection is about K / n times the mean of the 8 estimates, so its learning rate
is about n / K times the mean's (3e3 here against 0.024: the same steps); 3e3 reached 0.68 after
192 steps, 5e3 and 1e4 overshot.

  python -m fgjax.compare --workdir=runs/default            # forward and backprop, a table
  python -m fgjax.main --config=configs/default.py:activity --workdir=runs/default_activity
"""

from fgjax import default_config
from fgjax.config_loading import ConfigError

# Each side's changes to the shared settings below.
SIDES = {
    "forward": dict(estimator="forward", learning_rate=3e-3, jvp_clip=1.0),
    "backprop": dict(estimator="backprop", learning_rate=0.1),
    "activity": dict(estimator="activity", learning_rate=0.1, num_directions=32),
    "local_activity": dict(estimator="local_activity", learning_rate=0.1, num_directions=32),
    "forward_projection": dict(estimator="forward", combine="projection", num_directions=8,
                               learning_rate=3e3, jvp_clip=1.0),
}


def get_config(side: str = "forward"):
  if side not in SIDES:
    raise ConfigError(f"unknown side {side!r}; choose one of {list(SIDES)}")
  config = default_config.base_config()
  config.model = "mlp"
  config.optimizer = "sgd"
  config.num_epochs = 50
  config.log_every_steps = 17
  config.data.name = "digits"
  config.data.source = "embedded"
  config.data.validation_size = 360
  config.update(SIDES[side])
  return config

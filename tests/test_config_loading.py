"""fgjax.config_loading: the names of config specs."""

from fgjax import config_loading


def test_run_name():
  assert config_loading.run_name("configs/default.py:forward") == "default_forward"
  assert config_loading.run_name("configs/mnist_mlp_sgd_bp.py") == "mnist_mlp_sgd_bp"

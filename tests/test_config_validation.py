"""fgjax.config_validation: every bad field is named in one line; good configs pass."""

import glob
import os

import ml_collections
import pytest

from fgjax import config_loading
from fgjax import config_validation
from fgjax import default_config
from fgjax import estimators
from fgjax.config_loading import ConfigError

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "configs")

# (field, bad value, what the message must say)
BAD_FIELDS = [
    ("model", "resnet", "model 'resnet' is unknown; choose one of ['cnn', 'mlp', 'vgg']"),
    ("estimator", "reverse", "estimator 'reverse' is unknown"),
    ("optimizer", "rmsprop", "optimizer 'rmsprop' is unknown"),
    ("tangent", "uniform", "tangent 'uniform' is unknown"),
    ("on_nonfinite", "ignore", "on_nonfinite 'ignore' is unknown; choose one of ['skip', 'stop']"),
    ("data.source", "web", "data.source 'web' is unknown"),
    ("init", "xavier", "init 'xavier' is unknown; choose one of ['flax', 'torch']"),
    ("loss", "hinge",
     "loss 'hinge' is unknown; choose one of ['clamped_cross_entropy', 'cross_entropy']"),
    ("learning_rate", 0.0, "learning_rate must be > 0, got 0.0"),
    ("learning_rate", -0.1, "learning_rate must be > 0, got -0.1"),
    ("learning_rate", float("nan"), "learning_rate must be a finite number, got nan"),
    ("learning_rate", "0.1", "learning_rate must be a finite number, got '0.1'"),
    ("decay", -1e-4, "decay must be >= 0, got -0.0001"),
    ("momentum", 1.0, "momentum must be in [0, 1), got 1.0"),
    ("momentum", -0.5, "momentum must be in [0, 1), got -0.5"),
    ("b1", 1.0, "b1 must be in [0, 1), got 1.0"),
    ("b2", 1.5, "b2 must be in [0, 1), got 1.5"),
    ("eps", -1e-8, "eps must be >= 0"),
    ("eps_root", -1e-8, "eps_root must be >= 0, got -1e-08"),
    ("eps_root", float("inf"), "eps_root must be a finite number, got inf"),
    ("jvp_clip", 0.0, "jvp_clip must be a positive number or None (off), got 0.0"),
    ("grad_clip_norm", -1.0, "grad_clip_norm must be a positive number or None (off), got -1.0"),
    ("batch_size", 0, "batch_size must be >= 1, got 0"),
    ("batch_size", 6.4, "batch_size must be an integer, got 6.4"),
    ("num_epochs", 0, "num_epochs must be >= 1, got 0"),
    ("num_directions", 0, "num_directions must be >= 1, got 0"),
    ("unit_groups", 0, "unit_groups must be >= 1, got 0"),
    ("unit_groups", 4, "unit_groups > 1 needs estimator 'activity' or 'local_activity' and "
     "combine 'mean'"),
    ("exact_heads", 1, "exact_heads must be True or False, got 1"),
    ("exact_heads", True, "exact_heads needs estimator 'activity' or 'local_activity'"),
    ("local_heads.slices", -1, "local_heads.slices must be >= 0, got -1"),
    ("local_heads.slices", 4, "local_heads.slices other than 1 needs estimator 'local_activity' or "
     "'local_backprop', combine 'mean' and unit_groups 1"),
    ("local_heads.slice_head", "joint", "local_heads.slice_head 'joint' is unknown; choose one "
     "of ['separate', 'shared']"),
    ("local_heads.loss_per", "unit", "local_heads.loss_per 'unit' is unknown; choose one of "
     "['block', 'layer']"),
    ("local_heads.patches", -1, "local_heads.patches must be >= 0, got -1"),
    ("local_heads.patches", 2, "local_heads.patches other than 1 needs estimator 'local_activity' or "
     "'local_backprop'"),
    ("eval_batch_size", -5, "eval_batch_size must be >= 1, got -5"),
    ("log_every_steps", 0, "log_every_steps must be >= 1, got 0"),
    ("checkpoint_every_steps", 0, "checkpoint_every_steps must be >= 1, got 0"),
    ("keep_checkpoints", 0, "keep_checkpoints must be >= 1, got 0"),
    ("data.validation_size", 0, "data.validation_size must be >= 1, got 0"),
    ("data.split_seed", -1, "data.split_seed must be >= 0, got -1"),
    ("sharding.data_parallel", "yes", "sharding.data_parallel must be True or False, got 'yes'"),
    ("sharding.num_devices", 0, "sharding.num_devices must be >= 1, got 0"),
]


def digits_config():
  return config_loading.load_config(os.path.join(CONFIG_DIR, "default.py") + ":forward")


def with_field(config, field, value):
  """`config` with `field` set to `value`, whatever its type (as a config file could)."""
  config = config.to_dict()
  group = config
  *parents, name = field.split(".")
  for parent in parents:
    group = group[parent]
  group[name] = value
  return ml_collections.ConfigDict(config)


@pytest.mark.parametrize("field,value,message", BAD_FIELDS,
                         ids=[f"{f}={v!r}" for f, v, _ in BAD_FIELDS])
def test_bad_field_is_named(field, value, message):
  with pytest.raises(ConfigError) as error:
    config_validation.validate(with_field(digits_config(), field, value))
  assert str(error.value).startswith(f"invalid config: {message}")
  assert "\n" not in str(error.value)


def test_every_problem_is_listed_in_one_line():
  config = digits_config()
  config.model, config.learning_rate, config.b1 = "resnet", -1.0, 1.0
  with pytest.raises(ConfigError) as error:
    config_validation.validate(config)
  assert str(error.value) == (
      "invalid config: model 'resnet' is unknown; choose one of ['cnn', 'mlp', 'vgg']; "
      "learning_rate must be > 0, got -1.0; b1 must be in [0, 1), got 1.0")


def test_embedded_and_npz_sources_need_their_dataset():
  config = digits_config()
  config.data.name = "mnist"
  with pytest.raises(ConfigError, match="data.name 'mnist' is not an embedded dataset"):
    config_validation.validate(config)
  config.data.source, config.data.path = "npz", ""
  with pytest.raises(ConfigError, match="data.source 'npz' needs data.path"):
    config_validation.validate(config)


def test_data_parallel_runs_only_the_estimators_whose_record_allows_it():
  config = digits_config()
  config.sharding.data_parallel = True
  for name, estimator in estimators.REGISTRY.items():
    config.estimator = name
    refused = f"estimator {name!r} trains on one device: set sharding.data_parallel=False"
    assert (refused in config_validation.problems(config)) != estimator.data_parallel, name


def test_paper_choices_are_valid():
  config = digits_config()
  config.init, config.loss, config.eps, config.eps_root = (
      "torch", "clamped_cross_entropy", 0.0, 1e-8)
  assert config_validation.problems(config) == []


def test_missing_field_is_named():
  config = default_config.base_config().to_dict()
  del config["keep_checkpoints"]
  with pytest.raises(ConfigError, match="config has no field keep_checkpoints"):
    config_validation.validate(ml_collections.ConfigDict(config))


def _config_specs():
  specs = []
  for path in sorted(glob.glob(os.path.join(CONFIG_DIR, "*.py"))):
    suffixes = [":forward", ":backprop"] if path.endswith("default.py") else [""]
    specs += [path + suffix for suffix in suffixes]
  return specs


@pytest.mark.parametrize("spec", _config_specs(), ids=os.path.basename)
def test_shipped_configs_are_valid(spec):
  assert config_validation.problems(config_loading.load_config(spec)) == []


def test_workdir_checks_create_nothing(tmp_path):
  config_validation.validate_workdir(str(tmp_path / "new" / "run"))
  assert os.listdir(tmp_path) == []
  (tmp_path / "file").write_text("x")
  with pytest.raises(ConfigError, match=r"cannot be created: '.*file' is not a directory"):
    config_validation.validate_workdir(str(tmp_path / "file" / "run"))
  with pytest.raises(ConfigError, match="is not a directory"):
    config_validation.validate_workdir(str(tmp_path / "file"))
  with pytest.raises(ConfigError, match="non-empty"):
    config_validation.validate_workdir("")


def test_read_only_workdir_is_refused(tmp_path, monkeypatch):
  locked = tmp_path / "locked"
  locked.mkdir()
  # Root may write anywhere whatever the mode bits, so the permission answer is simulated.
  real_access = os.access
  monkeypatch.setattr(config_validation.os, "access",
                      lambda path, mode: False if str(path) == str(locked) else real_access(
                          path, mode))
  with pytest.raises(ConfigError, match="is not writable"):
    config_validation.validate_workdir(str(locked))
  with pytest.raises(ConfigError, match="cannot be created: .* is not writable"):
    config_validation.validate_workdir(str(locked / "run"))

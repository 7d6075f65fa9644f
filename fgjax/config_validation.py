"""Checking a run's config and workdir before any work is done.

`validate(config)` and `validate_workdir(workdir)` raise `ConfigError` with one line that names
every problem found, so that a mistake in a config costs the user no training time, no traceback
and no half-written workdir. Data files are checked by `fgjax.data.load_dataset` (`DataError`),
which `train_and_evaluate` calls before it writes anything either.
"""

import math
import numbers
import os

from fgjax import data
from fgjax import estimators
from fgjax import losses
from fgjax import models
from fgjax import optimizers
from fgjax import tangents
from fgjax import storage
from fgjax.config_loading import ConfigError
from fgjax.data import embedded

_MISSING = object()

# What a run does at a non-finite loss or gradient: stop (status "diverged") or skip the step.
NONFINITE_POLICIES = ("stop", "skip")

# Names a config chooses, and the registries they must come from.
_CHOICES = {
    "model": tuple(models.MODELS),
    "estimator": estimators.ESTIMATORS,
    "combine": estimators.COMBINES,
    "optimizer": optimizers.OPTIMIZERS,
    "nesterov_evaluate": optimizers.NESTEROV_EVALUATE,
    "tangent": tuple(tangents.SAMPLERS),
    "on_nonfinite": NONFINITE_POLICIES,
    "data.source": data.SOURCES,
    "init": models.INITS,
    "local_heads.slice_head": models.SLICE_HEADS,
    "local_heads.loss_per": models.LOSS_PER,
    "loss": losses.LOSSES,
}
# Integer fields and their smallest allowed value.
_INTEGERS = {
    "batch_size": 1, "num_epochs": 1, "num_directions": 1, "unit_groups": 1,
    "local_heads.slices": 0, "local_heads.patches": 0, "eval_batch_size": 1,
    "log_every_steps": 1, "checkpoint_every_steps": 1, "keep_checkpoints": 1,
    "seed": None, "data.validation_size": 1, "data.split_seed": 0,
    "diagnostics_every_steps": 1, "sharding.num_devices": 1,
}
# Real fields and their range: a test of the value, and how a message states it.
_POSITIVE = (lambda value: value > 0, "> 0")
_NON_NEGATIVE = (lambda value: value >= 0, ">= 0")
_FRACTION = (lambda value: 0 <= value < 1, "in [0, 1)")
_REALS = {"learning_rate": _POSITIVE, "decay": _NON_NEGATIVE, "eps": _NON_NEGATIVE,
          "eps_root": _NON_NEGATIVE, "momentum": _FRACTION, "b1": _FRACTION, "b2": _FRACTION}
_OPTIONAL_POSITIVE = ("jvp_clip", "grad_clip_norm", "max_loss_ratio")
_BOOLEANS = ("exact_heads", "sharding.data_parallel")
# Fields that None switches off: a None passes their check.
_OFF_BY_NONE = (*_OPTIONAL_POSITIVE, "diagnostics_every_steps", "sharding.num_devices")


def _get(config, dotted: str):
  value = config
  for name in dotted.split("."):
    if name not in value:
      return _MISSING
    value = value[name]
  return value


def _check_choice(name, value, options):
  if value not in options:
    return f"{name} {value!r} is unknown; choose one of {sorted(options)}"
  return None


def _check_integer(name, value, lowest):
  if not isinstance(value, numbers.Integral) or isinstance(value, bool):
    return f"{name} must be an integer, got {value!r}"
  if lowest is not None and value < lowest:
    return f"{name} must be >= {lowest}, got {value}"
  return None


def _check_real(name, value, rule):
  test, bound = rule
  if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
    return f"{name} must be a finite number, got {value!r}"
  return None if test(value) else f"{name} must be {bound}, got {value}"


def _check_positive(name, value):
  if _check_real(name, value, _POSITIVE):
    return f"{name} must be a positive number or None (off), got {value!r}"
  return None


def _either(names) -> str:
  """The names quoted and joined as a sentence says them: 'a', 'b' or 'c'."""
  quoted = [repr(name) for name in names]
  return " or ".join(filter(None, [", ".join(quoted[:-1]), quoted[-1]]))


def _estimator_problems(config) -> list[str]:
  """What the config's estimator cannot do with its other fields, from its registry record."""
  if _get(config, "estimator") not in estimators.ESTIMATORS:
    return []  # reported as an unknown choice
  estimator = estimators.get(_get(config, "estimator"))
  taking = lambda option: _either([name for name, other in estimators.REGISTRY.items()
                                   if option in other.options])
  local = _either(estimators.LOCAL)
  grouped = _get(config, "unit_groups") not in (1, _MISSING)
  mean = _get(config, "combine") == "mean"
  rules = [  # (the config breaks the rule, what the rule says)
      (not estimator.data_parallel and _get(config, "sharding.data_parallel") is True,
       f"estimator {estimator.name!r} trains on one device: set sharding.data_parallel=False"),
      (grouped and ("unit_groups" not in estimator.options or not mean),
       f"unit_groups > 1 needs estimator {taking('unit_groups')} and combine 'mean'"),
      (_get(config, "exact_heads") is True and "exact_heads" not in estimator.options,
       f"exact_heads needs estimator {taking('exact_heads')}"),
      (_get(config, "local_heads.slices") not in (1, _MISSING)
       and (not estimator.local_heads or not mean or grouped),
       f"local_heads.slices other than 1 needs estimator {local}, combine 'mean' and unit_groups 1"),
      (_get(config, "local_heads.patches") not in (1, _MISSING) and not estimator.local_heads,
       f"local_heads.patches other than 1 needs estimator {local}"),
  ]
  return [message for broken, message in rules if broken]


def problems(config) -> list[str]:
  """Every problem of `config`, one short phrase each; empty when the config is valid."""
  checks = ([(name, _check_choice, (options,)) for name, options in _CHOICES.items()]
            + [(name, _check_integer, (lowest,)) for name, lowest in _INTEGERS.items()]
            + [(name, _check_real, (rule,)) for name, rule in _REALS.items()]
            + [(name, _check_positive, ()) for name in _OPTIONAL_POSITIVE])
  found = []
  for name, check, bounds in checks:
    value = _get(config, name)
    if value is _MISSING:
      found.append(f"config has no field {name}")
    elif value is not None or name not in _OFF_BY_NONE:
      found.append(check(name, value, *bounds))
  source, name = _get(config, "data.source"), _get(config, "data.name")
  if source == "embedded" and name not in embedded.EMBEDDED:
    found.append(f"data.name {name!r} is not an embedded dataset; choose one of "
                 f"{list(embedded.EMBEDDED)}")
  if source == "npz" and not _get(config, "data.path"):
    found.append("data.source 'npz' needs data.path, the .npz file to read")
  found += [f"{name} must be True or False, got {_get(config, name)!r}" for name in _BOOLEANS
            if not isinstance(_get(config, name), bool)]
  found += _estimator_problems(config)
  return [problem for problem in found if problem]


def validate(config) -> None:
  """Raises ConfigError naming every problem of `config` (one line), or returns None."""
  found = problems(config)
  if found:
    raise ConfigError("invalid config: " + "; ".join(found))


def validate_workdir(workdir: str) -> None:
  """Raises ConfigError unless `workdir` exists as a writable directory or can be created; creates
  nothing (a missing workdir is checked through its nearest existing ancestor). A gs:// workdir is
  checked by `fgjax.storage.check_workdir`."""
  if not workdir:
    raise ConfigError("workdir must be a non-empty path")
  if storage.is_remote(workdir):
    storage.check_workdir(workdir)
    return
  path = os.path.abspath(workdir)
  while not os.path.exists(path):
    path = os.path.dirname(path)
  if not os.path.isdir(path):
    raise ConfigError(f"workdir {workdir!r} cannot be created: {path!r} is not a directory")
  if not os.access(path, os.W_OK | os.X_OK):
    what = "is not writable" if path == os.path.abspath(workdir) else (
        f"cannot be created: {path!r} is not writable")
    raise ConfigError(f"workdir {workdir!r} {what}")

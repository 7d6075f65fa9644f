"""Loading `get_config()` files by path, as `path.py` or `path.py:argument` (big_vision style)."""

import importlib.util
import os

import ml_collections

from fgjax.errors import ConfigError


def load_config(spec: str) -> ml_collections.ConfigDict:
  """Calls `get_config()` (or `get_config(argument)`) of the config file named by `spec`."""
  path, _, argument = spec.partition(":")
  if not os.path.isfile(path):
    raise ConfigError(f"config file {path!r} not found")
  module_spec = importlib.util.spec_from_file_location(
      os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"config file {path!r} defines no get_config()")
  return module.get_config(argument) if argument else module.get_config()

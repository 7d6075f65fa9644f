"""Loading `get_config()` files by path, as `path.py` or `path.py:argument` (big_vision style).

Whatever goes wrong in a config file (it raises, has no `get_config()`, or returns something
other than a ConfigDict) is a ConfigError of one line naming the file; the command lines that load
configs with absl's config flags report the same lines.
"""

import importlib.util
import os
import traceback
from typing import Optional

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
  try:
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
      raise ConfigError(no_get_config(path))
    config = module.get_config(argument) if argument else module.get_config()
  except Exception as error:  # pylint: disable=broad-except
    raise ConfigError(raised_in_file(path, error) or str(error)) from None
  return check_config(path, config)


def run_name(spec: str) -> str:
  """A name for the run of `spec`: the config file's stem, plus `_<argument>` if it has one."""
  path, _, argument = spec.partition(":")
  stem = os.path.splitext(os.path.basename(path))[0]
  return f"{stem}_{argument}" if argument else stem


def no_get_config(path: str) -> str:
  return f"cannot load the config {path}: it defines no get_config()"


def raised_in_file(path: str, error: BaseException) -> Optional[str]:
  """One line for `error`, raised by the code of the config file `path`; None if no line of that
  file is in its traceback (the error came from elsewhere)."""
  lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
           if os.path.abspath(frame.filename) == os.path.abspath(path)]
  if not lines:
    return None
  message = " ".join(str(error).split())
  if isinstance(error, ConfigError):  # the file's own words for the mistake
    return f"cannot load the config {path}: {message}"
  return (f"cannot load the config {path}: {type(error).__name__}"
          + (f": {message}" if message else "") + f" (raised at line {lines[-1]})")


def check_config(path: str, config) -> ml_collections.ConfigDict:
  """`config`; ConfigError if the file's get_config() returned something else."""
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"cannot load the config {path}: get_config() returned "
                      f"{type(config).__name__}, not an ml_collections.ConfigDict")
  return config

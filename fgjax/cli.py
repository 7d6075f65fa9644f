"""What the fgjax command lines share: flag parsing with one-line errors, INFO logging, exit
codes, config overrides (`--config.<field>=<value>`, `None` included, for any field) and the
way a result reads in a table.

`run(main)` is `absl.app.run(main)`, except that
- a flag that cannot be parsed (a misspelt config field, a config file that is missing or does
  not load, a malformed value) prints `error: ...` and exits with status 2;
- a `UserError` raised by `main` prints `error: <message>` and exits with status 2;
- SIGTERM (a preemption) or Ctrl-C (SIGINT) stops a training run as `fgjax.preemption` says: one
  line, and exit status 143 (`preemption.EXIT_PREEMPTED`) or 130 (`preemption.EXIT_INTERRUPTED`);
  Ctrl-C outside training prints one line and exits with status 130.
"""

import ast
import contextlib
import difflib
import re
import sys
from typing import Callable, Optional, Sequence

from absl import app
from absl import flags
from absl import logging

from fgjax import config_loading
from fgjax import default_config
from fgjax import preemption
from fgjax.errors import ConfigError, UserError

_OVERRIDE = re.compile(r"--config\.(?P<name>[A-Za-z_][\w.]*)=(?P<value>.*)", re.DOTALL)


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def result_cell(summary: dict, name: str) -> str:
  """A run's result `name` as a table shows it: mean ± std over its seeds, or its value; '-' when
  there is none."""
  if "aggregate" in summary:
    stats = summary["aggregate"][name]
    return "-" if stats is None else f"{stats['mean']:.4f} ± {stats['std']:.4f}"
  value = summary[name]
  return "-" if value is None else f"{value:.4f}"


def _check_field(config, name: str) -> None:
  """ConfigError unless `config` has the (dotted) field `name`, with a close name if one is."""
  *parents, field = name.split(".")
  for parent in parents:
    config = config.get(parent)
    if not hasattr(config, "keys"):
      raise ConfigError(_no_field(name, None))
  if field not in config:
    raise ConfigError(_no_field(name, next(iter(difflib.get_close_matches(
        field, list(config.keys()), n=1)), None)))


def _no_field(name: str, close: Optional[str]) -> str:
  """The line for a field the config lacks: its new name if it was renamed, or a close one."""
  if name in default_config.RENAMED:
    return f"config has no field {name!r}; it is {default_config.RENAMED[name]!r} now"
  return f"config has no field {name!r}" + (f"; did you mean {close!r}?" if close else "")


def apply_overrides(config, overrides: Sequence[str]) -> None:
  """Sets `--config.<field>=<value>` arguments on `config`, each value a Python literal (number,
  bool, None, list, ...) or else the string; ConfigError names a bad one."""
  for argument in overrides:
    match = _OVERRIDE.fullmatch(argument)
    if not match:
      raise ConfigError(f"{argument!r} is not of the form --config.<field>=<value>")
    name, value = match["name"], match["value"]
    with contextlib.suppress(ValueError, SyntaxError):  # not a literal: the string itself
      value = ast.literal_eval(value)
    _check_field(config, name)
    try:
      config.update_from_flattened_dict({name: value})
    except (TypeError, ValueError) as error:
      raise ConfigError(f"--config.{name}={match['value']}: {error}") from None


def _config_path(argv: Sequence[str]) -> Optional[str]:
  """The file named by the `--config` flag in `argv` (without its `:argument`), if any."""
  values = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
  values += [b for a, b in zip(argv, argv[1:]) if a == "--config"]
  return values[-1].partition(":")[0] if values else None


def _config_file_error(path: Optional[str], error: Exception) -> Optional[str]:
  """One line for an exception that loading the `--config` file `path` raised (the file raised
  it, or it has no `get_config()`); None for any other exception."""
  if path is None:
    return None
  if isinstance(error, AttributeError) and "has no attribute 'get_config'" in str(error):
    return config_loading.no_get_config(path)
  # absl and config_flags re-raise a TypeError or ValueError of the file as new ones; the
  # original is down the chain of causes.
  while error is not None:
    line = config_loading.raised_in_file(path, error)
    if line:
      return line
    error = error.__cause__ or error.__context__
  return None


def _parse_error(error: Exception) -> str:
  """One line for a flag that could not be parsed; re-raises an exception of another kind."""
  if isinstance(error, flags.Error):
    return str(error).strip().splitlines()[0]
  if isinstance(error, ConfigError):
    return str(error)
  if isinstance(error, (OSError, SyntaxError)):  # a config file that does not load
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"cannot load the config: {lines[-1]}" if lines else str(error)
  if isinstance(error, (AttributeError, KeyError)):  # a config field that does not exist
    names = re.findall(r"[A-Za-z_][\w.]*", str(error).replace("\\n", " "))
    suggestion = re.search(r'Did you mean "([\w.]+)"', str(error))
    return _no_field(names[0] if names else str(error), suggestion and suggestion[1])
  if isinstance(error, (TypeError, ValueError)):  # a value of the wrong type
    return " ".join(str(error).split())
  raise error


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parse, with `--config.<field>=None` applied after the config has loaded (absl
  cannot parse None for a field that holds a number) and one-line errors."""
  nones = [a for a in argv[1:] if a.startswith("--config.") and a.endswith("=None")]
  path = _config_path(argv)
  try:
    remaining = flags.FLAGS([a for a in argv if a not in nones])
    config = flags.FLAGS.config if "config" in flags.FLAGS else None
    if config is not None:
      config.keys()  # config_flags reports a file that failed to load only when used
    if path is not None:
      config_loading.check_config(path, config)
    if nones:
      apply_overrides(config, nones)
  except Exception as error:  # pylint: disable=broad-except
    _fail(_config_file_error(path, error) or _parse_error(error))
  return remaining


def run(main: Callable[..., int], *, separate_overrides: bool = False) -> None:
  """Runs `main(argv)` as a command line (see the module docstring); never returns.

  With `separate_overrides` (a command that loads several configs itself), the
  `--config.<field>=<value>` arguments are taken out before absl parses the flags and passed on
  as `main(argv, overrides)`, for `apply_overrides`.
  """
  overrides = []
  if separate_overrides:
    overrides = [a for a in sys.argv[1:] if a.startswith("--config.")]
    sys.argv[1:] = [a for a in sys.argv[1:] if not a.startswith("--config.")]

  def wrapped(argv):
    if len(argv) > 1:
      _fail(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    try:
      return main(argv, overrides) if separate_overrides else main(argv)
    except UserError as error:
      _fail(str(error))
    except preemption.Stopped as stopped:
      print(stopped, file=sys.stderr)
      return stopped.exit_status
    except KeyboardInterrupt:
      print("interrupted: run the same command again to resume from the last checkpoint",
            file=sys.stderr)
      return preemption.EXIT_INTERRUPTED

  app.run(wrapped, flags_parser=_parse_flags)

"""The errors fgjax reports to a user as one line, and nothing else.

Every command line catches `UserError` and prints `error: <message>` with exit status 2; any other
exception is a bug and keeps its traceback.
"""


class UserError(Exception):
  """A mistake or a condition the user can act on; the message is one line that says how."""


class ConfigError(UserError, ValueError):
  """A config, a command-line setting or a search space that cannot work."""


class DataError(UserError, ValueError):
  """Data that is missing or malformed."""


class WorkdirError(UserError):
  """A workdir that cannot be used: another run holds it, or its files cannot be written or read."""


class CheckpointError(WorkdirError):
  """No checkpoint of a run can be used."""

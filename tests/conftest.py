"""Test-session settings, and where the real-data tests find their data.

The suite compiles many small XLA programs and runs each only a few steps, so compilation, not
execution, dominates its time: XLA's backend optimisation level 0 roughly halves it. Every test
compares runs made under the same flags, so no result depends on them.
"""

import os
import subprocess

import pytest

os.environ.setdefault(
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")

# Real MNIST for the real-data tests: a folder holding mnist.npz and a prepared tfds dir tfds/.
TEST_DATA_ENV = "FGJAX_TEST_DATA"
# "1": missing real data fails those tests instead of skipping them (CI sets it).
REQUIRE_TEST_DATA_ENV = "FGJAX_REQUIRE_TEST_DATA"
TEST_DATA_FILES = ("mnist.npz", os.path.join("tfds", "mnist", "3.0.1", "dataset_info.json"))
MAKE_TEST_DATA = ("python experiments/make_mnist_npz.py --download --tfds_data_dir=DIR/tfds "
                  "--output=DIR/mnist.npz (downloading needs TensorFlow: pip install "
                  "fgjax[prepare])")


@pytest.fixture(scope="session")
def real_data_dir() -> str:
  """The folder $FGJAX_TEST_DATA names, once it holds MNIST as mnist.npz and tfds/.

  The real-data tests are the only ones that need files from outside the repository: without
  them the tests are skipped (a clone of the repository alone passes), or fail when
  $FGJAX_REQUIRE_TEST_DATA is 1, so that CI cannot pass without running them.
  """
  folder = os.environ.get(TEST_DATA_ENV)
  if not folder:
    problem = f"${TEST_DATA_ENV} is not set"
  else:
    missing = [name for name in TEST_DATA_FILES if not os.path.isfile(os.path.join(folder, name))]
    if not missing:
      return os.path.abspath(folder)
    problem = f"${TEST_DATA_ENV}={folder!r} lacks {', '.join(missing)}"
  message = (f"real MNIST not found: {problem}; set {TEST_DATA_ENV}=DIR, a folder made by "
             f"{MAKE_TEST_DATA}")
  if os.environ.get(REQUIRE_TEST_DATA_ENV) == "1":
    pytest.fail(f"{message}; ${REQUIRE_TEST_DATA_ENV}=1 makes this a failure", pytrace=False)
  pytest.skip(message)


@pytest.fixture
def small_disk(tmp_path):
  """A factory of real small file systems: `small_disk(megabytes, full=False)` mounts a tmpfs of
  that size (filled up with a file when `full`) and returns its path; unmounted after the test.
  `small_disk.fill(path)` fills one up later. Skipped where mounting is not permitted (it needs
  root on Linux)."""
  mounts = []

  def mount(megabytes: int, full: bool = False) -> str:
    path = tmp_path / f"disk{len(mounts)}"
    path.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs",
                             str(path)], capture_output=True, text=True, check=False)
    if result.returncode:
      pytest.skip(f"cannot mount a small tmpfs to fill up ({result.stderr.strip()}); "
                  "this needs root on Linux")
    mounts.append(path)
    if full:
      fill(str(path))
    return str(path)

  mount.fill = fill
  yield mount
  for path in mounts:
    subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: str) -> None:
  """Writes a file onto `disk` until the disk is full (unbuffered: nothing is left to fail)."""
  with open(os.path.join(disk, "ballast"), "wb", buffering=0) as f:
    try:
      while True:
        f.write(b"\0" * 65536)
    except OSError:
      pass

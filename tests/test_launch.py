"""Runs of two processes on this machine (fgjax.launch), and the launcher's own logic.

The processes talk through JAX's CPU collectives (gloo) and two simulated CPU devices each, so
the run's mesh has four devices, as does the one-process run it is compared with. The runs are
two epochs of the default digits config with a metrics row every 2 steps, so that a kill can land
between checkpoints.
"""

import os
import re
import signal
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from fgjax import launch
from fgjax import workdir

REPO = os.path.join(os.path.dirname(__file__), "..")
TOTAL_STEPS = 32  # two epochs of the digits' 1,077 training examples in batches of 64
KILL_AT_CHECKPOINT = 8


def _main_args(workdir, estimator: str, *extra: str) -> list[str]:
  return [f"--config=configs/default.py:{estimator}", f"--workdir={workdir}",
          "--config.num_epochs=2", "--config.log_every_steps=2",
          "--config.sharding.data_parallel=True", *extra]


def _launch_command(workdir, estimator: str, *extra: str) -> list[str]:
  return [sys.executable, "-m", "fgjax.launch", "--num_processes=2", "--devices_per_process=2",
          "--", *_main_args(workdir, estimator, *extra)]


def _run(command: list[str], devices: int = None) -> subprocess.CompletedProcess:
  env = launch.process_env(devices)
  result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def _final_state(workdir) -> dict:
  """The state of the run's last checkpoint (the end of training), as numpy arrays."""
  return ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints",
                                                         str(TOTAL_STEPS), "state"))


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
  """Workdirs of an uninterrupted two-process run of each estimator, made when first asked;
  `stderr[estimator]` holds what the run's processes logged."""
  made = {}

  def get(estimator: str):
    if estimator not in made:
      made[estimator] = tmp_path_factory.mktemp(f"two_{estimator}")
      get.stderr[estimator] = _run(_launch_command(made[estimator], estimator)).stderr
    return made[estimator]

  get.stderr = {}
  return get


@pytest.fixture(scope="module")
def one_process_runs(tmp_path_factory):
  """The parent workdir of both estimators' runs in one process of four devices (fgjax.compare:
  `default_forward/`, `default_backprop/`)."""
  workdir = tmp_path_factory.mktemp("one")
  _run([sys.executable, "-m", "fgjax.compare", f"--workdir={workdir}",
        *_main_args(workdir, "forward")[2:]], devices=4)
  return workdir


@pytest.mark.parametrize("estimator", ["forward", "backprop"])
def test_two_processes_train_as_one_process_of_four_devices(two_process_runs, one_process_runs,
                                                            estimator):
  two = _final_state(two_process_runs(estimator))
  one = _final_state(one_process_runs / f"default_{estimator}")
  assert int(two["step"][0]) == TOTAL_STEPS
  # Both are the same program over four devices; only the all-reduce of the shards' losses and
  # derivatives (gloo across processes, XLA within one) may sum in another order: a float32
  # rounding per step: measured at most 9e-8 (forward) and 3e-8 (backprop) after 32 steps.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-6), two["params"],
               one["params"])


def test_each_process_gathers_half_of_every_batch(two_process_runs):
  two_process_runs("forward")
  for process in range(2):
    assert any(line.startswith(f"[p{process}] ") and line.endswith(
        f"process {process} of 2 gathers 32 of the 64 examples of each batch")
               for line in two_process_runs.stderr["forward"].splitlines()), process


def _kill_process_0_mid_run(workdir) -> tuple[int, str]:
  """Launches a forward run that checkpoints every chunk and SIGKILLs process 0 once it has
  started the checkpoint of step KILL_AT_CHECKPOINT; returns the launcher's status and stderr."""
  launcher = subprocess.Popen(
      _launch_command(workdir, "forward", "--config.checkpoint_every_steps=2"), cwd=REPO,
      env=launch.process_env(None), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  lines, pids = [], None
  for line in launcher.stderr:
    lines.append(line)
    if pids is None and line.startswith("[launch]"):
      pids = [int(p) for p in re.search(r"pids ([\d, ]+)\)", line)[1].split(", ")]
    if line.startswith("[p0]") and f"checkpoint of step {KILL_AT_CHECKPOINT} started" in line:
      os.kill(pids[0], signal.SIGKILL)
      break
  lines += launcher.stderr.readlines()
  return launcher.wait(timeout=300), "".join(lines)


def test_a_run_whose_process_was_killed_resumes_bit_identical(tmp_path, two_process_runs):
  status, stderr = _kill_process_0_mid_run(tmp_path)
  assert status == 1, stderr[-3000:]
  assert stderr.strip().splitlines()[-1].startswith("error: process 0 was killed by SIGKILL")
  assert not (tmp_path / "summary.json").exists()
  resumed = _run(_launch_command(tmp_path, "forward"))
  # The checkpoint being written when the kill came may be lost; an older one is used.
  step = int(re.search(r"\[p0\].*resuming .* from step (\d+)", resumed.stderr)[1])
  assert 0 < step < TOTAL_STEPS
  jax.tree.map(np.testing.assert_array_equal, _final_state(tmp_path),
               _final_state(two_process_runs("forward")))


def test_a_batch_that_does_not_split_over_all_devices_ends_every_process(tmp_path):
  result = subprocess.run(_launch_command(tmp_path, "forward", "--config.batch_size=6"), cwd=REPO,
                          env=launch.process_env(None), capture_output=True, text=True,
                          timeout=300, check=False)
  assert result.returncode == 2, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if "error:" in line]
  assert sorted(errors) == [f"[p{i}] error: batch_size 6 must be a multiple of the 4 devices of "
                            "the data-parallel mesh" for i in range(2)], result.stderr[-3000:]


def test_a_workdir_in_use_ends_every_process(tmp_path):
  with workdir.Lock(str(tmp_path)):  # as another run would hold it
    result = subprocess.run(_launch_command(tmp_path, "forward"), cwd=REPO,
                            env=launch.process_env(None), capture_output=True, text=True,
                            timeout=300, check=False)
  assert result.returncode == 2, result.stderr[-3000:]
  errors = sorted(line for line in result.stderr.splitlines() if "error:" in line)
  assert len(errors) == 2, result.stderr[-3000:]
  assert errors[0].startswith(f"[p0] error: workdir {str(tmp_path)!r} is in use by process")
  assert errors[1] == "[p1] error: process 0 cannot use the workdir; its output says why"


@pytest.mark.parametrize("argv, message", [
    (["--", "--config=c.py"], "the following arguments are required: --num_processes"),
    (["--num_processes=2"], "give the arguments of fgjax.main after --"),
    (["--num_processes=0", "--", "--config=c.py"], "--num_processes must be at least 1, got 0"),
    (["--num_processes=2", "--", "--process_id=1"],
     "the launcher sets --process_id=1 itself; leave it out"),
])
def test_launcher_mistakes_are_one_line(capsys, argv, message):
  with pytest.raises(SystemExit) as exit_info:
    launch.parse_args(argv)
  assert exit_info.value.code == 2
  assert capsys.readouterr().err == f"error: {message}\n"


def test_each_process_gets_its_id_and_the_shared_coordinator():
  commands = [launch.process_command("fgjax.main", ["--config=c.py"], 1234, 2, i)
              for i in range(2)]
  assert [c[-1] for c in commands] == ["--process_id=0", "--process_id=1"]
  assert all("--coordinator_address=127.0.0.1:1234" in c and "--num_processes=2" in c
             for c in commands)
  assert launch.process_env(3)["XLA_FLAGS"].endswith("--xla_force_host_platform_device_count=3")


@pytest.mark.parametrize("statuses, first, killed, expected", [
    ([0, 0], None, [], (0, None)),
    ([2, 2], 0, [], (2, None)),  # the same mistake on every process: each has said it
    ([-9, -9], 0, [], (1, "process 0 was killed by SIGKILL")),
    ([-9, -9], 0, [1], (1, "process 0 was killed by SIGKILL; ended process 1")),
    ([-6, 1], 1, [], (1, "process 1 exited with status 1")),  # process 0 aborted after it
    ([0, 1], 1, [], (1, "process 1 exited with status 1")),
])
def test_outcome_is_one_line_naming_the_process_that_failed_first(statuses, first, killed,
                                                                  expected):
  assert launch.outcome(statuses, first, killed) == expected


def test_wait_ends_the_others_after_the_grace_period():
  sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
  processes = [subprocess.Popen(sleeper), subprocess.Popen([sys.executable, "-c", "exit(3)"])]
  first, killed = launch.wait(processes, grace_seconds=0.1)
  assert (first, killed) == (1, [0])
  assert [p.returncode for p in processes] == [-signal.SIGKILL, 3]

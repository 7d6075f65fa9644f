"""fgjax.preemption: real signals to a real `python -m fgjax.main` on the embedded digits stop it
after a checkpoint with one line, and the rerun ends exactly as an uninterrupted run."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from fgjax import config_loading
from fgjax import preemption
from fgjax import train
from test_metrics_writer import tensorboard_scalars  # pylint: disable=g-bad-import-order

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 4 epochs of 16 steps, a chunk of 4 steps, and a checkpoint after every chunk: a save is almost
# always in flight. (checkpoint_every_steps does not change results.)
SETTINGS = {"num_epochs": 4, "log_every_steps": 4, "checkpoint_every_steps": 4}
WALL_CLOCK = ("wall_clock_seconds", "train_steps_per_second", "elapsed_seconds",
              "steps_per_second")


def _without_wall_clock(obj):
  if isinstance(obj, dict):
    return {k: _without_wall_clock(v) for k, v in obj.items() if k not in WALL_CLOCK}
  return obj


def _results(workdir: str) -> tuple:
  """The summary and metrics rows of a run, without their wall-clock numbers."""
  with open(os.path.join(workdir, "summary.json"), encoding="utf-8") as f:
    summary = json.load(f)
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    rows = [json.loads(line) for line in f]
  return _without_wall_clock(summary), [_without_wall_clock(row) for row in rows]


def _config():
  config = config_loading.load_config(os.path.join(REPO, "configs", "default.py") + ":forward")
  config.update(SETTINGS)
  return config


def _saving(workdir: str) -> bool:
  """Whether a checkpoint is being written (orbax writes it into a temporary directory)."""
  directory = os.path.join(workdir, "checkpoints")
  return os.path.isdir(directory) and any("tmp" in name for name in os.listdir(directory))


def _resumed(workdir: str) -> bool:
  """Whether a second session has opened its TensorBoard file (after restoring the checkpoint)."""
  directory = os.path.join(workdir, "tensorboard")
  return os.path.isdir(directory) and len(os.listdir(directory)) == 2


def _stop(workdir: str, moment, signum: int) -> int:
  """Runs SETTINGS in `python -m fgjax.main`, sends `signum` at the first `moment(workdir)` and
  checks the one line and the exit status; returns the step of the checkpoint it saved."""
  command = [sys.executable, "-m", "fgjax.main", f"--workdir={workdir}",
             "--config=configs/default.py:forward",
             *[f"--config.{name}={value}" for name, value in SETTINGS.items()]]
  process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
  deadline = time.time() + 300
  while not moment(workdir):
    assert process.poll() is None and time.time() < deadline, "the moment never came"
    time.sleep(0.002)
  process.send_signal(signum)
  _, stderr = process.communicate(timeout=300)
  step = max(int(name) for name in os.listdir(os.path.join(workdir, "checkpoints"))
             if name.isdigit())
  what = "preempted (SIGTERM)" if signum == signal.SIGTERM else "interrupted (Ctrl-C)"
  assert stderr.strip().splitlines()[-1] == (
      f"{what}: checkpoint of step {step} saved in {workdir}/checkpoints; rerun the same "
      "command to resume")
  assert process.returncode == 128 + signum and "Traceback" not in stderr
  assert not os.path.exists(os.path.join(workdir, "summary.json"))
  return step


def test_signals_stop_after_a_checkpoint_and_the_rerun_ends_identically(tmp_path, caplog):
  """Ctrl-C while a checkpoint is being saved (every chunk saves one), then SIGTERM to the rerun
  as it starts training; the third session finishes as an uninterrupted run does."""
  workdir = str(tmp_path / "run")
  first = _stop(workdir, _saving, signal.SIGINT)
  second = _stop(workdir, _resumed, signal.SIGTERM)
  assert 0 < first < second < SETTINGS["num_epochs"] * 16
  with caplog.at_level("INFO"):
    train.train_and_evaluate(_config(), workdir)
  assert f"from step {second} of 64" in caplog.text
  train.train_and_evaluate(_config(), str(tmp_path / "uninterrupted"))
  expected = _results(str(tmp_path / "uninterrupted"))
  assert _results(workdir) == expected
  for tag, values in tensorboard_scalars(workdir).items():
    assert tag in WALL_CLOCK or values == [(row["step"], pytest.approx(row[tag]))
                                           for row in expected[1] if tag in row], tag


def test_a_signal_becomes_a_stop_request_while_handled():
  before = signal.getsignal(signal.SIGTERM)
  with preemption.handle_signals():
    assert preemption.stop_requested(4) is None
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.01)  # the handler runs at the next bytecode
    assert preemption.stop_requested(8) == signal.SIGTERM
  assert signal.getsignal(signal.SIGTERM) is before
  assert preemption.stop_requested(12) is None


def test_a_second_signal_stops_the_process_at_once():
  script = ("import os, signal, time\n"
            "from fgjax import preemption\n"
            "with preemption.handle_signals():\n"
            "  os.kill(os.getpid(), signal.SIGTERM)\n"
            "  time.sleep(0.1)\n"
            "  os.kill(os.getpid(), signal.SIGTERM)\n"
            "  time.sleep(60)\n")
  result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
  assert result.returncode == preemption.EXIT_PREEMPTED == 143
  assert result.stderr.strip().splitlines()[-1] == (
      "stopped at once by a second SIGTERM: rerun the same command to resume from the last "
      "checkpoint")


# One process of a two-process jax run that calls stop_requested at each "chunk end".
_PROCESS = """
import sys, time
import jax
jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
from fgjax import preemption
with preemption.handle_signals():
  print("ready", flush=True)
  for chunk in range(1, 100000):
    time.sleep(0.01)
    if preemption.stop_requested(chunk):
      print(f"stopped after chunk {chunk}", flush=True)
      break
"""


def test_the_processes_of_a_multi_process_run_stop_after_the_same_chunk():
  """SIGTERM to one process: through jax's preemption service both stop after the same chunk."""
  with socket.socket() as probe:
    probe.bind(("localhost", 0))
    address = f"localhost:{probe.getsockname()[1]}"
  processes = [subprocess.Popen([sys.executable, "-c", _PROCESS, address, str(i)], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
               for i in range(2)]
  try:
    assert [p.stdout.readline() for p in processes] == ["ready\n", "ready\n"]
    processes[1].send_signal(signal.SIGTERM)
    outputs = [p.communicate(timeout=120)[0] for p in processes]
  finally:
    for process in processes:
      process.kill()
  assert outputs[0] == outputs[1] and outputs[0].startswith("stopped after chunk")
  assert [p.returncode for p in processes] == [0, 0]

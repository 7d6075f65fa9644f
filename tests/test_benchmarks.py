"""The benchmarks' command lines: each parses its flags as fgjax's command lines do (`fgjax.cli`),
so that a bad command line is one `error:` line and exit status 2, before any timing starts."""

import importlib.util
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One bad command line per benchmark, and what its error says: a flag no benchmark knows, a value
# a flag refuses, a required flag left out, or a value the script's own check refuses.
BAD_COMMAND_LINES = {
    "communication": (["--model=mlp"], "needs several devices"),  # one CPU device
    "compile_options": (["--steps=x"], "--steps=x: invalid literal"),
    "conv_parts": (["--model=mlp"], "--model=mlp: value should be one of"),
    "estimator_step_time": (["--only=forward K=1,nope"], "unknown variant(s) nope"),
    "host_memory": (["--model", "resnet"], "--model=resnet: value should be one of"),
    "row_time": ([], "--configs must have a value"),
    "seeds_wallclock": (["--num_seeds=x"], "--num_seeds=x: invalid literal"),
    "soak": (["--config.nope=1"], "config has no field 'nope'"),
    "step_time": (["--mode=eager"], "--mode=eager: value should be one of"),
    "sweep_speedup": (["--bad_flag=1"], "Unknown command line flag 'bad_flag'"),
    "torch_compare": (["--batch_size=32"], "the paper's batch size"),
    "train_throughput": (["--steps=7", "--chunk=5"], "--steps 7 must be a multiple of --chunk 5"),
}

# Runs `python -m benchmarks.<name> <arguments>` for each of the JSON cases given, each in a fork
# of one process that has imported what every benchmark imports (jax, fgjax): each is a process
# of its own, as absl flags need, without importing jax ten times. Prints each's exit status,
# stdout and stderr as JSON.
_RUN_FORKED = """
import json, os, runpy, sys, tempfile, traceback
import benchmarks.common

def run(name, arguments):
  with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
    pid = os.fork()
    if pid == 0:
      os.dup2(out.fileno(), 1)
      os.dup2(err.fileno(), 2)
      sys.argv, status = [name, *arguments], 0
      try:
        runpy.run_module(f"benchmarks.{name}", run_name="__main__", alter_sys=True)
      except SystemExit as exit:
        status = exit.code if isinstance(exit.code, int) else 1
        if isinstance(exit.code, str):
          print(exit.code, file=sys.stderr)
      except BaseException:
        traceback.print_exc()
        status = 1
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(status)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    out.seek(0)
    err.seek(0)
    return status, out.read(), err.read()

cases = json.loads(sys.argv[1])
print(json.dumps({name: run(name, arguments) for name, arguments in cases.items()}))
"""


def _environment() -> dict:
  """This process's environment, with the repository importable and XLA's CPU as one device."""
  xla_flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
               if not f.startswith("--xla_force_host_platform_device_count")]
  return {**os.environ, "PYTHONPATH": REPO, "XLA_FLAGS": " ".join(xla_flags)}


def test_every_benchmark_has_a_bad_command_line():
  scripts = {name[:-3] for name in os.listdir(os.path.join(REPO, "benchmarks"))
             if name.endswith(".py") and name not in ("__init__.py", "common.py")}
  assert scripts == set(BAD_COMMAND_LINES)


def test_a_bad_command_line_is_one_error_line_with_status_2():
  bad = dict(BAD_COMMAND_LINES)
  if importlib.util.find_spec("torch") is None:  # the optional dependency's own error
    bad["torch_compare"] = bad["conv_parts"] = ([], "needs PyTorch")
  cases = json.dumps({name: arguments for name, (arguments, _) in bad.items()})
  driver = subprocess.run([sys.executable, "-c", _RUN_FORKED, cases], cwd=REPO,
                          env=_environment(), capture_output=True, text=True, check=True,
                          timeout=300)
  for name, (status, stdout, stderr) in json.loads(driver.stdout).items():
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert (status, stdout, "Traceback" in stderr) == (2, "", False), (name, stderr)
    assert len(errors) == 1 and bad[name][1] in errors[0], (name, stderr)

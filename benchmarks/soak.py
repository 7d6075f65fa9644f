"""Soak test of resume: a run SIGKILLed again and again at random moments (checkpoint saves
included) must end exactly as an uninterrupted run, and a second run started on the same workdir
must stop at once without harming the first.

  python -m benchmarks.soak                                  # digits MLP, 10 kills per run
  python -m benchmarks.soak --config=configs/default.py:backprop --kills=30 --epochs=30

The `--config.<field>=<value>` arguments go to every run. Compares the summaries and the metrics
rows (wall-clock columns aside) and the final parameters of the killed run with the uninterrupted
one; exits 1 at the first difference.
"""

import json
import os
import random
import subprocess
import sys
import tempfile
import time

from absl import flags
from ml_collections import config_flags

from fgjax import cli
from fgjax import config_loading

DEFAULT_CONFIG = "configs/default.py:forward"
FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None,
                                f"The config to run (configs/*.py[:arg]; {DEFAULT_CONFIG} if "
                                "not given).")
flags.DEFINE_integer("epochs", 20, "Epochs of each run.")
flags.DEFINE_integer("num_seeds", 1, "Seeds of each run.")
flags.DEFINE_integer("kills", 10, "Times the killed run is killed.")
flags.DEFINE_integer("seed", 0, "Seed of the kill times.")

TIMING = ("wall_clock_seconds", "train_steps_per_second", "elapsed_seconds", "steps_per_second")


def _config_spec(overrides: list[str]) -> str:
  """The runs' `--config` argument, once `overrides` are found to fit its config: a bad one fails
  here, in one line, not in the first run."""
  if FLAGS.config is None:
    spec, config = DEFAULT_CONFIG, config_loading.load_config(DEFAULT_CONFIG)
  else:
    spec, config = FLAGS["config"].config_filename, FLAGS.config
  cli.apply_overrides(config, overrides)
  return spec


def _command(config: str, workdir: str, overrides: list[str]) -> list[str]:
  """The training command of a run of `config` in `workdir`, the `--config.<field>=<value>`
  arguments given to this script last."""
  return [sys.executable, "-m", "fgjax.main", f"--config={config}",
          f"--workdir={workdir}", f"--config.num_epochs={FLAGS.epochs}",
          f"--config.num_seeds={FLAGS.num_seeds}", "--config.checkpoint_every_steps=20",
          "--config.log_every_steps=10", *overrides]


def _results(workdir: str) -> dict:
  """Every summary and metrics row under `workdir`, timing columns dropped."""
  found = {}
  for root, _, names in os.walk(workdir):
    for name in names:
      path = os.path.join(root, name)
      if name == "summary.json":
        with open(path, encoding="utf-8") as f:
          found[os.path.relpath(path, workdir)] = _strip(json.load(f))
      elif name == "metrics.jsonl":
        with open(path, encoding="utf-8") as f:
          found[os.path.relpath(path, workdir)] = [_strip(json.loads(line)) for line in f]
  return found


def _strip(value):
  if isinstance(value, dict):
    return {k: _strip(v) for k, v in value.items() if k not in TIMING}
  return value


def main(argv, overrides):
  del argv  # cli.run refuses positional arguments
  config = _config_spec(overrides)
  rng = random.Random(FLAGS.seed)
  with tempfile.TemporaryDirectory() as tmp:
    reference, killed = os.path.join(tmp, "reference"), os.path.join(tmp, "killed")
    start = time.time()
    subprocess.run(_command(config, reference, overrides), check=True, capture_output=True)
    duration = time.time() - start
    print(f"uninterrupted run: {duration:.1f} s", flush=True)
    # A second writer on the held workdir must stop at once, and the first goes on.
    first = subprocess.Popen(_command(config, killed, overrides), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    while not os.path.isdir(os.path.join(killed, "checkpoints")) and first.poll() is None:
      time.sleep(0.05)
    second = subprocess.run(_command(config, killed, overrides), capture_output=True, text=True)
    if second.returncode != 2 or "is in use by" not in second.stderr:
      sys.exit(f"a second run on the held workdir did not stop: {second.stderr[-500:]}")
    print("a second run on the held workdir stopped at once", flush=True)
    first.kill()
    first.wait()
    kills = 1
    while not os.path.exists(os.path.join(killed, "summary.json")):
      process = subprocess.Popen(_command(config, killed, overrides), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
      if kills < FLAGS.kills:
        time.sleep(rng.uniform(0.2, 0.8) * duration)
        if process.poll() is None:
          process.kill()
          kills += 1
          print(f"kill {kills}/{FLAGS.kills}", flush=True)
      process.wait()
    if _results(killed) != _results(reference):
      sys.exit(f"the run killed {kills} times differs from the uninterrupted one")
    print(f"identical after {kills} kills")


if __name__ == "__main__":
  cli.run(main, separate_overrides=True)

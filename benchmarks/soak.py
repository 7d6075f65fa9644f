"""Soak test of resume: a run SIGKILLed again and again at random moments (checkpoint saves
included) must end exactly as an uninterrupted run, and a second run started on the same workdir
must stop at once without harming the first.

  python -m benchmarks.soak                                  # digits MLP, 10 kills per run
  python -m benchmarks.soak --config=configs/default.py:backprop --kills=30 --epochs=30

Compares the summaries and the metrics rows (wall-clock columns aside) and the final parameters
of the killed run with the uninterrupted one; exits 1 at the first difference.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

TIMING = ("wall_clock_seconds", "train_steps_per_second", "elapsed_seconds", "steps_per_second")


def _command(args, workdir: str) -> list[str]:
  return [sys.executable, "-m", "fgjax.main", f"--config={args.config}", f"--workdir={workdir}",
          f"--config.num_epochs={args.epochs}", f"--config.num_seeds={args.num_seeds}",
          "--config.checkpoint_every_steps=20", "--config.log_every_steps=10"]


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


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/default.py:forward")
  parser.add_argument("--epochs", type=int, default=20)
  parser.add_argument("--num_seeds", type=int, default=1)
  parser.add_argument("--kills", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
  args = parser.parse_args()
  rng = random.Random(args.seed)
  with tempfile.TemporaryDirectory() as tmp:
    reference, killed = os.path.join(tmp, "reference"), os.path.join(tmp, "killed")
    start = time.time()
    subprocess.run(_command(args, reference), check=True, capture_output=True)
    duration = time.time() - start
    print(f"uninterrupted run: {duration:.1f} s", flush=True)
    # A second writer on the held workdir must stop at once, and the first goes on.
    first = subprocess.Popen(_command(args, killed), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    while not os.path.isdir(os.path.join(killed, "checkpoints")) and first.poll() is None:
      time.sleep(0.05)
    second = subprocess.run(_command(args, killed), capture_output=True, text=True)
    if second.returncode != 2 or "is in use by" not in second.stderr:
      sys.exit(f"a second run on the held workdir did not stop: {second.stderr[-500:]}")
    print("a second run on the held workdir stopped at once", flush=True)
    first.kill()
    first.wait()
    kills = 1
    while not os.path.exists(os.path.join(killed, "summary.json")):
      process = subprocess.Popen(_command(args, killed), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
      if kills < args.kills:
        time.sleep(rng.uniform(0.2, 0.8) * duration)
        if process.poll() is None:
          process.kill()
          kills += 1
          print(f"kill {kills}/{args.kills}", flush=True)
      process.wait()
    if _results(killed) != _results(reference):
      sys.exit(f"the run killed {kills} times differs from the uninterrupted one")
    print(f"identical after {kills} kills")


if __name__ == "__main__":
  main()

"""Wall-clock of N seeds trained in one program against N runs one after another, as a user
would run them: each a `python -m fgjax.main` command, start-up, data loading, compilation,
evaluation and checkpoints included.

  python -m benchmarks.seeds_wallclock --data=<data dir>/mnist.npz          # MNIST MLP, 1 epoch
  python -m benchmarks.seeds_wallclock --configs=configs/default.py:forward --data=

For each config: one command with `--config.num_seeds=N`, then N commands with
`--config.seed=s`, alternated `--repeats` times. It reports how far seed s of the first ends from
the s-th run in test loss (the largest relative difference): vmapped matmuls may sum in another
order, and long runs amplify that rounding. Prints a markdown table (written to `--out` if given).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import flags

from benchmarks import common

from fgjax import cli

FLAGS = flags.FLAGS
flags.DEFINE_list("configs", ["configs/mnist_mlp_sgd_fwd.py", "configs/mnist_mlp_sgd_bp.py"],
                  "Config files to time.")
flags.DEFINE_string("data", "", "An MNIST .npz file (empty: the config's data).")
flags.DEFINE_integer("num_seeds", 5, "Seeds per config.")
flags.DEFINE_integer("epochs", 1, "Epochs per run.")
flags.DEFINE_integer("repeats", 1, "Rounds of both ways (the median counts).")
flags.DEFINE_string("out", None, "Also write the markdown table here.")


def _train(config: str, workdir: str, overrides: list[str]) -> float:
  """Runs one `fgjax.main` command; returns its wall-clock seconds."""
  start = time.time()
  subprocess.run([sys.executable, "-m", "fgjax.main", f"--config={config}",
                  f"--workdir={workdir}", *overrides], check=True, capture_output=True)
  return time.time() - start


def _test_loss(workdir: str) -> float:
  with open(os.path.join(workdir, "summary.json"), encoding="utf-8") as f:
    return json.load(f)["test_loss"]


def measure(config: str, overrides: list[str], num_seeds: int, repeats: int) -> dict:
  together, apart, differences = [], [], []
  for repeat in range(repeats):
    with tempfile.TemporaryDirectory() as tmp:
      seeds_dir = os.path.join(tmp, "seeds")
      together.append(_train(config, seeds_dir, [*overrides, f"--config.num_seeds={num_seeds}"]))
      apart.append(sum(_train(config, os.path.join(tmp, f"run_{s}"),
                              [*overrides, f"--config.seed={s}"]) for s in range(num_seeds)))
      for s in range(num_seeds):  # the seeds of one program are the runs' seeds
        a = _test_loss(os.path.join(seeds_dir, f"seed_{s}"))
        b = _test_loss(os.path.join(tmp, f"run_{s}"))
        differences.append(abs(a - b) / abs(b))
    print(f"{config} round {repeat + 1}/{repeats}: {together[-1]:.1f} s together, "
          f"{apart[-1]:.1f} s one after another", file=sys.stderr, flush=True)
  median = lambda xs: sorted(xs)[len(xs) // 2]
  return {"config": config, "together_s": median(together), "apart_s": median(apart),
          "speedup": median(apart) / median(together), "max_relative_difference": max(differences)}


def main(argv):
  del argv  # cli.run refuses positional arguments
  overrides = [f"--config.num_epochs={FLAGS.epochs}"]
  if FLAGS.data:
    overrides += ["--config.data.source=npz", f"--config.data.path={FLAGS.data}"]
  machine = common.machine_info()
  rows = [measure(config, overrides, FLAGS.num_seeds, FLAGS.repeats) for config in FLAGS.configs]
  lines = [f"{FLAGS.num_seeds} seeds, {FLAGS.epochs} epoch(s) each, median of {FLAGS.repeats} "
           f"round(s), on {common.machine_line(machine)}", "",
           "| config | one program, s | one run per seed, s | speed-up | test loss, largest "
           "relative difference |", "|---|---:|---:|---:|---:|"]
  lines += [f"| {r['config']} | {r['together_s']:.1f} | {r['apart_s']:.1f} | "
            f"{r['speedup']:.2f}x | {r['max_relative_difference']:.1e} |" for r in rows]
  text = "\n".join(lines) + "\n"
  print(text)
  if FLAGS.out:
    with open(FLAGS.out, "w", encoding="utf-8") as f:
      f.write(text)


if __name__ == "__main__":
  cli.run(main)

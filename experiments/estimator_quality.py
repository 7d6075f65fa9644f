"""How noisy each gradient estimator is on Table I's MNIST networks, without training them.

  python -m experiments.estimator_quality --models=mlp,cnn --data_source=npz --data_path=<data dir>/mnist.npz

Training a network with each estimator wants a GPU for the MNIST CNN; how far each estimate is
from the gradient it estimates can be measured on any machine. For each model of `--models` and
each estimator of ESTIMATORS, on the SGD backprop row's config (`configs/mnist_<model>_sgd_bp.py`,
PyTorch initialisation, the plain cross-entropy) with the estimator's overrides, this draws
`--draws` estimates on each of `--num_batches` training batches of 64 (the first batches of a
seeded shuffle of the training split), at the initial parameters of each of `--num_inits`
seeds, and reports from `fgjax.diagnostics`: the cosine similarity of an estimate with the true
gradient (of the model's loss, or of the local losses for the local-loss estimators), overall
and its lowest over the layers, and the relative variance E|ĝ - g|² / |g|², overall and its
highest over the layers (a layer whose estimate is noisier than its share of the whole shows
here: an estimate with relative variance v is about as noisy as an exact gradient on a batch
v + 1 times smaller); the means over the batches and seeds, with their spread (std). An
estimator a model cannot take (group-wise local heads on blocks of two layers) is a row that
says so. The exact estimators (backprop,
local_backprop) have cosine 1 and variance 0, and are not listed.

These are numbers at initialisation: they rank the estimators' noise, and how it falls with the
units that share one random derivative, but a trained network's gradients are smaller and the
ranking of the final accuracies is for `experiments.estimators_mnist` to show.
The report (markdown) goes to `--out`, not replaced unless `--overwrite`.
"""

import os
import sys

from absl import flags
from absl import logging
import jax
import numpy as np

from experiments import estimators_mnist
from experiments import runs
from fgjax import cli
from fgjax import compilation
from fgjax import data
from fgjax import diagnostics
from fgjax import programs
from fgjax import train
from fgjax import workdir as workdir_files

FLAGS = flags.FLAGS

# name -> config overrides, on the backprop row's config: the weight-perturbation forward
# gradient, plain local activity perturbation (per block and per layer) for reference, and the
# activity estimators that experiments.estimators_mnist trains.
ESTIMATORS = {
    "forward_k1": {"estimator": "forward", "num_directions": 1},
    "local_activity_k1": {"estimator": "local_activity", "num_directions": 1},
    "local_activity_k1_layer": {"estimator": "local_activity", "num_directions": 1,
                                "local_heads.loss_per": "layer"},
    **{name: overrides for name, overrides in estimators_mnist.ESTIMATORS.items()
       if overrides["estimator"] != "local_backprop"}}
BATCH_SIZE = 64
COLUMNS = ("cosine", "lowest_layer_cosine", "relative_variance", "highest_layer_variance")


def estimator_config(model: str, name: str, args):
  """The SGD backprop row's config of `model` with estimator `name`'s overrides and the data
  options of `args`."""
  config = runs.with_data(runs.row_config(f"mnist_{model}_sgd_bp"), args)
  config.update_from_flattened_dict(ESTIMATORS[name])
  return config


def batches(dataset, num_batches: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """The first `num_batches` batches of `BATCH_SIZE` of a shuffle of the training split."""
  order = np.random.default_rng(seed).permutation(len(dataset.train))
  picks = [order[i * BATCH_SIZE:(i + 1) * BATCH_SIZE] for i in range(num_batches)]
  return [(dataset.train.images[p], dataset.train.labels[p]) for p in picks]


def measure(config, dataset, args) -> dict:
  """`{name: (mean, std)}` of the diagnostics' cosine, lowest layer cosine, relative variance
  and highest layer relative variance (COLUMNS) over `args.num_inits` initialisations x
  `args.num_batches` batches, each the mean of `args.draws` estimates; raises ValueError if the
  model cannot take the estimator."""
  samples = []
  diagnose = None
  for seed in range(args.num_inits):
    model = train.create_model(config, dataset, seed)
    if diagnose is None:
      loss_fn = programs.make_loss_fn(model.apply, dataset.pixel_mean, dataset.pixel_std,
                                      config.loss, perturbed=model.perturbed)
      diagnose = compilation.jit(diagnostics.make_diagnostics(loss_fn, config, args.draws))
    for i, (images, labels) in enumerate(batches(dataset, args.num_batches, seed)):
      values = diagnose(model.params, images, labels, jax.random.PRNGKey(1000 * seed + i))
      by_layer = lambda prefix: [float(v) for name, v in values.items()
                                 if name.startswith(prefix)]
      samples.append((float(values["cosine"]), np.nanmin(by_layer("cosine/")),
                      float(values["relative_variance"]),
                      np.nanmax(by_layer("relative_variance/"))))
  table = np.array(samples)
  return {name: (table[:, j].mean(), table[:, j].std()) for j, name in enumerate(COLUMNS)}


def _cell(stats: tuple[float, float]) -> str:
  mean, std = stats
  return f"{mean:.3g} +- {std:.2g}"


def run_all(args) -> str:
  """Measures every estimator of `args.estimators` on every model of `args.models`; writes the
  report to `args.out` (refused if there, unless `args.overwrite`) and returns it."""
  for flag, given, known in (("models", args.models, estimators_mnist.MODELS),
                             ("estimators", args.estimators, tuple(ESTIMATORS))):
    if set(given) - set(known) or not given:
      raise cli.UserError(f"--{flag}={','.join(given)}: choose from {','.join(known)}")
  for flag in ("num_inits", "num_batches", "draws"):
    if getattr(args, flag) < 1:
      raise cli.UserError(f"--{flag}={getattr(args, flag)}: expected at least 1")
  if os.path.exists(args.out) and not args.overwrite:
    raise cli.UserError(f"{args.out}: already there; pass --overwrite to replace")
  lines = ["| model | estimator | cosine to the true gradient | lowest layer's cosine | "
           "relative variance | highest layer's relative variance |",
           "|---|---|---:|---:|---:|---:|"]
  for model in args.models:
    dataset = data.load_dataset(estimator_config(model, args.estimators[0], args).data)
    if args.num_batches * BATCH_SIZE > len(dataset.train):
      raise cli.UserError(f"--num_batches={args.num_batches}: {dataset.name}'s training split "
                          f"holds {len(dataset.train)} images: --num_batches="
                          f"{len(dataset.train) // BATCH_SIZE} at most")
    for i, name in enumerate(args.estimators, 1):
      logging.info("[%d/%d] %s, %s", i, len(args.estimators), model, name)
      try:
        stats = measure(estimator_config(model, name, args), dataset, args)
      except ValueError as error:
        lines.append(f"| {runs.LABELS[model]} | {name} | does not apply: {error} | - | - | - |")
        continue
      lines.append(f"| {runs.LABELS[model]} | {name} | "
                   + " | ".join(_cell(stats[key]) for key in COLUMNS) + " |")
  options = (f"--models={','.join(args.models)} --estimators={','.join(args.estimators)} "
             f"--num_inits={args.num_inits} --num_batches={args.num_batches} "
             f"--draws={args.draws}")
  text = "\n".join([
      "# How noisy each gradient estimator is at initialisation, on MNIST", "",
      f"Made by `python -m experiments.estimator_quality {options}` on "
      f"{workdir_files.format_machine(workdir_files.describe_machine())}; the module's docstring "
      "says what is measured. Mean +- std over initialisations and batches.", "",
      *lines, ""])
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  workdir_files.write_text(args.out, text)
  return text


def main(argv):
  if len(argv) > 1:
    raise cli.UserError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  print(run_all(FLAGS))
  print(f"wrote {FLAGS.out}", file=sys.stderr)


def _define_flags():
  """The command line (defined only when run, so that tests can import this)."""
  runs.define_data_flags()
  flags.DEFINE_list("models", list(estimators_mnist.MODELS), "Models, in this order: mlp, cnn.")
  flags.DEFINE_list("estimators", list(ESTIMATORS), "Estimators, in this order.")
  flags.DEFINE_integer("num_inits", 2, "Initialisations (seeds 0, 1, ...) of each model.")
  flags.DEFINE_integer("num_batches", 4, "Training batches of 64 per initialisation.")
  flags.DEFINE_integer("draws", 8, "Estimates per batch.")
  flags.DEFINE_string("out", os.path.join(runs.REPO, "experiments", "results",
                                          "estimator_quality.md"), "The markdown report.")
  flags.DEFINE_bool("overwrite", False, "Replace --out if it exists.")


if __name__ == "__main__":
  _define_flags()
  cli.run(main)

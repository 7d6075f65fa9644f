"""Time of one training step: forward gradient (K = 1 and 4, every tangent law) against backprop.

  python -m benchmarks.step_time --model mlp --json benchmarks/results/step_time_mlp.json

Each variant is the package's own step (`fgjax.programs.make_train_step`: gradient, optax SGD
update and the non-finite check) for the model's Table I setup at batch 64, on synthetic batches of
the dataset's shape. `--steps` steps run inside one compiled `lax.scan` call, as training runs
them, with the state donated; a call's time divided by its steps is one sample, and the variants
take turns over `--repeats` rounds after a warm-up call. Reported: the median ms per step,
examples per second, the median per-round ratio to backprop, and the time of drawing the step's
tangents alone (the same scan around the sampler) with its share of the step. The "fixed tangent"
row runs the K = 1 forward-gradient step with a tangent precomputed outside the compiled call:
the floor that a free tangent draw would reach. `--mode jit` times one jitted call per step
instead, outside any loop: for the convolutional networks XLA:CPU compiles backprop's weight
gradients inside a loop body into a far slower kernel than outside one.

Speed is half the comparison of tangent laws; the other half is the estimator's variance. For
each law the script also measures the total variance E||g - grad f||^2 of the K = 1 estimate
(no clipping) over `--variance_draws` tangents at one batch, divided by ||grad f||^2: theory says
n + 1 for normal tangents and n - 1 for Rademacher ones (n parameters), so the laws differ by
a factor (n - 1) / (n + 1), negligible here.
"""

import statistics
from unittest import mock

from absl import flags
import jax
import jax.numpy as jnp

from benchmarks import common

from fgjax import cli
from fgjax import estimators
from fgjax import models
from fgjax import tangents

FLAGS = flags.FLAGS
common.define_flags()
common.define_step_flags()
flags.DEFINE_integer("variance_draws", None,
                     "Tangents per law for the variance measurement, 0 to skip it (default per "
                     "model).")

DEFAULTS = {"mlp": (50, 10, 512), "cnn": (10, 7, 128), "vgg": (2, 3, 32)}  # steps, repeats, draws
DIRECTIONS = (1, 4)
FIXED = "fixed tangent"


def _fixed_tangent_runner(model: str, state, mode: str):
  """The K = 1 step whose tangent is the runner's last argument: a "fixed" sampler is registered
  while the step is traced, so the step is the package's own apart from where v comes from."""
  train_step, _ = common.build(model, common.step_config(model, "forward", tangent="fixed"))

  def step(state, images, labels, tangent):
    fixed = tangents.Sampler(lambda key, params: tangent, None, "a precomputed tangent",
                             tangents.normal.max_abs)
    with mock.patch.dict(tangents.SAMPLERS, fixed=fixed):
      return train_step(state, images, labels)

  return common.make_runner(step, mode), tangents.normal(jax.random.PRNGKey(42), state.params)


def _draw_scan(sampler, params, num_directions: int, steps: int):
  """Jitted `draw(tangents, key) -> tangents`: `steps` draws of the K tangents of a step, each
  written out in full (the carry), so that their time is what a step spends drawing them."""
  shapes = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)

  def draw_one(key):
    if num_directions == 1:
      return sampler(key, shapes)
    return jax.vmap(lambda k: sampler(k, shapes))(jax.random.split(key, num_directions))

  def draw(carry, key):
    return jax.lax.scan(lambda _, i: (draw_one(jax.random.fold_in(key, i)), None), carry,
                        jnp.arange(steps))[0]

  return jax.jit(draw, donate_argnums=0), jax.eval_shape(draw_one, jax.random.PRNGKey(0))


def estimator_variance(model: str, tangent: str, draws: int, images, labels) -> dict:
  """E||g - grad f||^2 / ||grad f||^2 of the K = 1 forward gradient, with its standard error."""
  loss_fn, params = common.loss_and_params(model)
  squared_norm = lambda tree: sum(jnp.sum(leaf ** 2) for leaf in jax.tree.leaves(tree))

  @jax.jit
  def squared_errors(params, images, labels, keys):  # arguments, not constants XLA would fold
    loss = lambda p: loss_fn(p, images, labels)[0]
    exact = jax.grad(loss)(params)

    def one(key):
      grads = estimators.forward_gradient(loss, params, key, tangent=tangent)[1]
      return squared_norm(jax.tree.map(jnp.subtract, grads, exact))

    return jax.lax.map(one, keys) / squared_norm(exact)

  values = squared_errors(params, images, labels, jax.random.split(jax.random.PRNGKey(7), draws))
  return {"relative_variance": float(jnp.mean(values)),
          "standard_error": float(jnp.std(values) / draws ** 0.5)}


def measure(model: str, batch_size: int, steps: int, repeats: int, variance_draws: int,
            mode: str) -> dict:
  """Times every variant interleaved; returns the JSON report."""
  images, labels = common.synthetic_batches(model, steps, batch_size)
  variants = {"backprop": common.step_config(model, "backprop")}
  for k in DIRECTIONS:
    for name in tangents.SAMPLERS:
      variants[f"forward K={k} {name}"] = common.step_config(model, "forward", k, name)

  calls, draw_names = {}, {}
  params = common.loss_and_params(model)[1]  # the shapes the tangents are drawn in
  for name, config in variants.items():
    calls[name] = common.step_call(model, config, images, labels, mode)
    if config.estimator == "forward":
      draw, out = _draw_scan(tangents.get_sampler(config.tangent), params,
                             config.num_directions, steps)
      draw_held = {"tangents": jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), out)}

      def draw_call(draw=draw, held=draw_held):
        held["tangents"] = draw(held["tangents"], jax.random.PRNGKey(0))
        jax.block_until_ready(held["tangents"])

      draw_names[name] = f"draw: {name}"
      calls[draw_names[name]] = draw_call

  _, state = common.build(model, variants["backprop"])
  fixed_run, fixed = _fixed_tangent_runner(model, state, mode)
  fixed_held = {"state": state}

  def fixed_call():
    fixed_held["state"], losses = fixed_run(fixed_held["state"], images, labels, fixed)
    losses.block_until_ready()

  calls[FIXED] = fixed_call
  common.warm_up(calls)
  seconds = common.time_interleaved(calls, repeats)

  ms = {name: [1e3 * s / steps for s in values] for name, values in seconds.items()}
  rows = []
  for name in list(variants) + [FIXED]:
    median = statistics.median(ms[name])
    row = {"name": name, "ms": median, "examples_per_s": 1e3 * batch_size / median,
           "ratio": common.paired_ratio(ms[name], ms["backprop"]), "ms_per_repeat": ms[name]}
    if name in draw_names:
      row["draw_ms"] = statistics.median(ms[draw_names[name]])
      row["draw_share"] = common.paired_ratio(ms[draw_names[name]], ms[name])
    rows.append(row)
  by_name = {row["name"]: row for row in rows}
  num_params = models.num_params(common.loss_and_params(model)[1])
  variance = {}
  for name in tangents.SAMPLERS if variance_draws else ():
    common.progress(f"estimator variance: {name}, {variance_draws} tangents")
    variance[name] = estimator_variance(model, name, variance_draws, images[0], labels[0])
  fastest = min((by_name[f"forward K=1 {name}"] for name in tangents.SAMPLERS),
                key=lambda row: row["ms"])
  return {
      "model": model, "mode": mode, "batch_size": batch_size, "steps_per_call": steps,
      "repeats": repeats,
      "machine": common.machine_info(), "rows": rows, "num_params": num_params,
      "variance_draws": variance_draws, "estimator_variance": variance,
      "bp_ms": by_name["backprop"]["ms"],
      "fg_ms": by_name["forward K=1 normal"]["ms"],
      "ratio": by_name["forward K=1 normal"]["ratio"],
      "fg_fast_ms": fastest["ms"], "fg_fast_tangent": fastest["name"].split()[-1],
      "fast_ratio": fastest["ratio"],
      "fixed_tangent_ms": by_name[FIXED]["ms"], "fixed_ratio": by_name[FIXED]["ratio"],
  }


def format_table(report: dict) -> str:
  lines = common.step_header(report)
  lines += common.markdown_table(
      ["step", "ms/step", "examples/s", "vs backprop", "tangent draw ms", "draw share"],
      [[row["name"], f"{row['ms']:.2f}", f"{row['examples_per_s']:,.0f}", f"{row['ratio']:.2f}",
        *([f"{row['draw_ms']:.2f}", f"{100 * row['draw_share']:.0f}%"] if "draw_ms" in row
          else ["-", "-"])] for row in report["rows"]])
  if report["estimator_variance"]:
    n = report["num_params"]
    lines += ["", f"Estimator variance, K = 1, no clipping: E||g - grad f||^2 / ||grad f||^2 over "
              f"{report['variance_draws']} tangents (n = {n:,} parameters)", ""]
    lines += common.markdown_table(
        ["tangent", "measured", "theory"],
        [[name, f"{value['relative_variance']:,.0f} +- {value['standard_error']:,.0f}",
          f"{n - 1:,}" if name == "rademacher" else f"{n + 1:,}"]
         for name, value in report["estimator_variance"].items()])
  return "\n".join(lines)


def main(argv):
  del argv  # cli.run refuses positional arguments
  steps, repeats, draws = DEFAULTS[FLAGS.model]
  report = measure(FLAGS.model, FLAGS.batch_size, FLAGS.steps or steps, FLAGS.repeats or repeats,
                   draws if FLAGS.variance_draws is None else FLAGS.variance_draws, FLAGS.mode)
  common.publish(report, format_table(report), FLAGS.json)


if __name__ == "__main__":
  cli.run(main)

"""Data parallelism on simulated CPU devices (fgjax.sharding).

The device count of a process is fixed when it first imports JAX, and pytest's own process has
one device, so the multi-device checks run in subprocesses started with
`XLA_FLAGS=--xla_force_host_platform_device_count=N`. This file is also their worker:
`python tests/test_sharding.py train OUTDIR` (4 devices) trains a few steps of both estimators on
one device and data-parallel over four (fed batches gathered on the host), compares them, records
the sharded steps' collectives, saves the sharded state with orbax, evaluates a split that does
not fill its batches on one device and over the four, records the rows of a batch each device
holds, and runs `train_and_evaluate` data-parallel with checkpoints, dropping its last one as a
kill would; `python tests/test_sharding.py restore OUTDIR` (2 devices)
restores the orbax checkpoint onto one device and onto a two-device mesh, and resumes the run.
"""

import json
import os
import shutil
import subprocess
import sys

import jax
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np
import pytest

from fgjax import checkpointing
from fgjax import data
from fgjax import default_config
from fgjax import launch
from fgjax import models
from fgjax import optimizers
from fgjax import sharding
from fgjax import train
from fgjax import workdir as files
from fgjax import programs
from fgjax.config_loading import ConfigError

NUM_STEPS = 8
NUM_DIRECTIONS = 2
RUN_STEPS = 16  # one epoch of the digits' 1,078 training examples in batches of 64
RESULT_FILE = "result.json"


def _config(estimator: str, data_parallel: bool):
  config = default_config.base_config()
  config.estimator = estimator
  config.learning_rate = 3e-3 if estimator == "forward" else 0.1
  config.jvp_clip = 1.0 if estimator == "forward" else None
  config.num_directions = NUM_DIRECTIONS
  config.data.name, config.data.source, config.data.validation_size = "digits", "embedded", 360
  config.sharding.data_parallel = data_parallel
  return config


def _run_config():
  """One epoch of RUN_STEPS backprop steps, data parallel, a checkpoint every RUN_STEPS / 2."""
  config = _config("backprop", data_parallel=True)
  config.log_every_steps = config.checkpoint_every_steps = RUN_STEPS // 2
  return config


def _initial_state(config, dataset):
  model = models.create_model(config.model, dataset.image_shape, dataset.num_classes,
                              config.seed)
  tx = optimizers.build_optimizer(config)
  return model, tx, programs.init_state(model.params, tx, jax.random.PRNGKey(config.seed))


def _setup(config):
  """The pieces of `train.train_and_evaluate` up to the first chunk, through the sharding hook:
  (chunk, state, its arguments between the state and num_steps). Data parallel, the chunk takes
  its NUM_STEPS batches gathered on the host (`sharding.gather_batches`)."""
  dataset = data.load_dataset(config.data)
  model, tx, state = _initial_state(config, dataset)
  loss_fn = programs.make_loss_fn(model.apply, dataset.pixel_mean, dataset.pixel_std)
  train_loss_fn, place, mesh = sharding.data_parallel(config, loss_fn)
  chunk = programs.make_train_chunk(programs.make_train_step(train_loss_fn, tx, config),
                                    config.batch_size, fed=mesh is not None)
  arrays = dataset.train.images, dataset.train.labels
  order = programs.epoch_order(jax.random.PRNGKey(1), 0, arrays[1])
  if mesh is None:
    return chunk, place(state), (*(place(array) for array in arrays), order, 0)
  indices = np.asarray(order)[:NUM_STEPS * config.batch_size].reshape(NUM_STEPS, -1)
  return chunk, place(state), (*sharding.gather_batches(mesh, arrays, indices), None, 0)


def _train(config):
  """Trains NUM_STEPS steps; returns (state, losses, collectives of the compiled chunk)."""
  chunk, state, batches = _setup(config)
  compiled = chunk.lower(state, *batches, num_steps=NUM_STEPS).compile()
  state, losses = compiled(state, *batches)
  return state, np.asarray(losses), sharding.collectives(compiled.as_text())


def _uneven_evaluation() -> dict:
  """A split of 37 examples evaluated in batches of 10 on one device and over the 4-device mesh
  (`train._eval_batches`: batches of 12 there, each device holding 3 rows of each)."""
  config = _config("forward", data_parallel=True)
  dataset = data.load_dataset(config.data)
  model, _, _ = _initial_state(config, dataset)
  loss_fn = programs.make_loss_fn(model.apply, dataset.pixel_mean, dataset.pixel_std)
  _, place, mesh = sharding.data_parallel(config, loss_fn)
  split = data.Split(dataset.test.images[:37], dataset.test.labels[:37])
  evaluate = jax.jit(programs.make_evaluate(loss_fn))
  one = evaluate(model.params, *train._eval_batches(split, 10, jax.device_put, None))
  batches = train._eval_batches(split, 10, place, mesh)
  compiled = evaluate.lower(place(model.params), *batches).compile()
  shards = sorted({shard.data.shape for shard in batches[0].addressable_shards})
  return {"one_device": {k: float(v) for k, v in one.items()},
          "mesh": {k: float(v) for k, v in compiled(place(model.params), *batches).items()},
          "shapes": [batches[0].shape, shards],
          "collectives": sharding.collectives(compiled.as_text())}


def _device_rows(batch_size: int) -> list:
  """The rows of a batch that JAX gives each device of the 4-device mesh, in the mesh's order,
  and those `process_rows` says a process owning only that device holds."""
  mesh = sharding.make_mesh()
  indices = NamedSharding(mesh, P(sharding.DATA_AXIS)).devices_indices_map((batch_size,))
  return [(list(range(batch_size)[indices[device][0]]),
           sharding.process_rows(range(mesh.size), batch_size, k).tolist())
          for k, device in enumerate(mesh.devices.flat)]


def _worker_train(outdir: str) -> dict:
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  result = {"num_devices": jax.device_count()}
  for estimator in ("forward", "backprop"):
    single, single_losses, _ = _train(_config(estimator, data_parallel=False))
    sharded, sharded_losses, collectives = _train(_config(estimator, data_parallel=True))
    diffs = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
                         single.params, sharded.params)
    result[estimator] = {
        "max_param_diff": max(jax.tree.leaves(diffs)),
        "max_param": max(float(np.max(np.abs(leaf))) for leaf in jax.tree.leaves(single.params)),
        "max_loss_diff": float(np.max(np.abs(single_losses - sharded_losses))),
        "num_params": models.num_params(single.params),
        "collectives": collectives,
        "state_devices": sorted({len(leaf.sharding.device_set)
                                 for leaf in jax.tree.leaves(sharded)}),
        "state_replicated": all(leaf.sharding.is_fully_replicated
                                for leaf in jax.tree.leaves(sharded)),
    }
    if estimator == "forward":
      with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(os.path.join(outdir, "orbax"), sharded)
      np.savez(os.path.join(outdir, "expected.npz"),
               *[np.asarray(leaf) for leaf in jax.tree.leaves(sharded)])
  result["uneven_evaluation"] = _uneven_evaluation()
  result["device_rows"] = _device_rows(64)
  run = os.path.join(outdir, "run")
  result["run_summary"] = train.train_and_evaluate(_run_config(), run)
  # As if killed after its first checkpoint: the last checkpoint and the summary never written.
  shutil.rmtree(os.path.join(run, files.CHECKPOINT_DIR, str(RUN_STEPS)))
  os.remove(os.path.join(run, files.SUMMARY_FILE))
  odd_batch = _config("forward", data_parallel=True)
  odd_batch.batch_size = 62
  try:
    sharding.data_parallel(odd_batch, loss_fn=None)
    result["odd_batch_error"] = None
  except ConfigError as error:
    result["odd_batch_error"] = str(error)
  return result


def _worker_restore(outdir: str) -> dict:
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  config = _config("forward", data_parallel=True)
  _, _, fresh = _initial_state(config, data.load_dataset(config.data))  # the target's structure
  expected = np.load(os.path.join(outdir, "expected.npz"))
  expected = [expected[f"arr_{i}"] for i in range(len(expected.files))]

  def check(restored):
    leaves = jax.tree.leaves(restored)
    return {"equal": len(leaves) == len(expected) and all(
                np.array_equal(np.asarray(a), b) for a, b in zip(leaves, expected)),
            "devices": sorted({len(leaf.sharding.device_set) for leaf in leaves})}

  result = {"num_devices": jax.device_count()}
  # orbax restores onto the target's sharding: one device, or a mesh of two.
  targets = {"one_device": jax.device_put(fresh, jax.devices()[0]),
             "two_device_mesh": sharding.replicate(fresh, sharding.make_mesh(2))}
  for name, target in targets.items():
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    with ocp.StandardCheckpointer() as checkpointer:
      result[name] = check(checkpointer.restore(os.path.join(outdir, "orbax"), abstract))
  # The run resumes from its checkpoint of step RUN_STEPS / 2, now over two devices.
  restore = checkpointing.Checkpoints.restore

  def restore_and_record(checkpoints, template):
    restored = restore(checkpoints, template)
    result["resumed_from"] = None if restored is None else restored.step
    return restored

  checkpointing.Checkpoints.restore = restore_and_record
  result["run_summary"] = train.train_and_evaluate(_run_config(), os.path.join(outdir, "run"))
  return result


def _run_worker(command: str, outdir: str, num_devices: int) -> dict:
  flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={num_devices}"
  env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu")
  subprocess.run([sys.executable, __file__, command, outdir], env=env, check=True, timeout=300)
  with open(os.path.join(outdir, f"{command}_{RESULT_FILE}"), encoding="utf-8") as f:
    return json.load(f)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  outdir = str(tmp_path_factory.mktemp("sharding"))
  return {"train": _run_worker("train", outdir, 4), "restore": _run_worker("restore", outdir, 2)}


@pytest.mark.parametrize("estimator", ["forward", "backprop"])
def test_sharded_training_matches_single_device(runs, estimator):
  assert runs["train"]["num_devices"] == 4
  result = runs["train"][estimator]
  assert result["max_param_diff"] <= 1e-5 * result["max_param"], result
  assert result["max_loss_diff"] <= 1e-5, result
  assert result["state_devices"] == [4] and result["state_replicated"]


def test_forward_gradient_all_reduces_only_the_scalars(runs):
  collectives = runs["train"]["forward"]["collectives"]
  assert {op for op, _, _ in collectives} == {"all-reduce"}, collectives
  # The loss and the K directional derivatives, float32.
  assert sum(size for _, _, size in collectives) == 4 * (NUM_DIRECTIONS + 1), collectives


def test_backprop_all_reduces_the_full_gradient(runs):
  result = runs["train"]["backprop"]
  total = sum(size for op, _, size in result["collectives"] if op == "all-reduce")
  assert total >= 4 * result["num_params"], result["collectives"]


@pytest.mark.parametrize("device_processes, rows", [
    ([0, 0, 0, 0], [range(0, 8)]),
    ([0, 0, 1, 1], [range(0, 4), range(4, 8)]),
    ([0, 1, 0, 1], [[0, 1, 4, 5], [2, 3, 6, 7]]),  # each device's block of 2 rows
])
def test_each_process_gathers_the_rows_its_devices_hold(device_processes, rows):
  given = [sharding.process_rows(device_processes, 8, process).tolist()
           for process in sorted(set(device_processes))]
  assert given == [list(expected) for expected in rows]  # each process's rows, in order
  assert sorted(sum(given, [])) == list(range(8))  # together, the batch, each row once


def test_the_devices_hold_the_rows_process_rows_gives_them(runs):
  for held, given in runs["train"]["device_rows"]:
    assert held == given


def test_an_uneven_split_is_evaluated_once_over_the_devices(runs):
  result = runs["train"]["uneven_evaluation"]
  assert result["shapes"] == [[4, 12, 8, 8, 1], [[4, 3, 8, 8, 1]]]  # 48 rows, 11 of them padding
  for name, value in result["one_device"].items():
    assert result["mesh"][name] == pytest.approx(value, rel=1e-6), name
  # Each device evaluates its own rows: only the sums cross devices.
  assert {op for op, _, _ in result["collectives"]} == {"all-reduce"}, result["collectives"]
  assert sum(size for _, _, size in result["collectives"]) <= 16, result["collectives"]


def test_batch_must_split_evenly(runs):
  assert "multiple of the 4 devices" in runs["train"]["odd_batch_error"]


@pytest.mark.parametrize("target,devices", [("one_device", [1]), ("two_device_mesh", [2])])
def test_checkpoint_from_four_devices_restores_on_fewer(runs, target, devices):
  restore = runs["restore"]
  assert restore["num_devices"] == 2
  assert restore[target] == {"equal": True, "devices": devices}


def test_run_from_four_devices_resumes_on_two(runs):
  assert runs["restore"]["resumed_from"] == RUN_STEPS // 2
  full, resumed = runs["train"]["run_summary"], runs["restore"]["run_summary"]
  assert full["status"] == resumed["status"] == "completed"
  assert full["steps"] == resumed["steps"] == RUN_STEPS
  for name in ("train_loss", "validation_loss", "test_loss", "test_accuracy"):
    assert resumed[name] == pytest.approx(full[name], rel=1e-5), name


def _distributed_main(workdir, port: int, num_processes: int, process_id: int,
                      *flags: str) -> subprocess.Popen:
  """`fgjax.main --distributed` as process `process_id` of `num_processes`, two CPU devices."""
  command = [sys.executable, "-m", "fgjax.main", "--config=configs/default.py:forward",
             f"--workdir={workdir}", "--config.sharding.data_parallel=True", "--distributed",
             f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={num_processes}",
             f"--process_id={process_id}", *flags]
  return subprocess.Popen(command, cwd=os.path.join(os.path.dirname(__file__), ".."),
                          env=launch.process_env(2), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _one_line_error(process: subprocess.Popen) -> str:
  """The one `error: ...` line of a process that ended with status 2 (and no stack trace)."""
  _, stderr = process.communicate(timeout=300)
  assert process.returncode == 2, stderr[-3000:]
  assert "Traceback" not in stderr and "Check failure" not in stderr, stderr[-3000:]
  errors = [line for line in stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, stderr[-3000:]
  return errors[0]


def test_an_unreachable_coordinator_ends_the_process_with_one_line(tmp_path):
  port = launch.free_port()  # nothing listens there
  error = _one_line_error(_distributed_main(tmp_path, port, 2, 1, "--initialization_timeout=2"))
  assert error.startswith(f"error: process 1 could not join a run of 2 processes at "
                          f"127.0.0.1:{port} within 2 s")


def test_processes_given_different_counts_all_end_with_one_line(tmp_path):
  port = launch.free_port()
  processes = [_distributed_main(tmp_path, port, n, i) for i, n in enumerate([2, 3])]
  for process in processes:
    assert _one_line_error(process).startswith(
        "error: --num_processes differs between the processes: [2, 3]")


def test_collectives_parses_tuples_and_async_forms():
  hlo = "\n".join([
      "  %all-reduce = (f32[2]{0}, f32[]) all-reduce(%a, %b), channel_id=1, to_apply=%add",
      "  %ars = bf16[784,1024]{1,0} all-reduce-start(%g), channel_id=2, to_apply=%add",
      "  %ard = bf16[784,1024]{1,0} all-reduce-done(%ars)",
      "  %ag = s32[8]{0} all-gather(%i), dimensions={0}",
      "  %add = f32[] add(%x, %y)",
  ])
  assert sharding.collectives(hlo) == [
      ("all-reduce", "(f32[2]{0}, f32[])", 12),
      ("all-reduce", "bf16[784,1024]{1,0}", 784 * 1024 * 2),
      ("all-gather", "s32[8]{0}", 32),
  ]


def test_data_parallel_off_leaves_the_loop_unchanged():
  loss_fn = lambda params, images, labels: (0.0, None)
  train_loss_fn, place, mesh = sharding.data_parallel(_config("forward", data_parallel=False),
                                                      loss_fn)
  assert train_loss_fn is loss_fn and place is jax.device_put and mesh is None


if __name__ == "__main__":
  _command, _outdir = sys.argv[1:]
  _result = {"train": _worker_train, "restore": _worker_restore}[_command](_outdir)
  with open(os.path.join(_outdir, f"{_command}_{RESULT_FILE}"), "w", encoding="utf-8") as _f:
    json.dump(_result, _f)

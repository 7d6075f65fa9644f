"""fgjax.sweep: search spaces, ranking, and that vmapped trials are the trials run one by one."""

import json
import os

import numpy as np
import pytest

from fgjax import config_loading
from fgjax import sweep
from fgjax import train
from fgjax.workdir import read_json, read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, "configs", "default.py")


def digits_config(estimator: str, epochs: int = 1):
  """The default digits MLP, one compiled chunk per epoch (16 steps) to keep compiles few."""
  config = config_loading.load_config(f"{DEFAULT_CONFIG}:{estimator}")
  config.num_epochs = epochs
  config.log_every_steps = 16
  return config


def test_parse_spec_range_list_and_empty():
  assert sweep.parse_spec("learning_rate", "1e-3:1e-1:3") == sweep.LogRange(1e-3, 1e-1, 3)
  assert sweep.parse_spec("decay", "0,1e-5") == (0.0, 1e-5)
  assert sweep.parse_spec("b2", "0.999,0.9995,0.9999") == (0.999, 0.9995, 0.9999)  # as typed
  assert sweep.parse_spec("momentum", "") is None
  for bad in ("1:2", "0:1:3", "a,b", "1e-3:1e-1:0"):
    with pytest.raises(sweep.SweepError):
      sweep.parse_spec("learning_rate", bad)


def test_grid_is_log_spaced_and_rounded_and_random_is_seeded():
  points = sweep.grid_points({"learning_rate": sweep.LogRange(1e-4, 1.0, 5),
                              "decay": (0.0, 1e-5)})
  assert [p["learning_rate"] for p in points[::2]] == [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
  assert len(points) == 10 and {p["decay"] for p in points} == {0.0, 1e-5}
  space = {"learning_rate": sweep.LogRange(1e-4, 1e-1, 1), "b1": (0.9, 0.99)}
  draws = sweep.random_points(space, 20, seed=3)
  assert draws == sweep.random_points(space, 20, seed=3)
  assert all(1e-4 <= d["learning_rate"] <= 1e-1 and d["b1"] in (0.9, 0.99) for d in draws)


def test_searching_a_hyperparameter_the_optimizer_ignores_is_an_error(tmp_path):
  with pytest.raises(sweep.SweepError, match="does not use 'momentum'"):
    sweep.sweep(digits_config("backprop"), str(tmp_path), space={"momentum": (0.9,)})


def test_rank_puts_diverged_and_nonfinite_last():
  def row(point, loss, status="completed"):
    return {"trial": point, "setting": point, "seed": 0,
            "hyperparameters": {"learning_rate": 1.0}, "status": status,
            "validation_loss": loss, "validation_accuracy": 0.5, "train_loss": 1.0}

  ranked = sweep.rank_settings([row(0, None), row(1, 0.01, "diverged"), row(2, 0.9),
                                row(3, 0.3)])
  assert [s["setting"] for s in ranked] == [3, 2, 1, 0]
  assert [s["status"] for s in ranked] == ["completed", "completed", "diverged", "diverged"]


def test_sweep_picks_the_best_learning_rate_and_writes_a_rerunnable_config(tmp_path):
  workdir = str(tmp_path / "sweep")
  summary = sweep.sweep(digits_config("backprop"), workdir,
                        space={"learning_rate": (1e-3, 0.1, 1e3)}, epochs=2,
                        trials_per_call=2, config_spec=f"{DEFAULT_CONFIG}:backprop",
                        config_overrides={"num_epochs": 1})
  ranked = [(s["hyperparameters"]["learning_rate"], s["status"]) for s in summary["settings"]]
  # The diverging trial shares its group (and compiled program) with lr 0.1, which completes.
  assert ranked == [(0.1, "completed"), (1e-3, "completed"), (1e3, "diverged")]
  assert summary["best"]["hyperparameters"] == {"learning_rate": 0.1}
  assert "--config.learning_rate=0.1" in summary["best"]["command"]
  with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
    assert json.load(f)["best"]["hyperparameters"] == {"learning_rate": 0.1}
  assert "| 1 | 0.1 |" in open(os.path.join(workdir, "results.md"), encoding="utf-8").read()
  for trial in ("0000", "0001", "0002"):
    for name in ("config.json", "metrics.jsonl", "summary.json"):
      assert os.path.isfile(os.path.join(workdir, "trials", trial, name))
    rows = read_metrics(os.path.join(workdir, "trials", trial))
    assert not any("test_loss" in row for row in rows)  # a sweep never looks at the test split
  best = config_loading.load_config(os.path.join(workdir, "best_config.py"))
  assert (best.learning_rate, best.num_epochs, best.estimator) == (0.1, 1, "backprop")


def test_a_sweep_of_another_search_is_refused_on_the_same_workdir(tmp_path):
  workdir = str(tmp_path / "sweep")
  sweep.sweep(digits_config("backprop"), workdir, space={"learning_rate": (0.1,)}, epochs=1)
  with pytest.raises(sweep.SweepError, match="holds another sweep"):
    sweep.sweep(digits_config("backprop"), workdir, space={"learning_rate": (0.3,)}, epochs=1)


def test_a_sweep_saved_with_a_renamed_override_resumes(tmp_path):
  """A sweep recorded an override under a field's old name (local_loss_per): it is the same
  search under the new name (local_heads.loss_per), and resumes."""
  workdir = str(tmp_path / "sweep")
  config = digits_config("backprop")
  config.local_heads.loss_per = "layer"
  run = lambda: sweep.sweep(config, workdir, space={"learning_rate": (0.1,)}, epochs=1,
                            config_overrides={"local_heads.loss_per": "layer"})
  run()
  record = read_json(os.path.join(workdir, sweep.SWEEP_FILE))
  record["config_overrides"] = {"local_loss_per": "layer"}
  with open(os.path.join(workdir, sweep.SWEEP_FILE), "w", encoding="utf-8") as f:
    json.dump(record, f)
  assert run()["best"]["hyperparameters"] == {"learning_rate": 0.1}


@pytest.mark.parametrize("estimator", ["forward", "backprop"])
def test_vmapped_trials_equal_trials_run_one_by_one(estimator, tmp_path):
  config = digits_config(estimator)
  lrs = (3e-3, 1e-3) if estimator == "forward" else (0.1, 0.03)
  trials = sweep.make_trials([{"learning_rate": lr} for lr in lrs], seeds=[0, 1])[::3]
  assert [(t.hyperparameters["learning_rate"], t.seed) for t in trials] == [(lrs[0], 0),
                                                                              (lrs[1], 1)]
  results = {}
  for per_call in (2, 1):
    config.trials_per_call = per_call
    results[per_call] = train.train_trials(config, str(tmp_path / str(per_call)), trials,
                                           evaluate_test=False)
  for a, b in zip(results[2], results[1]):
    assert a["status"] == b["status"] == "completed"
    np.testing.assert_allclose(a["validation_loss"], b["validation_loss"], rtol=1e-5)
    np.testing.assert_allclose(a["train_loss"], b["train_loss"], rtol=1e-5)
  # The second trial, trained alone as `fgjax.main` would, ends where the group did.
  config.trials_per_call = None
  summary = train.train_and_evaluate(train.trial_config(config, trials[1]),
                                     str(tmp_path / "main"))
  np.testing.assert_allclose(summary["validation_loss"], results[2][1]["validation_loss"],
                             rtol=1e-5)
  np.testing.assert_allclose(summary["train_loss"], results[2][1]["train_loss"], rtol=1e-5)

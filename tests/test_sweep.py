"""fgjax.sweep: search spaces, ranking, and that vmapped trials are the trials run one by one."""

import json
import os

import jax
import numpy as np
import pytest

from fgjax import config_loading
from fgjax import sweep
from fgjax import train

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
  def result(point, loss, status="completed"):
    trial = sweep.Trial(index=point, point=point, hyperparameters={"learning_rate": 1.0},
                        seed=0)
    return sweep.TrialResult(trial, status, loss, 0.5, 1.0, 10, 0, None)

  ranked = sweep.rank_settings([result(0, float("nan")), result(1, 0.01, "diverged"),
                                result(2, 0.9), result(3, 0.3)])
  assert [s["setting"] for s in ranked] == [3, 2, 1, 0]
  assert [s["status"] for s in ranked] == ["completed", "completed", "diverged", "diverged"]


def test_sweep_picks_the_best_learning_rate_and_writes_a_rerunnable_config(tmp_path):
  workdir = str(tmp_path / "sweep")
  summary = sweep.sweep(digits_config("backprop"), workdir,
                        space={"learning_rate": (1e-3, 0.1, 1e3)}, epochs=2,
                        trials_per_call=2, config_spec=f"{DEFAULT_CONFIG}:backprop",
                        config_overrides={"num_epochs": 1})
  ranked = [(s["hyperparameters"]["learning_rate"], s["status"]) for s in summary["settings"]]
  assert ranked == [(0.1, "completed"), (1e-3, "completed"), (1e3, "diverged")]
  assert summary["best"]["hyperparameters"] == {"learning_rate": 0.1}
  assert "--config.learning_rate=0.1" in summary["best"]["command"]
  with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
    assert json.load(f)["best"]["hyperparameters"] == {"learning_rate": 0.1}
  assert "| 1 | 0.1 |" in open(os.path.join(workdir, "results.md"), encoding="utf-8").read()
  for trial in ("0000", "0001", "0002"):
    for name in ("config.json", "metrics.jsonl", "result.json"):
      assert os.path.isfile(os.path.join(workdir, "trials", trial, name))
  best = config_loading.load_config(os.path.join(workdir, "best_config.py"))
  assert (best.learning_rate, best.num_epochs, best.estimator) == (0.1, 1, "backprop")


@pytest.mark.parametrize("estimator", ["forward", "backprop"])
def test_vmapped_trials_equal_trials_run_one_by_one(estimator, tmp_path):
  config = digits_config(estimator)
  lrs = (3e-3, 1e-3) if estimator == "forward" else (0.1, 0.03)
  trials = sweep.make_trials([{"learning_rate": lr} for lr in lrs], seeds=[0, 1])[::3]
  assert [(t.hyperparameters["learning_rate"], t.seed) for t in trials] == [(lrs[0], 0),
                                                                              (lrs[1], 1)]
  together = sweep.run_trials(config, trials, epochs=1, trials_per_call=2, keep_params=True)
  alone = sweep.run_trials(config, trials, epochs=1, trials_per_call=1, keep_params=True)
  for a, b in zip(together, alone):
    assert a.status == b.status == "completed"
    np.testing.assert_allclose(a.validation_loss, b.validation_loss, rtol=1e-5)
    np.testing.assert_allclose(a.train_loss, b.train_loss, rtol=1e-5)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6),
                 a.params, b.params)
  # The second trial, trained by fgjax.train as `fgjax.main` would, ends where the sweep did.
  summary = train.train_and_evaluate(sweep.trial_config(config, trials[1], epochs=1),
                                     str(tmp_path / "main"))
  np.testing.assert_allclose(summary["validation_loss"], together[1].validation_loss, rtol=1e-5)
  np.testing.assert_allclose(summary["train_loss"], together[1].train_loss, rtol=1e-5)

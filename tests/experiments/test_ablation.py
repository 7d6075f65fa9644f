"""Tests of experiments/ablation.py: one of a forward row's code settings flipped at a time."""

import os
import types

import pytest

from experiments import ablation
from experiments import runs
from fgjax import cli
from test_table1 import write_seeds  # pylint: disable=g-bad-import-order


def test_each_factor_flips_to_the_other_setting():
  assert [ablation.flipped("init", v) for v in ("torch", "flax")] == ["flax", "torch"]
  assert [ablation.flipped("loss", v) for v in ("clamped_cross_entropy", "cross_entropy")] == [
      "cross_entropy", "clamped_cross_entropy"]
  assert [ablation.flipped("jvp_clip", v) for v in (1.0, None)] == [None, 1.0]


def args_for(tmp_path, data_path=None, **overrides):
  args = dict(row="mnist_mlp_sgd_fwd", num_seeds=2, factors=list(ablation.FACTORS),
              data_source="npz", data_path=data_path,
              workdir_root=str(tmp_path / "ablation"), table1_root=str(tmp_path / "table1"),
              out=str(tmp_path / "ablation.md"), report_only=False, combinations=False)
  args.update(overrides)
  return types.SimpleNamespace(**args)


def test_trains_each_flip_and_reports_its_change_from_the_rows_own_run(tmp_path, tiny_mnist):
  args = args_for(tmp_path, tiny_mnist)
  with pytest.raises(cli.UserError, match="no full-length run of at least 2 seeds"):
    ablation.run_all(args)
  row = args.row
  write_seeds(os.path.join(args.table1_root, f"{row}_3seeds"), row, [0.46, 0.47, 0.48],
              [0.86, 0.86, 0.87])
  text = ablation.run_all(args)
  for factor in ablation.FACTORS:
    run = runs.load_run(os.path.join(args.workdir_root, f"{row}_{factor}_2seeds"))
    assert run["config"][factor] == ablation.flipped(factor, runs.row_config(row)[factor])
    assert run["config"]["num_epochs"] == 50 and run["aggregate"]["num_seeds"] == 2
  assert text == open(args.out, encoding="utf-8").read()
  lines = text.splitlines()
  assert "| the row's own (init torch, loss clamped_cross_entropy, jvp_clip 1.0) | 0.4700 ± " \
         "0.0082 (3) |" in text
  flips = [line for line in lines if line.startswith(("| init flax", "| loss cross_entropy",
                                                      "| jvp_clip None"))]
  assert len(flips) == 3 and "Not run yet" not in text
  # The tiny stand-in learns far less than the row's own (hand-written) run: a flagged change.
  assert all(" **" in line.split(" | ")[2] for line in flips)
  # Finished runs are read, not trained again; --report_only reports them.
  stamp = os.path.getmtime(os.path.join(args.workdir_root, f"{row}_init_2seeds", "summary.json"))
  assert ablation.run_all(args_for(tmp_path, tiny_mnist, report_only=True)) == text
  ablation.run_all(args)
  assert os.path.getmtime(os.path.join(args.workdir_root, f"{row}_init_2seeds",
                                       "summary.json")) == stamp


def test_bad_rows_and_seed_counts_stop_with_a_message(tmp_path):
  with pytest.raises(cli.UserError, match="expected a forward-gradient row"):
    ablation.run_all(args_for(tmp_path, row="mnist_mlp_sgd_bp"))
  with pytest.raises(cli.UserError, match="use at least 2"):
    ablation.run_all(args_for(tmp_path, num_seeds=1))
  with pytest.raises(cli.UserError, match="--factors=width: choose from init,loss,jvp_clip"):
    ablation.run_all(args_for(tmp_path, factors=["width"]))
  assert not os.path.exists(tmp_path / "ablation")


def test_flip_sets_are_each_factor_then_every_combination():
  assert ablation.flip_sets(["loss", "init"], combinations=False) == [("init",), ("loss",)]
  assert ablation.flip_sets(ablation.FACTORS, combinations=True) == [
      ("init",), ("loss",), ("jvp_clip",), ("init", "loss"), ("init", "jvp_clip"),
      ("loss", "jvp_clip"), ("init", "loss", "jvp_clip")]


def test_combinations_flip_several_factors_in_one_run(tmp_path, tiny_mnist):
  # Only the factors asked for, and their combinations, train; the report lists the rest.
  args = args_for(tmp_path, tiny_mnist, factors=["init", "jvp_clip"], combinations=True)
  write_seeds(os.path.join(args.table1_root, f"{args.row}_2seeds"), args.row, [0.46, 0.48],
              [0.86, 0.87])
  text = ablation.run_all(args)
  assert sorted(os.listdir(args.workdir_root)) == sorted(
      f"{args.row}_{name}_2seeds" for name in ("init", "init-jvp_clip", "jvp_clip"))
  both = runs.load_run(os.path.join(args.workdir_root, f"{args.row}_init-jvp_clip_2seeds"))
  assert (both["config"]["init"], both["config"]["jvp_clip"], both["config"]["loss"]) == (
      "flax", None, "clamped_cross_entropy")
  assert "| init flax, jvp_clip None |" in text
  assert "Not run yet: loss, init + loss, loss + jvp_clip, init + loss + jvp_clip." in text


def test_a_diverged_flip_says_where_its_seeds_stopped():
  stats = lambda loss, acc: {"test_loss": {"mean": loss, "std": 0.01, "n": 3},
                             "test_accuracy": {"mean": acc, "std": 0.01, "n": 3}}
  baseline = {"aggregate": {"aggregate": stats(0.47, 0.86)}, "machine": None}
  diverged = {"aggregate": {"aggregate": {"test_loss": None, "test_accuracy": None},
                            "num_seeds": 3, "per_seed": {
                                str(seed): {"status": "diverged", "steps": steps}
                                for seed, steps in enumerate((9191, 8070, 8465))}},
              "machine": None}
  text = ablation.report("mnist_mlp_sgd_fwd", baseline, {("loss", "jvp_clip"): diverged})
  assert ("| loss cross_entropy, jvp_clip None | diverged: 3 of 3 seeds, at step 8,070-9,191 "
          "| - | - | - |") in text

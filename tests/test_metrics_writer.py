"""fgjax.metrics_writer: TensorBoard reads back every scalar and the config as hparams, and a
resumed run's events replace the ones past its checkpoint."""

import json
import os
import struct

import pytest
from tensorboardX.proto import event_pb2

from fgjax.metrics_writer import HPARAMS_METRICS, MetricWriter


def tensorboard_scalars(run_dir: str) -> dict:
  """{tag: [(step, value), ...]} of a run's TensorBoard events, read by TensorBoard itself."""
  event_accumulator = pytest.importorskip(
      "tensorboard.backend.event_processing.event_accumulator")
  accumulator = event_accumulator.EventAccumulator(
      os.path.join(run_dir, "tensorboard"), size_guidance={event_accumulator.SCALARS: 0})
  accumulator.Reload()
  return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
          for tag in accumulator.Tags()["scalars"]}


def tensorboard_hparams(run_dir: str) -> tuple[dict, list[str]]:
  """The hyperparameters and the metric tags that TensorBoard's HParams plugin reads."""
  multiplexer = pytest.importorskip("tensorboard.backend.event_processing.plugin_event_multiplexer")
  plugin_data = pytest.importorskip("tensorboard.plugins.hparams.plugin_data_pb2")
  events = multiplexer.EventMultiplexer({"run": os.path.join(run_dir, "tensorboard")})
  events.Reload()
  content = events.PluginRunToTagToContent("hparams")["run"]
  parse = plugin_data.HParamsPluginData.FromString
  start = parse(content["_hparams_/session_start_info"]).session_start_info
  experiment = parse(content["_hparams_/experiment"]).experiment
  values = {name: getattr(value, value.WhichOneof("kind")) for name, value in start.hparams.items()}
  assert sorted(info.name for info in experiment.hparam_infos) == sorted(values)
  return values, [info.name.tag for info in experiment.metric_infos]


def rows(first: int, last: int, loss: float) -> list[dict]:
  return [{"step": step, "train_loss": loss + step, "epoch": step // 4}
          for step in range(first, last + 1, 2)]


def test_scalars_and_hparams_are_read_back_by_tensorboard(tmp_path):
  hparams = {"learning_rate": 0.003, "model": "mlp", "jvp_clip": True, "seed": 0}
  writer = MetricWriter(str(tmp_path), 0, hparams)
  for row in rows(2, 10, 0.5):
    writer.write(row)
  writer.close()
  assert tensorboard_scalars(str(tmp_path)) == {
      "train_loss": [(r["step"], r["train_loss"]) for r in rows(2, 10, 0.5)],
      "epoch": [(r["step"], r["epoch"]) for r in rows(2, 10, 0.5)]}
  assert tensorboard_hparams(str(tmp_path)) == (
      {**hparams, "seed": 0.0}, list(HPARAMS_METRICS))  # numbers are float64 in TensorBoard


def test_a_resumed_writer_replaces_the_events_past_its_checkpoint(tmp_path):
  """A first session writes steps 2-10 and is killed (flushed up to its checkpoint at 6, not
  closed); the rerun writes 8-12 again with other values: TensorBoard and metrics.jsonl agree."""
  first = MetricWriter(str(tmp_path), 0, {"seed": 0})
  for row in rows(2, 10, 0.5):
    first.write(row)
  first.flush()
  second = MetricWriter(str(tmp_path), 6)
  for row in rows(8, 12, 100.0):
    second.write(row)
  second.close()
  expected = rows(2, 6, 0.5) + rows(8, 12, 100.0)
  with open(tmp_path / "metrics.jsonl", encoding="utf-8") as f:
    assert [json.loads(line) for line in f] == expected
  assert len(os.listdir(tmp_path / "tensorboard")) == 2
  assert tensorboard_scalars(str(tmp_path))["train_loss"] == [
      (r["step"], r["train_loss"]) for r in expected]
  assert tensorboard_hparams(str(tmp_path))[0] == {"seed": 0.0}


def test_a_run_started_over_before_its_first_checkpoint_drops_the_earlier_events(tmp_path):
  first = MetricWriter(str(tmp_path), 0, {"seed": 0})
  for row in rows(2, 6, 0.5):
    first.write(row)
  first.flush()
  second = MetricWriter(str(tmp_path), 0, {"seed": 0})
  for row in rows(2, 4, 100.0):
    second.write(row)
  second.close()
  assert tensorboard_scalars(str(tmp_path))["train_loss"] == [
      (r["step"], r["train_loss"]) for r in rows(2, 4, 100.0)]


def read_events(path: str) -> list:
  """The events of a TensorBoard file (each record: length, its CRC, the event, the event's CRC);
  AssertionError if a record is cut short or does not parse."""
  with open(path, "rb") as f:
    data = f.read()
  events, offset = [], 0
  while offset < len(data):
    (length,) = struct.unpack("Q", data[offset:offset + 8])
    assert offset + 16 + length <= len(data), f"a record is cut short at byte {offset}"
    events.append(event_pb2.Event.FromString(data[offset + 12:offset + 12 + length]))
    offset += 16 + length
  return events


def test_hparams_and_scalars_share_one_whole_events_file(tmp_path):
  writer = MetricWriter(str(tmp_path), hparams={"learning_rate": 0.1, "model": "mlp"})
  for step in (4, 8):
    writer.write({"step": step, "train_loss": 1.0 / step})
  writer.close()
  files = os.listdir(tmp_path / "tensorboard")
  assert len(files) == 1
  events = read_events(str(tmp_path / "tensorboard" / files[0]))
  tags = [value.tag for event in events for value in event.summary.value]
  assert tags == ["_hparams_/experiment", "_hparams_/session_start_info", "train_loss",
                  "train_loss"]
  assert [event.step for event in events if event.summary.value][-2:] == [4, 8]

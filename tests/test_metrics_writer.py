"""fgjax.metrics_writer: the TensorBoard events file a trial writes holds every record whole."""

import os
import struct

from tensorboardX.proto import event_pb2

from fgjax.metrics_writer import MetricWriter


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
  assert tags == ["_hparams_/experiment", "_hparams_/session_start_info",
                  "_hparams_/session_end_info", "train_loss", "train_loss"]
  assert [event.step for event in events if event.summary.value][-2:] == [4, 8]

#!/usr/bin/env python3
"""Writes the TensorBoard event files that Tests/CMLKitTests/TensorBoardTests.swift reads, with the real
tensorboardX (tested with 2.6.5; `pip install tensorboardX pillow`; pillow only for the image).

    python3 Tests/CMLKitTests/Fixtures/tensorboard/make_fixtures.py

Every event is given an explicit wall time, so only the file_version event's time changes between runs.
tensorboardX names files events.out.tfevents.<time>.<host>…; they are renamed to a stable name.

tensorboardX writes scalars as simple_value. The tensor form (what TensorFlow 2 and PyTorch's
add_scalar(new_style=True) write: a one-element TensorProto with plugin "scalars") has no tensorboardX
API, so it is built here with tensorboardX's own protos and written through its writer.
"""
import os
import shutil

import numpy as np
from tensorboardX import SummaryWriter
from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboardX.proto.tensor_pb2 import TensorProto
from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "run")
shutil.rmtree(out, ignore_errors=True)
T0 = 1_700_000_000.25


def tensor_scalar(tag, tensor, with_metadata=True):
    value = Summary.Value(tag=tag, tensor=tensor)
    if with_metadata:
        value.metadata.CopyFrom(SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars")))
    return Summary(value=[value])


writer = SummaryWriter(out)
for step in range(5):
    t = T0 + step
    writer.add_scalar("loss", 1.0 / (step + 1), step, walltime=t)            # simple_value
    writer.add_scalar("train/accuracy", 0.1 * step + 0.05, step, walltime=t + 0.5)
    writer.add_scalars("split", {"train": step * 0.3, "val": step * 0.4}, step, walltime=t)
    file_writer = writer._get_file_writer()
    # PyTorch's new_style=True: DT_FLOAT, float_val, no shape; double_precision=True: DT_DOUBLE, double_val.
    file_writer.add_summary(tensor_scalar("lr", TensorProto(dtype="DT_FLOAT", float_val=[0.01 * (step + 1)])),
                            step * 10, t)
    file_writer.add_summary(tensor_scalar("precise", TensorProto(dtype="DT_DOUBLE", double_val=[1 / 3 + step])),
                            step, t)
    # TensorFlow 2: an empty shape and the value in tensor_content; the metadata only with a tag's first value.
    content = np.float32(2.5 * step).tobytes()
    file_writer.add_summary(tensor_scalar("tf2/loss", TensorProto(dtype="DT_FLOAT", tensor_shape=TensorShapeProto(),
                                                                  tensor_content=content), with_metadata=step == 0),
                            step, t)
    file_writer.add_summary(tensor_scalar("tokens", TensorProto(dtype="DT_INT64", int64_val=[1000 * step])), step, t)
    # Not scalars: ignored by the reader.
    writer.add_histogram("weights", np.arange(10, dtype=np.float32) * step, step, walltime=t)
    writer.add_image("sample", np.full((3, 4, 4), step * 10, dtype=np.uint8), step, walltime=t)
    writer.add_text("note", f"step {step}", step, walltime=t)
    # A one-element float tensor of another plugin (a histogram of one value, TF2-style): ignored too.
    file_writer.add_summary(Summary(value=[Summary.Value(
        tag="one_bucket", tensor=TensorProto(dtype="DT_FLOAT", float_val=[1.0]),
        metadata=SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="histograms")))]), step, t)
writer.close()

for directory, _, files in os.walk(out):
    for name in files:
        if "tfevents" in name:
            os.rename(os.path.join(directory, name), os.path.join(directory, "events.out.tfevents.fixture"))
for directory, _, files in sorted(os.walk(out)):
    for name in files:
        path = os.path.join(directory, name)
        print(os.path.relpath(path, here), os.path.getsize(path))

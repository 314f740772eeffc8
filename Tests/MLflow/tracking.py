"""The real MLflow client against cml-serve (MLFLOW_TRACKING_URI): experiments, runs with params, metrics
(NaN and the infinities through log_batch), tags, end statuses, an artifact written and read back, and
search_runs with filters and orderings. Asserts what MLflow itself reads back, then writes it as JSON
to the file its argument names for the Swift test to compare with what cml's commands show."""
import json
import math
import os
import sys
import tempfile
import time

import mlflow
import mlflow.data
import mlflow.exceptions
import numpy
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag


def number(value):
    """JSON has no NaN or infinity: written as cml writes them."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


client = MlflowClient()
experiment_id = mlflow.set_experiment("mlflow-live").experiment_id
assert client.get_experiment(experiment_id).name == "mlflow-live"
assert client.get_experiment_by_name("mlflow-live").experiment_id == experiment_id
assert client.get_experiment_by_name("Default").experiment_id == "0"
assert client.get_experiment_by_name("no-such-experiment") is None

workdir = tempfile.mkdtemp()
notes = os.path.join(workdir, "notes.txt")
with open(notes, "w") as file:
    file.write("written by the real mlflow client\n")
weights = os.path.join(workdir, "weights.bin")
with open(weights, "wb") as file:
    file.write(bytes(range(256)) * 40)

ids = []
for lr, acc, status, x in [("0.1", 0.95, "FINISHED", "y"), ("0.01", 0.97, "FAILED", "y"), ("0.1", 0.80, "KILLED", "y")]:
    run = mlflow.start_run(run_name=f"lr-{lr}-{status.lower()}")
    run_id = run.info.run_id
    ids.append(run_id)
    mlflow.log_param("lr", lr)
    mlflow.log_params({"epochs": 3, "optimizer": "adam"})
    for step in range(3):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.log_metrics({"acc": acc}, step=2)
    mlflow.set_tag("x", x)
    mlflow.set_tags({"team": "cml"})
    if status == "FAILED":
        # A metric computed on a dataset (MLflow 3): cml keeps which, in the run's extra.mlflow.metric_datasets.
        mlflow.log_metric("eval_acc", 0.5, step=0, dataset=mlflow.data.from_numpy(numpy.arange(10), name="eval-set"))
    if status == "FINISHED":
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric("odd", float("nan"), now, 0), Metric("odd", float("inf"), now + 1, 1),
                                          Metric("odd", float("-inf"), now + 2, 2), Metric("odd", 0.5, now + 3, 3)],
                         params=[Param("batch", "32")], tags=[RunTag("source", "batch")])
        mlflow.log_artifact(notes)
        mlflow.log_artifact(weights, artifact_path="nested/dir")
    mlflow.end_run(status=status)

first = ids[0]
# A param keeps its first value, as in MLflow; the same value again is fine.
try:
    client.log_param(first, "lr", "0.5")
    raise AssertionError("a second value of lr was taken")
except mlflow.exceptions.MlflowException as error:
    assert error.error_code == "INVALID_PARAMETER_VALUE", error.error_code
client.log_param(first, "lr", "0.1")
# A tag removed; an ended run resumed (RUNNING again), logged to, and ended again.
client.delete_tag(ids[1], "team")
assert "team" not in client.get_run(ids[1]).data.tags
with mlflow.start_run(run_id=ids[2]):
    assert client.get_run(ids[2]).info.status == "RUNNING"
    mlflow.log_metric("resumed", 1.0, step=7)
    mlflow.end_run(status="KILLED")
# What MLflow itself reads back.
downloaded = mlflow.artifacts.download_artifacts(run_id=first, artifact_path="notes.txt", dst_path=tempfile.mkdtemp())
assert open(downloaded).read() == "written by the real mlflow client\n", open(downloaded).read()
tree = client.download_artifacts(first, "nested", tempfile.mkdtemp())
assert open(os.path.join(tree, "dir", "weights.bin"), "rb").read() == bytes(range(256)) * 40
listed = sorted((f.path, f.is_dir) for f in client.list_artifacts(first))
assert listed == [("nested", True), ("notes.txt", False)], listed
assert [(f.path, f.file_size) for f in client.list_artifacts(first, "nested/dir")] == [("nested/dir/weights.bin", 10240)]

odd = [m.value for m in sorted(client.get_metric_history(first, "odd"), key=lambda m: m.step)]
assert math.isnan(odd[0]) and odd[1] == float("inf") and odd[2] == float("-inf") and odd[3] == 0.5, odd


def search(filter_string, order_by=None):
    frame = mlflow.search_runs(experiment_ids=[experiment_id], filter_string=filter_string, order_by=order_by)
    return frame["run_id"].tolist()


searches = {
    "acc_lr_x": search("metrics.acc > 0.9 and params.lr = '0.1' and tags.x = 'y'"),
    "lr_by_acc": search("params.lr = '0.1'", ["metrics.acc ASC"]),
    "all_by_acc_desc": search("", ["metrics.acc DESC"]),
    "killed": search("attributes.status = 'KILLED'"),
    "failed_named": search("attributes.run_name LIKE 'lr-0.01%' and attributes.status != 'FINISHED'"),
    "in_list": search("params.lr IN ('0.01', '0.5')"),
    "quoted_key": search("metrics.`acc` >= 0.95", ["attributes.start_time DESC"]),
}
expected = {
    "acc_lr_x": [ids[0]],
    "lr_by_acc": [ids[2], ids[0]],
    "all_by_acc_desc": [ids[1], ids[0], ids[2]],
    "killed": [ids[2]],
    "failed_named": [ids[1]],
    "in_list": [ids[1]],
    "quoted_key": [ids[1], ids[0]],
}
assert searches == expected, (searches, expected)

runs = []
for run_id in ids:
    run = client.get_run(run_id)
    runs.append({
        "id": run_id,
        "name": run.info.run_name,
        "status": run.info.status,
        "params": run.data.params,
        "tags": {k: v for k, v in run.data.tags.items()},
        "metrics": {key: [[m.step, number(m.value), m.timestamp] for m in client.get_metric_history(run_id, key)]
                    for key in run.data.metrics},
    })
with open(sys.argv[1], "w") as out:
    json.dump({"experiment_id": experiment_id, "runs": runs}, out)

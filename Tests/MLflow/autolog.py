"""mlflow.sklearn.autolog() training a small scikit-learn model against cml-serve: its params, its
training metrics (lost when the logged-models routes are missing), its dataset input and its model,
read back through MLflow's own client and written as JSON to the file its argument names for the Swift test to compare with cml."""
import json
import math
import sys

import mlflow
import mlflow.sklearn
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


def number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


mlflow.set_experiment("mlflow-autolog")
mlflow.sklearn.autolog(log_input_examples=False, log_model_signatures=False)
features, labels = load_iris(return_X_y=True)
with mlflow.start_run() as run:
    LogisticRegression(max_iter=200, C=0.5).fit(features, labels)
run_id = run.info.run_id

client = MlflowClient()
got = client.get_run(run_id)
assert got.info.status == "FINISHED", got.info.status
assert got.data.params.get("C") == "0.5", got.data.params
assert "training_score" in got.data.metrics and "training_accuracy_score" in got.data.metrics, got.data.metrics
models = mlflow.search_logged_models(experiment_ids=[got.info.experiment_id], filter_string=f"source_run_id = '{run_id}'",
                                     output_format="list")
assert len(models) == 1, models
model = client.get_logged_model(models[0].model_id)
assert model.status.to_proto() == 2 or str(model.status).endswith("READY"), model.status  # LOGGED_MODEL_READY
loaded = mlflow.sklearn.load_model(f"models:/{model.model_id}")
accuracy = float((loaded.predict(features) == labels).mean())
assert abs(accuracy - got.data.metrics["training_accuracy_score"]) < 1e-9, (accuracy, got.data.metrics)
with open(sys.argv[1], "w") as out:
    json.dump({
        "id": run_id,
        "status": got.info.status,
        "params": got.data.params,
        "model_id": model.model_id,
        "model_metrics": sorted(m.key for m in model.metrics or []),
        "datasets": [d.dataset.name for d in got.inputs.dataset_inputs],
        "metrics": {key: [[m.step, number(m.value), m.timestamp] for m in client.get_metric_history(run_id, key)]
                    for key in got.data.metrics},
    }, out)

import CMLKit

/// A cml run as MLflow's `Run` message: its info, its data (latest metrics, params, tags) and its
/// inputs and outputs. What MLflow sent that cml has no field for is read back from `Run.extra["mlflow"]`.
enum MLflowRunView {
    static func status(_ status: RunStatus) -> String {
        switch status {
        case .queued: "SCHEDULED"
        case .running: "RUNNING"
        case .completed: "FINISHED"
        case .failed, .lost: "FAILED"
        case .aborted: "KILLED"
        }
    }

    /// MLflow's status names to cml's; nil for one MLflow does not have.
    static func status(mlflow name: String) -> RunStatus? {
        switch name {
        case "RUNNING": .running
        case "SCHEDULED": .queued
        case "FINISHED": .completed
        case "FAILED": .failed
        case "KILLED": .aborted
        default: nil
        }
    }

    static func artifactURI(_ run: Run) -> String {
        "mlflow-artifacts:/\(MLflowExperiments.id(project: run.project))/\(run.id)/artifacts"
    }

    static func info(_ run: Run) -> JSON {
        var members: [(String, JSON)] = [
            ("run_id", .string(run.id)), ("run_uuid", .string(run.id)),
            ("experiment_id", .string(MLflowExperiments.id(project: run.project))),
            ("run_name", .string(run.name ?? "")), ("user_id", .string(run.user)),
            ("status", .string(status(run.observedStatus))),
        ]
        if let startedAt = run.startedAt { members.append(("start_time", MLflowJSON.millis(startedAt))) }
        if let end = run.end { members.append(("end_time", MLflowJSON.millis(end.endedAt))) }
        members += [("artifact_uri", .string(artifactURI(run))), ("lifecycle_stage", .string("active"))]
        return .object(members)
    }

    /// A parameter's text as MLflow logged it (`MLflowRuns.storedValue` keeps numbers only when their text is unchanged).
    static func text(_ value: JSON) -> String {
        value.stringValue ?? value.serialized
    }

    /// MLflow's tags of the run: those it sent, its name, and cml's own tags (as keys with empty values).
    static func tags(_ run: Run) -> [(String, String)] {
        var tags: [(String, String)] = []
        if case .object(let members)? = MLflowExtra.of(run)["tags"] {
            tags = members.map { ($0.0, $0.1.stringValue ?? "") }
        }
        if let name = run.name, !tags.contains(where: { $0.0 == "mlflow.runName" }) { tags.append(("mlflow.runName", name)) }
        if !tags.contains(where: { $0.0 == "mlflow.user" }) { tags.append(("mlflow.user", run.user)) }
        for tag in run.tags where !tags.contains(where: { $0.0 == tag }) { tags.append((tag, "")) }
        return tags
    }

    static func json(_ run: Run) -> JSON {
        let extra = MLflowExtra.of(run)
        let metrics: [JSON] = run.metrics.map { summary in
            .object([("key", .string(summary.key)), ("value", .double(summary.last)),
                     ("timestamp", MLflowJSON.millis(summary.lastTime)), ("step", .int(summary.lastStep))])
        }
        var inputs: [(String, JSON)] = [("dataset_inputs", extra["dataset_inputs"] ?? .array([]))]
        if let models = extra["model_inputs"] { inputs.append(("model_inputs", models)) }
        return .object([
            ("info", info(run)),
            ("data", .object([
                ("metrics", .array(metrics)),
                ("params", MLflowJSON.keyValues(run.params.map { ($0.key, text($0.value)) })),
                ("tags", MLflowJSON.keyValues(tags(run))),
            ])),
            ("inputs", .object(inputs)),
            ("outputs", .object([("model_outputs", extra["model_outputs"] ?? .array([]))])),
        ])
    }
}

/// `Run.extra["mlflow"]`: what MLflow's client sent that cml has no field for. `tags` (an object), `dataset_inputs`,
/// `model_inputs` and `model_outputs` (as MLflow writes them), `logged_models` (by id, see `MLflowModels`),
/// `model_metrics` (metrics logged with a model of another run), `metric_datasets` (the datasets metrics
/// were logged with: key, dataset name and digest).
enum MLflowExtra {
    static let key = "mlflow"

    static func of(_ run: Run) -> JSON {
        run.extra?[key] ?? .object([])
    }

    /// Changes the run's MLflow part in one write of the store.
    static func update(run id: String, store: any ServedStore, _ change: (inout JSON) throws(CMLError) -> Void) throws(CMLError) {
        try store.updateExtra(run: id) { held throws(CMLError) in
            var extra = held ?? .object([])
            var part = extra[key] ?? .object([])
            try change(&part)
            extra.set(key, part)
            return extra
        }
    }
}

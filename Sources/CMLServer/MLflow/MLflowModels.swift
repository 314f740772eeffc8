import CMLKit

/// MLflow 3's logged models, kept with the run that made them (`Run.extra["mlflow"]["logged_models"]`, by
/// id): a model's id is `m-RUNID-N`, so it names its run and needs no table. Its files are artifacts of
/// that run under `models/ID/`. `mlflow.sklearn.autolog()` loses its training metrics when these routes
/// are missing; a model without a source run (logged outside any run) is refused.
enum MLflowModels {
    static func id(run: String, number: Int) -> String { "m-\(run)-\(number)" }

    static func runID(model id: String) -> String? {
        guard id.hasPrefix("m-"), let dash = id.lastIndex(of: "-"), dash > id.index(id.startIndex, offsetBy: 2) else { return nil }
        let run = String(id[id.index(id.startIndex, offsetBy: 2)..<dash])
        return RunID.isFull(run) ? run : nil
    }

    static func notFound(_ id: String) -> CMLError {
        CMLError("Logged model with ID '\(id.prefix(100))' not found", kind: .notFound)
    }

    /// Keeps metrics logged with a `model_id` in that model's record too (its `data.metrics`), the latest
    /// per key and dataset; a model of another run keeps them in this run's `model_metrics`.
    static func record(_ metrics: [(model: String, metric: JSON)], run id: String, in part: inout JSON) throws(CMLError) {
        var models = part["logged_models"] ?? .object([])
        var elsewhere = part["model_metrics"]?.items ?? []
        for (model, metric) in metrics {
            var withRun = metric
            withRun.set("run_id", .string(id))
            guard var record = models[model] else {
                elsewhere.append(withRun)
                continue
            }
            var held = record["metrics"]?.items ?? []
            held.removeAll { $0["key"] == metric["key"] && $0["dataset_name"] == metric["dataset_name"] && $0["dataset_digest"] == metric["dataset_digest"] }
            held.append(withRun)
            record.set("metrics", .array(held))
            models.set(model, record)
        }
        part.set("logged_models", models)
        if !elsewhere.isEmpty { part.set("model_metrics", .array(elsewhere)) }
    }

    static func create(_ body: MLflowBody, on mlflow: MLflowStore) throws(CMLError) -> JSON {
        guard let runID = body.optionalString("source_run_id") else {
            throw MLflowError.invalid("cml-serve keeps a logged model with the run that made it: log it inside a run (source_run_id)")
        }
        _ = try mlflow.writableRun(runID)
        let name = body.optionalString("name") ?? "model"
        let params = try body.keyValues("params"), tags = try body.keyValues("tags")
        let now = Clock.now()
        var created = ""
        try MLflowExtra.update(run: runID, store: mlflow.store) { part throws(CMLError) in
            var models = part["logged_models"] ?? .object([])
            created = id(run: runID, number: models.members.count + 1)
            models.set(created, .object([
                ("name", .string(name)), ("model_type", body["model_type"] ?? .null),
                ("status", .string("LOGGED_MODEL_PENDING")),
                ("created", .double(now)), ("updated", .double(now)),
                ("params", .object(params.map { ($0.0, .string($0.1)) })), ("tags", .object(tags.map { ($0.0, .string($0.1)) })),
                ("metrics", .array([])),
            ]))
            part.set("logged_models", models)
        }
        return try model(created, on: mlflow)
    }

    /// The model's record and its run, for a request that may see the run.
    static func find(_ id: String, on mlflow: MLflowStore) throws(CMLError) -> (record: JSON, run: Run) {
        guard let runID = runID(model: id) else { throw notFound(id) }
        let run: Run
        do { run = try mlflow.run(runID) } catch where error.kind == .notFound { throw notFound(id) }
        guard let record = MLflowExtra.of(run)["logged_models"]?[id] else { throw notFound(id) }
        return (record, run)
    }

    static func model(_ id: String, on mlflow: MLflowStore) throws(CMLError) -> JSON {
        let (record, run) = try find(id, on: mlflow)
        return json(id: id, record: record, run: run)
    }

    /// PATCH: its status (`LOGGED_MODEL_READY` once its files are up).
    static func update(_ id: String, _ body: MLflowBody, on mlflow: MLflowStore) throws(CMLError) -> JSON {
        let (_, run) = try find(id, on: mlflow)
        try mlflow.access.requireWrite(project: run.project)
        let status = body["status"]
        try MLflowExtra.update(run: run.id, store: mlflow.store) { part throws(CMLError) in
            var models = part["logged_models"] ?? .object([])
            guard var record = models[id] else { throw notFound(id) }
            if let status { record.set("status", status) }
            record.set("updated", .double(Clock.now()))
            models.set(id, record)
            part.set("logged_models", models)
        }
        return try model(id, on: mlflow)
    }

    static func setTags(_ id: String, _ tags: [(String, String)], on mlflow: MLflowStore) throws(CMLError) {
        let (_, run) = try find(id, on: mlflow)
        try mlflow.access.requireWrite(project: run.project)
        try MLflowExtra.update(run: run.id, store: mlflow.store) { part throws(CMLError) in
            var models = part["logged_models"] ?? .object([])
            guard var record = models[id] else { throw notFound(id) }
            var held = record["tags"] ?? .object([])
            for (key, value) in tags { held.set(key, .string(value)) }
            record.set("tags", held)
            models.set(id, record)
            part.set("logged_models", models)
        }
    }

    static func json(id: String, record: JSON, run: Run) -> JSON {
        let experiment = MLflowExperiments.id(project: run.project)
        func pairs(_ key: String) -> JSON {
            MLflowJSON.keyValues((record[key]?.members ?? []).map { ($0.0, $0.1.stringValue ?? "") })
        }
        var info: [(String, JSON)] = [
            ("model_id", .string(id)), ("experiment_id", .string(experiment)), ("name", record["name"] ?? .string("model")),
            ("artifact_uri", .string("\(MLflowRunView.artifactURI(run))/models/\(id)")),
            ("creation_timestamp_ms", MLflowJSON.millis(record["created"].flatMap(Self.number) ?? 0)),
            ("last_updated_timestamp_ms", MLflowJSON.millis(record["updated"].flatMap(Self.number) ?? 0)),
            ("status", record["status"] ?? .string("LOGGED_MODEL_PENDING")),
            ("source_run_id", .string(run.id)), ("tags", pairs("tags")), ("params", pairs("params")),
        ]
        if let type = record["model_type"], type != .null { info.append(("model_type", type)) }
        return .object([("info", .object(info)),
                        ("data", .object([("params", pairs("params")), ("metrics", record["metrics"] ?? .array([]))]))])
    }

    private static func number(_ value: JSON) -> Double? {
        switch value {
        case .double(let number): number
        case .int(let number): Double(number)
        default: nil
        }
    }

    /// `logged-models/search`: the models of the experiments' runs that pass the filter (attributes
    /// `name`, `model_id`, `source_run_id`, `status`, `model_type`; `tags.`, `params.`, `metrics.`).
    static func search(_ body: MLflowBody, on mlflow: MLflowStore) throws(CMLError) -> JSON {
        let filter = try MLflowFilter.parse(body.optionalString("filter"))
        let orders = try MLflowFilter.orders(try body.array("order_by").compactMap { order in
            order.optionalString("field_name").map { "\($0) \((order["ascending"] == .bool(false)) ? "DESC" : "ASC")" }
        })
        var found: [(id: String, record: JSON, run: Run)] = []
        for run in try MLflowSearch.runs(experimentIDs: body.json["experiment_ids"]?.items.compactMap(\.stringValue) ?? [], on: mlflow) {
            for (id, record) in MLflowExtra.of(run)["logged_models"]?.members ?? [] { found.append((id, record, run)) }
        }
        func field(_ model: (id: String, record: JSON, run: Run), _ entity: MLflowFilter.Entity, _ key: String) -> MLflowFilter.Field? {
            switch entity {
            case .tag, .param: return (model.record[entity == .tag ? "tags" : "params"]?[key]?.stringValue).map { .text($0) }
            case .metric:
                return model.record["metrics"]?.items.last { $0["key"]?.stringValue == key }?["value"].flatMap { try? MLflowBody.double($0, key: key) }
                    .map { .number($0) }
            case .attribute:
                switch key {
                case "model_id": return .text(model.id)
                case "source_run_id": return .text(model.run.id)
                case "creation_timestamp", "creation_time": return model.record["created"].flatMap(number).map { .number($0 * 1000) }
                case "last_updated_timestamp": return model.record["updated"].flatMap(number).map { .number($0 * 1000) }
                default: return model.record[key]?.stringValue.map { .text($0) }
                }
            }
        }
        let matching = found.filter { model in filter.matches { field(model, $0, $1) } }
        let sorted = MLflowFilter.sorted(matching, by: orders, field: field) { $0.id > $1.id }
        let page = try MLflowSearch.page(sorted, maxResults: try body.int64("max_results"), token: body.optionalString("page_token"))
        var answer: [(String, JSON)] = [("models", .array(page.items.map { json(id: $0.id, record: $0.record, run: $0.run) }))]
        if let next = page.next { answer.append(("next_page_token", .string(next))) }
        return .object(answer)
    }
}

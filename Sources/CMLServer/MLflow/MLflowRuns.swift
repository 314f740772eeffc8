import CMLKit

/// MLflow's run writes and reads on cml's store: runs are cml runs, params cml params, metrics cml metric
/// points (source `log`), and the rest (tags, inputs, outputs) the run's `extra`. Every call runs on the
/// store's threads (`StoreCalls`).
struct MLflowStore: Sendable {
    let store: any ServedStore
    let access: RequestAccess
    let runs: RunRecordCache

    init(_ route: RouteRequest) {
        store = route.store
        access = route.access
        runs = route.runs
    }

    /// MLflow's batches are at most this big (its own server refuses more).
    static let maxBatchMetrics = 1000
    static let maxBatchParams = 100
    static let maxBatchTags = 100

    /// The run `id` names (a whole id: MLflow's clients never abbreviate), when the request may see it.
    func run(_ id: String) throws(CMLError) -> Run {
        let run: Run
        do { run = try RunReads.kept(id, store: store, runs: runs) } catch where error.kind == .notFound {
            throw CMLError("Run with id=\(id.prefix(100)) not found", kind: .notFound)
        }
        guard access.sees(project: run.project) else { throw CMLError("Run with id=\(id.prefix(100)) not found", kind: .notFound) }
        return run
    }

    func writableRun(_ id: String) throws(CMLError) -> Run {
        let run = try run(id)
        try access.requireWrite(project: run.project)
        return run
    }

    func create(_ body: MLflowBody) throws(CMLError) -> Run {
        // Found whatever the token may see: a write to a project it may not see is refused (403), not missing.
        let experiment = try MLflowExperiments.experiment(id: body.optionalString("experiment_id") ?? MLflowExperiments.defaultID,
                                                          store: store, access: .everything)
        try access.requireWrite(project: experiment.project)
        let tags = try body.keyValues("tags")
        let name = body.optionalString("run_name") ?? tags.last(where: { $0.0 == "mlflow.runName" })?.1
        let user = body.optionalString("user_id") ?? tags.last(where: { $0.0 == "mlflow.user" })?.1 ?? ""
        let started = try body.int64("start_time").map { Double($0) / 1000 } ?? Clock.now()
        var run = Run(id: RunID.make(at: started), name: name.flatMap { $0.isEmpty ? nil : $0 }, project: experiment.project,
                      status: .running, command: [], cwd: "", host: "", user: user, pid: nil, startedAt: started,
                      environment: [], code: .null, tags: [], params: [])
        run.extra = .object([(MLflowExtra.key, .object([("tags", .object(tags.map { ($0.0, .string($0.1)) }))]))])
        return try store.createRun(run, patch: [])
    }

    /// Ends the run with MLflow's status (FINISHED, FAILED, KILLED), puts an ended one back to running
    /// (RUNNING), and renames it; answers its info as it is after.
    func update(_ body: MLflowBody) throws(CMLError) -> Run {
        let id = try runID(body)
        let run = try writableRun(id)
        if let name = body.optionalString("run_name"), !name.isEmpty, name != run.name {
            try store.rename(run: id, to: name)
            try MLflowExtra.update(run: id, store: store) { part throws(CMLError) in
                var tags = part["tags"] ?? .object([])
                tags.set("mlflow.runName", .string(name))
                part.set("tags", tags)
            }
        }
        if let text = body.optionalString("status") {
            guard let status = MLflowRunView.status(mlflow: text), status != .queued else {
                throw MLflowError.invalid("status must be RUNNING, FINISHED, FAILED or KILLED, not '\(text.prefix(40))'")
            }
            if status == .running {
                try store.reopenRun(id: id)
            } else {
                let ended = try body.int64("end_time").map { Double($0) / 1000 } ?? Clock.now()
                try store.finishRun(id: id, end: RunEnd(status: status, endedAt: ended), logBytes: run.logBytes)
            }
        }
        return try self.run(id)
    }

    func runID(_ body: MLflowBody) throws(CMLError) -> String {
        guard let id = body.optionalString("run_id") ?? body.optionalString("run_uuid") else { throw MLflowError.missing("run_id") }
        return id
    }

    /// `log-batch`, and `log-metric`, `log-parameter`, `set-tag` as batches of one: checked whole before
    /// anything is written, so a refused batch leaves the run as it was.
    func logBatch(run id: String, metrics: [MLflowBody], params: [(String, String)], tags: [(String, String)]) throws(CMLError) {
        guard metrics.count <= Self.maxBatchMetrics, params.count <= Self.maxBatchParams, tags.count <= Self.maxBatchTags else {
            throw MLflowError.invalid("a batch takes at most \(Self.maxBatchMetrics) metrics, \(Self.maxBatchParams) params and "
                                      + "\(Self.maxBatchTags) tags; this one has \(metrics.count), \(params.count) and \(tags.count)")
        }
        var points: [MetricPoint] = []
        points.reserveCapacity(metrics.count)
        var modelMetrics: [(model: String, metric: JSON)] = []
        // The datasets metrics were computed on (MLflow 3's `log_metric(dataset=…)`), once per key and dataset.
        var datasetLinks: [JSON] = []
        for metric in metrics {
            let key = try metric.string("key")
            guard !key.isEmpty else { throw MLflowError.invalid("a metric needs a key") }
            let value = try metric.double("value")
            let time = try metric.int64("timestamp").map { Double($0) / 1000 } ?? Clock.now()
            let step = try metric.int64("step") ?? 0
            points.append(MetricPoint(key: key, step: step, value: value, time: time))
            if let model = metric.optionalString("model_id") {
                modelMetrics.append((model, metric.json))
            } else if let dataset = metric.optionalString("dataset_name") {
                let link = JSON.object([("key", .string(key)), ("dataset_name", .string(dataset)),
                                        ("dataset_digest", metric["dataset_digest"] ?? .null)])
                if !datasetLinks.contains(link) { datasetLinks.append(link) }
            }
        }
        let run = try writableRun(id)
        var newParams: [Param] = []
        var seen: [String: String] = [:]
        for (key, value) in params {
            guard !key.isEmpty else { throw MLflowError.invalid("a param needs a key") }
            let held = run.params.first { $0.key == key }.map { MLflowRunView.text($0.value) } ?? seen[key]
            if let held {
                guard held == value else {
                    throw MLflowError.invalid("Changing param values is not allowed. Param with key='\(key)' was already logged with "
                                              + "value='\(held)' for run ID='\(id)'. Attempted logging new value '\(value)'.")
                }
                continue
            }
            seen[key] = value
            newParams.append(Param(key: key, value: Self.storedValue(value), source: "mlflow"))
        }
        if !newParams.isEmpty { try store.addParams(run: id, newParams) }
        if !points.isEmpty { try store.appendMetrics(run: id, points, source: .log) }
        if let name = tags.last(where: { $0.0 == "mlflow.runName" })?.1, !name.isEmpty, name != run.name {
            try store.rename(run: id, to: name)
        }
        guard !tags.isEmpty || !modelMetrics.isEmpty || !datasetLinks.isEmpty else { return }
        try MLflowExtra.update(run: id, store: store) { part throws(CMLError) in
            if !tags.isEmpty {
                var held = part["tags"] ?? .object([])
                for (key, value) in tags { held.set(key, .string(value)) }
                part.set("tags", held)
            }
            if !modelMetrics.isEmpty { try MLflowModels.record(modelMetrics, run: id, in: &part) }
            if !datasetLinks.isEmpty {
                let known = part["metric_datasets"]?.items ?? []
                part.set("metric_datasets", .array(known + datasetLinks.filter { !known.contains($0) }))
            }
        }
    }

    func deleteTag(run id: String, key: String) throws(CMLError) {
        _ = try writableRun(id)
        try MLflowExtra.update(run: id, store: store) { part throws(CMLError) in
            var tags = part["tags"] ?? .object([])
            guard tags[key] != nil else { throw CMLError("No tag with name: \(key.prefix(100)) in run with id \(id)", kind: .notFound) }
            tags.remove(key)
            part.set("tags", tags)
        }
    }

    /// `runs/log-inputs`: datasets (kept as MLflow sent them, once per name and digest) and models.
    func logInputs(run id: String, datasets: [JSON], models: [JSON]) throws(CMLError) {
        _ = try writableRun(id)
        try MLflowExtra.update(run: id, store: store) { part throws(CMLError) in
            var held = part["dataset_inputs"]?.items ?? []
            for input in datasets {
                let same = held.firstIndex { $0["dataset"]?["name"] == input["dataset"]?["name"] && $0["dataset"]?["digest"] == input["dataset"]?["digest"] }
                if let same { held[same] = input } else { held.append(input) }
            }
            part.set("dataset_inputs", .array(held))
            if !models.isEmpty {
                let known = part["model_inputs"]?.items ?? []
                part.set("model_inputs", .array(known + models.filter { !known.contains($0) }))
            }
        }
    }

    /// `runs/outputs`: the models the run made.
    func logOutputs(run id: String, models: [JSON]) throws(CMLError) {
        _ = try writableRun(id)
        try MLflowExtra.update(run: id, store: store) { part throws(CMLError) in
            let known = part["model_outputs"]?.items ?? []
            part.set("model_outputs", .array(known + models.filter { !known.contains($0) }))
        }
    }

    /// A metric's points in step order, a page at a time (`page_token` is the index of the first).
    func history(run id: String, key: String, maxResults: Int?, pageToken: String?) throws(CMLError) -> JSON {
        let run = try run(id)
        let first = try Self.offset(pageToken)
        let limit = maxResults ?? Int.max
        var metrics: [JSON] = []
        var index = 0
        var more = false
        try store.forEachMetric(run: run.id, key: key) { point throws(CMLError) in
            defer { index += 1 }
            guard index >= first else { return }
            guard metrics.count < limit else {
                more = true
                return
            }
            metrics.append(.object([("key", .string(point.key)), ("value", .double(point.value)),
                                    ("timestamp", MLflowJSON.millis(point.time)), ("step", .int(point.step))]))
        }
        var answer: [(String, JSON)] = [("metrics", .array(metrics))]
        if more { answer.append(("next_page_token", .string(String(first + metrics.count)))) }
        return .object(answer)
    }

    static func offset(_ pageToken: String?) throws(CMLError) -> Int {
        guard let pageToken, !pageToken.isEmpty else { return 0 }
        guard let offset = Int(pageToken), offset >= 0 else { throw MLflowError.invalid("page_token '\(pageToken.prefix(40))' is not one this server gave") }
        return offset
    }

    /// A parameter as cml keeps it: typed (so `--where lr<0.1` compares numbers) when its text is exactly
    /// the typed value's, else the text as sent (`0.10` stays `0.10`).
    static func storedValue(_ text: String) -> JSON {
        let typed = Param.typedValue(text)
        return MLflowRunView.text(typed) == text ? typed : .string(text)
    }
}

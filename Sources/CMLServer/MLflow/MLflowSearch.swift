import CMLKit

/// `runs/search` (what `mlflow.search_runs` calls): the runs of the experiments, filtered and ordered by
/// MLflow's grammar (`MLflowFilter`) over what their records hold, so no metric series is read.
enum MLflowSearch {
    /// MLflow's default and largest page.
    static let defaultPage = 1000
    static let maxPage = 50000

    static func runs(experimentIDs: [String], on mlflow: MLflowStore) throws(CMLError) -> [Run] {
        var projects: [String] = []
        for id in experimentIDs {
            projects.append(try MLflowExperiments.experiment(id: id, store: mlflow.store, access: mlflow.access).project)
        }
        guard !projects.isEmpty else { return [] }
        var query = RunQuery()
        query.projects = projects
        return try mlflow.store.runs(query)
    }

    static func search(_ body: MLflowBody, on mlflow: MLflowStore) throws(CMLError) -> JSON {
        let filter = try MLflowFilter.parse(body.optionalString("filter"))
        let orders = try MLflowFilter.orders(body.json["order_by"]?.items.compactMap(\.stringValue) ?? [])
        let runs = try runs(experimentIDs: body.json["experiment_ids"]?.items.compactMap(\.stringValue) ?? [], on: mlflow)
        let matching = runs.filter { run in filter.matches { field(run, $0, $1) } }
        let sorted = MLflowFilter.sorted(matching, by: orders, field: field) { a, b in
            (a.startedAt ?? 0, a.id) > (b.startedAt ?? 0, b.id)
        }
        let page = try page(sorted, maxResults: try body.int64("max_results"), token: body.optionalString("page_token"))
        var answer: [(String, JSON)] = [("runs", .array(page.items.map(MLflowRunView.json)))]
        if let next = page.next { answer.append(("next_page_token", .string(next))) }
        return .object(answer)
    }

    static func field(_ run: Run, _ entity: MLflowFilter.Entity, _ key: String) -> MLflowFilter.Field? {
        switch entity {
        case .metric: return run.metrics.first { $0.key == key }.map { .number($0.last) }
        case .param: return run.params.first { $0.key == key }.map { .text(MLflowRunView.text($0.value)) }
        case .tag: return MLflowRunView.tags(run).last { $0.0 == key }.map { .text($0.1) }
        case .attribute:
            switch key {
            case "run_id", "run_uuid", "id": return .text(run.id)
            case "run_name": return .text(run.name ?? "")
            case "status": return .text(MLflowRunView.status(run.observedStatus))
            case "user_id": return .text(run.user)
            case "experiment_id": return .text(MLflowExperiments.id(project: run.project))
            case "artifact_uri": return .text(MLflowRunView.artifactURI(run))
            case "lifecycle_stage": return .text("active")
            case "start_time", "created": return run.startedAt.map { .number(($0 * 1000).rounded()) }
            case "end_time": return run.end.map { .number(($0.endedAt * 1000).rounded()) }
            default: return nil
            }
        }
    }

    /// A page of `items`; the token is the index of the next page's first item.
    static func page<Item>(_ items: [Item], maxResults: Int64?, token: String?) throws(CMLError) -> (items: ArraySlice<Item>, next: String?) {
        let size = Int(maxResults ?? Int64(defaultPage))
        guard size > 0, size <= maxPage else { throw MLflowError.invalid("max_results must be between 1 and \(maxPage), not \(size)") }
        let first = min(try MLflowStore.offset(token), items.count)
        let end = min(first + size, items.count)
        return (items[first..<end], end < items.count ? String(end) : nil)
    }
}

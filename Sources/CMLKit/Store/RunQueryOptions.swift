extension RunQuery {
    /// The query that `cml-run ls`'s options describe, and `cml-serve`'s `GET /api/v1/runs` parameters of the
    /// same names: each value is checked here, so a bad one is an `invalid` error naming it before the
    /// store is read.
    public static func parse(project: String?, status: String?, tags: [String], since: String?, filter: String?,
                             sort: [String], limit: Int?) throws(CMLError) -> RunQuery {
        var query = RunQuery(project: project, tags: tags, limit: limit)
        if let status {
            guard let parsed = RunStatus(rawValue: status) else {
                throw CMLError.usage("unknown status '\(status)'", hint: "one of \(RunStatus.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            query.status = parsed
        }
        if let limit, limit < 0 { throw CMLError.usage("--limit must not be negative") }
        if let since { query.since = try SinceParser.parse(since) }
        if let filter { query.filter = try RunFilter.parse(filter) }
        query.sort = sort.flatMap { $0.split(separator: ",") }.map { RunSort(String($0)) }
        return query
    }
}

extension Run {
    /// Checks that the run has a metric `key` (`cml-run metrics --key`); the error names those it has.
    public func requireMetric(_ key: String) throws(CMLError) {
        guard !metrics.contains(where: { $0.key == key }) else { return }
        let known = metrics.map(\.key)
        throw CMLError("run \(RunID.short(id)) has no metric '\(key)'",
                       hint: known.isEmpty ? "it has no metrics" : "it has: \(known.joined(separator: ", "))", kind: .notFound)
    }
}

extension ProjectSummary {
    /// The record `cml-run projects` prints: counts by status, only for the statuses that have runs.
    public var json: JSON {
        .object([("project", .string(name)), ("runs", .int(Int64(runs)))]
                + RunStatus.allCases.compactMap { status in byStatus[status.rawValue].map { (status.rawValue, .int(Int64($0))) } }
                + [("last_started", .string(Clock.rfc3339(lastStarted)))])
    }
}

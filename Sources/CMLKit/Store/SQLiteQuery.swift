import GRDB

/// `RunQuery` as SQL: filters and sort keys become correlated subqueries on the per-run tables (params,
/// metric summaries, tags), each an index lookup, so listing never reads a metric series.
extension SQLiteStore {
    /// `cml_status(status, host, pid, pid_scope, heartbeat_at, heartbeat_interval)`: the status a reader
    /// sees, by the rule of `Run.observedStatus` (`RunLiveness`), so `--where status = lost` works in SQL.
    static let observedStatusFunction = DatabaseFunction("cml_status", argumentCount: 6, pure: false) { values in
        guard let text = String.fromDatabaseValue(values[0]) else { return nil }
        guard let status = RunStatus(rawValue: text), status == .running else { return text }
        let liveness = RunLiveness(status: status, host: String.fromDatabaseValue(values[1]) ?? "",
                                   pid: Int32.fromDatabaseValue(values[2]), pidScope: String.fromDatabaseValue(values[3]),
                                   heartbeatAt: Double.fromDatabaseValue(values[4]),
                                   heartbeatInterval: Double.fromDatabaseValue(values[5]))
        return liveness.observedStatus(now: Clock.now()).rawValue
    }

    /// The observed status of the row `runs` in SQL.
    static let observedStatusSQL = "cml_status(runs.status, runs.host, runs.pid, runs.pid_scope, runs.heartbeat_at, runs.heartbeat_interval)"

    /// `cml_command_line(command)`: the stored JSON array of arguments as the shell-quoted line
    /// (`ShellQuoting.commandLine`) that `command` means in `--where` and `--sort`, so that
    /// `command ~ '*--lr 0.01*'` matches what a user typed, in the one statement that lists.
    static let commandLineFunction = DatabaseFunction("cml_command_line", argumentCount: 1, pure: true) { values in
        guard let stored = String.fromDatabaseValue(values[0]), case .array(let items)? = try? JSON.parse(stored) else { return nil }
        return ShellQuoting.commandLine(items.compactMap(\.stringValue))
    }

    public func catalog() -> RunTerm.Catalog {
        RunTerm.Catalog(
            hasParam: { key throws(CMLError) in
                try self.read { db in try Bool.fetchOne(db, sql: "SELECT 1 FROM params WHERE key = ? LIMIT 1", arguments: [key]) ?? false }
            },
            hasMetric: { key throws(CMLError) in
                try self.read { db in try Bool.fetchOne(db, sql: "SELECT 1 FROM metric_series WHERE key = ? LIMIT 1", arguments: [key]) ?? false }
            },
            allKeys: { () throws(CMLError) in
                try self.read { db in
                    (try String.fetchAll(db, sql: "SELECT DISTINCT key FROM params ORDER BY key"),
                     try String.fetchAll(db, sql: "SELECT DISTINCT key FROM metric_series ORDER BY key"))
                }
            })
    }

    public func runs(_ query: RunQuery) throws(CMLError) -> [Run] {
        try runs(query, resolvingKeysIn: catalog())
    }

    /// The runs of `query`, its keys resolved in `catalog` rather than in this store's own: a server's
    /// spool lists its runs by the keys the server knows (`RunSpool.listing`), a key only the server has
    /// being one that none of them has.
    public func runs(_ query: RunQuery, resolvingKeysIn catalog: RunTerm.Catalog) throws(CMLError) -> [Run] {
        var clauses: [String] = []
        var arguments: [(any DatabaseValueConvertible)?] = []
        if let project = query.project { clauses.append("runs.project = ?"); arguments.append(project) }
        if let projects = query.projects {
            clauses.append(projects.isEmpty ? "0" : "runs.project IN (\(Array(repeating: "?", count: projects.count).joined(separator: ", ")))")
            arguments += projects
        }
        if let status = query.status { clauses.append("\(Self.observedStatusSQL) = ?"); arguments.append(status.rawValue) }
        for tag in query.tags {
            clauses.append("EXISTS (SELECT 1 FROM run_tags t WHERE t.run_id = runs.id AND t.tag = ?)")
            arguments.append(tag)
        }
        if let since = query.since { clauses.append("runs.started_at >= ?"); arguments.append(since) }
        if let filter = query.filter {
            let (sql, values) = try Self.sql(for: filter, catalog: catalog)
            clauses.append(sql)
            arguments += values
        }
        var order = ""
        for sort in query.sort {
            let (sql, values) = Self.sql(for: try RunTerm.resolve(sort.key, in: catalog))
            // Runs without the key come last, whichever the direction.
            order += "(\(sql)) IS NULL, \(sql) \(sort.descending ? "DESC" : "ASC"), "
            arguments += values + values
        }
        // The order's placeholders follow the filter's in the statement.
        return try runs(whereSQL: clauses.isEmpty ? "1" : clauses.joined(separator: " AND "),
                        arguments: StatementArguments(arguments), orderSQL: order, limit: query.limit, offset: query.offset)
    }

    /// A run that has not started: waiting in its queue, or ended there (aborted while waiting) with no
    /// start recorded. Its `runs.started_at` holds when it was queued, the listing's order (`Run.startedAt`).
    static let notStarted = """
        (runs.status = 'queued' OR (runs.id IN (SELECT run_id FROM queue_entries) \
        AND NOT EXISTS (SELECT 1 FROM run_attempts a WHERE a.run_id = runs.id)))
        """

    /// The SQL value of a term for the row `runs`, with its arguments.
    static func sql(for term: RunTerm) -> (String, [(any DatabaseValueConvertible)?]) {
        switch term {
        case .field(let field):
            let column: String = switch field {
            case .id: "runs.id"
            case .name: "runs.name"
            case .project: "runs.project"
            case .status: observedStatusSQL
            case .command: "cml_command_line(runs.command)"
            case .host: "runs.host"
            case .user: "runs.user"
            case .cwd: "runs.cwd"
            case .started: "(CASE WHEN \(notStarted) THEN NULL ELSE runs.started_at END)"
            case .ended: "runs.ended_at"
            case .duration: "(CASE WHEN \(notStarted) THEN NULL ELSE COALESCE(runs.ended_at, (julianday('now') - 2440587.5) * 86400.0) - runs.started_at END)"
            case .queued: "(SELECT q.enqueued_at FROM queue_entries q WHERE q.run_id = runs.id)"
            case .exitCode: "runs.exit_code"
            case .queue: "(SELECT q.queue FROM queue_entries q WHERE q.run_id = runs.id)"
            case .agent: "(SELECT a.agent FROM run_attempts a WHERE a.run_id = runs.id ORDER BY a.attempt DESC LIMIT 1)"
            case .attempts: "(SELECT q.attempts FROM queue_entries q WHERE q.run_id = runs.id)"
            }
            return (column, [])
        case .param(let key):
            // json_extract gives numbers as numbers and strings without their quotes.
            return ("(SELECT json_extract(p.value, '$') FROM params p WHERE p.run_id = runs.id AND p.key = ?)", [key])
        case .metric(let key, let aggregate):
            let column = aggregate == .step ? "last_step" : aggregate.rawValue
            return ("(SELECT m.\(column) FROM metric_series m WHERE m.run_id = runs.id AND m.key = ?)", [key])
        case .tag:
            return ("(SELECT group_concat(t.tag, ',') FROM run_tags t WHERE t.run_id = runs.id)", [])
        }
    }

    static func sql(for filter: RunFilter, catalog: RunTerm.Catalog) throws(CMLError) -> (String, [(any DatabaseValueConvertible)?]) {
        switch filter {
        case .and(let a, let b), .or(let a, let b):
            let (left, leftValues) = try sql(for: a, catalog: catalog)
            let (right, rightValues) = try sql(for: b, catalog: catalog)
            let joiner = if case .and = filter { "AND" } else { "OR" }
            return ("(\(left) \(joiner) \(right))", leftValues + rightValues)
        case .not(let a):
            let (inner, values) = try sql(for: a, catalog: catalog)
            // A run lacking the key is not `acc > 0.9`, so it is `not acc > 0.9`.
            return ("(\(inner)) IS NOT 1", values)
        case .compare(let key, let position, let op, let value):
            let term: RunTerm
            do { term = try RunTerm.resolve(key, in: catalog) } catch {
                throw CMLError.usage("--where: \(error.message) (at character \(position))", hint: error.hint).at(position)
            }
            if term == .tag { return try tagComparison(op, value) }
            let (left, leftValues) = sql(for: term)
            let right: String
            var rightValues: [(any DatabaseValueConvertible)?] = []
            switch value {
            case .number(let n): right = "?"; rightValues = [n]
            // `command = true` is the command `true`, not a boolean.
            case .bool(let b) where term.isText: right = "?"; rightValues = [try literal(b ? "true" : "false", for: term, at: position)]
            case .bool(let b): right = "?"; rightValues = [b ? 1 : 0]
            case .text(let text): right = "?"; rightValues = [try literal(text, for: term, at: position)]
            case .word(let word, let wordPosition):
                // Another key (`val_loss < loss`) when one is called so, else text (`status = completed`).
                if op != .matches, let other = try? RunTerm.resolve(word, in: catalog), other != .tag,
                   !(other == .field(.status) && term == .field(.status)) {
                    (right, rightValues) = sql(for: other)
                } else {
                    right = "?"
                    rightValues = [try literal(word, for: term, at: wordPosition)]
                }
            }
            let sqlOperator = switch op {
            case .equal: "="
            case .notEqual: "!="
            case .less: "<"
            case .lessOrEqual: "<="
            case .greater: ">"
            case .greaterOrEqual: ">="
            case .matches: "GLOB"
            }
            return ("(\(left) \(sqlOperator) \(right))", leftValues + rightValues)
        }
    }

    /// Text compared with a term: a status must be one, a time is read as a date.
    /// `position`: where the value is in the expression (its comparison's, for quoted text).
    private static func literal(_ text: String, for term: RunTerm, at position: Int) throws(CMLError) -> any DatabaseValueConvertible {
        switch term {
        case .field(.status):
            guard RunStatus(rawValue: text) != nil else {
                throw CMLError.usage("--where: unknown status '\(text)'",
                                     hint: "one of \(RunStatus.allCases.map(\.rawValue).joined(separator: ", "))").at(position)
            }
            return text
        case .field(.started), .field(.ended), .field(.queued):
            guard let time = Clock.parseTime(text) else {
                throw CMLError.usage("--where: '\(text)' is not a date", hint: "e.g. 2026-11-20 or 2026-11-20T08:00:00Z").at(position)
            }
            return time
        default:
            return text
        }
    }

    private static func tagComparison(_ op: RunFilter.ComparisonOperator,
                                      _ value: RunFilter.FilterValue) throws(CMLError) -> (String, [(any DatabaseValueConvertible)?]) {
        let text: String
        switch value {
        case .text(let t), .word(let t, _): text = t
        default: throw CMLError.usage("--where: a tag is text")
        }
        switch op {
        case .equal: return ("EXISTS (SELECT 1 FROM run_tags t WHERE t.run_id = runs.id AND t.tag = ?)", [text])
        case .notEqual: return ("NOT EXISTS (SELECT 1 FROM run_tags t WHERE t.run_id = runs.id AND t.tag = ?)", [text])
        case .matches: return ("EXISTS (SELECT 1 FROM run_tags t WHERE t.run_id = runs.id AND t.tag GLOB ?)", [text])
        default: throw CMLError.usage("--where: tags take =, != or ~")
        }
    }
}

import Foundation

/// What a key named in `--where`, `--sort` or `--columns` stands for: a field of the run record, a
/// parameter, a metric summary, or the run's tags.
public enum RunTerm: Hashable, Sendable {
    case field(RunField)
    case param(String)
    case metric(String, MetricAggregate)
    case tag

    public enum RunField: String, CaseIterable, Sendable {
        case id, name, project, status, command, host, user, cwd, started, ended, duration
        case exitCode = "exit_code"
        /// For runs that went through a queue: the queue, when it was queued, the agent of the last start,
        /// the starts counted.
        case queue, agent, attempts
        /// Not `queued`: `status = queued` compares with the word, not with this field.
        case queued = "queued_at"
    }

    /// Which number of a metric's summary: `acc` is `acc.last`.
    public enum MetricAggregate: String, CaseIterable, Sendable {
        case last, min, max, count, step
    }

    /// What the store holds, for telling parameters from metrics.
    public struct Catalog {
        public var hasParam: (String) throws(CMLError) -> Bool
        public var hasMetric: (String) throws(CMLError) -> Bool
        /// Every parameter and metric key, for the error that names them.
        public var allKeys: () throws(CMLError) -> (params: [String], metrics: [String])

        public init(hasParam: @escaping (String) throws(CMLError) -> Bool,
                    hasMetric: @escaping (String) throws(CMLError) -> Bool,
                    allKeys: @escaping () throws(CMLError) -> (params: [String], metrics: [String])) {
            self.hasParam = hasParam
            self.hasMetric = hasMetric
            self.allKeys = allKeys
        }

        /// A catalog of the keys the given runs have.
        public init(runs: [Run]) {
            let params = Set(runs.flatMap { $0.params.map(\.key) })
            let metrics = Set(runs.flatMap { $0.metrics.map(\.key) })
            self.init(hasParam: { params.contains($0) }, hasMetric: { metrics.contains($0) },
                      allKeys: { (params.sorted(), metrics.sorted()) })
        }
    }

    static let fieldAliases: [String: RunField] = ["started_at": .started, "ended_at": .ended]

    /// Resolves `name` (`lr`, `acc`, `acc.max`, `params.lr`, `metrics.acc.min`, `status`, …). A name that is
    /// both a parameter and a metric, or that nothing has, is an error naming what exists.
    public static func resolve(_ name: String, in catalog: Catalog) throws(CMLError) -> RunTerm {
        if let term = try lookup(name, in: catalog) { return term }
        throw try unknown(name, catalog)
    }

    /// What `name` stands for, or nil when nothing has it; a name that is both a parameter and a metric is
    /// an error.
    public static func lookup(_ name: String, in catalog: Catalog) throws(CMLError) -> RunTerm? {
        if name.hasPrefix("params.") {
            let key = String(name.dropFirst("params.".count))
            return try catalog.hasParam(key) ? .param(key) : nil
        }
        if name.hasPrefix("metrics.") {
            let rest = String(name.dropFirst("metrics.".count))
            if try catalog.hasMetric(rest) { return .metric(rest, .last) }
            return try aggregate(rest, catalog)
        }
        if let field = RunField(rawValue: name) ?? fieldAliases[name] { return .field(field) }
        if name == "tag" || name == "tags" { return .tag }
        let isParam = try catalog.hasParam(name)
        let isMetric = try catalog.hasMetric(name)
        if isParam && isMetric {
            throw CMLError.usage("'\(name)' is both a parameter and a metric", hint: "write params.\(name) or metrics.\(name)")
        }
        if isParam { return .param(name) }
        if isMetric { return .metric(name, .last) }
        return try aggregate(name, catalog)
    }

    private static func aggregate(_ name: String, _ catalog: Catalog) throws(CMLError) -> RunTerm? {
        guard let dot = name.lastIndex(of: "."), let aggregate = MetricAggregate(rawValue: String(name[name.index(after: dot)...])) else {
            return nil
        }
        let key = String(name[..<dot])
        return try catalog.hasMetric(key) ? .metric(key, aggregate) : nil
    }

    private static func unknown(_ name: String, _ catalog: Catalog) throws(CMLError) -> CMLError {
        let (params, metrics) = try catalog.allKeys()
        func list(_ keys: [String]) -> String {
            keys.isEmpty ? "none" : keys.prefix(30).joined(separator: ", ") + (keys.count > 30 ? ", …" : "")
        }
        return CMLError.usage("no run has a key '\(name)'",
                              hint: "parameters: \(list(params)); metrics: \(list(metrics)); fields: "
                                + RunField.allCases.map(\.rawValue).joined(separator: ", "))
    }

    /// Whether the term's value is text, so that a comparison with `true` means the word.
    var isText: Bool {
        switch self {
        case .field(.id), .field(.name), .field(.project), .field(.status), .field(.command), .field(.host),
             .field(.user), .field(.cwd), .field(.queue), .field(.agent):
            return true
        case .field, .param, .metric, .tag:
            return false
        }
    }

    /// The name a column shows.
    public var name: String {
        switch self {
        case .field(let field): return field.rawValue
        case .param(let key): return key
        case .metric(let key, .last): return key
        case .metric(let key, let aggregate): return key + "." + aggregate.rawValue
        case .tag: return "tags"
        }
    }

    /// The term's value for a run, as JSON (null when the run lacks it).
    public func value(of run: Run) -> JSON {
        switch self {
        case .field(let field):
            switch field {
            case .id: return .string(run.id)
            case .name: return run.name.map(JSON.string) ?? .null
            case .project: return .string(run.project)
            case .status: return .string(run.observedStatus.rawValue)
            case .command: return .string(ShellQuoting.commandLine(run.command))
            case .host: return .string(run.host)
            case .user: return .string(run.user)
            case .cwd: return .string(run.cwd)
            case .started: return run.startedAt.map { .string(Clock.rfc3339($0)) } ?? .null
            case .queued: return run.queue.map { .string(Clock.rfc3339($0.enqueuedAt)) } ?? .null
            case .ended: return run.end.map { .string(Clock.rfc3339($0.endedAt)) } ?? .null
            case .duration: return run.duration.map(JSON.double) ?? .null
            case .exitCode: return run.end?.exitCode.map { .int(Int64($0)) } ?? .null
            case .queue: return run.queue.map { .string($0.queue) } ?? .null
            case .agent: return run.queue?.agent.map(JSON.string) ?? .null
            case .attempts: return run.queue.map { .int(Int64($0.attempts)) } ?? .null
            }
        case .param(let key):
            return run.params.first { $0.key == key }?.value ?? .null
        case .metric(let key, let aggregate):
            guard let summary = run.metrics.first(where: { $0.key == key }) else { return .null }
            switch aggregate {
            case .last: return .double(summary.last)
            case .min: return .double(summary.min)
            case .max: return .double(summary.max)
            case .count: return .int(summary.count)
            case .step: return .int(summary.lastStep)
            }
        case .tag:
            return .array(run.tags.map(JSON.string))
        }
    }
}

/// One `--sort` key: `-acc` sorts by acc descending.
public struct RunSort: Sendable, Codable, Equatable {
    public var key: String
    public var descending: Bool

    public init(_ text: String) {
        descending = text.hasPrefix("-")
        key = descending ? String(text.dropFirst()) : (text.hasPrefix("+") ? String(text.dropFirst()) : text)
    }
}

/// `--since`: `30m`, `2h`, `3d`, `1w` ago, or a date (`2026-11-20`) or RFC 3339 time.
public enum SinceParser {
    public static func parse(_ text: String, now: Double = Clock.now()) throws(CMLError) -> Double {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604_800]
        if let unit = text.last, let seconds = units[unit], let count = Double(text.dropLast()), count >= 0 {
            return now - count * seconds
        }
        if let time = Clock.parseTime(text) { return time }
        throw CMLError.usage("--since '\(text)' is neither a duration nor a date",
                             hint: "e.g. 30m, 2h, 3d, 1w, 2026-11-20 or 2026-11-20T08:00:00Z")
    }
}

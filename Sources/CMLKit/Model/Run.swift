/// The states of a run; see cml-run(1), OUTPUT FIELDS.
public enum RunStatus: String, Sendable, Codable, CaseIterable {
    case queued, running, completed, failed, aborted, lost

    public var isFinished: Bool { self != .queued && self != .running }
}

/// One parameter of a run: from its command line (`argv`) or given with `--param` (`option`).
public struct Param: Sendable, Codable, Equatable {
    public var key: String
    public var value: JSON
    public var source: String

    public init(key: String, value: JSON, source: String) {
        self.key = key
        self.value = value
        self.source = source
    }

    /// Numbers, booleans and strings the way a command line means them: `0.01` is a number, `true` a boolean.
    public static func typedValue(_ text: String) -> JSON {
        if let i = Int64(text), !text.hasPrefix("+") { return .int(i) }
        if let d = Double(text), d.isFinite, text.first.map({ $0.isNumber || $0 == "-" || $0 == "." }) == true {
            return .double(d)
        }
        switch text.lowercased() {
        case "true": return .bool(true)
        case "false": return .bool(false)
        default: return .string(text)
        }
    }
}

/// One point of a metric series.
public struct MetricPoint: Sendable, Codable, Equatable {
    public var key: String
    public var step: Int64
    public var value: Double
    public var time: Double

    public init(key: String, step: Int64, value: Double, time: Double) {
        self.key = key
        self.step = step
        self.value = value
        self.time = time
    }
}

/// Where a metric series came from. A series has one source: when a key arrives from a source that
/// ranks higher than the one its points came from so far, those points are dropped and the series starts
/// again (the points a progress bar showed give way to the same key in an event file); points from a
/// lower one are left out.
public enum MetricSource: String, Sendable, Codable, Equatable, CaseIterable {
    /// Parsed from the console output.
    case console
    /// CSV logs the framework wrote (Lightning's and Keras's `CSVLogger`).
    case csv
    /// TensorBoard event files.
    case tensorboard
    /// Written by the program itself: `$CML_LOG_FD`, the `cml` Python module, `cml-log`.
    case log
    /// The resource monitor's `sys/…` series.
    case monitor

    var rank: Int {
        switch self {
        case .console: 0
        case .csv: 1
        case .tensorboard: 2
        case .log, .monitor: 3
        }
    }
}

/// What a run keeps per metric so that listing and sorting never read the series.
public struct MetricSummary: Sendable, Codable, Equatable {
    public var key: String
    public var count: Int64
    public var last: Double
    public var min: Double
    public var max: Double
    public var lastStep: Int64
    public var lastTime: Double
    /// nil for series recorded before sources were kept.
    public var source: MetricSource? = nil
}

/// How a run's process ended.
public struct RunEnd: Sendable, Codable {
    public var status: RunStatus
    public var endedAt: Double
    public var exitCode: Int32?
    public var signal: Int32?
    public var cpuUser: Double?
    public var cpuSystem: Double?
    public var maxRSS: Int64?
    public var error: String?

    public init(status: RunStatus, endedAt: Double, exitCode: Int32? = nil, signal: Int32? = nil,
                cpuUser: Double? = nil, cpuSystem: Double? = nil, maxRSS: Int64? = nil, error: String? = nil) {
        self.status = status
        self.endedAt = endedAt
        self.exitCode = exitCode
        self.signal = signal
        self.cpuUser = cpuUser
        self.cpuSystem = cpuSystem
        self.maxRSS = maxRSS
        self.error = error
    }
}

/// The heartbeat of a run recorded by cml-run, as last stored (see `RunHeartbeat` and `RunLiveness`).
public struct Heartbeat: Sendable, Codable, Equatable {
    /// When its cml-run last beat.
    public var at: Double
    /// Seconds between beats, as its cml-run keeps them.
    public var interval: Double
    /// `cml-run abort` asked its cml-run to stop it.
    public var abortRequested: Bool

    public init(at: Double, interval: Double, abortRequested: Bool = false) {
        self.at = at
        self.interval = interval
        self.abortRequested = abortRequested
    }
}

/// A run record as stored: what was run, where, by whom, how it ended, and what it recorded.
public struct Run: Sendable {
    public var id: String
    public var name: String?
    public var project: String
    public var status: RunStatus
    public var command: [String]
    public var cwd: String
    public var host: String
    public var user: String
    public var pid: Int32?
    /// When its command started (the latest attempt's, for a queued run); nil while it waits in a queue, and
    /// for a queued run that ended without starting.
    public var startedAt: Double?
    public var end: RunEnd?
    /// The child's environment, sorted by name, secrets redacted.
    public var environment: [(String, String)]
    /// The code state (see `CodeState`), as JSON.
    public var code: JSON
    public var logBytes: Int64
    public var tags: [String]
    public var params: [Param]
    public var metrics: [MetricSummary]
    /// Set for a run that went through a queue.
    public var queue: QueueEntryInfo?
    /// Dataset versions it used (`cml-run --data`, `cml-data get|checkout` inside it).
    public var datasets: [DatasetUse] = []
    /// Kept by the cml-run that records it; nil for a queued run and for one recorded before heartbeats.
    public var heartbeat: Heartbeat?
    /// Where `pid` names its process (`ProcessPlace.scope`); nil when it was not recorded.
    public var pidScope: String?
    /// What the run's client sent that no other field holds, as a JSON object keyed by the protocol it came
    /// through (`"mlflow"`: its tags, dataset inputs and logged models; `"clearml"`: the task document its
    /// SDK edits); nil when there is none.
    public var extra: JSON?

    public init(id: String, name: String?, project: String, status: RunStatus, command: [String], cwd: String,
                host: String, user: String, pid: Int32?, startedAt: Double?, end: RunEnd? = nil,
                environment: [(String, String)], code: JSON, logBytes: Int64 = 0,
                tags: [String], params: [Param], metrics: [MetricSummary] = [], queue: QueueEntryInfo? = nil) {
        self.id = id
        self.name = name
        self.project = project
        self.status = status
        self.command = command
        self.cwd = cwd
        self.host = host
        self.user = user
        self.pid = pid
        self.startedAt = startedAt
        self.end = end
        self.environment = environment
        self.code = code
        self.logBytes = logBytes
        self.tags = tags
        self.params = params
        self.metrics = metrics
        self.queue = queue
    }
}

/// One metric series as parallel arrays, in the order its points were recorded: what charts read, a
/// million points without a million records.
public struct MetricColumns: Sendable, Equatable {
    public var steps: [Int64] = []
    /// NaN where a value was not a number.
    public var values: [Double] = []
    /// Unix time in seconds.
    public var times: [Double] = []

    public init() {}

    public var count: Int { values.count }

    public mutating func reserveCapacity(_ count: Int) {
        steps.reserveCapacity(count)
        values.reserveCapacity(count)
        times.reserveCapacity(count)
    }

    public mutating func append(_ point: MetricPoint) {
        steps.append(point.step)
        values.append(point.value)
        times.append(point.time)
    }
}

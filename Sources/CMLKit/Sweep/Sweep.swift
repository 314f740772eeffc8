import Glibc

/// What a sweep optimises: a metric summary of each trial, as `--where` names it (`val_loss` is its last
/// value, `val_loss.min` its least), to be made as small or as large as it can be.
public struct SweepObjective: Sendable, Equatable {
    public var key: String
    public var aggregate: RunTerm.MetricAggregate
    public var maximize: Bool

    public init(key: String, aggregate: RunTerm.MetricAggregate, maximize: Bool) {
        self.key = key
        self.aggregate = aggregate
        self.maximize = maximize
    }

    /// `key` (its last value) or `key.last|min|max`; a key with a dot of its own reads whole when the base
    /// run has it (`metrics` are the base run's keys).
    public init(parsing text: String, maximize: Bool, metrics: [String]) throws(CMLError) {
        guard !text.isEmpty else { throw CMLError.usage("--objective must name a metric", hint: "e.g. --objective val_loss.min") }
        self.maximize = maximize
        if !metrics.contains(text), let dot = text.lastIndex(of: "."),
           let aggregate = RunTerm.MetricAggregate(rawValue: String(text[text.index(after: dot)...])) {
            guard [.last, .min, .max].contains(aggregate) else {
                throw CMLError.usage("--objective \(text): a trial is judged by its metric's last, min or max, not its \(aggregate.rawValue)")
            }
            key = String(text[..<dot])
            self.aggregate = aggregate
        } else {
            key = text
            aggregate = .last
        }
    }

    /// As `--where` and `--sort` write it.
    public var name: String { aggregate == .last ? key : key + "." + aggregate.rawValue }

    /// The trial's objective from its run's summary; nil when the run has no such metric or its value is
    /// not a number.
    public func value(of run: Run) -> Double? {
        guard let summary = run.metrics.first(where: { $0.key == key }) else { return nil }
        let value: Double = switch aggregate {
        case .min: summary.min
        case .max: summary.max
        default: summary.last
        }
        return value.isNaN ? nil : value
    }

    /// Whether `a` is better than `b`.
    public func isBetter(_ a: Double, than b: Double) -> Bool { maximize ? a > b : a < b }
}

/// How a sweep is run: everything `cml-queue sweep` was given, kept so that `sweep resume` goes on alike.
public struct SweepConfiguration: Sendable, Equatable {
    /// The run whose clones the trials are.
    public var base: String
    public var objective: SweepObjective
    public var space: SearchSpace
    public var strategy: String
    /// Trials to run in all (fewer when a grid has fewer combinations).
    public var trials: Int
    /// Trials queued or running at once.
    public var parallel: Int
    public var queue: String
    public var priority: Int
    public var seed: UInt64
    /// Failed or lost trials after which the sweep stops; nil: never.
    public var maxFailures: Int?
    /// Run the trials on this machine with this many slots, not through agents elsewhere.
    public var localSlots: Int?
    /// The parameter that tells a trial its budget (`--budget-param epochs`), set to `maxBudget`.
    public var budgetParameter: String?
    /// The steps of the first rung and of a whole trial, for the strategies that stop trials early.
    public var minBudget: Int64?
    public var maxBudget: Int64?
    /// Of the trials that reach a rung, one in this many goes on (ASHA's and Hyperband's eta).
    public var reductionFactor: Int?
    /// Optuna's sampler (`TPESampler`, `CmaEsSampler`…).
    public var sampler: String?

    public init(base: String, objective: SweepObjective, space: SearchSpace, strategy: String, trials: Int, parallel: Int,
                queue: String, priority: Int = 0, seed: UInt64, maxFailures: Int? = nil, localSlots: Int? = nil) {
        self.base = base
        self.objective = objective
        self.space = space
        self.strategy = strategy
        self.trials = trials
        self.parallel = parallel
        self.queue = queue
        self.priority = priority
        self.seed = seed
        self.maxFailures = maxFailures
        self.localSlots = localSlots
    }
}

/// Where a trial stands. `planned` is written before its run is queued, so that a controller killed in
/// between finds the run by its trial number on resume instead of queueing a second one.
public enum TrialState: String, Sendable, CaseIterable {
    case planned, queued, running, completed, failed, lost, aborted
    /// Stopped early by the strategy (its run ends `aborted`).
    case stopped

    public var isFinished: Bool { ![.planned, .queued, .running].contains(self) }
    /// Counted against `--max-failures`.
    public var isFailure: Bool { self == .failed || self == .lost }
}

/// One trial of a sweep: the values it was given, its run, and how it ended.
public struct SweepTrial: Sendable {
    /// From 0, in the order the trials were made.
    public var index: Int
    public var run: String?
    public var assignment: [(key: String, value: String)]
    /// What the strategy keeps about the trial (an Optuna trial number, a bracket), as JSON.
    public var info: JSON
    public var state: TrialState
    /// The objective of a completed trial; for a trial stopped early, its value at the last rung it reached.
    public var objective: Double?
    /// Why it failed, was lost, or was stopped.
    public var reason: String?
    /// The last step of the objective's metric it reached: the budget it spent.
    public var steps: Int64?
    public var endedAt: Double?

    public init(index: Int, run: String? = nil, assignment: [(key: String, value: String)], info: JSON = .null, state: TrialState = .planned) {
        self.index = index
        self.run = run
        self.assignment = assignment
        self.info = info
        self.state = state
    }
}

public enum SweepStatus: String, Sendable, CaseIterable {
    /// Its controller runs (or was killed: see `Sweep.isAbandoned`).
    case running
    /// Every trial ran.
    case finished
    /// Stopped by Ctrl-C or a signal; `sweep resume` goes on.
    case stopped
    /// Stopped by `--max-failures`, or by an error of its strategy.
    case failed
}

/// A sweep's record (`cml-queue sweep show`), kept in the store as a `ControllerRecord` of kind "sweep"
/// and rewritten whole as trials start and end.
public struct Sweep: Sendable {
    public static let kind = "sweep"

    public var id: String
    public var project: String
    public var createdAt: Double
    public var updatedAt: Double
    public var status: SweepStatus
    /// Why it stopped or failed.
    public var reason: String?
    public var configuration: SweepConfiguration
    public var trials: [SweepTrial]
    /// Where its controller runs, and when it last said it was alive.
    public var host: String
    public var pid: Int32
    /// Where `pid` names its process (`ProcessPlace.scope`).
    public var pidScope: String?
    public var heartbeatAt: Double

    /// Seconds between the controller's heartbeats; a running sweep not heard of for three is abandoned.
    public static let heartbeatInterval = ControllerLiveness.heartbeatInterval

    public init(id: String, project: String, configuration: SweepConfiguration, now: Double) {
        self.id = id
        self.project = project
        createdAt = now
        updatedAt = now
        status = .running
        self.configuration = configuration
        trials = []
        host = ProcessPlace.here.host
        pid = getpid()
        pidScope = ProcessPlace.here.scope
        heartbeatAt = now
    }

    /// Running by its record, but its controller is gone: its process is not there (when it ran here),
    /// or it has not been heard of for three heartbeats.
    public func isAbandoned(now: Double) -> Bool {
        status == .running && ControllerLiveness.isAbandoned(host: host, pid: pid, pidScope: pidScope, heartbeatAt: heartbeatAt, now: now)
    }

    /// The status to show: `lost` for an abandoned sweep.
    public func observedStatus(now: Double) -> String { isAbandoned(now: now) ? "lost" : status.rawValue }

    /// The completed trial with the best objective (stopped trials judged at a lower budget do not count).
    public var best: SweepTrial? {
        let objective = configuration.objective
        return trials.filter { $0.state == .completed && $0.objective != nil }
            .min { a, b in objective.isBetter(a.objective!, than: b.objective!) }
    }

    public var failures: Int { trials.filter(\.state.isFailure).count }
    public var active: [SweepTrial] { trials.filter { !$0.state.isFinished } }
}

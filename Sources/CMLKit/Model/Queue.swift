import Glibc

/// What a queue may be called: letters, digits and `_ - . : @`, at most 100 characters (a name goes into
/// unit instance names and shell commands unquoted).
public enum QueueName {
    public static func check(_ name: String) throws(CMLError) {
        guard !name.isEmpty, name.count <= 100,
              name.unicodeScalars.allSatisfy({ $0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-.:@".unicodeScalars.contains($0) })
        else {
            throw CMLError.usage("'\(name)' is not a queue name", hint: "letters, digits and _ - . : @")
        }
    }

    /// An error naming the existing queues when `name` is not one.
    public static func requireExisting(_ name: String, in store: any Store) throws(CMLError) {
        let existing = try store.queueNames()
        guard !existing.contains(name) else { return }
        throw CMLError("unknown queue '\(name)'", hint: existing.isEmpty ? "there are no queues yet" : "queues: \(existing.joined(separator: ", "))")
    }
}

/// What a run that went through a queue carries besides the run record: where it was queued, how many
/// times an agent started it, and each attempt.
public struct QueueEntryInfo: Sendable, Codable {
    public var queue: String
    public var priority: Int
    public var enqueuedAt: Double
    /// Starts that count against `maxAttempts` (a start interrupted by draining its agent does not).
    public var attempts: Int
    public var maxAttempts: Int
    /// `cml-run abort` asked the agent to stop it.
    public var abortRequested: Bool
    /// Every start, oldest first.
    public var history: [RunAttempt]

    /// The agent of the last start.
    public var agent: String? { history.last?.agent }
}

/// One start of a queued run by an agent, and how it ended.
public struct RunAttempt: Sendable, Codable, Equatable {
    public var number: Int
    public var agent: String
    public var host: String
    public var startedAt: Double
    public var endedAt: Double?
    /// completed, failed, aborted, lost or requeued; nil while it runs.
    public var outcome: String?
    public var reason: String?
}

/// A queued run an agent has taken: the lease it holds and what to run.
public struct QueueLease: Sendable, Codable {
    public var runID: String
    /// The agent (its `AgentRecord.id`) holding the lease.
    public var agentID: String
    /// Which start of the run this is (1 for the first).
    public var attempt: Int
    public var queue: String
    public var spec: RunSpec
}

/// What a heartbeat learns: runs whose abort was asked for, and runs the agent believed it held whose
/// lease another agent has reclaimed meanwhile (the agent was too slow to renew it).
public struct HeartbeatReply: Sendable, Codable, Equatable {
    public var abortRequested: [String] = []
    public var notHeld: [String] = []

    public init(abortRequested: [String] = [], notHeld: [String] = []) {
        self.abortRequested = abortRequested
        self.notHeld = notHeld
    }
}

/// A lease that ran out: the run and the agent that held it.
public struct ExpiredLease: Sendable, Codable, Equatable {
    public var runID: String
    public var attempt: Int
    public var agentID: String
    public var agentName: String
    public var agentHost: String
    public var agentPID: Int32
}

/// How a leased run ends: recorded as it ended, or put back on its queue (drain) with a reason.
public enum LeasedRunEnd: Sendable, Codable {
    case finished(RunEnd)
    case requeued(reason: String)
}

/// An agent process as the store knows it. `id` is unique to the process; `name` is what users see and
/// no two live agents share.
public struct AgentRecord: Sendable, Codable {
    public enum State: String, Sendable, Codable, CaseIterable {
        case idle, busy, draining, stopped
        /// Its heartbeat ran out without a `stopped`, or it was found dead on its host.
        case lost
    }

    public var id: String
    public var name: String
    public var host: String
    public var pid: Int32
    public var queues: [String]
    public var slots: Int
    public var gpus: [String]
    public var state: State
    public var startedAt: Double
    public var heartbeatAt: Double
    /// How long its leases last; a heartbeat older than this means it is gone.
    public var leaseSeconds: Double
    /// The runs it holds leases on.
    public var runs: [String]

    public init(id: String, name: String, host: String, pid: Int32, queues: [String], slots: Int, gpus: [String],
                state: State, startedAt: Double, heartbeatAt: Double, leaseSeconds: Double, runs: [String] = []) {
        self.id = id
        self.name = name
        self.host = host
        self.pid = pid
        self.queues = queues
        self.slots = slots
        self.gpus = gpus
        self.state = state
        self.startedAt = startedAt
        self.heartbeatAt = heartbeatAt
        self.leaseSeconds = leaseSeconds
        self.runs = runs
    }

    /// `lost` once a live state's heartbeat is older than its lease.
    public func observedState(now: Double) -> State {
        state != .stopped && now - heartbeatAt > leaseSeconds ? .lost : state
    }

    /// Whether `cml-agent ls` lists it without `--all`: it is live, or stopped or was lost less than a
    /// day ago.
    public func isRecent(now: Double) -> Bool {
        [.idle, .busy, .draining].contains(observedState(now: now)) || now - heartbeatAt < 86_400
    }

    /// A live state's process is gone from this host (killed; its machine restarted).
    public var isDeadOnThisHost: Bool {
        guard state != .stopped && state != .lost, host == RunEnvironment.hostName, pid != getpid() else { return false }
        return kill(pid, 0) != 0 && errno == ESRCH
    }
}

/// One queue's load (`cml-queue stats`).
public struct QueueStats: Sendable, Codable, Equatable {
    public var queue: String
    /// Runs waiting.
    public var depth: Int
    /// Runs an agent holds.
    public var running: Int
    /// When the longest-waiting run was queued; nil when none waits.
    public var oldestQueuedAt: Double?
    /// Live agents that take from this queue.
    public var agents: Int
}

/// What `cml-run abort` did.
public enum AbortOutcome: Sendable, Codable, Equatable {
    /// It was waiting: it ends `aborted` without having run.
    case dequeued
    /// An agent holds it and stops it on its next heartbeat.
    case requested(agent: String)
    /// A `cml-run` on this host runs it: it got SIGTERM.
    case signalled(pid: Int32)
    /// A `cml-run` elsewhere runs it: asked through the store, it stops the command within a second. (So
    /// is a run a client records over the network, as ClearML's SDK does: it stops at its next status poll.)
    case requestedOfCMLRun(host: String)
    /// Its `cml-run` was gone (`lost`), and the processes it left on this host were stopped.
    case stoppedLeftovers(processes: Int)
}

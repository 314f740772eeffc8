import Foundation

/// The bodies of store calls that carry more than one model, shared by `HTTPStore` and `cml-serve`.
public enum RemoteRecords {
    public struct CreatedRun: Codable, Sendable {
        public var run: Run
        public var patch: Data
    }

    public struct FinishedRun: Codable, Sendable {
        public var end: RunEnd
        public var logBytes: Int64
    }

    public struct TagChange: Codable, Sendable {
        public var add: [String]
        public var remove: [String]
    }

    public struct RunName: Codable, Sendable {
        public var name: String?
    }

    public struct CatalogKeys: Codable, Sendable {
        public var params: [String]
        public var metrics: [String]

        public init(keys: (params: [String], metrics: [String])) {
            params = keys.params
            metrics = keys.metrics
        }
    }
}

// MARK: Queues and agents

extension RemoteRecords {
    /// `enqueue`'s arguments but the queue, which is in the path.
    public struct Enqueue: Codable, Sendable {
        public var specs: [RunSpec]
        public var priority: Int
        public var maxAttempts: Int

        public init(specs: [RunSpec], priority: Int, maxAttempts: Int) {
            self.specs = specs
            self.priority = priority
            self.maxAttempts = maxAttempts
        }
    }

    public struct Enqueued: Codable, Sendable {
        public var runs: [Run]
        public var createdQueue: Bool

        public init(runs: [Run], createdQueue: Bool) {
            self.runs = runs
            self.createdQueue = createdQueue
        }
    }

    public struct QueuedMove: Codable, Sendable {
        public var ids: [String]
        public var queue: String

        public init(ids: [String], queue: String) {
            self.ids = ids
            self.queue = queue
        }
    }

    /// Whether an operation that names a queue created it.
    public struct QueueCreation: Codable, Sendable {
        public var createdQueue: Bool

        public init(createdQueue: Bool) { self.createdQueue = createdQueue }
    }

    public struct LeaseRequest: Codable, Sendable {
        public var queues: [String]
        public var seconds: Double

        public init(queues: [String], seconds: Double) {
            self.queues = queues
            self.seconds = seconds
        }
    }

    public struct Heartbeat: Codable, Sendable {
        public var state: AgentRecord.State
        public var holding: [String]
        public var leaseSeconds: Double

        public init(state: AgentRecord.State, holding: [String], leaseSeconds: Double) {
            self.state = state
            self.holding = holding
            self.leaseSeconds = leaseSeconds
        }
    }

    public struct LeasedStart: Codable, Sendable {
        public var run: Run
        public var lease: QueueLease

        public init(run: Run, lease: QueueLease) {
            self.run = run
            self.lease = lease
        }
    }

    public struct LeasedEnd: Codable, Sendable {
        public var lease: QueueLease
        public var end: LeasedRunEnd
        public var logBytes: Int64

        public init(lease: QueueLease, end: LeasedRunEnd, logBytes: Int64) {
            self.lease = lease
            self.end = end
            self.logBytes = logBytes
        }
    }

    /// The server's count of queue changes (`GET /api/v1/store/queue-changes`): only whether it differs
    /// from the count seen before means anything.
    public struct QueueChanges: Codable, Sendable {
        public var count: Int

        public init(count: Int) { self.count = count }
    }
}

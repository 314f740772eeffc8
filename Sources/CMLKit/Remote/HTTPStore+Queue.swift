import Foundation

/// The queue concern over the store API (docs/http-api.md, "The store API: queues and agents").
extension HTTPStore {
    private static func queuePath(_ name: String, _ rest: String = "") -> String {
        "/api/v1/store/queues/" + escape(name) + rest
    }

    private static func agentPath(_ id: String, _ rest: String) -> String {
        "/api/v1/store/agents/" + escape(id) + rest
    }

    public func enqueue(_ specs: [RunSpec], queue: String, priority: Int, maxAttempts: Int) throws(CMLError) -> (runs: [Run], createdQueue: Bool) {
        // Checked here too, so that a bad name is said before its batch is sent.
        try QueueName.check(queue)
        let queued = try call("POST", Self.queuePath(queue, "/runs"),
                              sending: RemoteRecords.Enqueue(specs: specs, priority: priority, maxAttempts: maxAttempts),
                              as: RemoteRecords.Enqueued.self)
        return (queued.runs, queued.createdQueue)
    }

    public func queueNames() throws(CMLError) -> [String] {
        try call("GET", "/api/v1/store/queues", as: [String].self)
    }

    public func createQueue(_ name: String) throws(CMLError) {
        try QueueName.check(name)
        try send(request("PUT", Self.queuePath(name)))
    }

    public func queuedRuns(queue: String?) throws(CMLError) -> [Run] {
        try call("GET", "/api/v1/store/queued", query: queue.map { [("queue", $0)] } ?? [], as: [Run].self)
    }

    public func removeQueued(_ ids: [String]) throws(CMLError) {
        try post("/api/v1/store/queued/remove", sending: ids)
    }

    public func moveQueued(_ ids: [String], to queue: String) throws(CMLError) -> Bool {
        try call("POST", "/api/v1/store/queued/move", sending: RemoteRecords.QueuedMove(ids: ids, queue: queue),
                 as: RemoteRecords.QueueCreation.self).createdQueue
    }

    public func queueStats() throws(CMLError) -> [QueueStats] {
        try call("GET", "/api/v1/store/queue-stats", as: [QueueStats].self)
    }

    public func spec(run id: String) throws(CMLError) -> RunSpec? {
        try call("GET", Self.runPath(id, "/spec"), as: RunSpec?.self)
    }

    public func requestAbort(run id: String) throws(CMLError) -> AbortOutcome {
        try call("POST", "/api/v1/store/queued/" + Self.escape(id) + "/abort", as: AbortOutcome.self)
    }

    // MARK: Agents and leases

    public func registerAgent(_ agent: AgentRecord) throws(CMLError) {
        try post("/api/v1/store/agents", sending: agent)
    }

    public func retireAgent(id: String) throws(CMLError) {
        try send(request("POST", Self.agentPath(id, "/retire")))
    }

    public func lease(agent id: String, queues: [String], seconds: Double) throws(CMLError) -> QueueLease? {
        try call("POST", Self.agentPath(id, "/lease"), sending: RemoteRecords.LeaseRequest(queues: queues, seconds: seconds),
                 as: QueueLease?.self)
    }

    public func heartbeat(agent id: String, state: AgentRecord.State, holding: [String], leaseSeconds: Double) throws(CMLError) -> HeartbeatReply {
        try call("POST", Self.agentPath(id, "/heartbeat"),
                 sending: RemoteRecords.Heartbeat(state: state, holding: holding, leaseSeconds: leaseSeconds), as: HeartbeatReply.self)
    }

    public func expiredLeases() throws(CMLError) -> [ExpiredLease] {
        try call("GET", "/api/v1/store/leases/expired", as: [ExpiredLease].self)
    }

    public func reclaim(_ leases: [ExpiredLease]) throws(CMLError) -> Int {
        if leases.isEmpty { return 0 }
        return try call("POST", "/api/v1/store/leases/reclaim", sending: leases, as: Int.self)
    }

    public func startLeasedRun(_ run: Run, lease: QueueLease) throws(CMLError) -> Bool {
        try call("POST", "/api/v1/store/leases/start", sending: RemoteRecords.LeasedStart(run: run, lease: lease), as: Bool.self)
    }

    public func endLeasedRun(_ lease: QueueLease, _ end: LeasedRunEnd, logBytes: Int64) throws(CMLError) -> Bool {
        try call("POST", "/api/v1/store/leases/end", sending: RemoteRecords.LeasedEnd(lease: lease, end: end, logBytes: logBytes),
                 as: Bool.self)
    }

    public func agents() throws(CMLError) -> [AgentRecord] {
        try call("GET", "/api/v1/store/agents", as: [AgentRecord].self)
    }

    public func queueWatcher() throws(CMLError) -> QueueWatcher {
        // The first answer is the count to wait from; it also says at once when the server is unreachable.
        let count = try call("GET", "/api/v1/store/queue-changes", as: RemoteRecords.QueueChanges.self).count
        return RemoteQueueWatcher(store: self, count: count)
    }
}

/// Waits for the queues of a remote store to change: a thread of its own keeps a long poll of
/// `GET /api/v1/store/queue-changes` open, and each answer with a new count wakes the waiter. A change
/// that comes while no one waits wakes the next wait at once. When the server cannot be reached, the
/// thread tries again a second later; the agent's heartbeats go on meanwhile, and say what failed.
final class RemoteQueueWatcher: QueueWatcher, Sendable {
    /// Seconds the server holds each poll: well within the client's idle timeout.
    static let pollSeconds = 30

    private let bell = Bell()

    init(store: HTTPStore, count: Int) {
        Thread.detachNewThread { [bell] in
            var seen = count
            while !bell.isClosed {
                do throws(CMLError) {
                    let answer = try store.call("GET", "/api/v1/store/queue-changes",
                                                query: [("after", String(seen)), ("wait", String(Self.pollSeconds))],
                                                as: RemoteRecords.QueueChanges.self)
                    if answer.count == seen { continue }
                    seen = answer.count
                    bell.ring()
                } catch {
                    Thread.sleep(forTimeInterval: 1)
                }
            }
        }
    }

    /// The poll in flight ends within `pollSeconds`, and its thread with it.
    deinit { bell.close() }

    func wait(timeout: Double) { bell.wait(timeout: timeout) }

    func interrupt() { bell.ring() }

    /// A wake-up that waits for its waiter.
    private final class Bell: @unchecked Sendable {  // every access holds the condition's lock
        private let condition = NSCondition()
        private var rung = false
        private var closed = false

        func ring() {
            condition.lock()
            rung = true
            condition.broadcast()
            condition.unlock()
        }

        func wait(timeout: Double) {
            let deadline = Date(timeIntervalSinceNow: max(0, min(timeout, 3600)))
            condition.lock()
            defer { condition.unlock() }
            while !rung && condition.wait(until: deadline) {}
            rung = false
        }

        func close() {
            condition.lock()
            closed = true
            condition.unlock()
        }

        var isClosed: Bool {
            condition.lock()
            defer { condition.unlock() }
            return closed
        }
    }
}

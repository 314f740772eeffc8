import GRDB
import Glibc

/// Queues, leases and agents in the local store. Every change is one IMMEDIATE transaction, so two
/// agents never take the same run; those that give agents new work ring the doorbell after they commit.
extension SQLiteStore {
    public func hasBlob(_ id: String) -> Bool {
        (try? blobs.contains(id)) ?? false
    }

    public func queueWatcher() throws(CMLError) -> QueueWatcher {
        try DoorbellWatcher(storeDirectory: location)
    }

    func ringDoorbell() {
        Doorbell.ring(storeDirectory: location)
    }

    // MARK: Queues

    /// Creates `name` unless it exists; true when it was created.
    private static func ensureQueue(_ db: Database, _ name: String) throws -> Bool {
        try db.execute(sql: "INSERT OR IGNORE INTO queues (name, created_at) VALUES (?, ?)", arguments: [name, Clock.now()])
        return db.changesCount > 0
    }

    public func enqueue(_ specs: [RunSpec], queue: String, priority: Int, maxAttempts: Int) throws(CMLError) -> (runs: [Run], createdQueue: Bool) {
        try QueueName.check(queue)
        guard maxAttempts >= 1 else { throw CMLError.usage("--max-attempts must be at least 1") }
        for (index, spec) in specs.enumerated() {
            if let blob = spec.patchBlob, !hasBlob(blob) {
                throw CMLError("spec \(index + 1): its patch \(blob.prefix(12)) is not in this store",
                               hint: "make the spec with cml-run clone or cml-run spec against the same store", kind: .notFound)
            }
        }
        let now = Clock.now()
        // Ids are made in order, so runs queued together keep their order among equal priorities.
        let records = specs.map { spec in spec.queuedRun(id: RunID.make(at: now)) }
        let times = specs.indices.map { now + Double($0) * 1e-6 }
        let created = try write { db -> Bool in
            let created = try Self.ensureQueue(db, queue)
            for ((record, spec), time) in zip(zip(records, specs), times) {
                try Self.insertRun(db, record, queuedAt: time)
                try db.execute(sql: """
                    INSERT INTO queue_entries (run_id, queue, priority, enqueued_at, spec, state, max_attempts)
                    VALUES (?, ?, ?, ?, ?, 'waiting', ?)
                    """, arguments: [record.id, queue, priority, time, spec.json.serialized, maxAttempts])
            }
            return created
        }
        ringDoorbell()
        return (try runs(ids: records.map(\.id)), created)
    }

    /// The runs with these ids, in this order.
    func runs(ids: [String]) throws(CMLError) -> [Run] {
        if ids.isEmpty { return [] }
        let found = try runs(whereSQL: "runs.id IN (\(ids.map { _ in "?" }.joined(separator: ",")))",
                             arguments: StatementArguments(ids), limit: nil)
        let byID = Dictionary(found.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        return ids.compactMap { byID[$0] }
    }

    public func queueNames() throws(CMLError) -> [String] {
        try read { db in try String.fetchAll(db, sql: "SELECT name FROM queues ORDER BY name") }
    }

    public func createQueue(_ name: String) throws(CMLError) {
        try QueueName.check(name)
        _ = try write { db in try Self.ensureQueue(db, name) }
    }

    public func queuedRuns(queue: String?) throws(CMLError) -> [Run] {
        let ids = try read { db in
            try String.fetchAll(db, sql: """
                SELECT run_id FROM queue_entries WHERE state IN ('waiting', 'leased') AND (?1 IS NULL OR queue = ?1)
                ORDER BY queue, state = 'waiting', priority DESC, enqueued_at, run_id
                """, arguments: [queue])
        }
        return try runs(ids: ids)
    }

    /// Fails unless every run is waiting, naming the first that is not.
    private static func requireWaiting(_ db: Database, _ ids: [String]) throws {
        for id in ids {
            let state = try String.fetchOne(db, sql: "SELECT state FROM queue_entries WHERE run_id = ?", arguments: [id])
            switch state {
            case "waiting": continue
            case "leased": throw CMLError("run \(RunID.short(id)) is running on an agent", hint: "stop it with cml-run abort", kind: .conflict)
            case nil: throw CMLError("run \(RunID.short(id)) was not queued", kind: .conflict)
            default: throw CMLError("run \(RunID.short(id)) has already run", hint: "remove it with cml-run rm", kind: .conflict)
            }
        }
    }

    public func removeQueued(_ ids: [String]) throws(CMLError) {
        try write { db in
            try Self.requireWaiting(db, ids)
            for id in ids { try db.execute(sql: "DELETE FROM runs WHERE id = ?", arguments: [id]) }
        }
        for id in ids { unlink(logPath(id)) }
    }

    public func moveQueued(_ ids: [String], to queue: String) throws(CMLError) -> Bool {
        try QueueName.check(queue)
        let created = try write { db -> Bool in
            try Self.requireWaiting(db, ids)
            let created = try Self.ensureQueue(db, queue)
            for id in ids { try db.execute(sql: "UPDATE queue_entries SET queue = ? WHERE run_id = ?", arguments: [queue, id]) }
            return created
        }
        ringDoorbell()
        return created
    }

    public func queueStats() throws(CMLError) -> [QueueStats] {
        let now = Clock.now()
        let live = try agents().filter { [.idle, .busy].contains($0.observedState(now: now)) }
        return try read { db in
            try Row.fetchAll(db, sql: """
                SELECT q.name,
                    (SELECT COUNT(*) FROM queue_entries e WHERE e.queue = q.name AND e.state = 'waiting') AS depth,
                    (SELECT COUNT(*) FROM queue_entries e WHERE e.queue = q.name AND e.state = 'leased') AS running,
                    (SELECT MIN(enqueued_at) FROM queue_entries e WHERE e.queue = q.name AND e.state = 'waiting') AS oldest
                FROM queues q ORDER BY q.name
                """).map { row in
                let name: String = row["name"]
                return QueueStats(queue: name, depth: row["depth"], running: row["running"], oldestQueuedAt: row["oldest"],
                                  agents: live.filter { $0.queues.contains(name) }.count)
            }
        }
    }

    public func spec(run id: String) throws(CMLError) -> RunSpec? {
        let text = try read { db in try String.fetchOne(db, sql: "SELECT spec FROM queue_entries WHERE run_id = ?", arguments: [id]) }
        guard let text else { return nil }
        return try RunSpec(json: JSON.parse(text))
    }

    public func requestAbort(run id: String) throws(CMLError) -> AbortOutcome {
        let outcome = try write { db -> AbortOutcome in
            guard let row = try Row.fetchOne(db, sql: """
                SELECT e.state, a.name AS agent FROM queue_entries e LEFT JOIN agents a ON a.id = e.agent WHERE e.run_id = ?
                """, arguments: [id]) else {
                throw CMLError("run \(RunID.short(id)) was not queued", kind: .conflict)
            }
            switch row["state"] as String {
            case "waiting":
                let now = Clock.now()
                try db.execute(sql: "UPDATE queue_entries SET state = 'done' WHERE run_id = ?", arguments: [id])
                try db.execute(sql: "UPDATE runs SET status = 'aborted', ended_at = ?, error = 'aborted while queued' WHERE id = ?",
                               arguments: [now, id])
                return .dequeued
            case "leased":
                try db.execute(sql: "UPDATE queue_entries SET abort_requested = 1 WHERE run_id = ?", arguments: [id])
                return .requested(agent: row["agent"] ?? "?")
            default:
                let status = try String.fetchOne(db, sql: "SELECT status FROM runs WHERE id = ?", arguments: [id]) ?? "ended"
                throw CMLError("run \(RunID.short(id)) has already ended (\(status))", kind: .conflict)
            }
        }
        // The agent hears it at once instead of at its next heartbeat.
        if case .requested = outcome { ringDoorbell() }
        return outcome
    }

    // MARK: Agents

    public func registerAgent(_ agent: AgentRecord) throws(CMLError) {
        let now = Clock.now()
        try write { db in
            for row in try Row.fetchAll(db, sql: "SELECT * FROM agents WHERE name = ? AND state NOT IN ('stopped', 'lost')", arguments: [agent.name]) {
                let other = Self.agent(row)
                if other.observedState(now: now) != .lost {
                    throw CMLError("agent \(agent.name) is already running (pid \(other.pid) on \(other.host), last heartbeat \(Self.ago(now - other.heartbeatAt)))",
                                   hint: "give this one another --name", kind: .conflict)
                }
            }
            try db.execute(sql: """
                INSERT INTO agents (id, name, host, pid, queues, slots, gpus, state, started_at, heartbeat_at, lease_seconds)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [agent.id, agent.name, agent.host, Int64(agent.pid), JSON.array(agent.queues.map(JSON.string)).serialized,
                                 agent.slots, JSON.array(agent.gpus.map(JSON.string)).serialized, agent.state.rawValue,
                                 agent.startedAt, now, agent.leaseSeconds])
        }
    }

    public func retireAgent(id: String) throws(CMLError) {
        try write { db in try db.execute(sql: "UPDATE agents SET state = 'lost' WHERE id = ?", arguments: [id]) }
    }

    static func ago(_ seconds: Double) -> String {
        seconds < 1 ? "just now" : seconds < 120 ? "\(Int(seconds)) s ago" : "\(Int(seconds / 60)) min ago"
    }

    private static func agent(_ row: Row) -> AgentRecord {
        func strings(_ column: String) -> [String] {
            guard case .array(let items)? = try? JSON.parse(row[column] as String) else { return [] }
            return items.compactMap(\.stringValue)
        }
        return AgentRecord(id: row["id"], name: row["name"], host: row["host"], pid: Int32(row["pid"] as Int64),
                           queues: strings("queues"), slots: row["slots"], gpus: strings("gpus"),
                           state: AgentRecord.State(rawValue: row["state"]) ?? .lost, startedAt: row["started_at"],
                           heartbeatAt: row["heartbeat_at"], leaseSeconds: row["lease_seconds"])
    }

    public func agents() throws(CMLError) -> [AgentRecord] {
        try read { db in
            var held: [String: [String]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT agent, run_id FROM queue_entries WHERE state = 'leased' ORDER BY run_id") {
                held[row["agent"], default: []].append(row["run_id"])
            }
            return try Row.fetchAll(db, sql: "SELECT * FROM agents ORDER BY started_at DESC, id DESC").map { row in
                var agent = Self.agent(row)
                agent.runs = held[agent.id] ?? []
                return agent
            }
        }
    }

    public func lease(agent id: String, queues: [String], seconds: Double) throws(CMLError) -> QueueLease? {
        try write { db -> QueueLease? in
            guard let agent = try Row.fetchOne(db, sql: "SELECT name, host, pid FROM agents WHERE id = ?", arguments: [id]) else {
                throw CMLError("agent \(id) is not registered", kind: .notFound)
            }
            for queue in queues {
                var found: (runID: String, spec: RunSpec, started: Int)?
                while found == nil {
                    guard let row = try Row.fetchOne(db, sql: """
                        SELECT run_id, spec, started FROM queue_entries WHERE state = 'waiting' AND queue = ?
                        ORDER BY priority DESC, enqueued_at, run_id LIMIT 1
                        """, arguments: [queue]) else { break }
                    do throws(CMLError) {
                        found = (row["run_id"], try RunSpec(json: JSON.parse(row["spec"] as String)), row["started"])
                    } catch {
                        // Specs are checked when queued; one that no longer reads must not block the queue.
                        try db.execute(sql: "UPDATE queue_entries SET state = 'done' WHERE run_id = ?", arguments: [row["run_id"] as String])
                        try db.execute(sql: "UPDATE runs SET status = 'failed', ended_at = ?, error = ? WHERE id = ?",
                                       arguments: [Clock.now(), "its stored spec is unreadable: \(error.message)", row["run_id"] as String])
                    }
                }
                guard let (runID, spec, started) = found else { continue }
                let attempt = started + 1
                let now = Clock.now()
                try db.execute(sql: """
                    UPDATE queue_entries SET state = 'leased', agent = ?, lease_expires = ?, started = started + 1,
                        attempts = attempts + 1, abort_requested = 0 WHERE run_id = ?
                    """, arguments: [id, now + seconds, runID])
                try db.execute(sql: """
                    UPDATE runs SET status = 'running', host = ?, pid = ?, started_at = ?, ended_at = NULL, exit_code = NULL,
                        signal = NULL, error = NULL WHERE id = ?
                    """, arguments: [agent["host"] as String, agent["pid"] as Int64, now, runID])
                try db.execute(sql: """
                    INSERT INTO run_attempts (run_id, attempt, agent, agent_id, host, started_at) VALUES (?, ?, ?, ?, ?, ?)
                    """, arguments: [runID, attempt, agent["name"] as String, id, agent["host"] as String, now])
                return QueueLease(runID: runID, agentID: id, attempt: attempt, queue: queue, spec: spec)
            }
            return nil
        }
    }

    public func heartbeat(agent id: String, state: AgentRecord.State, holding: [String], leaseSeconds: Double) throws(CMLError) -> HeartbeatReply {
        try write { db in
            let now = Clock.now()
            try db.execute(sql: "UPDATE agents SET heartbeat_at = ?, state = ? WHERE id = ?", arguments: [now, state.rawValue, id])
            // Only what the agent still runs: a lease it holds for a run it no longer runs (its end could
            // not be recorded) runs out, and the run is reclaimed like any other.
            let renew = try db.cachedStatement(sql: "UPDATE queue_entries SET lease_expires = ? WHERE run_id = ? AND agent = ? AND state = 'leased'")
            for runID in holding { try renew.execute(arguments: [now + leaseSeconds, runID, id]) }
            var reply = HeartbeatReply()
            var held = Set<String>()
            for row in try Row.fetchAll(db, sql: "SELECT run_id, abort_requested FROM queue_entries WHERE agent = ? AND state = 'leased'",
                                        arguments: [id]) {
                held.insert(row["run_id"])
                if row["abort_requested"] as Bool { reply.abortRequested.append(row["run_id"]) }
            }
            reply.notHeld = holding.filter { !held.contains($0) }
            return reply
        }
    }

    public func expiredLeases() throws(CMLError) -> [ExpiredLease] {
        try read { db in
            try Row.fetchAll(db, sql: """
                SELECT e.run_id, e.started, a.id AS agent_id, a.name, a.host, a.pid FROM queue_entries e JOIN agents a ON a.id = e.agent
                WHERE e.state = 'leased' AND e.lease_expires < ? ORDER BY e.run_id
                """, arguments: [Clock.now()]).map { row in
                ExpiredLease(runID: row["run_id"], attempt: row["started"], agentID: row["agent_id"], agentName: row["name"],
                             agentHost: row["host"], agentPID: Int32(row["pid"] as Int64))
            }
        }
    }

    public func reclaim(_ leases: [ExpiredLease]) throws(CMLError) -> Int {
        let requeued = try write { db -> Int in
            var requeued = 0
            let now = Clock.now()
            for lease in leases {
                guard let row = try Row.fetchOne(db, sql: """
                    SELECT attempts, max_attempts FROM queue_entries
                    WHERE run_id = ? AND state = 'leased' AND agent = ? AND started = ? AND lease_expires < ?
                    """, arguments: [lease.runID, lease.agentID, lease.attempt, now]) else { continue }  // renewed or ended meanwhile
                let reason = "its agent \(lease.agentName) (pid \(lease.agentPID) on \(lease.agentHost)) stopped renewing its lease"
                try db.execute(sql: "UPDATE run_attempts SET ended_at = ?, outcome = 'lost', reason = ? WHERE run_id = ? AND attempt = ?",
                               arguments: [now, reason, lease.runID, lease.attempt])
                let attempts: Int = row["attempts"], maxAttempts: Int = row["max_attempts"]
                if attempts < maxAttempts {
                    try Self.putBack(db, lease.runID)
                    requeued += 1
                } else {
                    try db.execute(sql: "UPDATE queue_entries SET state = 'done', agent = NULL, lease_expires = NULL WHERE run_id = ?",
                                   arguments: [lease.runID])
                    try db.execute(sql: "UPDATE runs SET status = 'lost', ended_at = ?, error = ? WHERE id = ?",
                                   arguments: [now, "lost \(attempts) of \(maxAttempts) attempts; the last: \(reason)", lease.runID])
                }
            }
            return requeued
        }
        // A lease that ran out ends a run or requeues it: both change what a sweep's controller waits for.
        if !leases.isEmpty { ringDoorbell() }
        return requeued
    }

    /// Puts a run back on its queue, where it keeps its age (so it comes before runs queued after it).
    private static func putBack(_ db: Database, _ id: String) throws {
        try db.execute(sql: "UPDATE queue_entries SET state = 'waiting', agent = NULL, lease_expires = NULL WHERE run_id = ?", arguments: [id])
        try db.execute(sql: "UPDATE runs SET status = 'queued', pid = NULL, ended_at = NULL WHERE id = ?", arguments: [id])
    }

    /// The lease is still `lease`'s: the same agent, the same start, not ended.
    private static func holds(_ db: Database, _ lease: QueueLease) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT 1 FROM queue_entries WHERE run_id = ? AND state = 'leased' AND agent = ? AND started = ?",
                          arguments: [lease.runID, lease.agentID, lease.attempt]) ?? false
    }

    public func startLeasedRun(_ run: Run, lease: QueueLease) throws(CMLError) -> Bool {
        try write { db -> Bool in
            guard try Self.holds(db, lease) else { return false }
            try db.execute(sql: """
                UPDATE runs SET name = ?, project = ?, command = ?, cwd = ?, host = ?, user = ?, pid = ?, started_at = ?, env = ?
                WHERE id = ?
                """, arguments: StatementArguments([
                    run.name, run.project, JSON.array(run.command.map(JSON.string)).serialized, run.cwd, run.host, run.user,
                    run.pid.map { Int64($0) }, run.startedAt, JSON.object(run.environment.map { ($0.0, .string($0.1)) }).serialized,
                    run.id,
                ] as [(any DatabaseValueConvertible)?]))
            try db.execute(sql: "UPDATE run_attempts SET started_at = ? WHERE run_id = ? AND attempt = ?",
                           arguments: [run.startedAt, run.id, lease.attempt])
            if lease.attempt > 1 {
                // The series start again with this attempt; its console log keeps the earlier output.
                try db.execute(sql: "DELETE FROM metric_points WHERE series IN (SELECT id FROM metric_series WHERE run_id = ?)", arguments: [run.id])
                try db.execute(sql: "DELETE FROM metric_series WHERE run_id = ?", arguments: [run.id])
            }
            try db.execute(sql: "DELETE FROM params WHERE run_id = ? AND source = 'argv'", arguments: [run.id])
            try Self.insertParams(db, run: run.id, run.params)
            try Self.insertTags(db, run: run.id, run.tags)
            return true
        }
    }

    public func endLeasedRun(_ lease: QueueLease, _ end: LeasedRunEnd, logBytes: Int64) throws(CMLError) -> Bool {
        let (held, requeued) = try write { db -> (Bool, Bool) in
            guard try Self.holds(db, lease) else { return (false, false) }
            let now = Clock.now()
            switch end {
            case .finished(let end):
                try db.execute(sql: "UPDATE queue_entries SET state = 'done', agent = NULL, lease_expires = NULL WHERE run_id = ?",
                               arguments: [lease.runID])
                try Self.recordEnd(db, id: lease.runID, end: end, logBytes: logBytes)
                try db.execute(sql: "UPDATE run_attempts SET ended_at = ?, outcome = ?, reason = ? WHERE run_id = ? AND attempt = ?",
                               arguments: [end.endedAt, end.status.rawValue, end.error, lease.runID, lease.attempt])
                return (true, false)
            case .requeued(let reason):
                try Self.putBack(db, lease.runID)
                // Draining its agent is not the run's failure: the start does not count.
                try db.execute(sql: "UPDATE queue_entries SET attempts = attempts - 1 WHERE run_id = ?", arguments: [lease.runID])
                try db.execute(sql: "UPDATE runs SET log_bytes = ? WHERE id = ?", arguments: [logBytes, lease.runID])
                try db.execute(sql: "UPDATE run_attempts SET ended_at = ?, outcome = 'requeued', reason = ? WHERE run_id = ? AND attempt = ?",
                               arguments: [now, reason, lease.runID, lease.attempt])
                return (true, true)
            }
        }
        // A requeued run is work for agents; an ended one frees a slot of a sweep, whose controller waits on the bell too.
        if held { ringDoorbell() }
        return held
    }

    // MARK: Reading queue information with runs

    /// The queue information of the runs among `ids` that went through a queue.
    static func queueInfo(_ db: Database, ids: [String], idList: String, cached: Bool) throws -> [String: QueueEntryInfo] {
        var info: [String: QueueEntryInfo] = [:]
        for row in try Row.fetchAll(statement(db, """
            SELECT run_id, queue, priority, enqueued_at, attempts, max_attempts, abort_requested FROM queue_entries
            WHERE run_id IN \(idList)
            """, cached: cached), arguments: StatementArguments(ids)) {
            info[row["run_id"]] = QueueEntryInfo(queue: row["queue"], priority: row["priority"], enqueuedAt: row["enqueued_at"],
                                                 attempts: row["attempts"], maxAttempts: row["max_attempts"],
                                                 abortRequested: row["abort_requested"], history: [])
        }
        if info.isEmpty { return info }
        for row in try Row.fetchAll(statement(db, """
            SELECT * FROM run_attempts WHERE run_id IN \(idList) ORDER BY run_id, attempt
            """, cached: cached), arguments: StatementArguments(ids)) {
            info[row["run_id"]]?.history.append(RunAttempt(
                number: row["attempt"], agent: row["agent"], host: row["host"], startedAt: row["started_at"],
                endedAt: row["ended_at"], outcome: row["outcome"], reason: row["reason"]))
        }
        return info
    }
}

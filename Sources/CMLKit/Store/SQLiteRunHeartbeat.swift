import GRDB

extension SQLiteStore {
    public func heartbeatWriter(run id: String) -> any HeartbeatWriter {
        SQLiteHeartbeatWriter(path: location + "/cml.db", run: id)
    }

    public func requestAbort(directRun id: String) throws(CMLError) {
        let asked = try write { db in
            try db.execute(sql: "UPDATE runs SET abort_requested = 1 WHERE id = ? AND status = 'running' AND heartbeat_at IS NOT NULL",
                           arguments: [id])
            return db.changesCount == 1
        }
        guard asked else {
            let status = try read { db in try String.fetchOne(db, sql: "SELECT status FROM runs WHERE id = ?", arguments: [id]) }
            throw CMLError("run \(RunID.short(id)) has already ended (\(status ?? "removed"))")
        }
    }
}

/// Beats on a connection of its own, opened when first used, that waits only briefly for the write
/// lock: a beat never holds up the store's connection, which records the run's metrics, and one the
/// store cannot take at once is skipped rather than waited for.
final class SQLiteHeartbeatWriter: HeartbeatWriter {
    /// How long a beat waits for another writer before it is skipped.
    static let busyTimeout = 0.25

    private let path: String
    private let run: String
    private var connection: DatabaseQueue?

    init(path: String, run: String) {
        self.path = path
        self.run = run
    }

    func beat() throws(CMLError) -> Bool {
        try use { db in
            try Bool.fetchOne(db, sql: "UPDATE runs SET heartbeat_at = ? WHERE id = ? AND status = 'running' RETURNING abort_requested",
                              arguments: [Clock.now(), run]) ?? false
        }
    }

    func abortRequested() throws(CMLError) -> Bool {
        try use { db in try Bool.fetchOne(db, sql: "SELECT abort_requested FROM runs WHERE id = ?", arguments: [run]) ?? false }
    }

    /// One statement, outside any transaction.
    private func use<T>(_ body: (Database) throws -> T) throws(CMLError) -> T {
        do {
            if connection == nil {
                var configuration = Configuration()
                // As the store's own connection: WAL makes NORMAL safe, and spares each beat an fsync.
                configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = NORMAL") }
                configuration.busyMode = .timeout(Self.busyTimeout)
                configuration.label = "cml-heartbeat"
                connection = try DatabaseQueue(path: path, configuration: configuration)
            }
            return try connection!.writeWithoutTransaction(body)
        } catch {
            throw SQLiteStore.storeError(error, path: path, busyTimeout: Self.busyTimeout)
        }
    }
}

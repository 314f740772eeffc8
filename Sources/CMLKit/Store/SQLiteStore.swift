import GRDB
import GRDBSQLite
import Glibc

/// The local store: one directory holding `cml.db` (SQLite, WAL), `objects/` (blobs) and `logs/`
/// (console output, appended as it arrives).
public final class SQLiteStore: Store {
    public let location: String
    /// One connection for a command; a pool (concurrent readers beside the one writer) for the server.
    let queue: any DatabaseWriter
    let blobs: BlobDirectory
    let logDirectory: String
    let busyTimeout: Double
    /// Opened read-only: the store could not be written, and the command only reads.
    let readOnly: Bool

    /// Opens (creating if needed) the store at `directory`. `busyTimeout` is how long a write waits for
    /// another writer before giving up with a clear error. A store this process cannot write opens
    /// read-only for `.reading`, and is refused for `.writing`. `concurrentReads` (the server) reads
    /// on several connections at once while one writes; a command does one thing at a time and opens one.
    public init(directory: String, busyTimeout: Double = 10, access: StoreAccess = .writing,
                concurrentReads: Bool = false) throws(CMLError) {
        location = directory
        self.busyTimeout = busyTimeout
        blobs = BlobDirectory(directory: directory + "/objects")
        logDirectory = directory + "/logs"
        let path = directory + "/cml.db"
        readOnly = Self.isReadOnly(directory: directory, databasePath: path)
        if readOnly && access == .writing {
            throw Self.readOnlyError(directory)
        }
        if !readOnly {
            do {
                try FileSystem.makeDirectories(directory)
            } catch {
                throw CMLError("cannot use the store at \(directory): \(error.message)", hint: "pass --store or set CML_STORE")
            }
        }
        var configuration = Configuration()
        // WAL is a property of the database file, set once by the migration that creates the schema;
        // each connection only needs NORMAL sync (WAL makes it safe) and the busy timeout.
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            // A version of 600,000 files references 600,000 blobs: keep the index pages being written
            // in memory (up to 64 MB, only when used) rather than spilling them to the WAL mid-transaction.
            // A server keeps less (16 MB: its memory serves many clients, and its one writer's
            // transactions are smaller), and its reading connections SQLite's default (2 MB each).
            if !db.configuration.readonly { try db.execute(sql: "PRAGMA cache_size = -\(concurrentReads ? 16384 : 65536)") }
            db.add(function: Self.observedStatusFunction)
            db.add(function: Self.commandLineFunction)
        }
        configuration.busyMode = .timeout(busyTimeout)
        configuration.foreignKeysEnabled = true
        configuration.label = "cml"
        try Self.refuseOrphaningContent(databasePath: path, blobs: blobs, logDirectory: logDirectory)
        do {
            queue = readOnly ? try Self.openReadOnly(directory: directory, path: path, configuration: configuration)
                : try Self.openAndMigrate(path: path, configuration: configuration, busyTimeout: busyTimeout,
                                          concurrentReads: concurrentReads)
        } catch {
            throw Self.storeError(error, path: path, busyTimeout: busyTimeout)
        }
        // A store opened read-only could not record them: leave them for the next writer.
        if !readOnly { recordKeptEnds() }
    }

    /// Records the run ends that cml-run kept for later (`keepEndForLater`); what the store still cannot
    /// take stays kept for the next open.
    private func recordKeptEnds() {
        guard let names = FileSystem.entryNames(location)?.filter({ $0.hasPrefix(KeptRunEnd.prefix) }) else { return }
        for name in names {
            guard let kept = KeptRunEnd(fileName: name) else { continue }
            do {
                try write { db in try Self.recordEnd(db, id: kept.run, end: kept.end, logBytes: kept.logBytes, onlyIfRunning: true) }
            } catch {
                return
            }
            unlink(location + "/" + name)
        }
    }

    /// The store cannot be written by this process: its directory or its database (a read-only mount,
    /// `chmod -R a-w`, another user's store). A store that does not exist yet is writable where its
    /// parent is.
    private static func isReadOnly(directory: String, databasePath: String) -> Bool {
        if access(directory, F_OK) != 0 { return false }
        return access(directory, W_OK) != 0 || (access(databasePath, F_OK) == 0 && access(databasePath, W_OK) != 0)
    }

    static func readOnlyError(_ directory: String) -> CMLError {
        CMLError("the store at \(directory) is read-only", hint: "this command writes to it: give it write access, or pass --store", kind: .refused)
    }

    /// Opens a store this process cannot write, for reading, without migrating. SQLite reads a WAL
    /// database read-only only through its `-shm` index: where the last writer left `cml.db-wal` and
    /// `cml.db-shm` (cml's commands exit without closing, so they stay), SQLite reads both. Where the
    /// last writer closed the database, both are gone, the database holds everything, and creating the
    /// index is not possible in a read-only directory: the file is then opened as immutable.
    private static func openReadOnly(directory: String, path: String, configuration: Configuration) throws -> DatabaseQueue {
        var configuration = configuration
        configuration.readonly = true
        guard access(path, F_OK) == 0 else {
            throw CMLError("there is no store at \(directory)", hint: "it is read-only, so none can be made there; pass --store")
        }
        var st = stat()
        let hasLog = stat(path + "-wal", &st) == 0 && st.st_size > 0
        if hasLog && access(path + "-shm", R_OK) != 0 {
            throw CMLError("the store at \(directory) is read-only and its write-ahead log cml.db-wal has no index (cml.db-shm)",
                           hint: "open it once with write access, or read a copy of it")
        }
        let queue = try DatabaseQueue(path: hasLog ? path : "file:\(uriPath(path))?immutable=1", configuration: configuration)
        let version = try queue.read { db in try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0 }
        if version < Schema.migrations.count {
            throw CMLError("the store at \(directory) is read-only and was written by an older cml (schema \(version), this one reads \(Schema.migrations.count))",
                           hint: "open it once with write access to upgrade it")
        }
        if version > Schema.migrations.count { throw Schema.newer(version) }
        return queue
    }

    /// A path as the path of a `file:` URI: bytes other than unreserved ones and `/` percent-encoded.
    static func uriPath(_ path: String) -> String {
        var out = ""
        for byte in path.utf8 {
            let c = Character(Unicode.Scalar(byte))
            if byte < 0x80, c.isLetter || c.isNumber || "/-._~".contains(c) {
                out.append(c)
            } else {
                out += (byte < 0x10 ? "%0" : "%") + String(byte, radix: 16, uppercase: true)
            }
        }
        return out
    }

    /// A database that is missing or empty beside run logs or blobs was lost, not never made: opening it
    /// would make a new, empty one and leave everything the store holds unreachable. Content in `logs/`
    /// or `objects/` is written only after a process has created the schema (and the database file never
    /// becomes empty again), so when content is found the database is looked at once more: a process
    /// that created it meanwhile is not taken for a lost database.
    private static func refuseOrphaningContent(databasePath path: String, blobs: BlobDirectory, logDirectory: String) throws(CMLError) {
        func databaseState() -> String? {
            var st = stat()
            if stat(path, &st) != 0 { return errno == ENOENT ? "missing" : nil }
            return st.st_size == 0 ? "empty" : nil
        }
        guard databaseState() != nil else { return }
        let logs = (FileSystem.entryNames(logDirectory) ?? []).filter { $0.hasSuffix(".log") }.count
        let objects = (try? blobs.inventory()).map { $0.files.count + $0.packs.reduce(0) { $0 + $1.count } } ?? 0
        guard logs > 0 || objects > 0, let state = databaseState() else { return }
        let held = [logs > 0 ? "\(logs) run log\(logs == 1 ? "" : "s")" : nil,
                    objects > 0 ? "\(objects) object\(objects == 1 ? "" : "s")" : nil].compactMap { $0 }
        throw CMLError("the store's database \(path) is \(state) but the store holds \(held.joined(separator: " and "))",
                       hint: "restore cml.db from a backup; to start a new store here anyway, move logs/ and objects/ aside first")
    }

    /// Opening a brand-new store while another process creates it can fail with SQLITE_BUSY at once,
    /// without the busy handler (switching the journal to WAL needs a lock SQLite does not wait for):
    /// retry such failures until the busy timeout is spent.
    private static func openAndMigrate(path: String, configuration: Configuration, busyTimeout: Double,
                                       concurrentReads: Bool) throws -> any DatabaseWriter {
        let deadline = Clock.now() + busyTimeout
        while true {
            do {
                let queue = try DatabaseQueue(path: path, configuration: configuration)
                try Schema.migrate(queue)
                guard concurrentReads else { return queue }
                var pooled = configuration
                pooled.maximumReaderCount = 4
                return try DatabasePool(path: path, configuration: pooled)
            } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED {
                if Clock.now() >= deadline { throw error }
                usleep(useconds_t.random(in: 5_000...20_000))
            }
        }
    }

    /// Turns an SQLite failure into one line that says what is wrong with the store.
    static func storeError(_ error: any Error, path: String, busyTimeout: Double) -> CMLError {
        if let cml = error as? CMLError { return cml }
        guard let db = error as? DatabaseError else { return CMLError("store \(path): \(error)") }
        switch db.resultCode {
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            return CMLError("the store \(path) is locked by another process (waited \(formatSeconds(busyTimeout)))",
                            hint: "retry when it is done, or raise CML_BUSY_TIMEOUT", kind: .busy)
        case .SQLITE_NOTADB, .SQLITE_CORRUPT:
            return CMLError("the store database \(path) is corrupt or not a cml store",
                            hint: "move it aside to start a new store; nothing was written", kind: .damaged)
        case .SQLITE_READONLY, .SQLITE_CANTOPEN, .SQLITE_PERM:
            return CMLError("cannot write the store database \(path): \(db.message ?? "read-only")",
                            hint: "check its permissions, or pass --store", kind: .refused)
        case .SQLITE_FULL:
            return CMLError("the disk holding \(path) is full")
        default:
            return CMLError("store \(path): \(db.message ?? "\(db)")")
        }
    }

    private static func formatSeconds(_ s: Double) -> String {
        s == s.rounded() ? "\(Int(s)) s" : "\(s) s"
    }

    func write<T>(_ body: (Database) throws -> T) throws(CMLError) -> T {
        if readOnly { throw Self.readOnlyError(location) }
        do { return try queue.write(body) } catch {
            throw Self.storeError(error, path: location + "/cml.db", busyTimeout: busyTimeout)
        }
    }

    func read<T>(_ body: (Database) throws -> T) throws(CMLError) -> T {
        do { return try queue.read(body) } catch {
            throw Self.storeError(error, path: location + "/cml.db", busyTimeout: busyTimeout)
        }
    }

    // MARK: Runs

    public func createRun(_ run: Run, patch: [UInt8]) throws(CMLError) -> Run {
        var run = run
        if !patch.isEmpty {
            let blob = try blobs.put(patch)
            if case .object(var members) = run.code {
                members.removeAll { $0.0 == "patch_blob" }
                members.append(("patch_blob", .string(blob)))
                run.code = .object(members)
            }
        }
        let record = run
        try write { db in
            // Under the write lock, which removals hold too: a `gc` that deleted the patch since it was
            // stored (it was not referenced yet) cannot run now, and the patch is stored again.
            if let blob = record.code["patch_blob"]?.stringValue, try !blobs.contains(blob) { _ = try blobs.put(patch) }
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM runs WHERE id = ?", arguments: [record.id]) == true {
                throw CMLError("the store has a run with id \(record.id) already", kind: .conflict)
            }
            try Self.insertRun(db, record)
        }
        return run
    }

    /// Inserts a run with its tags, params and patch reference. A queued run has not started: until it
    /// does, `started_at` holds when it was queued, its place in the listing's order.
    static func insertRun(_ db: Database, _ record: Run, queuedAt: Double? = nil) throws {
        try db.cachedStatement(sql: """
            INSERT INTO runs (id, name, project, status, command, cwd, host, user, pid, started_at, env, code,
                heartbeat_at, heartbeat_interval, pid_scope, extra)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: StatementArguments([
                record.id, record.name, record.project, record.status.rawValue,
                JSON.array(record.command.map { .string($0) }).serialized,
                record.cwd, record.host, record.user, record.pid.map { Int64($0) }, record.startedAt ?? queuedAt ?? Clock.now(),
                JSON.object(record.environment.map { ($0.0, .string($0.1)) }).serialized,
                record.code.serialized, record.heartbeat?.at, record.heartbeat?.interval, record.pidScope,
                record.extra?.serialized,
            ] as [(any DatabaseValueConvertible)?]))
        try insertTags(db, run: record.id, record.tags)
        try insertParams(db, run: record.id, record.params)
        if let blob = record.code["patch_blob"]?.stringValue { try insertBlobReferences(db, run: record.id, [blob]) }
    }

    public func finishRun(id: String, end: RunEnd, logBytes: Int64) throws(CMLError) {
        try write { db in
            try Self.requireRun(db, id)
            try Self.recordEnd(db, id: id, end: end, logBytes: logBytes)
        }
    }

    public func keepEndForLater(run id: String, end: RunEnd, logBytes: Int64) throws(CMLError) {
        let path = location + "/" + KeptRunEnd(run: id, end: end, logBytes: logBytes).fileName
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileSystem.error("cannot create", path) }
        close(fd)
        try FileSystem.syncDirectory(location)
    }

    /// `onlyIfRunning`: a run that ended otherwise meanwhile (`cml-run abort`) keeps that end.
    static func recordEnd(_ db: Database, id: String, end: RunEnd, logBytes: Int64, onlyIfRunning: Bool = false) throws {
        try db.cachedStatement(sql: """
            UPDATE runs SET status = ?, ended_at = ?, exit_code = ?, signal = ?, cpu_user = ?, cpu_system = ?,
                max_rss = ?, error = ?, log_bytes = ? WHERE id = ?\(onlyIfRunning ? " AND status = 'running'" : "")
            """).execute(arguments: StatementArguments([
                end.status.rawValue, end.endedAt, end.exitCode.map { Int64($0) }, end.signal.map { Int64($0) },
                end.cpuUser, end.cpuSystem, end.maxRSS, end.error, logBytes, id,
            ] as [(any DatabaseValueConvertible)?]))
    }

    public func addParams(run id: String, _ params: [Param]) throws(CMLError) {
        try write { db in
            try Self.requireRun(db, id)
            try Self.insertParams(db, run: id, params)
        }
    }

    public func addTags(run id: String, _ tags: [String]) throws(CMLError) {
        try write { db in
            try Self.requireRun(db, id)
            try Self.insertTags(db, run: id, tags)
        }
    }

    public func removeTags(run id: String, _ tags: [String]) throws(CMLError) {
        try write { db in
            try Self.requireRun(db, id)
            for tag in tags { try db.execute(sql: "DELETE FROM run_tags WHERE run_id = ? AND tag = ?", arguments: [id, tag]) }
        }
    }

    public func rename(run id: String, to name: String?) throws(CMLError) {
        try write { db in
            try Self.requireRun(db, id)
            try db.execute(sql: "UPDATE runs SET name = ? WHERE id = ?", arguments: [name, id])
        }
    }

    /// A write to a run that is not there is `notFound`, on every store, not a constraint failure.
    static func requireRun(_ db: Database, _ id: String) throws {
        guard try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM runs WHERE id = ?"), arguments: [id]) == true else { throw RunID.noRun(id) }
    }

    static func insertBlobReferences(_ db: Database, run id: String, _ blobs: some Sequence<String>) throws {
        let insert = try db.cachedStatement(sql: "INSERT OR IGNORE INTO run_blobs (blob, run_id) VALUES (?, ?)")
        for blob in blobs { try insert.execute(arguments: [blob, id]) }
    }

    public func removeRuns(_ ids: [String]) throws(CMLError) -> RemovalReport {
        var logBytes: Int64 = 0
        for id in ids {
            var st = stat()
            if stat(logPath(id), &st) == 0 { logBytes += Int64(st.st_size) }
        }
        // Unreferenced blobs are deleted inside the transaction that drops their last reference, while it
        // holds the write lock, so no other writer can add a reference to one in between.
        var blobCount = 0
        var blobBytes: Int64 = 0
        try write { db in
            var candidates = Set<String>()
            for id in ids {
                candidates.formUnion(try String.fetchAll(db, sql: "SELECT blob FROM run_blobs WHERE run_id = ?", arguments: [id]))
                try db.execute(sql: "DELETE FROM metric_points WHERE series IN (SELECT id FROM metric_series WHERE run_id = ?)", arguments: [id])
                try db.execute(sql: "DELETE FROM runs WHERE id = ?", arguments: [id])
            }
            (blobCount, blobBytes) = try blobs.remove(try Self.unreferenced(db, candidates))
        }
        for id in ids { unlink(logPath(id)) }
        return RemovalReport(runs: ids.count, blobs: blobCount, bytesFreed: blobBytes + logBytes)
    }

    /// Those of `candidates` that nothing references: no run (`run_blobs`, keyed by blob: looked up) and
    /// no dataset version (`version_blobs`, keyed by version: one pass over it). With `referencedBlobs`,
    /// the one definition of a referenced blob.
    static func unreferenced(_ db: Database, _ candidates: Set<String>) throws -> Set<String> {
        let byRun = try db.cachedStatement(sql: "SELECT 1 FROM run_blobs WHERE blob = ? LIMIT 1")
        var left = Set<BlobDigest>()
        // A name that is no digest cannot be a blob of this store: it is left alone.
        for blob in candidates where try Bool.fetchOne(byRun, arguments: [blob]) == nil {
            if let digest = BlobDigest(hex: blob) { left.insert(digest) }
        }
        if !left.isEmpty {
            try eachVersionBlob(db) { left.remove($0) }
        }
        return Set(left.map(\.hex))
    }

    public func projects(referencingBlob blob: String) throws(CMLError) -> [String] {
        try read { db in
            try String.fetchAll(db, sql: "SELECT DISTINCT runs.project FROM run_blobs JOIN runs ON runs.id = run_blobs.run_id WHERE run_blobs.blob = ?",
                                arguments: [blob])
        }
    }

    /// Every blob a run or a dataset version references.
    static func referencedBlobs(_ db: Database) throws -> Set<String> {
        var byVersion = Set<BlobDigest>()
        try eachVersionBlob(db) { byVersion.insert($0) }
        return Set(try String.fetchAll(db, sql: "SELECT blob FROM run_blobs")).union(byVersion.map(\.hex))
    }

    /// Calls `body` with the blob of each row of `version_blobs` (millions in a store with a long history:
    /// read without making a string of each).
    private static func eachVersionBlob(_ db: Database, _ body: (BlobDigest) -> Void) throws {
        try eachRow(db, "SELECT blob FROM version_blobs", []) { raw in
            guard let text = sqlite3_column_text(raw, 0) else { return }
            if let digest = BlobDigest(utf8: UnsafeBufferPointer(start: text, count: Int(sqlite3_column_bytes(raw, 0)))) {
                body(digest)
            }
        }
    }

    public func projects() throws(CMLError) -> [ProjectSummary] {
        try read { db in
            var summaries: [String: ProjectSummary] = [:]
            var order: [String] = []
            for row in try Row.fetchAll(db, sql: """
                SELECT project, \(Self.observedStatusSQL) AS observed, COUNT(*) AS runs, MAX(started_at) AS last
                FROM runs GROUP BY project, observed ORDER BY last DESC
                """) {
                let name: String = row["project"]
                if summaries[name] == nil {
                    order.append(name)
                    summaries[name] = ProjectSummary(name: name, runs: 0, byStatus: [:], lastStarted: row["last"])
                }
                summaries[name]!.runs += row["runs"] as Int
                summaries[name]!.byStatus[row["observed"], default: 0] += row["runs"] as Int
                summaries[name]!.lastStarted = max(summaries[name]!.lastStarted, row["last"])
            }
            return order.compactMap { summaries[$0] }.sorted { $0.lastStarted > $1.lastStarted }
        }
    }

    static func insertParams(_ db: Database, run id: String, _ params: [Param]) throws {
        let insert = try db.cachedStatement(sql: "INSERT OR REPLACE INTO params (run_id, key, value, number, source) VALUES (?, ?, ?, ?, ?)")
        for param in params {
            try insert.execute(arguments: [id, param.key, param.value.serialized, param.value.number, param.source])
        }
    }

    static func insertTags(_ db: Database, run id: String, _ tags: [String]) throws {
        let insert = try db.cachedStatement(sql: "INSERT OR IGNORE INTO run_tags (run_id, tag) VALUES (?, ?)")
        for tag in Set(tags) { try insert.execute(arguments: [id, tag]) }
    }

    /// An id, a unique id prefix, or else a run's name (the most recent runs are named in an ambiguity).
    public func resolveRunID(_ prefix: String) throws(CMLError) -> String {
        let text = prefix.lowercased()
        var matches: [String] = []
        if RunID.isPrefix(text) {
            let upper = text + String(repeating: "g", count: 1)  // 'g' sorts after every hex digit
            matches = try read { db in
                try String.fetchAll(db.cachedStatement(sql: "SELECT id FROM runs WHERE id >= ? AND id < ? ORDER BY id LIMIT 6"),
                                    arguments: [text, upper])
            }
            if matches.count > 1 {
                let shown = matches.prefix(5).joined(separator: ", ") + (matches.count > 5 ? ", …" : "")
                throw CMLError("run id prefix \(prefix) is ambiguous", hint: "candidates: \(shown)", kind: .ambiguous)
            }
        }
        if let id = matches.first { return id }
        let named = try read { db in
            try String.fetchAll(db.cachedStatement(sql: "SELECT id FROM runs WHERE name = ? ORDER BY started_at DESC, id DESC LIMIT 6"),
                                arguments: [prefix])
        }
        switch named.count {
        case 1: return named[0]
        case 0:
            throw RunID.noRun(prefix)
        default:
            let shown = named.prefix(5).joined(separator: ", ") + (named.count > 5 ? ", …" : "")
            throw CMLError("more than one run is named \(prefix)", hint: "give an id: \(shown)", kind: .ambiguous)
        }
    }

    public func run(id: String) throws(CMLError) -> Run {
        let found = try runs(whereSQL: "runs.id = ?", arguments: [id], limit: nil, cached: true)
        guard let run = found.first else { throw CMLError("no run with id \(id)", hint: "see cml-run ls", kind: .notFound) }
        return run
    }

    /// `cached`: the query's text is one of a few (a run by id), so its compiled statements are kept for
    /// the next call; compiling them again costs a server's GET more than running them.
    func runs(whereSQL: String, arguments: StatementArguments, orderSQL: String = "", limit: Int?, offset: Int? = nil,
              cached: Bool = false) throws(CMLError) -> [Run] {
        try read { db in
            try Self.runs(db, whereSQL: whereSQL, arguments: arguments, orderSQL: orderSQL, limit: limit, offset: offset, cached: cached)
        }
    }

    static func runs(_ db: Database, whereSQL: String, arguments: StatementArguments, orderSQL: String = "", limit: Int?,
                     offset: Int? = nil, cached: Bool = false) throws -> [Run] {
        // The run's own row, stepped by column position like the rows below (GRDB's by-name access
        // lowercases every name it looks up); its parts are filled in once the other tables are read.
        var rows: [Run] = []
        try Self.eachRow(db, """
            SELECT \(Self.runColumns) FROM runs WHERE \(whereSQL)
            ORDER BY \(orderSQL)runs.started_at DESC, runs.id DESC \(limit.map { "LIMIT \($0)" } ?? (offset == nil ? "" : "LIMIT -1"))\(offset.map { " OFFSET \(max($0, 0))" } ?? "")
            """, arguments, cached: cached) { raw in rows.append(Self.run(raw)) }
        if rows.isEmpty { return [] }
        let ids = rows.map { $0.id }
        let idList = "(" + ids.map { _ in "?" }.joined(separator: ",") + ")"
        // Statements over one run's id are the same text every time.
        let cached = ids.count == 1
        var tags: [String: [String]] = [:]
        for row in try Row.fetchAll(Self.statement(db, "SELECT run_id, tag FROM run_tags WHERE run_id IN \(idList) ORDER BY run_id, tag", cached: cached),
                                    arguments: StatementArguments(ids)) {
            tags[row["run_id"], default: []].append(row["tag"])
        }
        // Stepped directly, by column position: a listing of thousands of runs reads tens of
        // thousands of these rows, and GRDB's by-name row access costs more than the query.
        var params: [String: [Param]] = [:]
        try Self.eachRow(db, "SELECT run_id, key, value, source FROM params WHERE run_id IN \(idList) ORDER BY run_id, key",
                         StatementArguments(ids), cached: cached) { raw in
            let value = (try? JSON.parse(Self.text(raw, 2))) ?? .null
            params[Self.text(raw, 0), default: []].append(Param(key: Self.text(raw, 1), value: value, source: Self.text(raw, 3)))
        }
        var metrics: [String: [MetricSummary]] = [:]
        try Self.eachRow(db, """
            SELECT run_id, key, count, last, min, max, last_step, last_time, source FROM metric_series
            WHERE run_id IN \(idList) ORDER BY run_id, key
            """, StatementArguments(ids), cached: cached) { raw in
            func number(_ column: Int32) -> Double {
                sqlite3_column_type(raw, column) == SQLITE_NULL ? .nan : sqlite3_column_double(raw, column)
            }
            metrics[Self.text(raw, 0), default: []].append(MetricSummary(
                key: Self.text(raw, 1), count: sqlite3_column_int64(raw, 2), last: number(3), min: number(4),
                max: number(5), lastStep: sqlite3_column_int64(raw, 6), lastTime: sqlite3_column_double(raw, 7),
                source: sqlite3_column_type(raw, 8) == SQLITE_NULL ? nil : MetricSource(rawValue: Self.text(raw, 8))))
        }
        let queueInfo = try Self.queueInfo(db, ids: ids, idList: idList, cached: cached)
        var datasets: [String: [DatasetUse]] = [:]
        for row in try Row.fetchAll(Self.statement(db, "SELECT * FROM run_inputs WHERE run_id IN \(idList) ORDER BY dataset, number", cached: cached),
                                    arguments: StatementArguments(ids)) {
            datasets[row["run_id"], default: []].append(DatasetUse(dataset: row["dataset"], number: row["number"], id: row["version_id"]))
        }
        return rows.map { row in
            var record = row
            record.tags = tags[row.id] ?? []
            record.params = params[row.id] ?? []
            record.metrics = metrics[row.id] ?? []
            record.datasets = datasets[row.id] ?? []
            // A queued run that has not started keeps its queue time in `started_at` (see `insertRun`).
            record.queue = queueInfo[row.id]
            if let queue = record.queue, row.status == .queued || queue.history.isEmpty { record.startedAt = nil }
            return record
        }
    }

    /// The columns of `runs` that `run(_:)` reads, in its order.
    static let runColumns = """
        id, name, project, status, command, cwd, host, user, pid, started_at, ended_at, exit_code, signal, cpu_user,
        cpu_system, max_rss, error, env, code, log_bytes, heartbeat_at, heartbeat_interval, abort_requested, pid_scope, extra
        """

    /// A run from a row of `runColumns`, without what other tables hold.
    private static func run(_ raw: OpaquePointer) -> Run {
        func isNull(_ column: Int32) -> Bool { sqlite3_column_type(raw, column) == SQLITE_NULL }
        func optionalText(_ column: Int32) -> String? { isNull(column) ? nil : text(raw, column) }
        func optionalInt(_ column: Int32) -> Int64? { isNull(column) ? nil : sqlite3_column_int64(raw, column) }
        func optionalDouble(_ column: Int32) -> Double? { isNull(column) ? nil : sqlite3_column_double(raw, column) }
        let status = RunStatus(rawValue: text(raw, 3)) ?? .failed
        let command: [String] = {
            guard case .array(let items)? = try? JSON.parse(text(raw, 4)) else { return [] }
            return items.compactMap { $0.stringValue }
        }()
        let environment: [(String, String)] = {
            guard case .object(let members)? = try? JSON.parse(text(raw, 17)) else { return [] }
            return members.map { ($0.0, $0.1.stringValue ?? "") }
        }()
        var end: RunEnd?
        if let endedAt = optionalDouble(10) {
            end = RunEnd(status: status, endedAt: endedAt, exitCode: optionalInt(11).map { Int32($0) },
                         signal: optionalInt(12).map { Int32($0) }, cpuUser: optionalDouble(13),
                         cpuSystem: optionalDouble(14), maxRSS: optionalInt(15), error: optionalText(16))
        }
        var record = Run(id: text(raw, 0), name: optionalText(1), project: text(raw, 2), status: status, command: command,
                         cwd: text(raw, 5), host: text(raw, 6), user: text(raw, 7), pid: optionalInt(8).map { Int32($0) },
                         startedAt: sqlite3_column_double(raw, 9), end: end, environment: environment,
                         code: (try? JSON.parse(text(raw, 18))) ?? .null, logBytes: sqlite3_column_int64(raw, 19),
                         tags: [], params: [], metrics: [], queue: nil)
        if let at = optionalDouble(20), let interval = optionalDouble(21) {
            record.heartbeat = Heartbeat(at: at, interval: interval, abortRequested: sqlite3_column_int64(raw, 22) != 0)
        }
        record.pidScope = optionalText(23)
        record.extra = optionalText(24).flatMap { try? JSON.parse($0) }
        return record
    }

    /// `sql` compiled, or taken from the connection's cache of compiled statements when `cached`.
    static func statement(_ db: Database, _ sql: String, cached: Bool) throws -> Statement {
        cached ? try db.cachedStatement(sql: sql) : try db.makeStatement(sql: sql)
    }

    /// Runs `sql` and hands each result row's raw statement to `body`.
    static func eachRow(_ db: Database, _ sql: String, _ arguments: StatementArguments, cached: Bool = false,
                        _ body: (OpaquePointer) throws -> Void) throws {
        let statement = try Self.statement(db, sql, cached: cached)
        try statement.setArguments(arguments)
        let raw = statement.sqliteStatement
        while true {
            let rc = sqlite3_step(raw)
            if rc == SQLITE_DONE { return }
            guard rc == SQLITE_ROW else {
                throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
            }
            try body(raw)
        }
    }

    static func text(_ raw: OpaquePointer, _ column: Int32) -> String {
        guard let bytes = sqlite3_column_text(raw, column) else { return "" }
        return String(cString: bytes)
    }

    // MARK: Metrics

    /// A writer for one run's points, for a recorder that appends many batches.
    public func metricWriter(run id: String) throws(CMLError) -> any MetricWriter {
        try SQLiteMetricWriter(store: self, runID: id)
    }

    public func appendMetrics(run id: String, _ points: [MetricPoint], source: MetricSource,
                              continuing positions: [String: Int64]?) throws(CMLError) {
        try SQLiteMetricWriter(store: self, runID: id).append(points, source: source, continuing: positions, requireRun: true)
    }

    public func forEachMetric(run id: String, key: String?, _ body: (MetricPoint) throws(CMLError) -> Void) throws(CMLError) {
        var failure: CMLError?
        try read { db in
            let series = try Row.fetchAll(db, sql: "SELECT id, key FROM metric_series WHERE run_id = ?\(key == nil ? "" : " AND key = ?") ORDER BY key",
                                          arguments: key == nil ? [id] : [id, key!])
            for row in series {
                let seriesID: Int64 = row["id"]
                let seriesKey: String = row["key"]
                // Stepped directly: this loop runs once per point, up to millions per series.
                let statement = try db.cachedStatement(sql: "SELECT step, value, time FROM metric_points WHERE series = ? ORDER BY seq")
                try statement.setArguments([seriesID])
                let raw = statement.sqliteStatement
                defer { sqlite3_reset(raw) }
                while true {
                    let rc = sqlite3_step(raw)
                    if rc == SQLITE_DONE { break }
                    guard rc == SQLITE_ROW else {
                        throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
                    }
                    let value = sqlite3_column_type(raw, 1) == SQLITE_NULL ? Double.nan : sqlite3_column_double(raw, 1)
                    do throws(CMLError) {
                        try body(MetricPoint(key: seriesKey, step: sqlite3_column_int64(raw, 0), value: value,
                                             time: sqlite3_column_double(raw, 2)))
                    } catch {
                        failure = error
                        return
                    }
                }
            }
        }
        if let failure { throw failure }
    }

    /// Reads the three columns straight into arrays sized from the series' count: no record per point.
    public func metricColumns(run id: String, key: String) throws(CMLError) -> MetricColumns {
        try read { db in
            var columns = MetricColumns()
            guard let series = try Row.fetchOne(db, sql: "SELECT id, count FROM metric_series WHERE run_id = ? AND key = ?",
                                                arguments: [id, key]) else { return columns }
            let count: Int = series["count"]
            columns.reserveCapacity(count)
            try Self.eachRow(db, "SELECT step, value, time FROM metric_points WHERE series = ? ORDER BY seq",
                             [series["id"] as Int64], cached: true) { raw in
                columns.steps.append(sqlite3_column_int64(raw, 0))
                columns.values.append(sqlite3_column_type(raw, 1) == SQLITE_NULL ? .nan : sqlite3_column_double(raw, 1))
                columns.times.append(sqlite3_column_double(raw, 2))
            }
            return columns
        }
    }

    public func blob(_ id: String) throws(CMLError) -> [UInt8] {
        try blobs.get(id)
    }

    public func putBlob(file path: String) throws(CMLError) -> (id: String, size: Int64) {
        try blobs.putFile(path)
    }

    public func putBlob(_ bytes: [UInt8]) throws(CMLError) -> String {
        try blobs.put(bytes)
    }

    public func blobSize(_ id: String) throws(CMLError) -> Int64 {
        try blobs.location(of: id, refresh: false).size
    }

    public func readBlob(_ id: String, _ body: (UnsafeRawBufferPointer) throws(CMLError) -> Void) throws(CMLError) {
        try blobs.read(id, body)
    }

    // MARK: Artifacts

    @discardableResult
    public func addArtifact(_ artifact: Artifact) throws(CMLError) -> Artifact {
        // A directory references its manifest and every file the manifest names.
        var referenced = [artifact.sha256]
        if artifact.isDirectory {
            var manifestBytes: [UInt8] = []
            try readBlob(artifact.sha256) { chunk throws(CMLError) in manifestBytes += chunk }
            referenced += try Manifest(decoding: manifestBytes).entries.compactMap(\.sha256)
        }
        return try write { db in
            // Checked under the write lock, which removals hold too: a `gc` could have deleted a blob
            // between its storing and this reference to it.
            try blobs.refreshPacks()
            if let missing = try referenced.first(where: { try !blobs.contains($0) }) {
                throw CMLError("blob \(missing) of \(artifact.name) was removed while it was being stored (a cml-data gc ran)",
                               hint: "store it again")
            }
            try Self.insertBlobReferences(db, run: artifact.run, referenced)
            try db.execute(sql: """
                INSERT INTO artifacts (run_id, name, kind, step, sha256, size, files, is_directory, media_type, source, time)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: StatementArguments([
                    artifact.run, artifact.name, artifact.kind, artifact.step, artifact.sha256, artifact.size,
                    artifact.files, artifact.isDirectory, artifact.mediaType, artifact.source, artifact.time,
                ] as [(any DatabaseValueConvertible)?]))
            var stored = artifact
            stored.version = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM artifacts WHERE run_id = ? AND name = ?",
                                              arguments: [artifact.run, artifact.name]) ?? 1
            return stored
        }
    }

    public func artifacts(run id: String) throws(CMLError) -> [Artifact] {
        try read { db in
            var versions: [String: Int] = [:]
            return try Row.fetchAll(db, sql: "SELECT * FROM artifacts WHERE run_id = ? ORDER BY id", arguments: [id]).map { row in
                var artifact = Artifact(run: row["run_id"], name: row["name"], kind: row["kind"], step: row["step"],
                                        sha256: row["sha256"], size: row["size"], files: row["files"],
                                        isDirectory: row["is_directory"], mediaType: row["media_type"], source: row["source"],
                                        time: row["time"])
                versions[artifact.name, default: 0] += 1
                artifact.version = versions[artifact.name]!
                return artifact
            }
        }
    }

    // MARK: Logs

    func logPath(_ id: String) -> String { "\(logDirectory)/\(id).log" }

    public func logWriter(run id: String) throws(CMLError) -> RunLogWriter {
        try FileSystem.makeDirectories(logDirectory)
        return try RunLogWriter(path: logPath(id))
    }

    public func logSize(run id: String) throws(CMLError) -> Int64 {
        var st = stat()
        if stat(logPath(id), &st) != 0 {
            if errno == ENOENT { return 0 }
            throw FileSystem.error("cannot read", logPath(id))
        }
        return Int64(st.st_size)
    }

    @discardableResult
    public func appendLog(run id: String, at offset: Int64, _ records: [UInt8]) throws(CMLError) -> Int64 {
        guard offset >= 0 else { throw CMLError("a log offset must not be negative", kind: .invalid) }
        guard LogRecord.wholeRecordsLength(records[...]) == records.count else {
            throw CMLError("the log bytes for run \(id) are not whole records", kind: .invalid)
        }
        _ = try run(id: id)
        try FileSystem.makeDirectories(logDirectory)
        let path = logPath(id)
        let fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileSystem.error("cannot open the run's log", path) }
        defer { close(fd) }
        // One appender at a time: the size read here is where these bytes go.
        guard flock(fd, LOCK_EX) == 0 else { throw FileSystem.error("cannot lock", path) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileSystem.error("cannot read", path) }
        let size = Int64(st.st_size)
        guard offset <= size else {
            throw CMLError("the log of run \(id) has \(size) bytes; bytes from \(offset) would leave a gap", kind: .conflict)
        }
        let skip = Int(size - offset)
        // What the log holds already must be these bytes: a retry, not another log.
        let overlap = min(skip, records.count)
        var held = [UInt8](repeating: 0, count: overlap)
        let read = held.withUnsafeMutableBytes { pread(fd, $0.baseAddress, overlap, off_t(offset)) }
        guard read == overlap, held[...] == records[..<overlap] else {
            throw CMLError("the log of run \(id) holds other bytes from \(offset)", kind: .conflict)
        }
        guard skip < records.count else { return size }
        guard LogRecord.wholeRecordsLength(records[..<skip]) == skip else {
            throw CMLError("the log of run \(id) ends inside these bytes' records, at \(size)", kind: .conflict)
        }
        try FileSystem.writeAll(fd, Array(records[skip...]), path: path)
        return offset + Int64(records.count)
    }

    public func readLog(run id: String, from offset: Int64, limit: Int) throws(CMLError) -> [UInt8]? {
        let path = logPath(id)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw CMLError("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw CMLError("cannot read \(path): \(String(cString: strerror(errno)))") }
        // Not `limit` bytes when the log holds fewer: a copy asks for megabytes of a log that is often empty.
        var bytes = [UInt8](repeating: 0, count: Int(max(0, min(Int64(limit), Int64(st.st_size) - offset))))
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
        if n < 0 { throw CMLError("cannot read \(path): \(String(cString: strerror(errno)))") }
        bytes.removeLast(bytes.count - n)
        return bytes
    }
}

extension JSON {
    /// The number a parameter sorts and compares by, when it has one.
    public var number: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }
}

/// Appends a run's points with one prepared statement per batch and keeps each series' summary current.
final class SQLiteMetricWriter: MetricWriter {
    private struct Series {
        var id: Int64
        var nextSeq: Int64
        var summary: MetricSummary
        var touched = false
    }

    private let store: SQLiteStore
    private let runID: String

    init(store: SQLiteStore, runID: String) throws(CMLError) {
        self.store = store
        self.runID = runID
    }

    /// Each batch reads the state of the series it touches inside its own write transaction, so other
    /// writers to the same run (`cml-log --run`, another process) interleave safely between batches.
    func append(_ points: [MetricPoint], source: MetricSource) throws(CMLError) {
        try append(points, source: source, continuing: nil, requireRun: false)
    }

    /// `continuing`: where each key's points in `points` start in its series (see `RunStore.appendMetrics`).
    /// `requireRun`: a missing run is `notFound` (the store's callers), not a constraint failure; a
    /// recorder that created the run itself skips the lookup.
    func append(_ points: [MetricPoint], source: MetricSource, continuing positions: [String: Int64]?,
                requireRun: Bool) throws(CMLError) {
        if points.isEmpty { return }
        try store.write { db in
            if requireRun { try SQLiteStore.requireRun(db, runID) }
            // The position in its series of the next point of each key in this batch.
            var position = positions ?? [:]
            // nil: the key's series keeps another source's points, and these are left out.
            var state: [String: Series?] = [:]
            var rows = PointRows(db)
            let lookup = try db.cachedStatement(sql: """
                SELECT s.*, (SELECT COALESCE(MAX(seq), -1) + 1 FROM metric_points WHERE series = s.id) AS next_seq
                FROM metric_series s WHERE run_id = ? AND key = ?
                """)
            // The series of the last point's key, not yet put back in `state`: points come in runs of one
            // key (a writer's batch of one metric), and a run of them costs no lookup per point.
            var current: (key: String, series: Series)?
            for point in points {
                var series: Series
                if let last = current, last.key == point.key {
                    series = last.series
                } else {
                    if let last = current { state[last.key] = last.series }
                    current = nil
                    if let known = state[point.key] {
                        guard let known else { continue }
                        series = known
                    } else if let row = try Row.fetchOne(lookup, arguments: [runID, point.key]) {
                        let stored = (row["source"] as String?).flatMap(MetricSource.init(rawValue:)) ?? .console
                        if stored.rank > source.rank {
                            state[point.key] = .some(nil)
                            continue
                        }
                        if stored != source {
                            // The series starts again from this source (see `MetricSource`).
                            let id: Int64 = row["id"]
                            try db.execute(sql: "DELETE FROM metric_points WHERE series = ?", arguments: [id])
                            try db.execute(sql: "UPDATE metric_series SET source = ? WHERE id = ?", arguments: [source.rawValue, id])
                            series = Series(id: id, nextSeq: 0, summary: MetricSummary(
                                key: point.key, count: 0, last: .nan, min: .nan, max: .nan, lastStep: 0, lastTime: 0))
                            series.touched = true
                        } else {
                            series = Series(id: row["id"], nextSeq: row["next_seq"], summary: MetricSummary(
                                key: point.key, count: row["count"], last: row["last"] ?? .nan, min: row["min"] ?? .nan,
                                max: row["max"] ?? .nan, lastStep: row["last_step"], lastTime: row["last_time"]))
                        }
                    } else {
                        try db.cachedStatement(sql: "INSERT INTO metric_series (run_id, key, count, last_step, last_time, source) VALUES (?, ?, 0, 0, 0, ?)")
                            .execute(arguments: [runID, point.key, source.rawValue])
                        series = Series(id: db.lastInsertedRowID, nextSeq: 0, summary: MetricSummary(
                            key: point.key, count: 0, last: .nan, min: .nan, max: .nan, lastStep: 0, lastTime: 0))
                    }
                }
                if positions != nil, let at = position[point.key] {
                    position[point.key] = at + 1
                    // Sent before and stored: a batch repeated after its answer was lost counts once.
                    if at < series.nextSeq {
                        current = (point.key, series)
                        continue
                    }
                    guard at == series.nextSeq else {
                        throw CMLError("the series \(point.key) of run \(runID) has \(series.nextSeq) points; points from \(at) would leave a gap",
                                       kind: .conflict)
                    }
                }
                try rows.add(series: series.id, seq: series.nextSeq, point)
                series.nextSeq += 1
                series.touched = true
                series.summary.add(point)
                current = (point.key, series)
            }
            if let last = current { state[last.key] = last.series }
            try rows.flush()
            let update = try db.cachedStatement(sql: """
                UPDATE metric_series SET count = ?, last = ?, min = ?, max = ?, last_step = ?, last_time = ? WHERE id = ?
                """)
            for case let (_, entry?) in state where entry.touched {
                let s = entry.summary
                try update.execute(arguments: [s.count, s.last.isNaN ? nil : s.last, s.min.isNaN ? nil : s.min,
                                               s.max.isNaN ? nil : s.max, s.lastStep, s.lastTime, entry.id])
            }
        }
    }
}

/// Rows of `metric_points` inserted `perStatement` to a statement, each bound directly: a batch of
/// points costs a statement step per 32 points instead of one per point (the per-step cost of SQLite's
/// virtual machine was most of what a point cost). The last rows of a batch go one to a statement.
/// Both statements are compiled once per connection (GRDB's cache).
struct PointRows {
    static let perStatement = 32
    private static let columns = "INSERT INTO metric_points (series, seq, step, value, time) VALUES "
    private static let manySQL = columns + Array(repeating: "(?, ?, ?, ?, ?)", count: perStatement).joined(separator: ", ")
    private static let oneSQL = columns + "(?, ?, ?, ?, ?)"

    private let db: Database
    private var pending: [(series: Int64, seq: Int64, step: Int64, value: Double, time: Double)] = []

    init(_ db: Database) {
        self.db = db
        pending.reserveCapacity(Self.perStatement)
    }

    mutating func add(series: Int64, seq: Int64, _ point: MetricPoint) throws {
        pending.append((series, seq, point.step, point.value, point.time))
        if pending.count == Self.perStatement {
            try insert(Self.manySQL, pending[...])
            pending.removeAll(keepingCapacity: true)
        }
    }

    /// Inserts the rows still pending.
    mutating func flush() throws {
        for index in pending.indices { try insert(Self.oneSQL, pending[index...index]) }
        pending.removeAll(keepingCapacity: true)
    }

    private func insert(_ sql: String, _ rows: ArraySlice<(series: Int64, seq: Int64, step: Int64, value: Double, time: Double)>) throws {
        let raw = try db.cachedStatement(sql: sql).sqliteStatement
        var column: Int32 = 1
        for row in rows {
            sqlite3_bind_int64(raw, column, row.series)
            sqlite3_bind_int64(raw, column + 1, row.seq)
            sqlite3_bind_int64(raw, column + 2, row.step)
            if row.value.isNaN { sqlite3_bind_null(raw, column + 3) } else { sqlite3_bind_double(raw, column + 3, row.value) }
            sqlite3_bind_double(raw, column + 4, row.time)
            column += 5
        }
        let rc = sqlite3_step(raw)
        sqlite3_reset(raw)
        guard rc == SQLITE_DONE else {
            throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
        }
    }
}

extension MetricSummary {
    mutating func add(_ point: MetricPoint) {
        count += 1
        last = point.value
        lastStep = point.step
        lastTime = point.time
        if !point.value.isNaN {
            min = min.isNaN ? point.value : Swift.min(min, point.value)
            max = max.isNaN ? point.value : Swift.max(max, point.value)
        }
    }
}

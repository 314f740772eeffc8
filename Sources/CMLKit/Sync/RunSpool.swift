import Foundation
import Glibc

/// Where runs recorded against a remote store wait to be uploaded: a store directory on this machine, one
/// per server (`$XDG_CACHE_HOME/cml/spool/HOST_PORT-HASH`, else under ~/.cache). `cml-run --store
/// http://…` records into it exactly as into a local store, so the command's start never waits on the
/// network and an unreachable server loses nothing; `RunSync` copies each run up while it runs and
/// after, and a run leaves the spool once the server has all of it. So the spool holds exactly the runs
/// still waiting to upload: `cml-run ls` marks them, and the next command that reaches the server (or
/// `cml-serve push`) uploads what a cml-run could not before it exited.
public struct RunSpool: Sendable {
    public let url: String
    public let directory: String

    /// `agent`: the spool of a remote agent (`cml-agent --store URL`), apart from cml-run's: its runs
    /// are leased runs, which the agent uploads and ends on the server itself.
    public init(for url: String, agent: Bool = false) {
        var url = url
        // `http://host:8080/` is the server `http://host:8080` is, and has the same spool.
        while url.hasSuffix("/") { url.removeLast() }
        self.url = url
        let cache = FileSystem.cacheDirectory
        let address = url.split(separator: "/").dropFirst(1).first.map(String.init) ?? "server"
        let readable = String(address.map { $0.isLetter || $0.isNumber || $0 == "." ? $0 : "_" })
        directory = "\(cache)/cml/\(agent ? "agent-spool" : "spool")/\(readable)-\(SHA256Hasher.hex(Array(url.utf8)).prefix(12))"
    }

    /// The spool's store, made when missing, with the server it stands for named in it (see `server(of:)`).
    public func open() throws(CMLError) -> SQLiteStore {
        try FileSystem.makeDirectories(directory)
        let marker = directory + "/" + Self.serverFile
        if (try? FileSystem.readAll(marker)) != Array(url.utf8) {
            let temporary = marker + ".\(getpid())"
            try FileSystem.writeFile(temporary, Array(url.utf8))
            guard rename(temporary, marker) == 0 else { throw FileSystem.error("cannot write", marker) }
        }
        return try SQLiteStore(directory: directory, busyTimeout: StoreLocation.busyTimeout)
    }

    private static let serverFile = "server-url"

    /// The server whose spool the store directory `directory` is, if it is one. A run recorded against a
    /// server has its spool as `$CML_STORE`: what it asks of datasets is asked of the server.
    public static func server(of directory: String) -> String? {
        guard let bytes = try? FileSystem.readAll(directory + "/" + serverFile), !bytes.isEmpty else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The ids of the runs still waiting to upload, without making the spool.
    public func waiting() -> [String] {
        guard FileSystem.isDirectory(directory), let store = try? SQLiteStore(directory: directory, access: .reading) else { return [] }
        return (try? store.runs(RunQuery()).map(\.id)) ?? []
    }

    /// What `cml-run ls` lists of the server: `listed`, the server's answer to `query`, with the runs
    /// waiting here that match it and never reached the server placed among them in the query's order
    /// (keys resolved as the server resolved them), and the ids of the listed runs still waiting here.
    /// Opens nothing when no run was ever spooled for this server.
    public func listing(_ listed: [Run], query: RunQuery, server: any Store,
                        catalog: RunTerm.Catalog) throws(CMLError) -> (runs: [Run], waiting: Set<String>) {
        guard FileSystem.isDirectory(directory), let spool = try? SQLiteStore(directory: directory, access: .reading) else {
            return (listed, [])
        }
        let waiting = Set(try spool.runs(RunQuery()).map(\.id))
        guard !waiting.isEmpty else { return (listed, []) }
        let onServer = Set(listed.map(\.id))
        var local: [Run] = []
        for run in try spool.runs(query, resolvingKeysIn: catalog) where !onServer.contains(run.id) {
            // A run the server has but did not list (it has less of it so far) is left out, as the server left it.
            do { _ = try server.run(id: run.id) } catch where error.kind == .notFound { local.append(run) }
        }
        var runs = listed
        if !local.isEmpty {
            let order = try RunOrder(query.sort, catalog: catalog)
            runs = []
            var serverIndex = listed.startIndex, localIndex = local.startIndex
            while serverIndex < listed.endIndex || localIndex < local.endIndex {
                if localIndex < local.endIndex && (serverIndex == listed.endIndex || order.precedes(local[localIndex], listed[serverIndex])) {
                    runs.append(local[localIndex])
                    localIndex += 1
                } else {
                    runs.append(listed[serverIndex])
                    serverIndex += 1
                }
            }
            if let limit = query.limit { runs = Array(runs.prefix(limit)) }
        }
        return (runs, waiting.intersection(runs.map(\.id)))
    }

    /// Uploads what `remote` lacks of the spool's run `id` (`unsent`: see `RunSync.copyRun(_:unsent:)`),
    /// and takes the run out of the spool once it has ended and the server has all of it. Nil when
    /// another process is uploading it just now.
    /// Only one process uploads a run at a time (a lock file per run): two uploaders asking the server's
    /// counts at once would both send the same points.
    public func upload(_ id: String, from spool: SQLiteStore, to remote: any Store, unsent: Bool = false) throws(CMLError) -> RunSync.Copy? {
        let locks = directory + "/uploading"
        try FileSystem.makeDirectories(locks)
        let lockPath = locks + "/" + id
        let fd = Glibc.open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileSystem.error("cannot create", lockPath) }
        defer { close(fd) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { return nil }
        let copy = try RunSync(from: spool, to: remote).copyRun(id, unsent: unsent)
        if copy.complete {
            _ = try spool.removeRuns([id])
            unlink(lockPath)
        }
        return copy
    }

    /// Uploads every run waiting in the spool; a run the server refuses (another run has its id) is
    /// reported and stays. Stops at the first failure to reach the server.
    public func uploadAll(to remote: any Store, warn: (String) -> Void) throws(CMLError) -> [RunSync.Copy] {
        let ids = waiting()
        guard !ids.isEmpty else { return [] }
        let spool = try open()
        var copies: [RunSync.Copy] = []
        for id in ids {
            do {
                if let copy = try upload(id, from: spool, to: remote) {
                    for refusal in copy.refusedVersions { warn("run \(RunID.short(id)): \(refusal)") }
                    copies.append(copy)
                }
            } catch where error.kind == .conflict || error.kind == .refused {
                warn("run \(RunID.short(id)) stays in the spool \(directory): \(error.message)")
            }
        }
        return copies
    }
}

/// Uploads one run from the spool while its command runs, on a thread of its own: every second while
/// the server answers, backing off to 30 s while it does not, so the command never waits on it. Each
/// upload also renews the run's heartbeat on the server, and an abort asked for there (`cml-run abort
/// --store URL`) is passed to the spool, where the run's cml-run hears it.
///
/// Made before the run is recorded, it starts loading libcurl at once (milliseconds), while the command
/// is prepared and runs; and a run that ends before its first upload (a short command) goes up at the
/// end in one request (`RunSync.copyRun(_:unsent:)`).
public final class SpoolUploader: @unchecked Sendable {  // what follows `condition` is under it
    private let spool: RunSpool
    private let token: String?
    private let warn: @Sendable (String) -> Void
    private let condition = NSCondition()
    private var stopped = false
    /// The run, once recorded in the spool.
    private var run: (store: SQLiteStore, id: String)?
    /// Whether libcurl is loaded (or failed to load), and the server's store when it loaded.
    private var loaded = false
    private var remote: HTTPStore?
    /// Whether an upload of the run was tried before the end: until then the server has nothing of it
    /// from this process.
    private var tried = false

    /// Starts loading libcurl for the server of `spool`.
    public init(spool: RunSpool, token: String?, warn: @escaping @Sendable (String) -> Void) {
        self.spool = spool
        self.token = token
        self.warn = warn
        let thread = Thread { [self] in loop() }
        thread.name = "cml-upload"
        thread.start()
    }

    /// Starts the uploads of the run `id` that `store`, the spool's, records.
    public func start(store: SQLiteStore, run id: String) {
        condition.lock()
        run = (store, id)
        condition.broadcast()
        condition.unlock()
    }

    private func loop() {
        let store = try? HTTPStore(url: spool.url, token: token)
        condition.lock()
        remote = store
        loaded = true
        condition.broadcast()
        while run == nil && !stopped { condition.wait() }
        condition.unlock()
        var remote = store
        var pause = 1.0
        var warned = false
        while let next = nextUpload(after: pause) {
            let (spoolStore, runID) = next
            do throws(CMLError) {
                if remote == nil { remote = try HTTPStore(url: spool.url, token: token) }
                if let copy = try spool.upload(runID, from: spoolStore, to: remote!), !copy.complete,
                   try remote!.heartbeatWriter(run: runID).beat() {
                    try spoolStore.requestAbort(directRun: runID)
                }
                pause = 1
            } catch {
                if !warned && error.kind != .unavailable && error.kind != .busy {
                    warn("the run is kept in \(spool.directory) for now: \(error.message)")
                    warned = true
                }
                pause = min(pause * 2, 30)
            }
        }
    }

    /// Waits up to `seconds` for `finish`; the run to upload now, nil once finishing.
    private func nextUpload(after seconds: Double) -> (store: SQLiteStore, id: String)? {
        condition.lock()
        defer { condition.unlock() }
        if !stopped { _ = condition.wait(until: Date(timeIntervalSinceNow: seconds)) }
        guard !stopped, let run else { return nil }
        tried = true
        return run
    }

    /// Stops the background uploads, then uploads the rest of the ended run, giving up after `deadline`
    /// seconds of trying (the run then waits in the spool). Returns whether the server has all of it
    /// (true when no run was recorded).
    public func finish(deadline: Double) -> Bool {
        condition.lock()
        stopped = true
        condition.broadcast()
        // Loading libcurl takes milliseconds and no network: the end waits for it rather than load it twice.
        while !loaded { condition.wait() }
        let (run, loadedRemote, unsent) = (self.run, remote, !tried)
        condition.unlock()
        guard let run else { return true }
        let (store, runID) = run
        let end = Clock.now() + deadline
        var pause = 0.2
        while true {
            do throws(CMLError) {
                let remote: HTTPStore
                if let loadedRemote { remote = loadedRemote } else { remote = try HTTPStore(url: spool.url, token: token) }
                if let copy = try spool.upload(runID, from: store, to: remote, unsent: unsent), copy.complete {
                    for refusal in copy.refusedVersions { warn(refusal) }
                    return true
                }
            } catch where error.kind != .unavailable && error.kind != .busy {
                warn("run \(RunID.short(runID)) is kept in \(spool.directory): \(error.message)")
                return false
            } catch {}
            if Clock.now() + pause > end { return false }
            usleep(useconds_t(pause * 1_000_000))
            pause = min(pause * 2, 2)
        }
    }
}

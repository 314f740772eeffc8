import Glibc

/// What `cml-data snapshot` is asked to record.
public struct SnapshotRequest: Sendable {
    public var directory: String
    /// Default: the directory's name.
    public var name: String?
    /// Default (nil): the dataset's latest version.
    public var parents: [VersionReference]?
    public var message: String?
    /// Leave unreadable files out (each named in a warning) instead of refusing the snapshot.
    public var skipUnreadable: Bool
    /// Record links that lead out of the directory as links instead of refusing the snapshot.
    public var allowOutsideLinks: Bool
    /// Hashing threads; default: one per available CPU.
    public var jobs: Int?
    /// The run recording it (inside `cml-run`).
    public var run: String?

    public init(directory: String, name: String? = nil, parents: [VersionReference]? = nil, message: String? = nil,
                skipUnreadable: Bool = false, allowOutsideLinks: Bool = false, jobs: Int? = nil, run: String? = nil) {
        self.directory = directory
        self.name = name
        self.parents = parents
        self.message = message
        self.skipUnreadable = skipUnreadable
        self.allowOutsideLinks = allowOutsideLinks
        self.jobs = jobs
        self.run = run
    }
}

/// The version recorded, and what recording it took.
public struct SnapshotReport: Sendable {
    public var version: DatasetVersion
    /// Files read and hashed (the others were unchanged since the last snapshot: see `StatCache`).
    public var hashedFiles: Int
    public var hashedBytes: Int64
    public var unchangedFiles: Int
    /// Unreadable files left out (`skipUnreadable`).
    public var skipped: [String]
    /// The directory holds what its dataset's latest version (the parent it would have had) holds:
    /// `version` is that one, and nothing was recorded.
    public var unchanged: Bool
}

/// Records a directory as a dataset version: its files stored as `DirectoryIngest` does (hashed on every
/// core unless the stat cache vouches for them, new content in one batch), then the version recorded with
/// its blob references. Like DVC and ClearML, a directory that holds what its parent version holds makes
/// no new version.
public enum Snapshot {
    /// Records `request` in `store`; or, with `server`, in the server, `store` being its spool on this
    /// machine: the files are stored in the spool (whose stat cache spares hashing them again), the
    /// version is asked of the server, and only the blobs it says it lacks are sent (`newBlobs` and
    /// `newBytes` count those). Nothing is recorded on the server until all of them are there.
    public static func take(_ request: SnapshotRequest, store: SQLiteStore, server: (any Store)? = nil,
                            warn: @escaping @Sendable (String) -> Void) throws(CMLError) -> SnapshotReport {
        let root = try checkedDirectory(request.directory)
        let name = request.name ?? FileSystem.baseName(root)
        do { try DatasetName.check(name) } catch {
            throw request.name == nil
                ? CMLError.usage("the directory name \(JSON.string(name).serialized) is not a valid dataset name", hint: "pass --name NAME")
                : error
        }
        let parents = try request.parents.map { references throws(CMLError) in
            try references.map { reference throws(CMLError) in try (server ?? store).resolveDatasetVersion(reference).id }
        }
        if let server, parents == nil {
            // Before hashing: a server that cannot be reached says so at once rather than after.
            _ = try server.datasetVersions(dataset: name)
        }
        let jobs = max(1, request.jobs ?? ParallelWork.availableCPUs)
        let startedAt = Clock.now()

        let cachePath = "\(store.cacheDirectory)/stat/\(name)"
        let cache = StatCache.load(cachePath)
        let tree = try DirectoryIngest.store(root, into: store, jobs: jobs, cache: cache, reader: "the snapshot",
                                             skipUnreadable: request.skipUnreadable, skipOption: "--skip-unreadable",
                                             outsideLinks: request.allowOutsideLinks ? .record : .refuse(option: "--allow-outside-links"),
                                             progressLabel: "cml-data: hashing", warn: warn)
        var draft = DatasetVersionDraft(
            id: RunID.make(at: startedAt), dataset: name, parents: parents, message: request.message, manifest: tree.manifestID,
            files: Int64(tree.manifest.entries.count), size: tree.manifest.totalSize, newBlobs: Int64(tree.stored.blobs),
            newBytes: tree.stored.bytes, source: root, run: request.run, createdAt: startedAt,
            blobs: tree.blobs, unlessUnchanged: true)
        func report(_ recorded: DatasetVersionCommit) -> SnapshotReport? {
            switch recorded {
            case .created(let version), .unchanged(let version):
                StatCache.save(tree.cacheEntries, to: cachePath)
                var unchanged = false
                if case .unchanged = recorded { unchanged = true }
                return SnapshotReport(version: version, hashedFiles: tree.hashedFiles, hashedBytes: tree.hashedBytes,
                                      unchangedFiles: tree.cacheEntries.count - tree.hashedFiles, skipped: tree.skipped,
                                      unchanged: unchanged)
            case .missingBlobs:
                return nil
            }
        }
        if let server {
            // New to the server is what it lacks, whatever the spool held.
            var sent = (blobs: 0, bytes: Int64(0))
            let recorded = try DatasetSync(from: store, to: server).sendingMissingBlobs(sent: &sent, lackingHere: { missing throws(CMLError) in
                _ = try tree.storeAgain(missing, into: store)
            }) { sent throws(CMLError) in
                draft.newBlobs = Int64(sent.blobs)
                draft.newBytes = sent.bytes
                return try server.createDatasetVersion(draft)
            }
            if let done = report(recorded) { return done }
        } else {
            for _ in 0..<3 {
                let recorded = try store.createDatasetVersion(draft)
                if let done = report(recorded) { return done }
                if case .missingBlobs(let missing) = recorded {
                    // Freed by a concurrent `cml-data gc` or `rm` after this snapshot found them: store them again.
                    let again = try tree.storeAgain(missing, into: store)
                    draft.newBlobs += Int64(again.blobs)
                    draft.newBytes += again.bytes
                }
            }
        }
        throw CMLError("blobs of this snapshot keep being removed by a concurrent cml-data gc or rm", hint: "snapshot again")
    }

    /// The directory to snapshot, absolute; a clear error when it is missing or not a directory.
    static func checkedDirectory(_ path: String) throws(CMLError) -> String {
        let absolute = FileSystem.absolutePath(path)
        var st = stat()
        guard stat(absolute, &st) == 0 else {
            throw errno == ENOENT ? CMLError("\(path) does not exist") : FileSystem.error("cannot read", path)
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw CMLError("\(path) is not a directory", hint: "cml-data snapshot takes a directory; put the file in one")
        }
        var trimmed = absolute
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        return trimmed
    }

    /// Up to five paths, then how many more.
    public static func listed(_ items: [String]) -> String {
        let shown = items.prefix(5).joined(separator: ", ")
        return items.count > 5 ? "\(items.count) files: \(shown) and \(items.count - 5) more" : shown
    }
}

/// One read buffer per worker thread, each used by its worker only.
final class WorkerBuffers: @unchecked Sendable {
    private let buffers: [UnsafeMutableRawBufferPointer]

    init(count: Int, size: Int) {
        buffers = (0..<count).map { _ in .allocate(byteCount: size, alignment: 64) }
    }

    deinit {
        for buffer in buffers { buffer.deallocate() }
    }

    subscript(worker: Int) -> UnsafeMutableRawBufferPointer { buffers[worker] }
}


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
    /// Hashing threads; default: one per available CPU.
    public var jobs: Int?
    /// The run recording it (inside `cml-run`).
    public var run: String?

    public init(directory: String, name: String? = nil, parents: [VersionReference]? = nil, message: String? = nil,
                skipUnreadable: Bool = false, jobs: Int? = nil, run: String? = nil) {
        self.directory = directory
        self.name = name
        self.parents = parents
        self.message = message
        self.skipUnreadable = skipUnreadable
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
}

/// Records a directory as a dataset version: walk it, hash the files the stat cache does not vouch for
/// on every core, store the contents the store lacks (in one batch, one sync), write the manifest, and
/// record the version with its blob references.
public enum Snapshot {
    public static func take(_ request: SnapshotRequest, store: any Store,
                            warn: @escaping @Sendable (String) -> Void) throws(CMLError) -> SnapshotReport {
        let root = try checkedDirectory(request.directory)
        let name = request.name ?? FileSystem.baseName(root)
        do { try DatasetName.check(name) } catch {
            throw request.name == nil
                ? CMLError.usage("the directory name \(JSON.string(name).serialized) is not a valid dataset name", hint: "pass --name NAME")
                : error
        }
        let parents = try request.parents.map { references throws(CMLError) in
            try references.map { reference throws(CMLError) in try store.resolveDatasetVersion(reference).id }
        }
        let jobs = max(1, request.jobs ?? ParallelWork.availableCPUs)
        let startedAt = Clock.now()

        var walk = DirectoryWalk.walk(root, excluding: store.location, warn: warn)
        let cachePath = "\(store.cacheDirectory)/stat/\(name)"
        let cache = StatCache.load(cachePath)
        let batch = try store.blobBatch(workers: jobs)

        // Files the cache vouches for keep their hash, as long as the store still holds the content.
        var digests = [ContentDigest?](repeating: nil, count: walk.files.count)
        var hashedAt = [Int64](repeating: 0, count: walk.files.count)
        var toHash: [Int] = []
        for (index, file) in walk.files.enumerated() where file.linkTarget == nil {
            if let known = cache.lookup(file.identity),
               try batch.store.contains(known.digest.sha256, lookingForFiles: file.identity.size >= Int64(BlobStore.packThreshold)) {
                digests[index] = known.digest
                hashedAt[index] = known.hashedAt
            } else {
                toHash.append(index)
            }
        }
        // Largest first, so that a big file does not start last and keep one core busy alone at the end.
        toHash.sort { walk.files[$0].identity.size > walk.files[$1].identity.size }

        var unreadable = walk.unreadable
        var hashedFiles = 0
        var hashedBytes: Int64 = 0
        func hashed(_ index: Int, _ digest: ContentDigest, at time: Int64) {
            digests[index] = digest
            hashedAt[index] = time
            hashedFiles += 1
            hashedBytes += walk.files[index].identity.size
        }
        let progress = Progress.onTerminal("cml-data: hashing", files: toHash.count,
                                           bytes: toHash.reduce(0) { $0 + walk.files[$1].identity.size })
        let outcomes = hashFiles(toHash.map { walk.files[$0] }, root: root, batch: batch, cache: cache, jobs: jobs,
                                 progress: progress)
        progress?.finish()
        var retry: [Int] = []
        for (position, outcome) in outcomes.enumerated() {
            switch outcome.result {
            case .success(let digest): hashed(toHash[position], digest, at: outcome.startedAt)
            case .failure(.changed): retry.append(toHash[position])
            case .failure(.unreadable(let message)): unreadable.append(message)
            case .failure(.failed(let error)): throw error
            }
        }
        // A file written while it was read gets two more tries, with a fresh look at it each time.
        var changed: [String] = []
        for index in retry {
            let path = root + "/" + walk.files[index].path
            var failure: IngestFailure? = .changed
            for _ in 0..<2 {
                var st = stat()
                guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { break }
                walk.files[index].identity = FileIdentity(st)
                walk.files[index].mode = UInt32(st.st_mode) & 0o7777
                let outcome = hashFiles([walk.files[index]], root: root, batch: batch, cache: cache, jobs: 1, progress: nil)[0]
                if case .success(let digest) = outcome.result {
                    hashed(index, digest, at: outcome.startedAt)
                    failure = nil
                    break
                }
                if case .failure(let reason) = outcome.result {
                    failure = reason
                    if case .changed = reason { continue }
                    break
                }
            }
            switch failure {
            case nil: break
            case .changed?: changed.append(path)
            case .unreadable(let message)?: unreadable.append(message)
            case .failed(let error)?: throw error
            }
        }
        if !changed.isEmpty {
            throw CMLError("\(listed(changed)) changed or disappeared while the snapshot read \(changed.count == 1 ? "it" : "them")",
                           hint: "nothing was recorded; snapshot again once the files are written")
        }
        var skipped: [String] = []
        if !unreadable.isEmpty {
            guard request.skipUnreadable else {
                throw CMLError("cannot read \(listed(unreadable.sorted()))",
                               hint: "nothing was recorded; fix the permissions, or pass --skip-unreadable to leave them out")
            }
            skipped = unreadable.sorted()
            for message in skipped { warn("left out \(message)") }
        }

        var entries: [ManifestEntry] = []
        entries.reserveCapacity(walk.files.count)
        var cacheEntries: [StatCache.Entry] = []
        var paths: [String: String] = [:]  // blob → one path holding it, to store it again if it vanishes
        for (index, file) in walk.files.enumerated() {
            if let target = file.linkTarget {
                entries.append(ManifestEntry(path: file.path, size: 0, mode: file.mode, linkTarget: target))
            } else if let digest = digests[index] {
                let id = digest.sha256.hex
                entries.append(ManifestEntry(path: file.path, size: file.identity.size, mode: file.mode, sha256: id,
                                             crc32c: digest.crc32c))
                cacheEntries.append(StatCache.Entry(identity: file.identity, hashedAt: hashedAt[index], digest: digest))
                paths[id] = file.path
            }
        }
        let manifest = Manifest(entries: entries)
        for link in manifest.escapingLinks {
            warn("the link \(link.path) points outside \(root) (to \(link.linkTarget!)); it is recorded as a link")
        }
        let manifestBytes = manifest.encoded
        let manifestID = try batch.put(manifestBytes)
        try batch.finish()
        var stored = batch.stored

        var draft = DatasetVersionDraft(
            id: RunID.make(at: startedAt), dataset: name, parents: parents, message: request.message, manifest: manifestID,
            files: Int64(entries.count), size: manifest.totalSize, newBlobs: Int64(stored.blobs), newBytes: stored.bytes,
            source: root, run: request.run, createdAt: startedAt,
            blobs: Set(entries.compactMap(\.sha256)).union([manifestID]))
        for _ in 0..<3 {
            switch try store.createDatasetVersion(draft) {
            case .created(let version):
                StatCache.save(cacheEntries, to: cachePath)
                return SnapshotReport(version: version, hashedFiles: hashedFiles, hashedBytes: hashedBytes,
                                      unchangedFiles: cacheEntries.count - hashedFiles, skipped: skipped)
            case .missingBlobs(let missing):
                // Freed by a concurrent `cml-data gc` or `rm` after this snapshot found them: store them again.
                let again = try store.blobBatch(workers: 1)
                for id in missing.sorted() {
                    if id == manifestID {
                        try again.put(manifestBytes)
                        continue
                    }
                    guard let path = paths[id], let entry = walk.files.first(where: { $0.path == path }) else { continue }
                    let outcome = hashFiles([entry], root: root, batch: again, cache: StatCache(), jobs: 1, progress: nil)[0]
                    guard case .success(let digest) = outcome.result, digest.sha256.hex == id else {
                        throw CMLError("\(root)/\(path) changed during the snapshot", hint: "nothing was recorded; snapshot again")
                    }
                }
                try again.finish()
                stored.blobs += again.stored.blobs
                stored.bytes += again.stored.bytes
                draft.newBlobs = Int64(stored.blobs)
                draft.newBytes = stored.bytes
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

    struct Outcome: Sendable {
        var result: Result<ContentDigest, IngestFailure>
        /// When reading the file began (nanoseconds since the epoch): what the stat cache keeps.
        var startedAt: Int64
    }

    private static func hashFiles(_ files: [WalkedFile], root: String, batch: BlobBatch, cache: StatCache, jobs: Int,
                                  progress: Progress?) -> [Outcome] {
        let buffers = WorkerBuffers(count: jobs, size: BlobStore.packThreshold + 1)
        let spareCores = jobs > 1 && files.count < jobs * 2
        return ParallelWork.map(count: files.count, workers: jobs) { worker, item in
            let file = files[item]
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            let startedAt = Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
            // Copying a large file while hashing it pays when a core would idle otherwise, and the content
            // is likely new (a moved file keeps its size and time: its content is likely stored).
            let copyWhileHashing = spareCores && !cache.likelyStored(file.identity)
            let result: Result<ContentDigest, IngestFailure>
            do throws(IngestFailure) {
                result = .success(try batch.ingest(path: root + "/" + file.path, expected: file.identity, worker: worker,
                                                   buffer: buffers[worker], copyWhileHashing: copyWhileHashing))
            } catch {
                result = .failure(error)
            }
            progress?.add(bytes: file.identity.size)
            return Outcome(result: result, startedAt: startedAt)
        }
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


import Glibc

/// A directory's files and links stored as a manifest: walked without following links, every file the
/// stat cache does not vouch for hashed (sha256 and CRC-32C) on every core, largest first, the content
/// the store lacks stored in one batch (small files in packs, one sync), then the manifest. What
/// `cml-data snapshot` and `cml-log artifact DIR` share.
///
/// A file written while it is read gets two more tries, then refuses the whole; so do unreadable files,
/// unless `skipUnreadable` (each left out with a warning). Special files are skipped with a warning.
struct DirectoryIngest {
    let root: String
    let manifest: Manifest
    let manifestBytes: [UInt8]
    let manifestID: String
    /// New content this stored.
    let stored: (blobs: Int, bytes: Int64)
    /// Files read and hashed (the others the stat cache vouched for).
    let hashedFiles: Int
    let hashedBytes: Int64
    /// What the stat cache keeps for the next time.
    let cacheEntries: [StatCache.Entry]
    /// Unreadable files left out (`skipUnreadable`).
    let skipped: [String]
    /// The regular files stored, in the order of `cacheEntries` (which holds their digests), to store
    /// one again if a concurrent gc removes its blob (`storeAgain`).
    private let files: [WalkedFile]

    /// Every blob the manifest references, and the manifest itself; unordered, with repeats.
    var blobs: [BlobDigest] { cacheEntries.map(\.digest.sha256) + [BlobDigest(hex: manifestID)!] }

    /// `reader` names what reads, in the error for a file that keeps changing ("the snapshot");
    /// `skipOption` is the option that would leave unreadable files out, for the error naming them.
    static func store(_ root: String, into store: any Store, jobs: Int, cache: StatCache, reader: String,
                      skipUnreadable: Bool, skipOption: String?, progressLabel: String,
                      warn: (String) -> Void) throws(CMLError) -> DirectoryIngest {
        var walk = DirectoryWalk.walk(root, excluding: store.location, jobs: jobs, warn: warn)
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
        let progress = Progress.onTerminal(progressLabel, files: toHash.count,
                                           bytes: toHash.reduce(0) { $0 + walk.files[$1].identity.size })
        // Each thread that stores a small file writes a pack of its own, so a few small files get one
        // thread, not one per core: a directory artifact logged every epoch would otherwise leave a pack
        // per core each time. Large files (never packed) get a thread each.
        let large = toHash.count { walk.files[$0].identity.size >= Int64(BlobStore.packThreshold) }
        let threads = min(jobs, max(1, large + (toHash.count - large) / smallFilesPerThread))
        let outcomes = hashFiles(toHash.map { walk.files[$0] }, root: root, batch: batch, cache: cache, jobs: jobs,
                                 threads: threads, progress: progress)
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
                let outcome = hashFiles([walk.files[index]], root: root, batch: batch, cache: cache, jobs: 1, threads: 1,
                                        progress: nil)[0]
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
            throw CMLError("\(Snapshot.listed(changed)) changed or disappeared while \(reader) read \(changed.count == 1 ? "it" : "them")",
                           hint: "nothing was recorded; try again once the files are written")
        }
        var skipped: [String] = []
        if !unreadable.isEmpty {
            guard skipUnreadable else {
                throw CMLError("cannot read \(Snapshot.listed(unreadable.sorted()))",
                               hint: "nothing was recorded; fix the permissions\(skipOption.map { ", or pass \($0) to leave them out" } ?? "")")
            }
            skipped = unreadable.sorted()
            for message in skipped { warn("left out \(message)") }
        }

        var entries: [ManifestEntry] = []
        entries.reserveCapacity(walk.files.count)
        var cacheEntries: [StatCache.Entry] = []
        cacheEntries.reserveCapacity(walk.files.count)
        var files: [WalkedFile] = []
        files.reserveCapacity(walk.files.count)
        for (index, file) in walk.files.enumerated() {
            if let target = file.linkTarget {
                entries.append(ManifestEntry(path: file.path, size: 0, mode: file.mode, linkTarget: target))
            } else if let digest = digests[index] {
                entries.append(ManifestEntry(path: file.path, size: file.identity.size, mode: file.mode, sha256: digest.sha256.hex,
                                             crc32c: digest.crc32c))
                cacheEntries.append(StatCache.Entry(identity: file.identity, hashedAt: hashedAt[index], digest: digest))
                files.append(file)
            }
        }
        let manifest = Manifest(entries: entries)
        for link in manifest.escapingLinks {
            warn("the link \(link.path) points outside \(root) (to \(link.linkTarget!)); it is recorded as a link")
        }
        let manifestBytes = manifest.encoded
        let manifestID = try batch.put(manifestBytes)
        try batch.finish()
        return DirectoryIngest(root: root, manifest: manifest, manifestBytes: manifestBytes, manifestID: manifestID,
                               stored: batch.stored, hashedFiles: hashedFiles, hashedBytes: hashedBytes,
                               cacheEntries: cacheEntries, skipped: skipped, files: files)
    }

    /// Stores again the blobs of `missing` (removed by a concurrent `cml-data gc` or `rm` after this found
    /// them in the store), from the files that held them; what that stored.
    func storeAgain(_ missing: Set<String>, into store: any Store) throws(CMLError) -> (blobs: Int, bytes: Int64) {
        let again = try store.blobBatch(workers: 1)
        var sources: [String: WalkedFile] = [:]
        for (file, cached) in zip(files, cacheEntries) {
            let id = cached.digest.sha256.hex
            if missing.contains(id) { sources[id] = file }
        }
        for id in missing.sorted() {
            if id == manifestID {
                try again.put(manifestBytes)
                continue
            }
            guard let file = sources[id] else { continue }
            let outcome = Self.hashFiles([file], root: root, batch: again, cache: StatCache(), jobs: 1, threads: 1, progress: nil)[0]
            guard case .success(let digest) = outcome.result, digest.sha256.hex == id else {
                throw CMLError("\(root)/\(file.path) changed while it was stored", hint: "nothing was recorded; try again")
            }
        }
        try again.finish()
        return again.stored
    }

    struct Outcome: Sendable {
        var result: Result<ContentDigest, IngestFailure>
        /// When reading the file began (nanoseconds since the epoch): what the stat cache keeps.
        var startedAt: Int64
    }

    /// Small files worth a hashing thread (and a pack) of their own.
    static let smallFilesPerThread = 32

    /// On `threads` threads; `jobs` is the cores there are, some of which may copy large files meanwhile.
    private static func hashFiles(_ files: [WalkedFile], root: String, batch: BlobBatch, cache: StatCache, jobs: Int,
                                  threads: Int, progress: Progress?) -> [Outcome] {
        let buffers = WorkerBuffers(count: threads, size: BlobStore.packThreshold + 1)
        let spareCores = jobs > 1 && files.count < jobs * 2
        return ParallelWork.map(count: files.count, workers: threads) { worker, item in
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
}

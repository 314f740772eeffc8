import Glibc

/// A directory's files and links stored as a manifest: walked without following links, every file the
/// stat cache does not vouch for hashed (sha256 and CRC-32C) on every core, largest first, the content
/// the store lacks stored in one batch (small files in packs, one sync), then the manifest. What
/// `cml-data snapshot` and `cml-log artifact DIR` share.
///
/// A file written while it is read gets two more tries, then refuses the whole; so do unreadable files
/// and names that are not UTF-8, unless `skipUnreadable` (each left out with a warning). Special files
/// are skipped with a warning; links that lead out of the directory are dealt with as `OutsideLinks` says.
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

    /// What to do with links that lead out of the directory (see `Manifest.escapingLinks`): their
    /// content is not part of what is stored.
    enum OutsideLinks {
        /// Refuse the whole before anything is stored, naming them; `option` would record them anyway.
        case refuse(option: String)
        /// Record them as links, each named in a warning.
        case warn
        /// Record them as links.
        case record
    }

    /// `reader` names what reads, in the error for a file that keeps changing ("the snapshot");
    /// `skipOption` is the option that would leave unreadable files out, for the error naming them.
    static func store(_ root: String, into store: SQLiteStore, jobs: Int, cache: StatCache, reader: String,
                      skipUnreadable: Bool, skipOption: String?, outsideLinks: OutsideLinks, progressLabel: String,
                      warn: (String) -> Void) throws(CMLError) -> DirectoryIngest {
        var walk = DirectoryWalk.walk(root, excluding: store.location, jobs: jobs, warn: warn)
        try checkLinks(walk.files, root: root, outsideLinks, warn: warn)
        let batch = try store.blobBatch(workers: jobs)
        var digests = try Digests(vouchedFor: walk.files, by: cache, in: batch.store)
        try digests.hash(walk.files, root: root, batch: batch, cache: cache, jobs: jobs, progressLabel: progressLabel)
        try digests.retryChanged(&walk.files, root: root, batch: batch, cache: cache)
        let skipped = try refuseOrSkip(digests, walk: walk, root: root, reader: reader, skipUnreadable: skipUnreadable,
                                       skipOption: skipOption, warn: warn)
        let (manifest, cacheEntries, files) = assemble(walk.files, digests)
        let manifestBytes = manifest.encoded
        let manifestID = try batch.put(manifestBytes)
        try batch.finish()
        return DirectoryIngest(root: root, manifest: manifest, manifestBytes: manifestBytes, manifestID: manifestID,
                               stored: batch.stored, hashedFiles: digests.hashedFiles, hashedBytes: digests.hashedBytes,
                               cacheEntries: cacheEntries, skipped: skipped, files: files)
    }

    /// Applies `policy` to the links that lead out of `root`, before anything is read or stored.
    private static func checkLinks(_ files: [WalkedFile], root: String, _ policy: OutsideLinks,
                                   warn: (String) -> Void) throws(CMLError) {
        let links = files.compactMap { file in
            file.linkTarget.map { ManifestEntry(path: file.path, size: 0, mode: file.mode, linkTarget: $0) }
        }
        let escaping = Manifest(entries: links).escapingLinks
        guard !escaping.isEmpty else { return }
        switch policy {
        case .refuse(let option):
            throw CMLError(Manifest.describe(escaping, outside: root),
                           hint: "nothing was recorded; pass \(option) to record \(escaping.count == 1 ? "it" : "them") as links anyway")
        case .warn:
            for link in escaping { warn("\(Manifest.describe([link], outside: root)); it is recorded as a link") }
        case .record:
            break
        }
    }

    /// Each walked file's digest as it becomes known, and what kept some from being known.
    private struct Digests {
        var digests: [ContentDigest?]
        /// When each file's hashing began, for the stat cache.
        var hashedAt: [Int64]
        /// The files the stat cache does not vouch for (indexes into the walk), largest first.
        var toHash: [Int] = []
        var hashedFiles = 0
        var hashedBytes: Int64 = 0
        /// Files that changed while they were read (after `retryChanged`: three times).
        var changed: [Int] = []
        var unreadable: [String] = []

        /// Files the cache vouches for keep their hash, as long as the store still holds the content.
        init(vouchedFor files: [WalkedFile], by cache: StatCache, in blobs: BlobDirectory) throws(CMLError) {
            digests = [ContentDigest?](repeating: nil, count: files.count)
            hashedAt = [Int64](repeating: 0, count: files.count)
            for (index, file) in files.enumerated() where file.linkTarget == nil {
                if let known = cache.lookup(file.identity),
                   try blobs.contains(known.digest.sha256, lookingForFiles: file.identity.size >= BlobDirectory.smallestFileBlob) {
                    digests[index] = known.digest
                    hashedAt[index] = known.hashedAt
                } else {
                    toHash.append(index)
                }
            }
            // Largest first, so that a big file does not start last and keep one core busy alone at the end.
            toHash.sort { files[$0].identity.size > files[$1].identity.size }
        }

        mutating func record(_ outcome: Outcome, of index: Int, size: Int64) throws(CMLError) {
            switch outcome.result {
            case .success(let digest):
                digests[index] = digest
                hashedAt[index] = outcome.startedAt
                hashedFiles += 1
                hashedBytes += size
            case .failure(.changed): changed.append(index)
            case .failure(.unreadable(let message)): unreadable.append(message)
            case .failure(.failed(let error)): throw error
            }
        }

        /// Hashes (and stores) `toHash` on every core.
        mutating func hash(_ files: [WalkedFile], root: String, batch: BlobBatch, cache: StatCache, jobs: Int,
                           progressLabel: String) throws(CMLError) {
            let progress = Progress.onTerminal(progressLabel, files: toHash.count,
                                               bytes: toHash.reduce(0) { $0 + files[$1].identity.size })
            // Each thread that stores a small file writes a pack of its own, so a few small files get one
            // thread, not one per core: a directory artifact logged every epoch would otherwise leave a pack
            // per core each time. Large files (never packed) get a thread each.
            let small = toHash.filter { files[$0].identity.size < Int64(BlobDirectory.packThreshold) }
            let smallBytes = small.reduce(Int64(0)) { $0 + files[$1].identity.size }
            let smallThreads = max(small.count / DirectoryIngest.smallFilesPerThread,
                                   Int(smallBytes / DirectoryIngest.smallBytesPerThread))
            let threads = min(jobs, max(1, toHash.count - small.count + smallThreads))
            let outcomes = DirectoryIngest.hashFiles(toHash.map { files[$0] }, root: root, batch: batch, cache: cache,
                                                     jobs: jobs, threads: threads, progress: progress)
            progress?.finish()
            for (index, outcome) in zip(toHash, outcomes) {
                try record(outcome, of: index, size: files[index].identity.size)
            }
        }

        /// A file written while it was read gets two more tries, with a fresh look at it each time.
        mutating func retryChanged(_ files: inout [WalkedFile], root: String, batch: BlobBatch,
                                   cache: StatCache) throws(CMLError) {
            let retry = changed
            changed = []
            for index in retry {
                var outcome = Outcome(result: .failure(.changed), startedAt: 0)
                for _ in 0..<2 {
                    var st = stat()
                    guard lstat(root + "/" + files[index].path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { break }
                    files[index].identity = FileIdentity(st)
                    files[index].mode = UInt32(st.st_mode) & 0o7777
                    outcome = DirectoryIngest.hashFiles([files[index]], root: root, batch: batch, cache: cache, jobs: 1,
                                                        threads: 1, progress: nil)[0]
                    guard case .failure(.changed) = outcome.result else { break }
                }
                try record(outcome, of: index, size: files[index].identity.size)
            }
        }
    }

    /// Refuses what could not be read (files, folders, names that are not UTF-8) or changed every time it
    /// was read; with `skipUnreadable`, leaves out what could not be read, each named in a warning.
    private static func refuseOrSkip(_ digests: Digests, walk: DirectoryWalk, root: String, reader: String, skipUnreadable: Bool,
                                     skipOption: String?, warn: (String) -> Void) throws(CMLError) -> [String] {
        let changed = digests.changed.map { root + "/" + walk.files[$0].path }
        if !changed.isEmpty {
            throw CMLError("\(Snapshot.listed(changed)) changed or disappeared while \(reader) read \(changed.count == 1 ? "it" : "them")",
                           hint: "nothing was recorded; try again once the files are written")
        }
        func leaveOut(_ count: Int) -> String {
            skipOption.map { ", or pass \($0) to leave \(count == 1 ? "it" : "them") out" } ?? ""
        }
        let badNames = walk.badNames.sorted()
        guard skipUnreadable || badNames.isEmpty else {
            let one = badNames.count == 1
            throw CMLError("the name\(one ? "" : "s") of \(Snapshot.listed(badNames)) \(one ? "is" : "are") not UTF-8",
                           hint: "nothing was recorded; rename \(one ? "it" : "them")\(leaveOut(badNames.count))")
        }
        let unreadable = (walk.unreadable + digests.unreadable).sorted()
        guard skipUnreadable || unreadable.isEmpty else {
            throw CMLError("cannot read \(Snapshot.listed(unreadable))",
                           hint: "nothing was recorded; fix the permissions\(leaveOut(unreadable.count))")
        }
        let skipped = (unreadable + walk.badNames.map { "\($0): the name is not UTF-8" }).sorted()
        for message in skipped { warn("left out \(message)") }
        return skipped
    }

    /// The manifest of what was stored; the stat cache's entries and the files they are for.
    private static func assemble(_ walked: [WalkedFile],
                                 _ digests: Digests) -> (Manifest, [StatCache.Entry], [WalkedFile]) {
        var entries: [ManifestEntry] = []
        entries.reserveCapacity(walked.count)
        var cacheEntries: [StatCache.Entry] = []
        cacheEntries.reserveCapacity(walked.count)
        var files: [WalkedFile] = []
        files.reserveCapacity(walked.count)
        for (index, file) in walked.enumerated() {
            if let target = file.linkTarget {
                entries.append(ManifestEntry(path: file.path, size: 0, mode: file.mode, linkTarget: target))
            } else if let digest = digests.digests[index] {
                entries.append(ManifestEntry(path: file.path, size: file.identity.size, mode: file.mode, sha256: digest.sha256.hex,
                                             crc32c: digest.crc32c))
                cacheEntries.append(StatCache.Entry(identity: file.identity, hashedAt: digests.hashedAt[index], digest: digest))
                files.append(file)
            }
        }
        return (Manifest(entries: entries), cacheEntries, files)
    }

    /// Stores again the blobs of `missing` (removed by a concurrent `cml-data gc` or `rm` after this found
    /// them in the store), from the files that held them; what that stored.
    func storeAgain(_ missing: Set<String>, into store: SQLiteStore) throws(CMLError) -> (blobs: Int, bytes: Int64) {
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

    /// Small files, or bytes of them, worth a hashing thread (and a pack) of their own.
    static let smallFilesPerThread = 32
    static let smallBytesPerThread: Int64 = 8 << 20

    /// On `threads` threads; `jobs` is the cores there are, some of which may copy large files meanwhile.
    private static func hashFiles(_ files: [WalkedFile], root: String, batch: BlobBatch, cache: StatCache, jobs: Int,
                                  threads: Int, progress: Progress?) -> [Outcome] {
        let buffers = WorkerBuffers(count: threads, size: BlobDirectory.packThreshold + 1)
        let spareCores = jobs > 1 && files.count < jobs * 2
        return ParallelWork.map(count: files.count, workers: threads) { worker, item in
            let file = files[item]
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            let startedAt = Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
            // A moved file keeps its size and time: its content is likely stored, and copied only if not.
            let copy: LargeFileCopy = cache.likelyStored(file.identity) ? .ifNew : spareCores ? .alongside : .asHashed
            let result: Result<ContentDigest, IngestFailure>
            do throws(IngestFailure) {
                result = .success(try batch.ingest(path: root + "/" + file.path, expected: file.identity, worker: worker,
                                                   buffer: buffers[worker], copy: copy))
            } catch {
                result = .failure(error)
            }
            progress?.add(bytes: file.identity.size)
            return Outcome(result: result, startedAt: startedAt)
        }
    }
}

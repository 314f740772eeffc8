import Glibc

/// Reading versions back: manifests, materialised copies, and the run a command runs inside.
public enum Datasets {
    public static func manifest(of version: DatasetVersion, in store: any Store) throws(CMLError) -> Manifest {
        try manifestWithBytes(of: version, in: store).manifest
    }

    /// The manifest and the bytes it was stored as, which hash to the version's manifest id (a manifest
    /// written by an older build may not encode to the same bytes again).
    public static func manifestWithBytes(of version: DatasetVersion,
                                         in store: any Store) throws(CMLError) -> (manifest: Manifest, bytes: [UInt8]) {
        var bytes: [UInt8] = []
        try store.readBlob(version.manifest) { chunk throws(CMLError) in bytes.append(contentsOf: chunk) }
        do { return (try Manifest(decoding: bytes), bytes) } catch {
            throw CMLError("the manifest of \(version.reference) is damaged: \(error.message)")
        }
    }

    /// `CML_DATA_MNIST_SMALL` for `mnist-small`: where `cml-run --data` tells the command a version lies.
    public static func environmentVariable(for dataset: String) -> String {
        EnvironmentVariable.name(prefix: "CML_DATA_", for: dataset)
    }

    /// The run this process runs inside (`$CML_RUN_ID`), when it is a run of `store`.
    public static func currentRun(in store: any Store) -> String? {
        guard let id = getenv("CML_RUN_ID").map({ String(cString: $0) }), !id.isEmpty else { return nil }
        return try? store.resolveRunID(id)
    }

    /// Writes `version` into `target` (created; an existing empty directory is fine, anything else only
    /// with `replace`). Every blob is checked as it is written; on failure nothing is left behind.
    public static func checkout(_ version: DatasetVersion, from store: SQLiteStore, to target: String, replace: Bool,
                                options: Materializer.Options) throws(CMLError) -> Materializer.Report {
        let target = FileSystem.absolutePath(target)
        try Materializer.checkDestination(target, replace: replace)
        let manifest = try manifest(of: version, in: store)
        let temporary = Materializer.temporaryPath(for: target)
        let progress = Progress.onTerminal("cml-data: writing", files: manifest.entries.count, bytes: manifest.totalSize)
        defer { progress?.finish() }
        do throws(CMLError) {
            let report = try Materializer.write(manifest, from: store, into: temporary, options: options, progress: progress)
            try Materializer.place(temporary, at: target, replace: replace)
            if options.readOnly { chmod(target, 0o555) }
            return report
        } catch {
            FileSystem.removeTree(temporary)
            // Name the destination, not the temporary folder the failure happened in.
            throw CMLError("cannot check out \(version.reference) into \(target): "
                           + error.message.replacingOccurrences(of: temporary, with: target),
                           hint: "nothing was left behind")
        }
    }

    /// A blob of a version that is not as stored.
    public struct Damage: Sendable {
        public var blob: String
        /// `missing` or `damaged`.
        public var problem: String
        public var detail: String
        /// The version's files holding this content.
        public var paths: [String]

        public var json: JSON {
            .object([("sha256", .string(blob)), ("problem", .string(problem)), ("detail", .string(detail)),
                     ("paths", .array(paths.map(JSON.string)))])
        }
    }

    /// Reads every blob of `version` back (its manifest first) and checks its hash; returns each one missing
    /// or damaged, and how many blobs and bytes were checked.
    public static func verify(_ version: DatasetVersion, in store: any Store, jobs: Int) throws(CMLError)
        -> (damage: [Damage], blobs: Int, bytes: Int64) {
        let manifest: Manifest
        do { manifest = try self.manifest(of: version, in: store) } catch {
            let missing = (try? store.blobSize(version.manifest)) == nil
            return ([Damage(blob: version.manifest, problem: missing ? "missing" : "damaged", detail: error.message,
                            paths: ["(its manifest)"])], 1, 0)
        }
        var paths: [String: [String]] = [:]
        var sizes: [String: Int64] = [:]
        for entry in manifest.entries {
            guard let blob = entry.sha256 else { continue }
            paths[blob, default: []].append(entry.path)
            sizes[blob] = entry.size
        }
        let blobs = paths.keys.sorted()
        let blobSizes = blobs.map { sizes[$0]! }
        let total = blobSizes.reduce(0, +)
        let progress = Progress.onTerminal("cml-data: verifying", files: blobs.count, bytes: total)
        defer { progress?.finish() }
        let outcomes = ParallelWork.map(count: blobs.count, workers: jobs) { _, item -> Damage? in
            defer { progress?.add(bytes: blobSizes[item]) }
            let blob = blobs[item]
            do throws(CMLError) { _ = try store.blobSize(blob) } catch {
                return Damage(blob: blob, problem: "missing", detail: error.message, paths: [])
            }
            do throws(CMLError) {
                try store.readBlob(blob) { _ throws(CMLError) in }
                return nil
            } catch {
                return Damage(blob: blob, problem: "damaged", detail: error.message, paths: [])
            }
        }
        let damage = outcomes.compactMap { found in found.map { Damage(blob: $0.blob, problem: $0.problem, detail: $0.detail, paths: paths[$0.blob]!) } }
        return (damage, blobs.count + 1, total)
    }

    /// Copies into `store` what it lacks of `version` of `source`: its manifest and the blobs the
    /// manifest names (a remote agent's spool takes a server's version so, to check it out).
    public static func fetch(_ version: DatasetVersion, from source: any Store, into store: SQLiteStore) throws(CMLError) {
        var copy = RunSync.Copy(id: version.id)
        try RunSync(from: source, to: store).copyTree(version.manifest, into: &copy)
    }

    /// A read-only copy of `version` in the store's cache, made on first use and shared after. Read-only
    /// does not stop root (the user in most containers), so a run must not find what another run wrote
    /// there: the copy is made again when any file of it was added, removed or changed since it was made.
    /// Telling costs one `fstatat` per file, against the identities (inode, size, status-change time,
    /// which any write or chmod moves and `touch` cannot set back) recorded beside it when it was made.
    public static func cachedCopy(_ version: DatasetVersion, from store: SQLiteStore) throws(CMLError) -> String {
        let target = "\(store.cacheDirectory)/datasets/\(version.id)"
        let stamp = target + ".identity"
        if FileSystem.isDirectory(target) {
            if (try? FileSystem.readAll(stamp)) == identityStamp(of: target) { return target }
            // Set aside first: a process still using the changed copy keeps it until it is done.
            let aside = target + ".changed-\(getpid())-\(RunID.make())"
            if rename(target, aside) == 0 { FileSystem.removeTree(aside) }
        }
        try FileSystem.makeDirectories(FileSystem.directoryName(target))
        do {
            _ = try checkout(version, from: store, to: target, replace: false, options: Materializer.Options(readOnly: true))
        } catch {
            // Another process made it meanwhile (and records its stamp).
            if FileSystem.isDirectory(target) { return target }
            throw error
        }
        let temporary = stamp + ".\(getpid())"
        unlink(temporary)
        try FileSystem.writeFile(temporary, identityStamp(of: target))
        guard Glibc.rename(temporary, stamp) == 0 else { throw FileSystem.error("cannot record the identity of", target) }
        return target
    }

    /// A digest of what changes when a file under `directory` is added, removed, written or has its mode
    /// changed.
    static func identityStamp(of directory: String) -> [UInt8] {
        let walk = DirectoryWalk.walk(directory, jobs: ParallelWork.availableCPUs) { _ in }
        var hasher = SHA256Hasher()
        for file in walk.files.sorted(by: { $0.path < $1.path }) {
            let id = file.identity
            hasher.update(Array("\(file.path)\u{0}\(id.inode) \(id.size) \(id.changed) \(file.mode)\n".utf8))
        }
        return Array(hasher.finalizeHex().utf8)
    }
}

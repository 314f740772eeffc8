import Glibc
import Synchronization

/// Copies runs from one store to another, sending only what the other side lacks: it asks first (the run
/// by id, its series' point counts, its log's size, its artifacts, each blob by hash) and sends the
/// rest. Every step is idempotent, so an interrupted copy resumes where it stopped and a second copy
/// sends nothing. A run whose id the other side holds for a different run (another command, host or
/// start) is refused, never overwritten. The same engine uploads a remote store's spool
/// (`RunSpool`) and serves `cml-serve push` and `pull`.
public struct RunSync: Sendable {
    public let source: any Store
    public let target: any Store
    /// Points per request.
    public var pointsPerBatch = 20_000
    /// Log bytes per request.
    public var logBytesPerRequest = 4 << 20
    /// The source's dataset versions by the run that made them, read once per `RunSync`.
    let versionsMade = VersionsByRun()

    public init(from source: any Store, to target: any Store) {
        self.source = source
        self.target = target
    }

    /// What one copy sent.
    public struct Copy: Sendable, Equatable {
        public var id: String
        /// The run was new to the target.
        public var created = false
        public var params = 0
        public var tags = 0
        public var points = 0
        public var logBytes: Int64 = 0
        public var artifacts = 0
        /// Blobs sent for the run and for the dataset versions it used or made.
        public var blobs = 0
        public var blobBytes: Int64 = 0
        /// Dataset versions the run used or made (or their ancestors) that were new to the target.
        public var datasetVersions = 0
        /// Uses of dataset versions recorded on the target's record of the run.
        public var datasetUses = 0
        /// Why each dataset version of the run that the target refused (its id or number is another
        /// version's there) was not copied; the rest of the run was.
        public var refusedVersions: [String] = []
        /// The run's end was recorded on the target.
        public var finished = false
        /// The run is ended on the source and everything of it is on the target.
        public var complete = false

        public var sentNothing: Bool {
            !created && params == 0 && tags == 0 && points == 0 && logBytes == 0 && artifacts == 0 && blobs == 0
                && datasetVersions == 0 && datasetUses == 0 && !finished
        }

        public var json: JSON {
            .object([("id", .string(id)), ("created", .bool(created)), ("params", .int(Int64(params))), ("tags", .int(Int64(tags))),
                     ("points", .int(Int64(points))), ("log_bytes", .int(logBytes)), ("artifacts", .int(Int64(artifacts))),
                     ("blobs", .int(Int64(blobs))), ("blob_bytes", .int(blobBytes)),
                     ("dataset_versions", .int(Int64(datasetVersions))), ("dataset_uses", .int(Int64(datasetUses))),
                     ("dataset_versions_refused", .int(Int64(refusedVersions.count))), ("finished", .bool(finished)),
                     ("complete", .bool(complete))])
        }
    }

    /// Copies what the target lacks of run `id`; the run's end goes last, so that a run the target
    /// shows ended has everything. `unsent`: the caller has sent nothing of the run to the target (a
    /// spool's run before its first upload), so the target most likely lacks it: a short ended run then
    /// goes in one call (`recordEndedRun`) without asking what the target has first. Were the guess
    /// wrong, the batch adds only what the target lacks, as every step here does.
    public func copyRun(_ id: String, unsent: Bool = false) throws(CMLError) -> Copy {
        var copy = Copy(id: id)
        let run = try source.run(id: id)
        if unsent, let batch = try RunBatch.of(run, in: source, within: self) {
            do {
                let outcome = try target.recordEndedRun(batch)
                copy.created = outcome.created
                copy.params = outcome.created ? run.params.count : 0
                copy.tags = outcome.created ? run.tags.count : 0
                copy.points = batch.series.reduce(0) { $0 + $1.points.count }
                copy.logBytes = Int64(batch.log.count)
                copy.finished = outcome.finished
                copy.complete = true
                return copy
            } catch where error.kind == .notFound {
                // A server from before the batch route: the steps below do the same.
            }
        }
        var there: Run?
        do { there = try target.run(id: id) } catch where error.kind == .notFound { there = nil }
        if let there {
            try Self.requireSameRun(run, there, source: source.location, target: target.location)
        } else {
            var fresh = run
            // Recorded as running until everything else is there (see `finishRun` below).
            if fresh.status.isFinished { fresh.status = .running }
            fresh.end = nil
            fresh.metrics = []
            fresh.logBytes = 0
            // Recorded once the versions are there (see `copyDatasets`).
            fresh.datasets = []
            let patch = try run.code["patch_blob"]?.stringValue.map { blob throws(CMLError) in try source.blob(blob) } ?? []
            there = try target.createRun(fresh, patch: patch)
            copy.created = true
            copy.params = run.params.count
            copy.tags = run.tags.count
        }
        guard let there else { return copy }
        if !copy.created { (copy.params, copy.tags) = try Self.addMissing(of: run, to: there, in: target) }
        copy.points = try copyPoints(run, have: there)
        // A run created just now has no log or artifacts there: two questions fewer.
        copy.logBytes = try copyLog(id, have: copy.created ? 0 : try target.logSize(run: id))
        try copyArtifacts(id, have: copy.created ? 0 : try target.artifacts(run: id).count, into: &copy)
        try copyDatasets(run, have: there, into: &copy)
        if let end = run.end {
            if there.end == nil {
                try target.finishRun(id: id, end: end, logBytes: run.logBytes)
                copy.finished = true
            }
            copy.complete = true
        }
        return copy
    }

    /// Where the target's record of a leased run stood when this attempt of it started: what the
    /// source records of the attempt comes after it (a lost attempt's output and artifacts stay first;
    /// its points do not, as the series start again with each attempt).
    public struct LeasedStart: Sendable {
        public var logBytes: Int64
        public var artifacts: Int

        /// Nothing before: the run's first attempt.
        public static let empty = LeasedStart(logBytes: 0, artifacts: 0)
    }

    /// Where `target`'s record of the leased run `id` stands now.
    public static func leasedStart(of id: String, in target: any Store) throws(CMLError) -> LeasedStart {
        LeasedStart(logBytes: try target.logSize(run: id), artifacts: try target.artifacts(run: id).count)
    }

    /// Copies what the target lacks of the leased run `id`, recorded in the source since `start`: an
    /// agent's run recorded on its machine, whose record on the target is the queue's. So the run is
    /// never created or ended there and its identity is not compared: its lease is the agent's, and the
    /// agent ends it there (`endLeasedRun`) once everything is copied. `complete` once the source
    /// holds the run's end and all of it is on the target.
    public func copyLeasedRun(_ id: String, after start: LeasedStart) throws(CMLError) -> Copy {
        var copy = Copy(id: id)
        let run = try source.run(id: id)
        let there = try target.run(id: id)
        let missingParams = run.params.filter { param in !there.params.contains { $0.key == param.key && $0.value == param.value } }
        if !missingParams.isEmpty {
            try target.addParams(run: id, missingParams)
            copy.params = missingParams.count
        }
        let missingTags = run.tags.filter { !there.tags.contains($0) }
        if !missingTags.isEmpty {
            try target.addTags(run: id, missingTags)
            copy.tags = missingTags.count
        }
        copy.points = try copyPoints(run, have: there)
        copy.logBytes = try copyLog(id, have: try target.logSize(run: id), before: start.logBytes)
        try copyArtifacts(id, have: try target.artifacts(run: id).count, before: start.artifacts, into: &copy)
        copy.complete = run.end != nil
        return copy
    }

    /// The points of each series past the count the target has of it.
    private func copyPoints(_ run: Run, have there: Run) throws(CMLError) -> Int {
        var sent = 0
        for summary in run.metrics {
            let have = there.metrics.first { $0.key == summary.key }?.count ?? 0
            guard summary.count > have else { continue }
            var index: Int64 = 0
            var batch: [MetricPoint] = []
            let source = summary.source ?? .log
            // Each batch says where it starts in the series, so one that arrived twice counts once.
            var start = have
            try self.source.forEachMetric(run: run.id, key: summary.key) { point throws(CMLError) in
                defer { index += 1 }
                guard index >= have else { return }
                batch.append(point)
                if batch.count >= pointsPerBatch {
                    try target.appendMetrics(run: run.id, batch, source: source, continuing: [summary.key: start])
                    sent += batch.count
                    start += Int64(batch.count)
                    batch.removeAll(keepingCapacity: true)
                }
            }
            try target.appendMetrics(run: run.id, batch, source: source, continuing: [summary.key: start])
            sent += batch.count
        }
        return sent
    }

    /// The log's whole records past the target's size; `before`: the bytes at the start of the target's
    /// log that the source's does not hold (a leased run's earlier attempts).
    private func copyLog(_ id: String, have: Int64, before: Int64 = 0) throws(CMLError) -> Int64 {
        guard have >= before else {
            throw CMLError("the log of run \(id) in \(target.location) is shorter than when this attempt started", kind: .conflict)
        }
        var offset = have
        let start = offset
        while true {
            guard let bytes = try source.readLog(run: id, from: offset - before, limit: logBytesPerRequest), !bytes.isEmpty else { break }
            guard let whole = LogRecord.wholeRecordsLength(bytes[...]) else {
                throw CMLError("the log of run \(id) in \(source.location) is damaged at byte \(offset - before)", kind: .damaged)
            }
            // A record still being written stays for the next copy.
            if whole == 0 { break }
            offset = try target.appendLog(run: id, at: offset, Array(bytes[..<whole]))
        }
        return offset - start
    }

    /// The artifacts past the number the target has, each after its blobs: versions stay the same on both.
    private func copyArtifacts(_ id: String, have: Int, before: Int = 0, into copy: inout Copy) throws(CMLError) {
        let artifacts = try source.artifacts(run: id)
        guard have >= before else {
            throw CMLError("run \(id) in \(target.location) has fewer artifacts than when this attempt started", kind: .conflict)
        }
        guard artifacts.count > have - before else { return }
        for artifact in artifacts[(have - before)...] {
            if artifact.isDirectory { try copyTree(artifact.sha256, into: &copy) } else { try copyBlob(artifact.sha256, into: &copy) }
            try target.addArtifact(artifact)
            copy.artifacts += 1
        }
    }

    /// Sends a directory's tree the target lacks: its manifest, then the blobs the manifest names,
    /// several at a time.
    public func copyTree(_ manifest: String, into copy: inout Copy) throws(CMLError) {
        try copyBlob(manifest, into: &copy)
        // Read on this machine when either side is (both hold it now): never fetched back once sent.
        let holder: any Store = source is SQLiteStore ? source : target
        let blobs = Set(try Manifest(decoding: try holder.blob(manifest)).entries.compactMap(\.sha256))
        let sent = try sendBlobs(blobs.sorted(), onlyLacking: true)
        copy.blobs += sent.blobs
        copy.blobBytes += sent.bytes
    }

    /// The dataset versions the run made, and those it used that the target's record of it does not name
    /// yet, each with the ancestors the target lacks (see `DatasetSync`); then the uses it lacks. A used
    /// version neither side holds (removed since) cannot be copied, nor its use recorded there; one the
    /// target refuses is named in `refusedVersions`.
    private func copyDatasets(_ run: Run, have there: Run, into copy: inout Copy) throws(CMLError) {
        let usedThere = Set(there.datasets.map(\.id))
        let uses = run.datasets.filter { !usedThere.contains($0.id) }
        let versions = uses.map(\.id) + (try versionsMade.versions(madeBy: run.id, in: source)).map(\.id)
        guard !versions.isEmpty else { return }
        let datasets = DatasetSync(from: source, to: target)
        var held: [String: DatasetVersion] = [:]
        for id in versions where held[id] == nil {
            do throws(CMLError) {
                for version in try datasets.copyVersion(id) {
                    held[version.version.id] = version.version
                    guard version.created else { continue }
                    copy.datasetVersions += 1
                    copy.blobs += version.blobs
                    copy.blobBytes += version.blobBytes
                }
            } catch where error.kind == .notFound {
                continue
            } catch where error.kind == .conflict {
                // Refused, never overwritten; the run itself goes on (a version it made in a spool may
                // have a number the server gave another).
                held[id] = nil
                copy.refusedVersions.append(error.description)
            }
        }
        // A use recorded in a server's spool names a version only the server holds.
        for use in uses where held[use.id] == nil {
            if let there = try target.datasetVersion(id: use.id) { held[use.id] = there }
        }
        let recorded = uses.compactMap { held[$0.id] }
        if !recorded.isEmpty {
            try target.recordDatasetUse(run: run.id, recorded)
            copy.datasetUses += recorded.count
        }
    }

    /// Sends a blob the target lacks: through memory when small, through a temporary file when large.
    /// What the target stores is checked to be what was asked for.
    public func copyBlob(_ id: String, into copy: inout Copy) throws(CMLError) {
        guard !target.hasBlob(id) else { return }
        copy.blobBytes += try sendBlob(id)
        copy.blobs += 1
    }

    /// Sends blobs the target said it lacks (without asking again, unless `onlyLacking`), `workers`
    /// requests at a time; returns how many were sent and their bytes.
    public func sendBlobs(_ ids: [String], onlyLacking: Bool = false, workers: Int = 4) throws(CMLError) -> (blobs: Int, bytes: Int64) {
        let sizes = ParallelWork.map(count: ids.count, workers: workers) { _, item -> Result<Int64?, CMLError> in
            if onlyLacking && target.hasBlob(ids[item]) { return .success(nil) }
            do throws(CMLError) { return .success(try sendBlob(ids[item])) } catch { return .failure(error) }
        }
        var sent = 0
        var bytes: Int64 = 0
        for size in sizes {
            switch size {
            case .success(let size?):
                sent += 1
                bytes += size
            case .success(nil): break
            case .failure(let error): throw error
            }
        }
        return (sent, bytes)
    }

    /// Sends a blob whatever the target holds; returns its size.
    private func sendBlob(_ id: String) throws(CMLError) -> Int64 {
        let size = try source.blobSize(id)
        let stored: String
        if size <= 64 << 20 {
            stored = try target.putBlob(try source.blob(id))
        } else {
            let path = FileSystem.temporaryDirectory + "/cml-sync-" + RunID.make()
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw FileSystem.error("cannot create", path) }
            defer { unlink(path) }
            do {
                defer { close(fd) }
                try source.readBlob(id) { chunk throws(CMLError) in try FileSystem.writeAll(fd, chunk, path: path) }
            }
            stored = try target.putBlob(file: path).id
        }
        // The source verifies what it reads; this catches a blob that changed after that.
        guard stored == id else { throw CMLError("blob \(id) of \(source.location) changed while it was copied", kind: .damaged) }
        return size
    }

    /// Gives `there`, the target's record of `run`, the params, tags and name it lacks; returns how many
    /// params and tags were sent.
    static func addMissing(of run: Run, to there: Run, in target: any RunStore) throws(CMLError) -> (params: Int, tags: Int) {
        var sent = (params: 0, tags: 0)
        if !sameParams(run.params, there.params) {
            try target.addParams(run: run.id, run.params)
            sent.params = run.params.count
        }
        let missingTags = run.tags.filter { !there.tags.contains($0) }
        if !missingTags.isEmpty {
            try target.addTags(run: run.id, missingTags)
            sent.tags = missingTags.count
        }
        if let name = run.name, name != there.name { try target.rename(run: run.id, to: name) }
        return sent
    }

    private static func sameParams(_ a: [Param], _ b: [Param]) -> Bool {
        a.count == b.count && a.allSatisfy { param in b.contains { $0.key == param.key && $0.value == param.value } }
    }

    /// The same id on both sides names the same run only when what identifies a run agrees.
    static func requireSameRun(_ run: Run, _ there: Run, source: String, target: String) throws(CMLError) {
        func describe(_ run: Run) -> String {
            "\(ShellQuoting.commandLine(run.command)) on \(run.host) in project \(run.project), started \(run.startedAt.map(Clock.rfc3339) ?? "never")"
        }
        guard run.project == there.project, run.command == there.command, run.host == there.host,
              run.startedAt == there.startedAt, run.code == there.code else {
            throw CMLError("run \(run.id) is another run in \(target): here (\(source)) \(describe(run)); there \(describe(there))",
                           hint: "nothing of it was copied", kind: .conflict)
        }
    }
}

/// A store's dataset versions grouped by the run that made them, listed on first use.
final class VersionsByRun: Sendable {
    private let byRun = Mutex<[String: [DatasetVersion]]?>(nil)

    func versions(madeBy run: String, in store: any Store) throws(CMLError) -> [DatasetVersion] {
        if let known = byRun.withLock({ $0 }) { return known[run] ?? [] }
        // Oldest first, so that a run's versions go in the order it made them.
        let listed = Dictionary(grouping: try store.datasetVersions(dataset: nil).reversed().filter { $0.run != nil }) { $0.run! }
        byRun.withLock { $0 = listed }
        return listed[run] ?? []
    }
}

/// Which runs `ls` returns: filtered, then sorted (newest first unless `sort` says otherwise).
public struct RunQuery: Sendable, Codable {
    public var project: String?
    /// Only runs of these projects (a project-bound token's); nil: every project.
    public var projects: [String]?
    public var status: RunStatus?
    /// Runs that carry every one of these tags.
    public var tags: [String]
    /// Runs started at or after this time.
    public var since: Double?
    public var filter: RunFilter?
    public var sort: [RunSort]
    public var limit: Int?
    /// Runs to pass over before the first listed (a page of the web UI's table): the store's own runs
    /// only, not those a spool adds (`RunSpool.listing`).
    public var offset: Int?

    public init(project: String? = nil, status: RunStatus? = nil, tags: [String] = [], since: Double? = nil,
                filter: RunFilter? = nil, sort: [RunSort] = [], limit: Int? = nil) {
        self.project = project
        self.status = status
        self.tags = tags
        self.since = since
        self.filter = filter
        self.sort = sort
        self.limit = limit
    }
}

/// What `removeRuns` removed and freed.
public struct RemovalReport: Sendable, Codable, Equatable {
    public var runs: Int
    public var blobs: Int
    /// Bytes of blobs and console logs deleted.
    public var bytesFreed: Int64
}

public struct ProjectSummary: Sendable, Codable, Equatable {
    public var name: String
    public var runs: Int
    /// Runs by stored status (`running` includes runs whose cml-run is gone).
    public var byStatus: [String: Int]
    public var lastStarted: Double
}

/// Everything the commands do with a store, split by concern so that each part can be served and tested
/// on its own. The SQLite store implements it on a local directory, the HTTP store against `cml-serve`,
/// so no command talks SQL or HTTP itself. Nothing that only means something on the store's own machine
/// (a path inside it, an open log file, where a blob's bytes lie, a cache directory) crosses it: those
/// are `SQLiteStore`'s own, for the commands that record on this machine.
public protocol Store: RunStore, BlobStore, QueueStore, DatasetStore, ControllerStore {
    /// Where the store lives, as the user named it (a directory or a URL).
    var location: String { get }
}

/// Runs: their records, parameters, tags, metrics, console output and artifacts.
public protocol RunStore: Sendable {
    /// Records a new run with its params and tags; `patch` (the uncommitted code change) goes to the blob store.
    func createRun(_ run: Run, patch: [UInt8]) throws(CMLError) -> Run
    func finishRun(id: String, end: RunEnd, logBytes: Int64) throws(CMLError)
    /// Records a whole ended run in one call, adding only what the store lacks of it (see `RunBatch`);
    /// the default does it step by step, `HTTPStore` in one request.
    func recordEndedRun(_ batch: RunBatch) throws(CMLError) -> RunBatch.Outcome
    /// Adds or replaces parameters of a run (from its log channel or `cml-log`).
    func addParams(run id: String, _ params: [Param]) throws(CMLError)
    func addTags(run id: String, _ tags: [String]) throws(CMLError)
    func removeTags(run id: String, _ tags: [String]) throws(CMLError)
    /// Names a run; nil clears its name.
    func rename(run id: String, to name: String?) throws(CMLError)
    /// Removes runs with everything they recorded, and the blobs no remaining run references.
    func removeRuns(_ ids: [String]) throws(CMLError) -> RemovalReport
    /// Projects with their run counts, most recently used first.
    func projects() throws(CMLError) -> [ProjectSummary]

    /// The full id for a unique prefix; an error naming the candidates otherwise.
    func resolveRunID(_ prefix: String) throws(CMLError) -> String
    func run(id: String) throws(CMLError) -> Run
    /// Runs matching `query`. Keys in its filter and sort resolve against what the store holds (see
    /// `RunTerm.resolve`); filtering and sorting read only the per-run summaries, never metric series.
    func runs(_ query: RunQuery) throws(CMLError) -> [Run]
    /// Parameters and metrics by what the store holds, for resolving keys.
    func catalog() throws(CMLError) -> RunTerm.Catalog

    /// Appends metric points from `source` to a run in one transaction, with their summaries. A series
    /// keeps the points of one source (see `MetricSource`): the points of a key whose series came from a
    /// higher-ranking source are left out, and a series from a lower-ranking one is emptied first.
    ///
    /// With `continuing`, the points of each key it names are that series' points from the position it
    /// gives on, in order: those the series holds already are skipped, so a batch sent again (its answer
    /// was lost) is counted once, and a position past the series' end is a `conflict` (a gap), with
    /// nothing written.
    func appendMetrics(run id: String, _ points: [MetricPoint], source: MetricSource, continuing: [String: Int64]?) throws(CMLError)
    /// Streams a run's points in step order (per key), without holding the series in memory.
    func forEachMetric(run id: String, key: String?, _ body: (MetricPoint) throws(CMLError) -> Void) throws(CMLError)
    /// One series of a run whole, as columns: what a chart reads. Empty when the run has no such key.
    func metricColumns(run id: String, key: String) throws(CMLError) -> MetricColumns
    /// Up to `limit` bytes of a run's console log from `offset`, in the log's record format (see
    /// `RunLogReader`), as far as written; empty at its end; nil when the run never wrote output.
    func readLog(run id: String, from offset: Int64, limit: Int) throws(CMLError) -> [UInt8]?
    /// The size of a run's console log as written so far, in bytes of its record format; 0 when none.
    func logSize(run id: String) throws(CMLError) -> Int64
    /// Appends whole log records that start at `offset` of the run's log and returns the log's size
    /// after. Idempotent: the part of them the log holds already is skipped, so a retried upload is
    /// never written twice; an `offset` past the log's end (a gap) is a `conflict`, and bytes that are
    /// not whole records are `invalid`, with nothing written either way.
    @discardableResult
    func appendLog(run id: String, at offset: Int64, _ records: [UInt8]) throws(CMLError) -> Int64

    /// Records an artifact whose blobs are in the store; returns it as stored, with its version (1 for
    /// the first of its name in the run).
    @discardableResult
    func addArtifact(_ artifact: Artifact) throws(CMLError) -> Artifact
    /// A run's artifacts in the order they were recorded.
    func artifacts(run id: String) throws(CMLError) -> [Artifact]

    /// The heartbeat of a run that cml-run records (queued runs have their agents' leases instead): its
    /// cml-run renews it while the command runs, and learns through it of `cml-run abort`. Connects
    /// when first used, so that asking costs nothing.
    func heartbeatWriter(run id: String) -> any HeartbeatWriter
    /// Asks the cml-run recording a running run (one with a heartbeat) to stop its command, as
    /// `cml-run abort` does on any host; it hears it within a second (`RunHeartbeat`).
    func requestAbort(directRun id: String) throws(CMLError)
}

/// Content by sha256: patches, artifacts, dataset files and manifests.
public protocol BlobStore: Sendable {
    func blob(_ id: String) throws(CMLError) -> [UInt8]
    /// Stores the content of a regular file on this machine (streamed) and returns its sha256 and size.
    func putBlob(file path: String) throws(CMLError) -> (id: String, size: Int64)
    func putBlob(_ bytes: [UInt8]) throws(CMLError) -> String
    /// Streams a blob's bytes, verifying its hash (an error after the last chunk when it does not match).
    func readBlob(_ id: String, _ body: (UnsafeRawBufferPointer) throws(CMLError) -> Void) throws(CMLError)
    func hasBlob(_ id: String) -> Bool
    /// A blob's size; a `notFound` error when the store does not hold it.
    func blobSize(_ id: String) throws(CMLError) -> Int64
    /// The projects of the runs that reference a blob (as their patch, an artifact, or a file of one).
    func projects(referencingBlob blob: String) throws(CMLError) -> [String]
}

/// Queues, the runs on them, and the agents that take them (docs/design.md explains leases, heartbeats
/// and requeueing).
public protocol QueueStore: Sendable {
    /// Queues one run per spec on `queue`, creating the queue when it is new; all of them or, on an
    /// error, none. Returns the queued runs and whether the queue was created.
    func enqueue(_ specs: [RunSpec], queue: String, priority: Int, maxAttempts: Int) throws(CMLError) -> (runs: [Run], createdQueue: Bool)
    /// Queue names, sorted.
    func queueNames() throws(CMLError) -> [String]
    func createQueue(_ name: String) throws(CMLError)
    /// Runs waiting or running on `queue` (all queues when nil): per queue, running first, then in the
    /// order agents take them (priority, then age).
    func queuedRuns(queue: String?) throws(CMLError) -> [Run]
    /// Removes waiting runs with their records; refuses them all when one is not waiting.
    func removeQueued(_ ids: [String]) throws(CMLError)
    /// Moves waiting runs to `queue` (created when new); refuses them all when one is not waiting.
    func moveQueued(_ ids: [String], to queue: String) throws(CMLError) -> Bool
    func queueStats() throws(CMLError) -> [QueueStats]
    /// The spec a queued run was made from; nil for a run that was not queued.
    func spec(run id: String) throws(CMLError) -> RunSpec?
    /// Stops a queued run: a waiting one ends `aborted` at once, a running one is flagged for its agent.
    func requestAbort(run id: String) throws(CMLError) -> AbortOutcome

    /// Records a starting agent; an error when a live agent already has its name.
    func registerAgent(_ agent: AgentRecord) throws(CMLError)
    /// Records that an agent process is gone (found dead on its host), so that its name is free at once;
    /// its leases run out as they would.
    func retireAgent(id: String) throws(CMLError)
    /// Leases the run to take next: from the first of `queues` that has one waiting, the highest
    /// priority, then the oldest. Nil when none waits.
    func lease(agent id: String, queues: [String], seconds: Double) throws(CMLError) -> QueueLease?
    /// Renews the agent's leases of the runs it is `holding` for `seconds` and records its state; says
    /// which of the runs it holds are to be aborted, and which of `holding` it no longer holds.
    func heartbeat(agent id: String, state: AgentRecord.State, holding: [String], leaseSeconds: Double) throws(CMLError) -> HeartbeatReply
    /// Leases whose time ran out.
    func expiredLeases() throws(CMLError) -> [ExpiredLease]
    /// Ends leases that ran out (those still expired): each run's attempt ends `lost`; the run is queued
    /// again while attempts remain, else it ends `lost`. Returns how many were requeued.
    func reclaim(_ leases: [ExpiredLease]) throws(CMLError) -> Int
    /// Records the leased run as its command starts (environment, working directory, parameters); on a
    /// later attempt the metrics of the one before are dropped. False when the lease is no longer held.
    func startLeasedRun(_ run: Run, lease: QueueLease) throws(CMLError) -> Bool
    /// Ends a leased run as it ended, or puts it back on its queue. False when the lease is no longer
    /// held (another agent has the run now): nothing is recorded then.
    func endLeasedRun(_ lease: QueueLease, _ end: LeasedRunEnd, logBytes: Int64) throws(CMLError) -> Bool
    /// Agents, most recently started first.
    func agents() throws(CMLError) -> [AgentRecord]
    /// Wakes its waiter when the queues may have changed (a run queued, requeued, moved or aborted).
    func queueWatcher() throws(CMLError) -> QueueWatcher
}

/// Dataset versions, their blob references, and which runs used them.
public protocol DatasetStore: Sendable {
    /// Records a version and its blob references, once every blob it references is in the store (checked
    /// under the write lock, which removals hold too); nothing is written when some are missing.
    func createDatasetVersion(_ draft: DatasetVersionDraft) throws(CMLError) -> DatasetVersionCommit
    /// Records a version made in another store as it is there (its id, number, parents, message and
    /// times), for `cml-serve push` and `pull`: once its manifest and every blob the manifest names are in
    /// the store, checked as `createDatasetVersion` checks them (`.missingBlobs` names the manifest alone
    /// while it is missing, then the files' blobs). `.unchanged` with the version held when the store has
    /// it already; a `conflict` when its id is another version here, or another version of its dataset
    /// has its number. Its parents need not be here (a lineage may lack removed versions).
    func copyDatasetVersion(_ version: DatasetVersion) throws(CMLError) -> DatasetVersionCommit
    /// Versions newest first, of one dataset when named.
    func datasetVersions(dataset: String?) throws(CMLError) -> [DatasetVersion]
    func datasetVersion(id: String) throws(CMLError) -> DatasetVersion?
    /// The version a reference names; an error naming what exists otherwise.
    func resolveDatasetVersion(_ reference: VersionReference) throws(CMLError) -> DatasetVersion
    /// Removes versions, and the blobs nothing references any more (see `SQLiteStore.unreferenced`).
    func removeDatasetVersions(_ ids: [String]) throws(CMLError) -> BlobRemovalReport
    /// Deletes every blob nothing references, leftovers of interrupted writers (older than an hour),
    /// and `cml-data get` copies of versions that are gone; with `dryRun`, only counts them.
    func collectGarbage(dryRun: Bool) throws(CMLError) -> BlobRemovalReport
    /// Records that a run used these versions.
    func recordDatasetUse(run id: String, _ versions: [DatasetVersion]) throws(CMLError)
    /// The runs that used a version, oldest first.
    func runsUsing(version id: String) throws(CMLError) -> [String]
}

/// The records of sweeps and pipelines (`ControllerRecord`), which their controllers rewrite whole as
/// their trials and steps go on.
public protocol ControllerStore: Sendable {
    /// Creates or replaces a record (by id); the kind and project of an existing one do not change.
    func saveController(_ record: ControllerRecord) throws(CMLError)
    /// The record of `kind` whose id is `prefix` or starts with it; `notFound` or `ambiguous` otherwise.
    func controller(kind: String, id prefix: String) throws(CMLError) -> ControllerRecord
    /// The records of `kind`, newest first.
    func controllers(kind: String) throws(CMLError) -> [ControllerRecord]
}

/// Renews one run's heartbeat (see `Store.heartbeatWriter`). Used from one thread.
public protocol HeartbeatWriter: AnyObject {
    /// Renews the heartbeat of the run while it is `running`; says whether an abort was asked for. An
    /// error (the store locked beyond a short wait, a full disk) means the beat was skipped.
    func beat() throws(CMLError) -> Bool
    /// Whether an abort was asked for: a read, cheap enough for every second.
    func abortRequested() throws(CMLError) -> Bool
}

public protocol MetricWriter: AnyObject {
    /// Appends points from `source` in one transaction; summaries are updated in the same transaction.
    /// A series keeps the points of one source (see `MetricSource`): the points of a key whose series
    /// came from a higher-ranking source are left out, and a series from a lower-ranking one is emptied
    /// first.
    func append(_ points: [MetricPoint], source: MetricSource) throws(CMLError)
}

extension RunStore {
    /// Read through `forEachMetric`; a store that can read the columns more directly does.
    public func metricColumns(run id: String, key: String) throws(CMLError) -> MetricColumns {
        var columns = MetricColumns()
        try forEachMetric(run: id, key: key) { point in columns.append(point) }
        return columns
    }

    /// Appends points as they come, with no positions (see `appendMetrics(run:_:source:continuing:)`).
    public func appendMetrics(run id: String, _ points: [MetricPoint], source: MetricSource) throws(CMLError) {
        try appendMetrics(run: id, points, source: source, continuing: nil)
    }
}

extension Store {
    /// Runs whose parameter `key` has the text `value` (a sweep's trials, a pipeline's steps): none while no
    /// run has the parameter, which `--where` would report as a mistake.
    public func runs(parameter key: String, is value: String, status: RunStatus? = nil, sort: [RunSort] = [],
                     limit: Int? = nil) throws(CMLError) -> [Run] {
        guard try catalog().hasParam(key) else { return [] }
        let filter = try RunFilter.parse("params.\(key) = '\(value)'")
        return try runs(RunQuery(status: status, filter: filter, sort: sort, limit: limit))
    }
}

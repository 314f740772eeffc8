// TEMPORARY (replaced by branch h-queue's HTTPStore+Queue.swift and HTTPStore+Datasets.swift): the queue
// and dataset parts of the store API over HTTP are being written; until then they say so.
extension HTTPStore {
    private func pending(_ what: String) -> CMLError {
        CMLError("\(what) against \(location) is not supported yet", hint: "use a store directory", kind: .refused)
    }

    public func enqueue(_ specs: [RunSpec], queue: String, priority: Int, maxAttempts: Int) throws(CMLError) -> (runs: [Run], createdQueue: Bool) { throw pending("queues") }
    public func queueNames() throws(CMLError) -> [String] { throw pending("queues") }
    public func createQueue(_ name: String) throws(CMLError) { throw pending("queues") }
    public func queuedRuns(queue: String?) throws(CMLError) -> [Run] { throw pending("queues") }
    public func removeQueued(_ ids: [String]) throws(CMLError) { throw pending("queues") }
    public func moveQueued(_ ids: [String], to queue: String) throws(CMLError) -> Bool { throw pending("queues") }
    public func queueStats() throws(CMLError) -> [QueueStats] { throw pending("queues") }
    public func spec(run id: String) throws(CMLError) -> RunSpec? { throw pending("queues") }
    public func requestAbort(run id: String) throws(CMLError) -> AbortOutcome { throw pending("queues") }
    public func registerAgent(_ agent: AgentRecord) throws(CMLError) { throw pending("agents") }
    public func retireAgent(id: String) throws(CMLError) { throw pending("agents") }
    public func lease(agent id: String, queues: [String], seconds: Double) throws(CMLError) -> QueueLease? { throw pending("agents") }
    public func heartbeat(agent id: String, state: AgentRecord.State, holding: [String], leaseSeconds: Double) throws(CMLError) -> HeartbeatReply { throw pending("agents") }
    public func expiredLeases() throws(CMLError) -> [ExpiredLease] { throw pending("agents") }
    public func reclaim(_ leases: [ExpiredLease]) throws(CMLError) -> Int { throw pending("agents") }
    public func startLeasedRun(_ run: Run, lease: QueueLease) throws(CMLError) -> Bool { throw pending("agents") }
    public func endLeasedRun(_ lease: QueueLease, _ end: LeasedRunEnd, logBytes: Int64) throws(CMLError) -> Bool { throw pending("agents") }
    public func agents() throws(CMLError) -> [AgentRecord] { throw pending("agents") }
    public func queueWatcher() throws(CMLError) -> QueueWatcher { throw pending("agents") }
    public func createDatasetVersion(_ draft: DatasetVersionDraft) throws(CMLError) -> DatasetVersionCommit { throw pending("datasets") }
    public func datasetVersions(dataset: String?) throws(CMLError) -> [DatasetVersion] { throw pending("datasets") }
    public func datasetVersion(id: String) throws(CMLError) -> DatasetVersion? { throw pending("datasets") }
    public func resolveDatasetVersion(_ reference: VersionReference) throws(CMLError) -> DatasetVersion { throw pending("datasets") }
    public func removeDatasetVersions(_ ids: [String]) throws(CMLError) -> BlobRemovalReport { throw pending("datasets") }
    public func collectGarbage(dryRun: Bool) throws(CMLError) -> BlobRemovalReport { throw pending("datasets") }
    public func recordDatasetUse(run id: String, _ versions: [DatasetVersion]) throws(CMLError) { throw pending("datasets") }
    public func runsUsing(version id: String) throws(CMLError) -> [String] { throw pending("datasets") }
}

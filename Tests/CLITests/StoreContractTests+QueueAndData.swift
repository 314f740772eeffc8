import Foundation
import Testing
import CMLKit

/// The queue and dataset parts of the contract: the same calls get the same answers from a store
/// directory and from `cml-serve`.
extension StoreContractTests {
    /// A dataset of one file, `labels.csv`: its bytes, their sha256, and the encoded manifest naming it.
    static func oneFileDataset() -> (content: [UInt8], sha: String, manifest: [UInt8]) {
        let content = Array("label,image\n1,a.png\n".utf8)
        let sha = SHA256Hasher.hex(content)
        return (content, sha, Manifest(entries: [ManifestEntry(path: "labels.csv", size: Int64(content.count), mode: 0o644, sha256: sha)]).encoded)
    }

    @Test(arguments: StoreKind.allCases) func queuedRunsAreLeasedOnceAndEndAsTheyEnded(kind: StoreKind) throws {
        let fixture = try ContractStore(kind)
        let store = fixture.store
        let spec = RunSpec(repository: nil, commit: nil, patchBlob: nil, command: ["python", "train.py", "--lr", "0.1"],
                           environment: [EnvironmentVariable(name: "SEED", value: "1")], params: [Param(key: "seed", value: .int(1), source: "option")],
                           name: "sweep-1", project: "vision", tags: ["sweep"])
        let (runs, created) = try store.enqueue([spec, spec], queue: "gpu", priority: 3, maxAttempts: 2)
        #expect(created && runs.map(\.status) == [.queued, .queued] && runs.map(\.name) == ["sweep-1", "sweep-1"])
        #expect(runs.allSatisfy { $0.queue?.priority == 3 && $0.queue?.maxAttempts == 2 && $0.project == "vision" })
        #expect(try store.spec(run: runs[0].id) == spec)
        #expect(errorKind { () throws(CMLError) in _ = try store.enqueue([spec], queue: "no room", priority: 0, maxAttempts: 1) } == .invalid)

        let agent = AgentRecord(id: RunID.make(), name: "a1", host: "trainer-2", pid: 77, queues: ["gpu"], slots: 1, gpus: ["0"],
                                state: .idle, startedAt: 1_796_000_000, heartbeatAt: 1_796_000_000, leaseSeconds: 30)
        try store.registerAgent(agent)
        let lease = try #require(try store.lease(agent: agent.id, queues: ["cpu", "gpu"], seconds: 30))
        #expect(lease.runID == runs[0].id && lease.attempt == 1 && lease.queue == "gpu" && lease.spec == spec)
        var run = lease.spec.queuedRun(id: lease.runID)
        run.status = .running
        run.startedAt = 1_796_000_001.5
        run.pid = 78
        #expect(try store.startLeasedRun(run, lease: lease))
        #expect(try store.heartbeat(agent: agent.id, state: .busy, holding: [lease.runID], leaseSeconds: 30) == HeartbeatReply())
        #expect(try store.endLeasedRun(lease, .finished(RunEnd(status: .failed, endedAt: 1_796_000_009.25, exitCode: 3)), logBytes: 0))
        let ended = try store.run(id: lease.runID)
        #expect(ended.status == .failed && ended.end?.exitCode == 3 && ended.end?.endedAt == 1_796_000_009.25)
        #expect(ended.startedAt == 1_796_000_001.5 && ended.pid == 78 && ended.queue?.history.map(\.outcome) == ["failed"])

        // The second run's lease runs out; reclaimed, it waits again for its second attempt.
        let short = try #require(try store.lease(agent: agent.id, queues: ["gpu"], seconds: 0.01))
        #expect(waitUntil(timeout: 10) { (try? store.expiredLeases().map(\.runID)) == [short.runID] })
        #expect(try store.reclaim(store.expiredLeases()) == 1)
        #expect(try store.queuedRuns(queue: "gpu").map(\.id) == [short.runID])
        #expect(try store.lease(agent: agent.id, queues: ["gpu"], seconds: 30)?.attempt == 2)
        #expect(try store.agents().map(\.runs) == [[short.runID]])
        #expect(try store.queueStats() == (try fixture.direct.queueStats()))
    }

    @Test(arguments: StoreKind.allCases) func datasetVersionsNeedTheirBlobsAndFreeThemWhenRemoved(kind: StoreKind) throws {
        let fixture = try ContractStore(kind)
        let store = fixture.store
        let (content, sha, manifest) = Self.oneFileDataset()
        let manifestID = SHA256Hasher.hex(manifest)
        let draft = DatasetVersionDraft(id: RunID.make(), dataset: "mnist", parents: nil, message: "first", manifest: manifestID, files: 1,
                                        size: Int64(content.count), newBlobs: 2, newBytes: Int64(content.count + manifest.count),
                                        source: "/data/mnist", run: nil, createdAt: 1_796_000_000.5,
                                        blobs: [BlobDigest(hex: sha)!, BlobDigest(hex: manifestID)!])
        guard case .missingBlobs(let missing) = try store.createDatasetVersion(draft) else {
            Issue.record("recorded without its blobs")
            return
        }
        #expect(missing == [sha, manifestID])
        _ = try store.putBlob(content)
        _ = try store.putBlob(manifest)
        guard case .created(let version) = try store.createDatasetVersion(draft) else {
            Issue.record("not recorded")
            return
        }
        #expect(version.number == 1 && version.parents == [] && version.createdAt == 1_796_000_000.5 && version.message == "first")
        #expect(try store.datasetVersions(dataset: "mnist") == [version] && store.datasetVersions(dataset: "cifar") == [])
        #expect(try store.resolveDatasetVersion(VersionReference("mnist@1")) == version)
        #expect(try store.datasetVersion(id: version.id) == version)

        let run = ContractStore.run()
        _ = try store.createRun(run, patch: [])
        try store.recordDatasetUse(run: run.id, [version])
        #expect(try store.runsUsing(version: version.id) == [run.id])
        #expect(try store.run(id: run.id).datasets == [DatasetUse(dataset: "mnist", number: 1, id: version.id)])

        let removal = try store.removeDatasetVersions([version.id])
        #expect(removal.versions == [version.id] && removal.blobs == 2)
        #expect(!store.hasBlob(sha) && !store.hasBlob(manifestID))
        #expect(try store.datasetVersions(dataset: nil) == [])
        #expect(try store.collectGarbage(dryRun: false).blobs == 0)
    }

    /// A version made elsewhere is recorded as it is there once its manifest, then its files, are here.
    @Test(arguments: StoreKind.allCases) func aCopiedVersionKeepsItsIdAndNumberOnceItsBlobsAreThere(kind: StoreKind) throws {
        let fixture = try ContractStore(kind)
        let store = fixture.store
        let (content, sha, manifest) = Self.oneFileDataset()
        let parent = RunID.make()
        let version = DatasetVersion(id: RunID.make(), dataset: "mnist", number: 4, parents: [parent], message: "made elsewhere",
                                     manifest: SHA256Hasher.hex(manifest), files: 1, size: Int64(content.count), newBlobs: 2,
                                     newBytes: 99, source: "/data/mnist", run: RunID.make(), createdAt: 1_796_000_000.25)
        guard case .missingBlobs(let first) = try store.copyDatasetVersion(version) else {
            Issue.record("recorded without its manifest")
            return
        }
        #expect(first == [version.manifest])
        _ = try store.putBlob(manifest)
        guard case .missingBlobs(let second) = try store.copyDatasetVersion(version) else {
            Issue.record("recorded without its file")
            return
        }
        #expect(second == [sha])
        #expect(try store.datasetVersions(dataset: nil) == [])
        _ = try store.putBlob(content)
        guard case .created(let created) = try store.copyDatasetVersion(version) else {
            Issue.record("not recorded")
            return
        }
        // Everything as it was, its absent parent included.
        #expect(created == version)
        #expect(try store.datasetVersion(id: version.id) == version)
        #expect(try store.resolveDatasetVersion(VersionReference("mnist@4")) == version)
        guard case .unchanged(let again) = try store.copyDatasetVersion(version) else {
            Issue.record("copied twice")
            return
        }
        #expect(again == version)
        #expect(try store.datasetVersions(dataset: nil).count == 1)

        // Another version under its number, or under its id with other content: refused.
        var sameNumber = version
        sameNumber.id = RunID.make()
        #expect(errorKind { () throws(CMLError) in _ = try store.copyDatasetVersion(sameNumber) } == .conflict)
        var sameID = version
        sameID.dataset = "cifar"
        #expect(errorKind { () throws(CMLError) in _ = try store.copyDatasetVersion(sameID) } == .conflict)
        var miscounted = version
        miscounted.id = RunID.make()
        miscounted.number = 9
        miscounted.files = 2
        #expect(errorKind { () throws(CMLError) in _ = try store.copyDatasetVersion(miscounted) } == .invalid)
        #expect(try store.datasetVersions(dataset: nil) == [version])

        // A version recorded here afterwards takes the next number.
        let draft = DatasetVersionDraft(id: RunID.make(), dataset: "mnist", parents: nil, message: nil, manifest: version.manifest,
                                        files: 1, size: Int64(content.count), newBlobs: 0, newBytes: 0, source: nil, run: nil,
                                        createdAt: 1_796_000_001, blobs: [BlobDigest(hex: sha)!, BlobDigest(hex: version.manifest)!])
        guard case .created(let next) = try store.createDatasetVersion(draft) else {
            Issue.record("not recorded")
            return
        }
        #expect(next.number == 5 && next.parents == [version.id])
    }
}

extension StoreContractTests {
    /// What the store refuses says of what kind the refusal is, the same through the server (which
    /// answers with the kind's status): a missing dataset or agent is not found, a run that is not
    /// waiting on a queue or an agent name in use is a conflict.
    @Test(arguments: StoreKind.allCases) func queueAndDatasetRefusalsCarryTheirKind(kind: StoreKind) throws {
        let fixture = try ContractStore(kind)
        let store = fixture.store
        let spec = RunSpec(repository: nil, commit: nil, patchBlob: nil, command: ["true"], environment: [], params: [],
                           name: nil, project: "default", tags: [])
        let queued = try store.enqueue([spec], queue: "gpu", priority: 0, maxAttempts: 1).runs[0].id
        let agent = AgentRecord(id: RunID.make(), name: "a1", host: RunEnvironment.hostName, pid: getpid(), queues: ["gpu"], slots: 1,
                                gpus: [], state: .idle, startedAt: Clock.now(), heartbeatAt: Clock.now(), leaseSeconds: 30)
        try store.registerAgent(agent)
        let lease = try #require(try store.lease(agent: agent.id, queues: ["gpu"], seconds: 30))
        #expect(lease.runID == queued)
        #expect(errorKind { () throws(CMLError) in try store.removeQueued([queued]) } == .conflict)
        var twin = agent
        twin.id = RunID.make()
        #expect(errorKind { () throws(CMLError) in try store.registerAgent(twin) } == .conflict)
        #expect(errorKind { () throws(CMLError) in _ = try store.lease(agent: RunID.make(), queues: ["gpu"], seconds: 30) } == .notFound)
        #expect(errorKind { () throws(CMLError) in _ = try store.resolveDatasetVersion(try VersionReference("mnist@1")) } == .notFound)
    }
}

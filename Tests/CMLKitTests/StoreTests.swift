import Foundation
import Glibc
import GRDB
import Testing

@testable import CMLKit

func makeTemporaryDirectory(_ prefix: String = "cml-test") -> String {
    var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
    let path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    return path
}

/// A store in a temporary directory, removed when the value goes away.
final class TemporaryStore {
    let directory = makeTemporaryDirectory()
    private(set) var store: SQLiteStore!

    init(open: Bool = true) throws {
        if open { store = try SQLiteStore(directory: directory) }
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    /// A new run in the store, for tests that need one to write to.
    func makeRun() throws -> String {
        let id = RunID.make()
        _ = try store.createRun(sampleRun(id), patch: [])
        return id
    }
}

private func sampleRun(_ id: String = RunID.make(), project: String = "default", tags: [String] = []) -> Run {
    Run(id: id, name: "n", project: project, status: .running, command: ["python", "t.py", "--lr", "0.1"], cwd: "/tmp",
        host: "h", user: "u", pid: 1, startedAt: Clock.now(), environment: [("A", "1")],
        code: .object([("in_repository", .bool(false))]), tags: tags,
        params: [Param(key: "lr", value: .double(0.1), source: "argv")])
}

struct StoreTests {
    @Test func concurrentFirstOpenMigratesOnce() async throws {
        let box = try TemporaryStore(open: false)
        let directory = box.directory
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<10 {
                group.addTask {
                    let store = try SQLiteStore(directory: directory)
                    _ = try store.createRun(sampleRun(), patch: [])
                }
            }
            try await group.waitForAll()
        }
        let store = try SQLiteStore(directory: directory)
        #expect(try store.runs(RunQuery()).count == 10)
        let version = try store.read { db in try Int.fetchOne(db, sql: "PRAGMA user_version") }
        #expect(version == Schema.migrations.count)
        let mode = try store.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
        #expect(mode == "wal")
    }

    @Test func runRoundTripAndPrefixResolution() throws {
        let box = try TemporaryStore()
        let store = box.store!
        let base = 1_800_000_000.0
        let first = RunID.make(at: base)
        let second = RunID.make(at: base)
        _ = try store.createRun(sampleRun(first, tags: ["a", "b"]), patch: Array("diff\n".utf8))
        _ = try store.createRun(sampleRun(second, project: "other"), patch: [])
        #expect(try store.resolveRunID(String(first.prefix(20))) == first)
        #expect(throws: CMLError.self) { try store.resolveRunID(String(first.prefix(8))) }
        #expect(throws: CMLError.self) { try store.resolveRunID("ffffffff") }
        #expect(throws: CMLError.self) { try store.resolveRunID("not-hex") }
        let run = try store.run(id: first)
        #expect(run.tags == ["a", "b"])
        #expect(run.params == [Param(key: "lr", value: .double(0.1), source: "argv")])
        #expect(run.command == ["python", "t.py", "--lr", "0.1"])
        let blob = try #require(run.code["patch_blob"]?.stringValue)
        #expect(try store.blob(blob) == Array("diff\n".utf8))
        #expect(try store.runs(RunQuery(project: "other")).map(\.id) == [second])
        #expect(try store.runs(RunQuery(tags: ["b"])).map(\.id) == [first])
    }

    @Test func metricsKeepSummariesAndStreamInOrder() throws {
        let box = try TemporaryStore()
        let store = box.store!
        let id = try box.makeRun()
        let writer = try store.metricWriter(run: id)
        try writer.append((0..<1000).map { MetricPoint(key: "loss", step: Int64($0), value: 1.0 / Double($0 + 1), time: 1) }, source: .console)
        try writer.append([MetricPoint(key: "acc", step: 0, value: .nan, time: 2), MetricPoint(key: "acc", step: 1, value: 0.5, time: 3)], source: .console)
        // A second writer (another process appending later) continues the series.
        try store.metricWriter(run: id).append([MetricPoint(key: "loss", step: 1000, value: 2, time: 4)], source: .console)
        let run = try store.run(id: id)
        let loss = try #require(run.metrics.first { $0.key == "loss" })
        #expect(loss.count == 1001 && loss.min == 0.001 && loss.max == 2 && loss.last == 2 && loss.lastStep == 1000)
        let acc = try #require(run.metrics.first { $0.key == "acc" })
        #expect(acc.count == 2 && acc.min == 0.5 && acc.max == 0.5)
        var steps: [Int64] = []
        try store.forEachMetric(run: id, key: "loss") { steps.append($0.step) }
        #expect(steps == Array(0...1000))
        var accValues: [Double] = []
        try store.forEachMetric(run: id, key: "acc") { accValues.append($0.value) }
        #expect(accValues.count == 2 && accValues[0].isNaN && accValues[1] == 0.5)
    }

    /// Points go 32 rows to a statement (`PointRows`), rows of several series in one statement, the
    /// last few one by one; a batch sent again with more points adds only those, whatever their order.
    @Test func interleavedSeriesInManyRowsAtOnceAndABatchSentAgain() throws {
        let box = try TemporaryStore()
        let store = box.store!
        let id = try box.makeRun()
        let keys = ["loss", "acc", "lr"]
        func points(_ range: Range<Int>) -> [MetricPoint] {
            range.map { i in MetricPoint(key: keys[i % 3], step: Int64(i / 3), value: i % 7 == 0 ? .nan : Double(i), time: Double(i)) }
        }
        let fromTheStart = Dictionary(uniqueKeysWithValues: keys.map { ($0, Int64(0)) })
        try store.appendMetrics(run: id, points(0..<100), source: .log, continuing: fromTheStart)
        try store.appendMetrics(run: id, points(0..<152), source: .log, continuing: fromTheStart)
        let run = try store.run(id: id)
        for key in keys {
            var read: [MetricPoint] = []
            try store.forEachMetric(run: id, key: key) { read.append($0) }
            let sent = points(0..<152).filter { $0.key == key }
            #expect(read.map(\.step) == sent.map(\.step) && read.map(\.time) == sent.map(\.time), "\(key)")
            #expect(read.map { $0.value.isNaN ? -1 : $0.value } == sent.map { $0.value.isNaN ? -1 : $0.value }, "\(key)")
            #expect(run.metrics.first { $0.key == key }?.count == Int64(sent.count), "\(key)")
        }
    }

    @Test func twoWritersInterleaveOnOneSeries() throws {
        let box = try TemporaryStore()
        let (directory, store) = (box.directory, box.store!)
        let id = try box.makeRun()
        let first = try store.metricWriter(run: id)
        let second = try SQLiteStore(directory: directory).metricWriter(run: id)
        for batch in 0..<4 {
            let writer = batch % 2 == 0 ? first : second
            try writer.append([MetricPoint(key: "loss", step: Int64(batch), value: Double(batch), time: 1)], source: .console)
        }
        var steps: [Int64] = []
        try store.forEachMetric(run: id, key: "loss") { steps.append($0.step) }
        #expect(steps == [0, 1, 2, 3])
        #expect(try store.run(id: id).metrics.first?.count == 4)
    }

    @Test func aSeriesKeepsOneSourceTheHighestThatGaveIt() throws {
        let box = try TemporaryStore()
        let store = box.store!
        let id = try box.makeRun()
        let writer = try store.metricWriter(run: id)
        func series() throws -> (steps: [Int64], values: [Double], summary: MetricSummary?) {
            var points: [MetricPoint] = []
            try store.forEachMetric(run: id, key: "loss") { points.append($0) }
            return (points.map(\.step), points.map(\.value), try store.run(id: id).metrics.first { $0.key == "loss" })
        }
        // A progress bar's points first, then the same key from an event file: the bar's go.
        try writer.append([MetricPoint(key: "loss", step: 0, value: 0.9, time: 1), MetricPoint(key: "loss", step: 1, value: 0.8, time: 2)], source: .console)
        try writer.append([MetricPoint(key: "loss", step: 10, value: 0.7, time: 3)], source: .tensorboard)
        var now = try series()
        #expect(now.steps == [10] && now.values == [0.7])
        #expect(now.summary?.count == 1 && now.summary?.max == 0.7 && now.summary?.source == .tensorboard)
        // The bar keeps drawing: left out. More from the event file: appended.
        try writer.append([MetricPoint(key: "loss", step: 2, value: 0.6, time: 4)], source: .console)
        try writer.append([MetricPoint(key: "loss", step: 20, value: 0.5, time: 5)], source: .tensorboard)
        now = try series()
        #expect(now.steps == [10, 20] && now.summary?.count == 2 && now.summary?.last == 0.5)
        // The program's own log ranks above both; a later writer of another process sees the same.
        try SQLiteStore(directory: box.directory).metricWriter(run: id).append([MetricPoint(key: "loss", step: 3, value: 0.4, time: 6)], source: .log)
        try writer.append([MetricPoint(key: "loss", step: 30, value: 0.3, time: 7)], source: .tensorboard)
        now = try series()
        #expect(now.steps == [3] && now.summary?.source == .log && now.summary?.min == 0.4)
    }

    @Test func blobsAreStoredOnceAndAtomically() throws {
        let box = try TemporaryStore(open: false)
        let directory = box.directory
        let blobs = BlobDirectory(directory: directory + "/objects")
        let content = Array("hello\n".utf8)
        let id = try blobs.put(content)
        #expect(id == "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03")
        #expect(try blobs.put(content) == id)
        let folder = directory + "/objects/58"
        let names = try FileManager.default.contentsOfDirectory(atPath: folder)
        #expect(names == [String(id.dropFirst(2))])
        #expect(try blobs.get(id) == content)
    }

    @Test func aStoreOfAnOlderSchemaIsUpgradedInPlace() throws {
        // A store as schema 1 wrote it, holding a run with a patch.
        let box = try TemporaryStore(open: false)
        let old = try DatabaseQueue(path: box.directory + "/cml.db")
        let patch = String(repeating: "c", count: 64)
        try old.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: Schema.migrations[0])
            try db.execute(sql: """
                INSERT INTO runs (id, project, status, command, cwd, host, user, started_at, env, code)
                VALUES ('0123', 'p', 'completed', '["true"]', '/', 'h', 'u', 1, '{}', '{"patch_blob": "\(patch)"}');
                INSERT INTO params (run_id, key, value, number, source) VALUES ('0123', 'lr', '0.1', 0.1, 'argv');
                PRAGMA user_version = 1;
                """)
        }
        try old.close()
        let store = try SQLiteStore(directory: box.directory)
        #expect(try store.run(id: "0123").params.first?.key == "lr")
        let references = try store.read { db in try String.fetchAll(db, sql: "SELECT blob FROM run_blobs WHERE run_id = '0123'") }
        #expect(references == [patch])
        let artifact = Artifact(run: "0123", name: "m", kind: "model", step: nil, sha256: try store.putBlob([1]),
                                size: 1, files: 1, isDirectory: false, mediaType: nil, source: nil, time: 1)
        try store.addArtifact(artifact)
        #expect(try store.artifacts(run: "0123") == [artifact])
        #expect(try store.read { db in try Int.fetchOne(db, sql: "PRAGMA user_version") } == Schema.migrations.count)
    }

    /// `RunRevisions`: the server answers a run from what it kept while the run's revision is the one
    /// it kept, so every write that changes the record must raise it, whoever writes.
    @Test func everyWriteTheRecordShowsRaisesTheRunsRevision() throws {
        let box = try TemporaryStore()
        let store = box.store!
        // With a heartbeat, which the record shows.
        var beating = sampleRun()
        beating.heartbeat = Heartbeat(at: 1, interval: 5, abortRequested: false)
        let id = try store.createRun(beating, patch: []).id
        let other = try box.makeRun()
        var revision = try #require(try store.readRun(id: id, unlessRevision: nil, presented: nil).revision)
        func revised(_ what: String, _ write: () throws -> Void) throws {
            let before = try store.run(id: id).json(full: true, status: .running).serialized
            try write()
            let read = try store.readRun(id: id, unlessRevision: revision, presented: nil)
            let now = try #require(read.revision, "\(what)")
            #expect(now > revision, "\(what) left the revision at \(revision)")
            let record = try #require(read.run, "\(what)")
            #expect(record.json(full: true, status: .running).serialized == (try store.run(id: id)).json(full: true, status: .running).serialized)
            #expect(record.json(full: true, status: .running).serialized != before, "\(what) changed nothing the record shows: the test proves nothing")
            revision = now
        }
        try revised("a tag") { try store.addTags(run: id, ["best"]) }
        try revised("a tag removed") { try store.removeTags(run: id, ["best"]) }
        try revised("a param") { try store.addParams(run: id, [Param(key: "opt", value: .string("adam"), source: "log")]) }
        try revised("a param replaced") { try store.addParams(run: id, [Param(key: "opt", value: .string("sgd"), source: "log")]) }
        try revised("a name") { try store.rename(run: id, to: "renamed") }
        try revised("points") { try store.appendMetrics(run: id, [MetricPoint(key: "loss", step: 1, value: 0.5, time: 1)], source: .log) }
        try revised("more points") { try store.appendMetrics(run: id, [MetricPoint(key: "loss", step: 2, value: 0.25, time: 2)], source: .log) }
        try revised("a beat") { _ = try store.heartbeatWriter(run: id).beat() }
        let draft = DatasetVersionDraft(id: RunID.make(), dataset: "d", parents: nil, message: nil, manifest: String(repeating: "e", count: 64),
                                        files: 0, size: 0, newBlobs: 0, newBytes: 0, source: nil, run: nil, createdAt: Clock.now(), blobs: [])
        guard case .created(let version) = try store.createDatasetVersion(draft) else { throw CMLError("the version was not recorded") }
        try revised("a dataset used") { try store.recordDatasetUse(run: id, [version]) }
        try revised("an abort asked for") { try store.requestAbort(directRun: id) }
        try revised("the end") { try store.finishRun(id: id, end: RunEnd(status: .completed, endedAt: Clock.now(), exitCode: 0), logBytes: 0) }
        // Writes the record does not show, and writes to another run, leave it.
        try store.addArtifact(Artifact(run: id, name: "m", kind: "model", step: nil, sha256: try store.putBlob([1]), size: 1, files: 1,
                                       isDirectory: false, mediaType: nil, source: nil, time: 1))
        try store.addTags(run: other, ["x"])
        #expect(try store.readRun(id: id, unlessRevision: revision, presented: nil).revision == revision)
        #expect(try store.readRun(id: id, unlessRevision: revision, presented: nil).run == nil)

        // Removed: no run, and the same id recorded again goes on from a higher revision.
        _ = try store.removeRuns([id])
        #expect(try store.readRun(id: id, unlessRevision: revision, presented: nil).revision == nil)
        _ = try store.createRun(sampleRun(id), patch: [])
        #expect(try #require(try store.readRun(id: id, unlessRevision: revision, presented: nil).revision) > revision)
    }

    @Test func queueWritesRaiseTheRevisionOfTheirRun() throws {
        let box = try TemporaryStore()
        let store = box.store!
        let id = try store.enqueue([RunSpec(repository: nil, commit: nil, patchBlob: nil, command: ["true"])], queue: "q",
                                   priority: 0, maxAttempts: 1).runs[0].id
        let agent = RunID.make()
        try store.registerAgent(AgentRecord(id: agent, name: "a", host: RunEnvironment.hostName, pid: getpid(), queues: ["q"], slots: 1, gpus: [],
                                            state: .idle, startedAt: Clock.now(), heartbeatAt: Clock.now(), leaseSeconds: 30))
        var revision = try #require(try store.readRun(id: id, unlessRevision: nil, presented: nil).revision)
        func raised() throws -> Bool {
            let now = try #require(try store.readRun(id: id, unlessRevision: nil, presented: nil).revision)
            defer { revision = now }
            return now > revision
        }
        let lease = try #require(try store.lease(agent: agent, queues: ["q"], seconds: 30))
        #expect(try raised(), "the lease")
        #expect(try store.requestAbort(run: id) == .requested(agent: "a"))
        #expect(try raised(), "the abort")
        #expect(try store.endLeasedRun(lease, .finished(RunEnd(status: .completed, endedAt: Clock.now())), logBytes: 0))
        #expect(try raised(), "the end")
        #expect(try store.run(id: id).queue?.history.first?.outcome != nil)
    }

    @Test func aStoreOfSchemaNineGetsARevisionForEachRunOnUpgrade() throws {
        let box = try TemporaryStore(open: false)
        let old = try DatabaseQueue(path: box.directory + "/cml.db")
        try old.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            for migration in Schema.migrations[0..<9] { try db.execute(sql: migration) }
            try db.execute(sql: """
                INSERT INTO runs (id, project, status, command, cwd, host, user, started_at, env, code)
                VALUES ('0123', 'p', 'completed', '["true"]', '/', 'h', 'u', 1, '{}', '{}'),
                       ('4567', 'p', 'completed', '["true"]', '/', 'h', 'u', 2, '{}', '{}');
                PRAGMA user_version = 9;
                """)
        }
        try old.close()
        let store = try SQLiteStore(directory: box.directory)
        #expect(try store.read { db in try Int.fetchOne(db, sql: "PRAGMA user_version") } == Schema.migrations.count)
        let first = try store.readRun(id: "0123", unlessRevision: nil, presented: nil)
        #expect(first.revision == 1 && first.run?.id == "0123")
        #expect(try store.readRun(id: "4567", unlessRevision: 1, presented: nil).run == nil)
        try store.addTags(run: "0123", ["t"])
        #expect(try store.readRun(id: "0123", unlessRevision: 1, presented: nil).revision == 2)
        #expect(try store.readRun(id: "4567", unlessRevision: nil, presented: nil).revision == 1)
    }

    @Test func versionBlobsOfSchemaFourAreKeyedByVersionAfterTheUpgrade() throws {
        // A store as schema 4 wrote it: version_blobs keyed (blob, version), two versions sharing a blob.
        let box = try TemporaryStore(open: false)
        let old = try DatabaseQueue(path: box.directory + "/cml.db")
        let (shared, own) = (String(repeating: "a", count: 64), String(repeating: "b", count: 64))
        try old.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            for migration in Schema.migrations[0..<4] { try db.execute(sql: migration) }
            try db.execute(sql: """
                INSERT INTO datasets (name, next_number) VALUES ('d', 3);
                INSERT INTO dataset_versions (id, dataset, number, manifest, files, size, new_blobs, new_bytes, created_at)
                    VALUES ('v1', 'd', 1, '\(shared)', 1, 1, 1, 1, 1), ('v2', 'd', 2, '\(own)', 1, 1, 1, 1, 2);
                INSERT INTO version_blobs (blob, version_id) VALUES ('\(shared)', 'v1'), ('\(shared)', 'v2'), ('\(own)', 'v2');
                PRAGMA user_version = 4;
                """)
        }
        try old.close()
        let store = try SQLiteStore(directory: box.directory)
        let rows = try store.read { db in try Row.fetchAll(db, sql: "SELECT version_id, blob FROM version_blobs") }
        #expect(rows.map { "\($0["version_id"] as String) \($0["blob"] as String)" } == ["v1 \(shared)", "v2 \(shared)", "v2 \(own)"])
        let table = try store.read { db in try String.fetchOne(db, sql: "SELECT sql FROM sqlite_schema WHERE name = 'version_blobs'") }
        #expect(table?.contains("PRIMARY KEY (version_id, blob)") == true)
        #expect(try store.read { db in try Bool.fetchOne(db, sql: "SELECT 1 FROM sqlite_schema WHERE name = 'referenced_blobs'") } == nil)
        // Removing v2 drops its rows; the blob v1 still names stays referenced, the other does not.
        _ = try store.removeDatasetVersions(["v2"])
        #expect(try store.read { db in try String.fetchAll(db, sql: "SELECT version_id FROM version_blobs") } == ["v1"])
        let (unreferenced, referenced) = try store.read { db in
            (try SQLiteStore.unreferenced(db, [shared, own, "not-a-digest"]), try SQLiteStore.referencedBlobs(db))
        }
        #expect(unreferenced == [own] && referenced == [shared])
    }

    @Test func relativePathsAreRecordedWithoutDotsOrDoubleSlashes() {
        let cwd = RunEnvironment.workingDirectory == "/" ? "" : RunEnvironment.workingDirectory
        #expect(FileSystem.absolutePath("./data/") == cwd + "/data")
        #expect(FileSystem.absolutePath("a//./b") == cwd + "/a/b")
        #expect(FileSystem.absolutePath(".") == RunEnvironment.workingDirectory)
        #expect(FileSystem.absolutePath("/abs/./kept") == "/abs/./kept")
    }

    @Test func anArtifactWhoseBlobWentMeanwhileIsNotRecorded() throws {
        let box = try TemporaryStore()
        let id = try box.makeRun()
        let blob = try box.store.putBlob(Array("weights".utf8))
        // What a concurrent gc does to a blob nothing references yet.
        #expect(unlink(box.store.blobs.path(of: blob)) == 0)
        let artifact = Artifact(run: id, name: "model.pt", kind: "model", step: nil, sha256: blob, size: 7, files: 1,
                                isDirectory: false, mediaType: nil, source: nil, time: 1)
        #expect(throws: CMLError.self) { try box.store.addArtifact(artifact) }
        #expect(try box.store.artifacts(run: id).isEmpty)
    }

    @Test func filesAreStoredStreamingUnderTheSameIdAsTheirBytes() throws {
        let box = try TemporaryStore(open: false)
        let blobs = BlobDirectory(directory: box.directory + "/objects")
        var content = [UInt8](repeating: 0, count: (3 << 20) + 17)
        for i in content.indices { content[i] = UInt8(truncatingIfNeeded: i &* 31 &+ i >> 9) }
        let path = box.directory + "/input.bin"
        try Data(content).write(to: URL(fileURLWithPath: path))
        let (id, size) = try blobs.putFile(path)
        #expect(id == SHA256Hasher.hex(content) && size == Int64(content.count))
        #expect(try blobs.put(content) == id)
        var read: [UInt8] = []
        try blobs.read(id) { chunk throws(CMLError) in read += chunk }
        #expect(read == content)
        let temporaries = try FileManager.default.contentsOfDirectory(atPath: box.directory + "/objects").filter { $0.hasPrefix(".tmp") }
        #expect(temporaries.isEmpty)
        #expect(throws: CMLError.self) { try blobs.putFile(box.directory) }
        #expect(throws: CMLError.self) { try blobs.read(String(repeating: "0", count: 64)) { _ throws(CMLError) in } }
    }

    @Test func manifestsRoundTripAndRefuseUnsafePaths() throws {
        let manifest = Manifest(entries: [
            ManifestEntry(path: "b/c.txt", size: 3, mode: 0o644, sha256: String(repeating: "b", count: 64)),
            ManifestEntry(path: "a", size: 0, mode: 0o777, linkTarget: "b/c.txt"),
        ])
        #expect(manifest.entries.map(\.path) == ["a", "b/c.txt"])
        #expect(try Manifest(decoding: manifest.encoded) == manifest)
        for path in ["/etc/passwd", "../up", "a/../../b", "a//b", "./a", ""] {
            let line = Array("{\"path\":\(JSON.string(path).serialized),\"size\":0,\"mode\":\"0644\",\"link\":\"x\"}\n".utf8)
            #expect(throws: CMLError.self, "\(path)") { try Manifest(decoding: line) }
        }
        let both = Array("{\"path\":\"a\",\"size\":0,\"mode\":\"0644\"}\n".utf8)
        #expect(throws: CMLError.self) { try Manifest(decoding: both) }
    }

    @Test func anEndKeptForLaterIsRecordedAtTheNextOpenUnlessTheRunEndedOtherwise() throws {
        let box = try TemporaryStore()
        let kept = try box.makeRun()
        let abortedMeanwhile = try box.makeRun()
        try box.store.keepEndForLater(run: kept, end: RunEnd(status: .completed, endedAt: 1_700_000_000.25, exitCode: 0,
                                                             cpuUser: 1.5, cpuSystem: 0.25, maxRSS: 1 << 20), logBytes: 42)
        try box.store.keepEndForLater(run: abortedMeanwhile, end: RunEnd(status: .failed, endedAt: 1_700_000_000, exitCode: 1), logBytes: 0)
        try box.store.finishRun(id: abortedMeanwhile, end: RunEnd(status: .aborted, endedAt: 1_700_000_001, error: "aborted"), logBytes: 0)
        #expect(try box.store.run(id: kept).status == .running)

        let reopened = try SQLiteStore(directory: box.directory)
        let run = try reopened.run(id: kept)
        #expect(run.status == .completed && run.end?.exitCode == 0 && run.end?.endedAt == 1_700_000_000.25)
        #expect(run.end?.cpuUser == 1.5 && run.end?.cpuSystem == 0.25 && run.end?.maxRSS == 1 << 20 && run.logBytes == 42)
        #expect(try reopened.run(id: abortedMeanwhile).status == .aborted)
        #expect(FileSystem.entryNames(box.directory)?.filter { $0.hasPrefix(KeptRunEnd.prefix) } == [])
    }

    @Test func aKeptEndsNameHoldsItWholeAndFitsAFileName() throws {
        let id = RunID.make()
        let end = RunEnd(status: .failed, endedAt: 1_700_000_000.5, exitCode: 127, error: "command not found: ./a.b/c%d é")
        let decoded = try #require(KeptRunEnd(fileName: KeptRunEnd(run: id, end: end, logBytes: 7).fileName))
        #expect(decoded.run == id && decoded.logBytes == 7)
        #expect(decoded.end.status == .failed && decoded.end.exitCode == 127 && decoded.end.signal == nil)
        #expect(decoded.end.endedAt == 1_700_000_000.5 && decoded.end.cpuUser == nil && decoded.end.maxRSS == nil)
        #expect(decoded.end.error == "command not found: ./a.b/c%d é")
        // A long error is cut so that the name stays a name the filesystem takes.
        let long = KeptRunEnd(run: id, end: RunEnd(status: .aborted, endedAt: 1, signal: 15, error: String(repeating: "x/", count: 200)), logBytes: 0)
        #expect(long.fileName.utf8.count <= 255 && !long.fileName.contains("/"))
        #expect(KeptRunEnd(fileName: long.fileName)?.end.signal == 15)
        #expect(KeptRunEnd(fileName: "unrecorded-end.\(id).completed") == nil)
    }

    @Test func corruptDatabaseIsReportedAndLeftAlone() throws {
        let box = try TemporaryStore(open: false)
        let directory = box.directory
        let garbage = Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        try garbage.write(to: URL(fileURLWithPath: directory + "/cml.db"))
        #expect { try SQLiteStore(directory: directory) } throws: { error in
            (error as? CMLError)?.message.contains("corrupt") == true
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: directory + "/cml.db")) == garbage)
    }

    @Test func logRecordsRoundTripAndTornTailIsIgnored() throws {
        let box = try TemporaryStore()
        let (directory, store) = (box.directory, box.store!)
        let writer = try store.logWriter(run: "r1")
        try writer.append(.stdout, time: 10.5, [0x61, 0x0A])
        try writer.append(.stderr, time: 11, [0xFF, 0x00])
        // A record cut short by a crash in the middle of a write.
        let fd = open(directory + "/logs/r1.log", O_WRONLY | O_APPEND)
        _ = [UInt8]([1, 0, 0, 0]).withUnsafeBytes { write(fd, $0.baseAddress, 4) }
        close(fd)
        let reader = RunLogReader(store: store, run: "r1")
        let first = try #require(reader.next())
        let second = try #require(reader.next())
        #expect(first.stream == .stdout && first.bytes == [0x61, 0x0A] && first.time == 10.5)
        #expect(second.stream == .stderr && second.bytes == [0xFF, 0x00])
        #expect(reader.next() == nil)
    }

    @Test func bigRecordsAreCompressedAndReadBackExactly() throws {
        let box = try TemporaryStore()
        let (directory, store) = (box.directory, box.store!)
        let writer = try store.logWriter(run: "r2")
        let text = Array(String(repeating: "epoch 1 | a line of text that repeats\n", count: 4000).utf8)
        var generator = SystemRandomNumberGenerator()
        let noise = (0..<100_000).map { _ in UInt8.random(in: 0...255, using: &generator) }
        try writer.append(.stdout, time: 1, text)
        try writer.append(.stderr, time: 2, noise)
        try writer.append(.stdout, time: 3, [0x7A])
        let size = try #require(try FileManager.default.attributesOfItem(atPath: directory + "/logs/r2.log")[.size] as? Int)
        #expect(size < text.count / 10 + noise.count + 100, "text is stored compressed, noise as it is")
        #expect(writer.bytesWritten == Int64(text.count + noise.count + 1))
        let reader = RunLogReader(store: store, run: "r2")
        #expect(try #require(reader.next()).bytes == text)
        let second = try #require(reader.next())
        #expect(second.bytes == noise && second.stream == .stderr)
        #expect(try #require(reader.next()).bytes == [0x7A])
        #expect(reader.next() == nil)
    }
}

struct ConsoleRendererTests {
    private func render(_ chunks: [String]) -> String {
        var renderer = ConsoleRenderer()
        var out: [UInt8] = []
        for chunk in chunks { out += renderer.feed(Array(chunk.utf8)) }
        out += renderer.finish()
        return String(decoding: out, as: UTF8.self)
    }

    @Test func carriageReturnsCollapseAcrossChunks() {
        #expect(render(["a\n 10%\r 20", "%\r", "100%\ndone"]) == "a\n100%\ndone")
        #expect(render(["x\r", "\ny\r\n"]) == "x\r\ny\r\n")
        #expect(render(["one\ntwo\nthr", "ee\n"]) == "one\ntwo\nthree\n")
        #expect(render(["\r\r\rkeep\n"]) == "keep\n")
    }
}

struct CompressionPolicyTests {
    @Test func compressesWhileKeepingUpAndPicksTheCheaperWayWhenBehind() {
        var policy = CompressionPolicy()
        let idle = policy.shouldCompress(keepingUp: true)
        #expect(idle)
        // Behind, with nothing measured: try compressing, then writing as is.
        let first = policy.shouldCompress(keepingUp: false)
        #expect(first)
        policy.record(compressed: true, bytes: 8 << 20, seconds: 0.016)  // 2 ns per byte
        let second = policy.shouldCompress(keepingUp: false)
        #expect(!second)
        policy.record(compressed: false, bytes: 8 << 20, seconds: 0.008)  // 1 ns per byte: cheaper
        var choices = (0..<CompressionPolicy.probeEvery).map { _ in policy.shouldCompress(keepingUp: false) }
        #expect(choices.filter { $0 }.count == 1, "writes as is, and probes compression once per round")
        // Text that compresses well makes compressing the cheaper way.
        for _ in 0..<10 { policy.record(compressed: true, bytes: 8 << 20, seconds: 0.002) }
        choices = (0..<CompressionPolicy.probeEvery).map { _ in policy.shouldCompress(keepingUp: false) }
        #expect(choices.filter { $0 }.count == CompressionPolicy.probeEvery - 1)
        // Small batches are not timed.
        let before = policy.rawCost
        policy.record(compressed: false, bytes: 1000, seconds: 1)
        #expect(policy.rawCost == before)
    }
}

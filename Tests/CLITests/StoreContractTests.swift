import Foundation
import Glibc
import Testing
import CMLKit

/// What every store must do, run against both: a store directory (`SQLiteStore`) and a live `cml-serve`
/// reached over loopback (`HTTPStore`). A behaviour that differs between them fails here.
enum StoreKind: String, CaseIterable, CustomTestStringConvertible {
    case directory, server

    var testDescription: String { rawValue }
}

/// A fresh store of one kind; keeps its server running as long as it lives.
final class ContractStore {
    let box: Sandbox
    let store: any Store
    /// The same store's directory, opened directly: what the server wrote, as it lies.
    let direct: SQLiteStore
    private let server: ServerUnderTest?

    init(_ kind: StoreKind) throws {
        box = try Sandbox()
        direct = try SQLiteStore(directory: box.store)
        switch kind {
        case .directory:
            server = nil
            store = direct
        case .server:
            let server = try ServerUnderTest(box)
            self.server = server
            store = try HTTPStore(url: server.url, token: nil)
        }
    }

    static func run(_ id: String = RunID.make(), project: String = "vision", command: [String] = ["python", "train.py", "--lr", "0.1"],
                    params: [Param] = [Param(key: "lr", value: .double(0.1), source: "command")], tags: [String] = ["baseline"]) -> Run {
        Run(id: id, name: nil, project: project, status: .running, command: command, cwd: "/work", host: "trainer-1", user: "ada",
            pid: 4242, startedAt: 1_796_000_000.123456, environment: [("PATH", "/usr/bin"), ("LANG", "C.UTF-8")],
            code: .object([("commit", .string("abc123")), ("dirty", .bool(true)), ("ratio", .double(0.1 + 0.2)),
                           ("files", .array([.int(3), .null, .double(2.5)]))]),
            tags: tags, params: params)
    }

    /// Log records as cml-run writes them: header (stream, time, length) and bytes.
    static func logRecords(_ lines: [String]) -> [UInt8] {
        var bytes: [UInt8] = []
        for (index, line) in lines.enumerated() {
            let body = Array(line.utf8)
            bytes.append(1)
            let micros = UInt64(1_796_000_000_000_000 + index)
            for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: micros >> (8 * UInt64(i)))) }
            for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: body.count >> (8 * i))) }
            bytes += body
        }
        return bytes
    }
}

/// The kind of the error `body` throws, nil when it throws none.
func errorKind(_ body: () throws(CMLError) -> Void) -> CMLError.Kind? {
    do throws(CMLError) { try body() } catch { return error.kind }
    return nil
}

@Suite(.serialized) struct StoreContractTests {
    @Test(arguments: StoreKind.allCases) func aRunReadsBackAsItWasRecorded(kind: StoreKind) throws {
        let fixture = try ContractStore(kind)
        let store = fixture.store
        let run = ContractStore.run()
        _ = try store.createRun(run, patch: Array("diff --git a/x b/x\n".utf8))
        let back = try store.run(id: run.id)
        #expect(back.command == run.command && back.cwd == run.cwd && back.host == run.host && back.user == run.user)
        #expect(back.startedAt == run.startedAt, "times keep every bit")
        #expect(back.environment.map { "\($0.0)=\($0.1)" } == ["PATH=/usr/bin", "LANG=C.UTF-8"])
        #expect(back.params == run.params)
        #expect(back.code["ratio"] == .double(0.1 + 0.2) && back.code["files"] == .array([.int(3), .null, .double(2.5)]))
        #expect(back.code["patch_blob"]?.stringValue.map { try? store.blob($0) } == Array("diff --git a/x b/x\n".utf8))
        #expect(back.status == .running && back.end == nil)

        try store.finishRun(id: run.id, end: RunEnd(status: .failed, endedAt: 1_796_000_100.5, exitCode: 3, cpuUser: 1.25, maxRSS: 1 << 30,
                                                     error: "exit 3"), logBytes: 0)
        let ended = try store.run(id: run.id)
        #expect(ended.status == .failed && ended.end?.exitCode == 3 && ended.end?.endedAt == 1_796_000_100.5 && ended.end?.maxRSS == 1 << 30)
        #expect(errorKind { () throws(CMLError) in _ = try store.createRun(run, patch: []) } == .conflict, "an id names one run")
    }

    @Test(arguments: StoreKind.allCases) func runsAreFoundByPrefixQueryAndKey(kind: StoreKind) throws {
        let fixture = try ContractStore(kind)
        let store = fixture.store
        let a = ContractStore.run("0192aaaa00000000000000000000000a", params: [Param(key: "lr", value: .double(0.1), source: "command")])
        let b = ContractStore.run("0192aaab00000000000000000000000b", project: "nlp", params: [Param(key: "lr", value: .double(0.01), source: "command")])
        for run in [a, b] { _ = try store.createRun(run, patch: []) }
        try store.appendMetrics(run: a.id, [MetricPoint(key: "acc", step: 1, value: 0.9, time: 1)], source: .log)
        try store.appendMetrics(run: b.id, [MetricPoint(key: "acc", step: 1, value: 0.7, time: 1)], source: .log)

        #expect(try store.resolveRunID("0192aaaa") == a.id)
        #expect(errorKind { () throws(CMLError) in _ = try store.resolveRunID("0192aaa") } == .ambiguous)
        #expect(errorKind { () throws(CMLError) in _ = try store.resolveRunID("ffff") } == .notFound)
        #expect(errorKind { () throws(CMLError) in _ = try store.run(id: "ffffffffffffffffffffffffffffffff") } == .notFound)

        let sorted = try store.runs(RunQuery(sort: [RunSort("-acc")]))
        #expect(sorted.map(\.id) == [a.id, b.id])
        #expect(try store.runs(RunQuery(filter: try RunFilter.parse("lr < 0.05"))).map(\.id) == [b.id])
        #expect(try store.runs(RunQuery(project: "nlp")).map(\.id) == [b.id])
        #expect(try store.runs(RunQuery(limit: 1)).count == 1)
        let catalog = try store.catalog()
        #expect(try catalog.hasParam("lr"))
        #expect(try catalog.hasMetric("acc"))
        #expect(try !catalog.hasMetric("lr"))
        #expect(try store.projects().map(\.name).sorted() == ["nlp", "vision"])
    }

    @Test(arguments: StoreKind.allCases) func paramsTagsAndNamesChange(kind: StoreKind) throws {
        let fixture = try ContractStore(kind)
        let store = fixture.store
        let run = ContractStore.run()
        _ = try store.createRun(run, patch: [])
        try store.addParams(run: run.id, [Param(key: "lr", value: .int(1), source: "cml-log"), Param(key: "note", value: .string("é ✓"), source: "cml-log")])
        try store.addTags(run: run.id, ["best", "v2"])
        try store.removeTags(run: run.id, ["baseline"])
        try store.rename(run: run.id, to: "sweep 1")
        let back = try store.run(id: run.id)
        #expect(back.params.first { $0.key == "lr" }?.value == .int(1) && back.params.first { $0.key == "note" }?.value == .string("é ✓"))
        #expect(back.tags.sorted() == ["best", "v2"])
        #expect(back.name == "sweep 1")
        #expect(try store.resolveRunID("sweep 1") == run.id)
        #expect(errorKind { () throws(CMLError) in try store.addTags(run: "ffffffffffffffffffffffffffffffff", ["x"]) } == .notFound)
    }

    @Test(arguments: StoreKind.allCases) func pointsKeepEveryBitAndTheirSourceRule(kind: StoreKind) throws {
        let fixture = try ContractStore(kind)
        let store = fixture.store
        let run = ContractStore.run()
        _ = try store.createRun(run, patch: [])
        // (-0.0 is not among them: SQLite stores a whole REAL as an integer, and reads it back as 0.0.)
        let values: [Double] = [0.1 + 0.2, .nan, .infinity, -.infinity, 1e-300, .leastNonzeroMagnitude, 123456789.123456789, -1.5e308]
        let points = values.enumerated().map { MetricPoint(key: "loss", step: Int64($0.offset), value: $0.element, time: 1_796_000_000.000001 + Double($0.offset)) }
        try store.appendMetrics(run: run.id, points, source: .console)
        var back: [MetricPoint] = []
        try store.forEachMetric(run: run.id, key: "loss") { back.append($0) }
        #expect(back.count == values.count)
        #expect(zip(back, points).allSatisfy { $0.value.bitPattern == $1.value.bitPattern || ($0.value.isNaN && $1.value.isNaN) })
        #expect(zip(back, points).allSatisfy { $0.step == $1.step && $0.time == $1.time })
        // A higher-ranking source replaces the console's series; the console's later points are left out.
        try store.appendMetrics(run: run.id, [MetricPoint(key: "loss", step: 0, value: 5, time: 1)], source: .log)
        try store.appendMetrics(run: run.id, [MetricPoint(key: "loss", step: 9, value: 6, time: 2)], source: .console)
        back = []
        try store.forEachMetric(run: run.id, key: nil) { back.append($0) }
        #expect(back.map(\.value) == [5])
        #expect(try store.run(id: run.id).metrics.first?.count == 1)
    }

    @Test(arguments: StoreKind.allCases) func aBatchThatSaysWhereItStartsCountsOnceHoweverOftenItIsSent(kind: StoreKind) throws {
        let fixture = try ContractStore(kind)
        let store = fixture.store
        let run = ContractStore.run()
        _ = try store.createRun(run, patch: [])
        func points(_ steps: ClosedRange<Int64>) -> [MetricPoint] {
            steps.map { MetricPoint(key: "loss", step: $0, value: Double($0), time: Double($0)) }
        }
        try store.appendMetrics(run: run.id, points(0...2), source: .log, continuing: ["loss": 0])
        try store.appendMetrics(run: run.id, points(0...2), source: .log, continuing: ["loss": 0])
        try store.appendMetrics(run: run.id, points(2...4), source: .log, continuing: ["loss": 2])
        var steps: [Int64] = []
        try store.forEachMetric(run: run.id, key: "loss") { steps.append($0.step) }
        #expect(steps == [0, 1, 2, 3, 4])
        #expect(try store.run(id: run.id).metrics.first?.count == 5)
        #expect(errorKind { () throws(CMLError) in try store.appendMetrics(run: run.id, points(9...9), source: .log, continuing: ["loss": 9]) } == .conflict)
        #expect(try store.run(id: run.id).metrics.first?.count == 5, "a gap writes nothing")
    }

    @Test(arguments: StoreKind.allCases) func theLogIsAppendedOnceAndReadFromAnyOffset(kind: StoreKind) throws {
        let fixture = try ContractStore(kind)
        let store = fixture.store
        let run = ContractStore.run()
        _ = try store.createRun(run, patch: [])
        #expect(try store.readLog(run: run.id, from: 0, limit: 100) == nil, "no output yet")
        #expect(try store.logSize(run: run.id) == 0)
        let first = ContractStore.logRecords(["epoch 1\n", "epoch 2\n"])
        let second = ContractStore.logRecords(["epoch 3\n"])
        #expect(try store.appendLog(run: run.id, at: 0, first) == Int64(first.count))
        // A retried upload of what is there already adds nothing; one that overlaps adds only the rest.
        #expect(try store.appendLog(run: run.id, at: 0, first) == Int64(first.count))
        #expect(try store.appendLog(run: run.id, at: 0, first + second) == Int64(first.count + second.count))
        #expect(try store.logSize(run: run.id) == Int64(first.count + second.count))
        #expect(errorKind { () throws(CMLError) in try store.appendLog(run: run.id, at: 1_000, second) } == .conflict, "a gap")
        #expect(errorKind { () throws(CMLError) in try store.appendLog(run: run.id, at: Int64(first.count + second.count), [1, 2, 3]) } == .invalid, "not whole records")
        #expect(errorKind { () throws(CMLError) in try store.appendLog(run: run.id, at: 3, second) } == .conflict, "inside a record")
        #expect(try store.readLog(run: run.id, from: Int64(first.count), limit: 1 << 20) == second)
        let reader = RunLogReader(store: store, run: run.id)
        var text = ""
        while let record = reader.next() { text += String(decoding: record.bytes, as: UTF8.self) }
        #expect(text == "epoch 1\nepoch 2\nepoch 3\n")
    }

    @Test(arguments: StoreKind.allCases) func blobsAreStoredByTheirHash(kind: StoreKind) throws {
        let fixture = try ContractStore(kind)
        let store = fixture.store
        let bytes = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let id = try store.putBlob(bytes)
        #expect(id == SHA256Hasher.hex(bytes))
        #expect(store.hasBlob(id))
        #expect(try store.blobSize(id) == 300_000)
        #expect(try store.blob(id) == bytes)
        try fixture.box.write("weights.bin", String(repeating: "w", count: 5_000))
        let (fileID, size) = try store.putBlob(file: fixture.box.work + "/weights.bin")
        #expect(size == 5_000 && fixture.direct.hasBlob(fileID))
        let missing = String(repeating: "0", count: 64)
        #expect(!store.hasBlob(missing))
        #expect(errorKind { () throws(CMLError) in _ = try store.blobSize(missing) } == .notFound)
        #expect(errorKind { () throws(CMLError) in _ = try store.blob(missing) } == .notFound)
    }

    @Test(arguments: StoreKind.allCases) func artifactsGetVersionsAndRemovalFreesWhatNothingElseUses(kind: StoreKind) throws {
        let fixture = try ContractStore(kind)
        let store = fixture.store
        let run = ContractStore.run()
        _ = try store.createRun(run, patch: Array("patch".utf8))
        let blob = try store.putBlob(Array("model v1".utf8))
        let artifact = Artifact(run: run.id, name: "model.pt", kind: "model", step: 3, sha256: blob, size: 8, files: 1,
                                isDirectory: false, mediaType: nil, source: "/work/model.pt", time: 1_796_000_050.25)
        #expect(try store.addArtifact(artifact).version == 1)
        #expect(try store.addArtifact(artifact).version == 2)
        let listed = try store.artifacts(run: run.id)
        #expect(listed.map(\.version) == [1, 2] && listed[0].time == 1_796_000_050.25 && listed[0].step == 3)
        #expect(try store.projects(referencingBlob: blob) == ["vision"])
        let report = try store.removeRuns([run.id])
        #expect(report.runs == 1 && report.blobs == 2)
        #expect(!store.hasBlob(blob))
        #expect(errorKind { () throws(CMLError) in _ = try store.run(id: run.id) } == .notFound)
    }

    /// A whole ended run in one call, as cml-run sends a short run at its end: recorded as it was; sent
    /// again (its answer lost), or after part of it arrived step by step, nothing of it counts twice;
    /// another run under its id is refused, and a run that has not ended is no batch.
    @Test(arguments: StoreKind.allCases) func aWholeEndedRunIsRecordedOnceHoweverOftenItIsSent(kind: StoreKind) throws {
        let fixture = try ContractStore(kind)
        let store = fixture.store
        let log = ContractStore.logRecords(["epoch 1\n", "epoch 2\n"])
        let points = (0..<5).map { MetricPoint(key: "loss", step: Int64($0), value: 1 / Double($0 + 1), time: 1_796_000_000.5 + Double($0)) }
        func ended(_ run: Run) -> Run {
            var run = run
            run.status = .completed
            run.end = RunEnd(status: .completed, endedAt: 1_796_000_200.25, exitCode: 0, maxRSS: 1 << 20)
            run.logBytes = Int64(log.count)
            return run
        }
        func batch(_ run: Run, patch: String = "diff --git a/x b/x\n") -> RunBatch {
            RunBatch(run: ended(run), patch: Array(patch.utf8), log: log,
                     series: [RunBatch.Series(key: "loss", source: .console, points: points)])
        }
        let run = ContractStore.run()
        #expect(try store.recordEndedRun(batch(run)) == RunBatch.Outcome(created: true, finished: true))
        #expect(try store.recordEndedRun(batch(run)) == RunBatch.Outcome(created: false, finished: false))
        let back = try store.run(id: run.id)
        #expect(back.status == .completed && back.end?.endedAt == 1_796_000_200.25 && back.end?.maxRSS == 1 << 20)
        #expect(try back.logBytes == Int64(log.count) && store.logSize(run: run.id) == Int64(log.count))
        #expect(back.metrics.map(\.count) == [5] && back.metrics.first?.source == .console)
        #expect(back.params == run.params && back.tags == run.tags && back.startedAt == run.startedAt)
        #expect(back.code["patch_blob"]?.stringValue.map { try? store.blob($0) } == Array("diff --git a/x b/x\n".utf8))

        // Part of the run there already, as an upload cut short left it: the batch adds the rest, once.
        let partial = ContractStore.run()
        _ = try store.createRun(partial, patch: [])
        _ = try store.appendLog(run: partial.id, at: 0, ContractStore.logRecords(["epoch 1\n"]))
        try store.appendMetrics(run: partial.id, Array(points[0..<2]), source: .console, continuing: ["loss": 0])
        #expect(try store.recordEndedRun(batch(partial, patch: "")) == RunBatch.Outcome(created: false, finished: true))
        var steps: [Int64] = []
        try store.forEachMetric(run: partial.id, key: "loss") { steps.append($0.step) }
        #expect(steps == [0, 1, 2, 3, 4])
        #expect(try store.readLog(run: partial.id, from: 0, limit: 1 << 20) == log)
        #expect(try store.run(id: partial.id).status == .completed)

        // Another run under the first one's id: refused, and the store keeps its own.
        let other = ContractStore.run(run.id, command: ["bash", "other.sh"])
        #expect(errorKind { () throws(CMLError) in _ = try store.recordEndedRun(batch(other)) } == .conflict)
        #expect(try store.run(id: run.id).command == run.command && store.logSize(run: run.id) == Int64(log.count))
        let running = ContractStore.run()
        #expect(errorKind { () throws(CMLError) in
            _ = try store.recordEndedRun(RunBatch(run: running, patch: [], log: [], series: []))
        } == .invalid)
        #expect(errorKind { () throws(CMLError) in _ = try store.run(id: running.id) } == .notFound, "nothing written")
    }

    /// A short ended run copied as one the target was never sent (a spool's, at its end) goes as a
    /// batch; copying it again either way adds nothing, and a run with an artifact goes step by step.
    @Test(arguments: StoreKind.allCases) func anUnsentShortRunCopiesAsOneBatch(kind: StoreKind) throws {
        let source = try ContractStore(.directory)
        let target = try ContractStore(kind)
        let run = ContractStore.run()
        _ = try source.store.createRun(run, patch: Array("patch".utf8))
        try source.store.appendMetrics(run: run.id, [MetricPoint(key: "acc", step: 1, value: 0.5, time: 1)], source: .log)
        _ = try source.store.appendLog(run: run.id, at: 0, ContractStore.logRecords(["a\n"]))
        try source.store.finishRun(id: run.id, end: RunEnd(status: .failed, endedAt: 1_796_000_300, exitCode: 2), logBytes: 10)
        let sync = RunSync(from: source.store, to: target.store)
        let first = try sync.copyRun(run.id, unsent: true)
        #expect(first.created && first.points == 1 && first.logBytes > 0 && first.finished && first.complete)
        #expect(try sync.copyRun(run.id).sentNothing)
        let again = try sync.copyRun(run.id, unsent: true)
        #expect(!again.created && !again.finished && again.complete)
        let copied = try target.store.run(id: run.id)
        #expect(copied.status == .failed && copied.metrics.map(\.count) == [1] && copied.logBytes == 10)
        #expect(try target.store.readLog(run: run.id, from: 0, limit: 1 << 20) == source.store.readLog(run: run.id, from: 0, limit: 1 << 20))

        let withArtifact = ContractStore.run()
        _ = try source.store.createRun(withArtifact, patch: [])
        let blob = try source.store.putBlob(Array("weights".utf8))
        try source.store.addArtifact(Artifact(run: withArtifact.id, name: "model.pt", kind: "model", step: nil, sha256: blob, size: 7, files: 1,
                                              isDirectory: false, mediaType: nil, source: "/work/model.pt", time: 1_796_000_050))
        try source.store.finishRun(id: withArtifact.id, end: RunEnd(status: .completed, endedAt: 1_796_000_300, exitCode: 0), logBytes: 0)
        let stepwise = try sync.copyRun(withArtifact.id, unsent: true)
        #expect(stepwise.created && stepwise.artifacts == 1 && stepwise.blobs == 1 && stepwise.complete)
        #expect(try target.store.artifacts(run: withArtifact.id).map(\.name) == ["model.pt"])
    }

    /// What RunSync builds on: copying a run between two stores of any kinds sends what the other lacks.
    @Test(arguments: StoreKind.allCases) func aRunCopiesToTheOtherKindAndASecondCopySendsNothing(kind: StoreKind) throws {
        let source = try ContractStore(.directory)
        let target = try ContractStore(kind)
        let run = ContractStore.run()
        _ = try source.store.createRun(run, patch: Array("patch".utf8))
        try source.store.appendMetrics(run: run.id, (0..<50_000).map { MetricPoint(key: "loss", step: Int64($0), value: 1 / Double($0 + 1), time: Double($0)) },
                                       source: .log)
        _ = try source.store.appendLog(run: run.id, at: 0, ContractStore.logRecords(["a\n", "b\n"]))
        try source.store.finishRun(id: run.id, end: RunEnd(status: .completed, endedAt: 1_796_000_200, exitCode: 0), logBytes: 4)
        var sync = RunSync(from: source.store, to: target.store)
        sync.pointsPerBatch = 7_000
        let first = try sync.copyRun(run.id)
        #expect(first.created && first.points == 50_000 && first.finished && first.complete)
        let second = try sync.copyRun(run.id)
        #expect(second.sentNothing && second.complete)
        let copied = try target.store.run(id: run.id)
        #expect(copied.status == .completed && copied.metrics.first?.count == 50_000 && copied.logBytes == 4)
        // The same id for another run is refused, and the target keeps its own.
        let other = try ContractStore(.directory)
        _ = try other.store.createRun(ContractStore.run(run.id, command: ["bash", "other.sh"]), patch: [])
        #expect(errorKind { () throws(CMLError) in _ = try RunSync(from: other.store, to: target.store).copyRun(run.id) } == .conflict)
        #expect(try target.store.run(id: run.id).command == run.command)
    }
}

import Foundation
import Glibc
import Synchronization
import Testing

@testable import CMLKit

/// `--set` rewrites a command line the way the command already writes its parameters.
struct ParamOverrideTests {
    private func set(_ argv: [String], _ settings: [(String, String)]) -> [String] {
        ParamParser.override(argv, with: settings.map { (key: $0.0, value: $0.1) })
    }

    @Test func valuesChangeWhereTheyAre() {
        #expect(set(["python", "train.py", "--lr", "0.01", "--epochs", "3"], [("lr", "0.1")]) == ["python", "train.py", "--lr", "0.1", "--epochs", "3"])
        #expect(set(["python", "train.py", "--lr=0.01"], [("lr", "0.1")]) == ["python", "train.py", "--lr=0.1"])
        #expect(set(["python", "main.py", "lr=0.01", "+model.depth=50"], [("lr", "0.1"), ("model.depth", "101")])
                == ["python", "main.py", "lr=0.1", "+model.depth=101"])
        #expect(set(["./train", "-n", "3"], [("n", "5")]) == ["./train", "-n", "5"])
        // Every occurrence of a repeated key, so the last one cannot keep the old value.
        #expect(set(["./run", "--lr", "1", "--lr=2"], [("lr", "3")]) == ["./run", "--lr", "3", "--lr=3"])
        // The interpreter's own options are not the program's parameters.
        #expect(set(["python3", "-W", "ignore", "train.py", "--W", "1"], [("W", "2")]) == ["python3", "-W", "ignore", "train.py", "--W", "2"])
    }

    @Test func missingParametersAreAppendedInTheCommandsUsualForm() {
        #expect(set(["python", "train.py", "--lr", "0.01"], [("seed", "1")]) == ["python", "train.py", "--lr", "0.01", "--seed", "1"])
        #expect(set(["python", "main.py", "lr=0.01", "opt=adam", "--verbose"], [("seed", "1")]) == ["python", "main.py", "lr=0.01", "opt=adam", "--verbose", "seed=1"])
        #expect(set(["./train", "--lr=0.01", "--batch=4", "--x", "1"], [("seed", "1")]) == ["./train", "--lr=0.01", "--batch=4", "--x", "1", "--seed=1"])
        #expect(set(["./train"], [("seed", "1")]) == ["./train", "--seed", "1"])
        #expect(set(["./train"], [("amp", "true")]) == ["./train", "--amp"])
    }

    @Test func bareFlags() {
        #expect(set(["./train", "--amp", "--lr", "1"], [("amp", "false")]) == ["./train", "--lr", "1"])
        #expect(set(["./train", "--amp"], [("amp", "true")]) == ["./train", "--amp"])
        #expect(set(["./train", "--amp"], [("amp", "bf16")]) == ["./train", "--amp", "bf16"])
    }

    @Test func theRecordedParametersFollowTheCommandLine() {
        let argv = set(["python", "train.py", "--lr", "0.01"], [("lr", "0.1"), ("seed", "7")])
        let params = Dictionary(uniqueKeysWithValues: ParamParser.parse(argv).map { ($0.key, $0.value) })
        #expect(params == ["lr": .double(0.1), "seed": .int(7)])
    }
}

struct RunSpecTests {
    private let commit = String(repeating: "a", count: 40)
    private let blob = String(repeating: "b", count: 64)

    @Test func roundTrip() throws {
        var spec = RunSpec(repository: "/srv/repo", commit: commit, patchBlob: blob, directory: "src", command: ["python", "t.py", "--lr", "1"],
                           environment: [EnvironmentVariable(name: "OMP_NUM_THREADS", value: "4")],
                           params: [Param(key: "seed", value: .int(1), source: "option")], name: "n", project: "p", tags: ["x"],
                           clonedFrom: "01a2")
        spec.capture.metricPatterns = ["(?<key>\\w+) is (?<value>[0-9.]+)"]
        spec.capture.monitorInterval = 0
        #expect(try RunSpec(json: JSON.parse(spec.json.serialized)) == spec)
    }

    @Test func badSpecsNameWhatIsWrong() {
        func error(_ text: String) -> String? {
            do { _ = try RunSpec(json: JSON.parse(text)); return nil } catch { return error.message }
        }
        #expect(error(#"{"command": []}"#) == "\"command\" must name a program")
        #expect(error(#"{"command": ["true"], "comand": 1}"#) == "unknown field \"comand\"")
        #expect(error(#"{"command": ["true"], "repository": "/r"}"#) == "a spec with a \"repository\" needs its \"commit\"")
        #expect(error(#"{"command": ["true"], "repository": "/r", "commit": "abc"}"#) == "\"commit\" must be a full commit id (40 hex digits), not 'abc'")
        #expect(error(#"{"command": ["true"], "repository": "/r", "commit": "\#(commit)", "directory": "../up"}"#)
                == "\"directory\" must be a path inside the repository, not '../up'")
        #expect(error(#"{"command": ["true"], "env": {"A B": "1"}}"#) == "\"env\": 'A B' is not a variable name")
        #expect(error(#"{"command": ["true"], "patch_blob": "\#(blob)"}"#) == "a \"patch_blob\" applies to a \"commit\", and the spec has none")
        #expect(error(#"{"command": ["true"], "capture": {"monitor_interval": -1}}"#)?.hasPrefix("\"capture\": bad or unknown setting \"monitor_interval\"") == true)
        #expect(error(#"{"id": "01a2", "command": ["true"]}"#) == "this is a run record, not a run spec")
        #expect(error(#"[1]"#) == "a run spec is a JSON object")
    }

    @Test func cloneOfARecordedRun() throws {
        let code: JSON = .object([("in_repository", .bool(true)), ("root", .string("/home/u/proj")), ("remote_url", .string("git@host:proj.git")),
                                  ("commit", .string(commit)), ("pushed", .bool(false)), ("patch_blob", .string(blob))])
        let run = Run(id: "01a2", name: "base", project: "p", status: .completed, command: ["python", "train.py", "--lr", "0.01"],
                      cwd: "/home/u/proj/src", host: "h", user: "u", pid: 1, startedAt: 0, environment: [("HOME", "/home/u")], code: code,
                      tags: ["t"], params: [Param(key: "lr", value: .double(0.01), source: "argv"), Param(key: "seed", value: .int(1), source: "option"),
                                            Param(key: "from_log", value: .int(1), source: "log")])
        var warnings: [String] = []
        let spec = try RunSpec.clone(run, queuedSpec: nil, settings: [(key: "lr", value: "0.1")]) { warnings.append($0) }
        // Not pushed: only the local repository has the commit.
        #expect(spec.repository == "/home/u/proj" && spec.directory == "src" && spec.patchBlob == blob)
        #expect(spec.command == ["python", "train.py", "--lr", "0.1"])
        #expect(spec.params == [Param(key: "seed", value: .int(1), source: "option")])
        #expect(spec.environment.isEmpty && spec.clonedFrom == "01a2" && spec.name == "base" && spec.tags == ["t"])
        #expect(warnings.isEmpty)

        var pushed = run
        pushed.code = .object([("in_repository", .bool(true)), ("root", .string("/home/u/proj")), ("remote_url", .string("git@host:proj.git")),
                               ("commit", .string(commit)), ("pushed", .bool(true))])
        #expect(try RunSpec.clone(pushed, queuedSpec: nil, settings: [(key: "seed", value: "2")]) { _ in }.repository == "git@host:proj.git")
        // --set of a --param key moves it onto the command line.
        let reseeded = try RunSpec.clone(pushed, queuedSpec: nil, settings: [(key: "seed", value: "2")]) { _ in }
        #expect(reseeded.command.suffix(2) == ["--seed", "2"] && reseeded.params.isEmpty)

        var outside = run
        outside.code = .object([("in_repository", .bool(false))])
        let bare = try RunSpec.clone(outside, queuedSpec: nil, settings: []) { warnings.append($0) }
        #expect(bare.repository == nil && bare.commit == nil)
        #expect(warnings == ["run 01a2 was not in a git repository: the clone starts in an empty directory"])
    }
}

/// The queue operations of the SQLite store: ordering, leases, heartbeats, requeueing, aborts.
struct QueueStoreTests {
    private func spec(_ command: String...) -> RunSpec {
        RunSpec(repository: nil, commit: nil, patchBlob: nil, command: command)
    }

    private func agent(_ store: SQLiteStore, _ name: String, lease: Double = 30) throws -> String {
        let id = RunID.make()
        try store.registerAgent(AgentRecord(id: id, name: name, host: RunEnvironment.hostName, pid: getpid(), queues: ["q"], slots: 1, gpus: [],
                                            state: .idle, startedAt: Clock.now(), heartbeatAt: Clock.now(), leaseSeconds: lease))
        return id
    }

    @Test func agentsTakeByQueueOrderThenPriorityThenAge() throws {
        let box = try TemporaryStore()
        let store = box.store!
        let low = try store.enqueue([spec("low")], queue: "q", priority: 0, maxAttempts: 3).runs[0].id
        let batch = try store.enqueue([spec("high-1"), spec("high-2")], queue: "q", priority: 5, maxAttempts: 3).runs.map(\.id)
        let other = try store.enqueue([spec("other")], queue: "other", priority: 9, maxAttempts: 3).runs[0].id
        let a = try agent(store, "a")
        var order: [String] = []
        while let lease = try store.lease(agent: a, queues: ["q", "other"], seconds: 30) { order.append(lease.runID) }
        #expect(order == batch + [low, other])
        let run = try store.run(id: batch[0])
        #expect(run.status == .running && run.queue?.agent == "a" && run.queue?.history.count == 1 && run.pid == getpid())
    }

    @Test func concurrentAgentsNeverTakeTheSameRun() async throws {
        let box = try TemporaryStore()
        let directory = box.directory
        let ids = try box.store.enqueue((0..<200).map { _ in spec("true") }, queue: "q", priority: 0, maxAttempts: 1).runs.map(\.id)
        // Four processes' worth of connections, each its own store, leasing as fast as they can.
        let taken = try await withThrowingTaskGroup(of: [String].self) { group in
            for n in 0..<4 {
                group.addTask {
                    let store = try SQLiteStore(directory: directory)
                    let me = try agent(store, "agent-\(n)")
                    var mine: [String] = []
                    while let lease = try store.lease(agent: me, queues: ["q"], seconds: 30) { mine.append(lease.runID) }
                    return mine
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(taken.count == 200 && Set(taken) == Set(ids))
    }

    @Test func expiredLeasesAreRequeuedUntilTheAttemptsRunOut() throws {
        let box = try TemporaryStore()
        let store = box.store!
        let id = try store.enqueue([spec("sleep", "9")], queue: "q", priority: 0, maxAttempts: 2).runs[0].id
        let a = try agent(store, "a", lease: 0.2)
        let first = try #require(try store.lease(agent: a, queues: ["q"], seconds: 0.2))
        #expect(try store.expiredLeases().isEmpty)
        usleep(300_000)
        let expired = try store.expiredLeases()
        #expect(expired.map(\.runID) == [id] && expired[0].agentName == "a" && expired[0].attempt == 1)
        #expect(try store.reclaim(expired) == 1)
        #expect(try store.reclaim(expired) == 0)  // only once
        #expect(try store.run(id: id).status == .queued)
        // The agent that was too slow learns it no longer holds the run, and cannot record its end.
        #expect(try store.heartbeat(agent: a, state: .busy, holding: [id], leaseSeconds: 0.2).notHeld == [id])
        #expect(try !store.endLeasedRun(first, .finished(RunEnd(status: .completed, endedAt: Clock.now())), logBytes: 0))
        #expect(try store.run(id: id).status == .queued)

        let b = try agent(store, "b", lease: 0.2)
        let second = try #require(try store.lease(agent: b, queues: ["q"], seconds: 0.2))
        #expect(second.attempt == 2)
        usleep(300_000)
        #expect(try store.reclaim(store.expiredLeases()) == 0)
        let lost = try store.run(id: id)
        #expect(lost.status == .lost)
        #expect(lost.end?.error?.hasPrefix("lost 2 of 2 attempts; the last: its agent b (pid \(getpid())") == true)
        #expect(lost.queue?.history.map(\.outcome) == ["lost", "lost"])
    }

    @Test func heartbeatsRenewLeasesAndCarryAborts() throws {
        let box = try TemporaryStore()
        let store = box.store!
        let id = try store.enqueue([spec("sleep", "9")], queue: "q", priority: 0, maxAttempts: 1).runs[0].id
        let a = try agent(store, "a", lease: 0.3)
        let lease = try #require(try store.lease(agent: a, queues: ["q"], seconds: 0.3))
        for _ in 0..<4 {
            usleep(150_000)
            #expect(try store.heartbeat(agent: a, state: .busy, holding: [id], leaseSeconds: 0.3) == HeartbeatReply())
        }
        #expect(try store.expiredLeases().isEmpty)
        #expect(try store.requestAbort(run: id) == .requested(agent: "a"))
        #expect(try store.heartbeat(agent: a, state: .busy, holding: [id], leaseSeconds: 0.3).abortRequested == [id])
        #expect(try store.endLeasedRun(lease, .finished(RunEnd(status: .aborted, endedAt: Clock.now(), error: "aborted")), logBytes: 0))
        #expect(try store.run(id: id).status == .aborted)
        #expect(throws: CMLError.self) { try store.requestAbort(run: id) }
    }

    @Test func aLeaseOfARunTheAgentNoLongerRunsRunsOut() throws {
        let box = try TemporaryStore()
        let store = box.store!
        let ids = try store.enqueue([spec("a"), spec("b")], queue: "q", priority: 0, maxAttempts: 3).runs.map(\.id)
        let agent = try agent(store, "a", lease: 0.3)
        _ = try store.lease(agent: agent, queues: ["q"], seconds: 0.3)
        _ = try store.lease(agent: agent, queues: ["q"], seconds: 0.3)
        // Its end could not be recorded for the second: the agent goes on running only the first.
        for _ in 0..<3 {
            usleep(150_000)
            _ = try store.heartbeat(agent: agent, state: .busy, holding: [ids[0]], leaseSeconds: 0.3)
        }
        #expect(try store.expiredLeases().map(\.runID) == [ids[1]])
    }

    @Test func aDrainedRunGoesBackWithoutUsingAnAttempt() throws {
        let box = try TemporaryStore()
        let store = box.store!
        let id = try store.enqueue([spec("sleep", "9")], queue: "q", priority: 0, maxAttempts: 1).runs[0].id
        let a = try agent(store, "a")
        let lease = try #require(try store.lease(agent: a, queues: ["q"], seconds: 30))
        #expect(try store.endLeasedRun(lease, .requeued(reason: "drained"), logBytes: 10))
        let run = try store.run(id: id)
        #expect(run.status == .queued && run.queue?.attempts == 0 && run.queue?.history.last?.outcome == "requeued")
        #expect(try store.lease(agent: a, queues: ["q"], seconds: 30)?.attempt == 2)
    }

    @Test func removingAndMovingRefuseRunsThatDoNotWait() throws {
        let box = try TemporaryStore()
        let store = box.store!
        let ids = try store.enqueue([spec("a"), spec("b")], queue: "q", priority: 0, maxAttempts: 1).runs.map(\.id)
        let a = try agent(store, "a")
        _ = try store.lease(agent: a, queues: ["q"], seconds: 30)
        #expect(throws: CMLError.self) { try store.removeQueued(ids) }
        #expect(throws: CMLError.self) { try store.moveQueued(ids, to: "other") }
        #expect(try store.queuedRuns(queue: nil).map(\.id) == ids)  // nothing changed
        #expect(try store.moveQueued([ids[1]], to: "other"))
        #expect(try store.queuedRuns(queue: "other").map(\.id) == [ids[1]])
        try store.removeQueued([ids[1]])
        #expect(try store.queuedRuns(queue: nil).map(\.id) == [ids[0]])
        #expect(try store.queueNames() == ["other", "q"])
        #expect(throws: CMLError.self) { try store.enqueue([spec("x")], queue: "bad name", priority: 0, maxAttempts: 1) }
    }

    @Test func theDoorbellWakesAWaitingAgentAtOnce() throws {
        let box = try TemporaryStore()
        let store = box.store!
        let watcher = try store.queueWatcher()
        final class WakeTime: Sendable { let value = Mutex<Double?>(nil) }
        let woke = WakeTime()
        let waiting = Thread {
            watcher.wait(timeout: 10)
            woke.value.withLock { $0 = Clock.now() }
        }
        waiting.start()
        usleep(100_000)
        let queuedAt = Clock.now()
        _ = try store.enqueue([spec("true")], queue: "q", priority: 0, maxAttempts: 1)
        #expect(waitForValue { woke.value.withLock { $0 } }.map { $0 - queuedAt }.map { $0 < 0.5 } == true)
        // Writes that give agents no work (a run's metrics) do not ring.
        let quiet = try store.queueWatcher()
        let run = try box.makeRun()
        let started = Clock.now()
        try store.metricWriter(run: run).append([MetricPoint(key: "loss", step: 0, value: 1, time: started)], source: .console)
        quiet.wait(timeout: 0.3)
        #expect(Clock.now() - started >= 0.29)
    }

    private func waitForValue(_ value: () -> Double?) -> Double? {
        for _ in 0..<200 {
            if let found = value() { return found }
            usleep(10_000)
        }
        return nil
    }
}

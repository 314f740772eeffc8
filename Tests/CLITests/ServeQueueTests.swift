import Foundation
import Glibc
import Synchronization
import Testing
import CMLKit

/// The queue part of the store API, through the built `cml-serve`: `HTTPStore` and the built commands
/// with `--store URL` on one side, the store directory on the other.
struct ServeQueueTests {
    /// A new store served on a free port.
    static func served(_ box: Sandbox) throws -> ServerUnderTest {
        _ = try SQLiteStore(directory: box.store)
        return try ServerUnderTest(box)
    }

    static func agent(_ name: String, queues: [String] = ["gpu"]) -> AgentRecord {
        AgentRecord(id: RunID.make(), name: name, host: "elsewhere", pid: 4242, queues: queues, slots: 1, gpus: [], state: .idle,
                    startedAt: Clock.now(), heartbeatAt: Clock.now(), leaseSeconds: 30)
    }

    static func spec(_ command: String..., project: String = "default") -> RunSpec {
        RunSpec(repository: nil, commit: nil, patchBlob: nil, command: command, project: project)
    }

    /// The error `call` throws; nil when it succeeds.
    static func failure(_ call: () throws(CMLError) -> Void) -> CMLError? {
        do throws(CMLError) {
            try call()
            return nil
        } catch {
            return error
        }
    }

    @Test func aQueuedRunGoesThroughItsLeaseOverHTTP() async throws {
        let box = try Sandbox()
        let server = try Self.served(box)
        let added = try box.run("cml-queue", ["add", "gpu", "--store", server.url, "--", "sh", "-c", "echo loss: 0.5"])
        #expect(added.status == 0, "\(added.stderr)")
        #expect(added.stderr.contains("created queue gpu"), "\(added.stderr)")
        let id = try #require(added.jsonLines.first?["id"] as? String)
        // The server lists what the store holds.
        let remote = try box.run("cml-queue", ["ls", "--store", server.url, "--format", "jsonl"])
        let local = try box.run("cml-queue", ["ls", "--format", "jsonl"])
        #expect(remote.status == 0 && remote.stdout == local.stdout && local.out.contains(id), "\(remote.stderr)")

        let store = try HTTPStore(url: server.url, token: nil)
        #expect(try store.queueNames() == ["gpu"])
        #expect(try store.spec(run: id)?.command == ["sh", "-c", "echo loss: 0.5"])
        let agent = Self.agent("remote-1")
        try store.registerAgent(agent)
        #expect(Self.failure { () throws(CMLError) in try store.registerAgent(Self.agent("remote-1")) }?.message.contains("already running") == true)
        let lease = try #require(try store.lease(agent: agent.id, queues: ["cpu", "gpu"], seconds: 30))
        #expect(lease.runID == id && lease.attempt == 1 && lease.queue == "gpu" && lease.agentID == agent.id)
        #expect(lease.spec == (try store.spec(run: id)))
        #expect(try store.lease(agent: agent.id, queues: ["gpu"], seconds: 30) == nil)

        let beat = try store.heartbeat(agent: agent.id, state: .busy, holding: [id, "ffff"], leaseSeconds: 30)
        #expect(beat == HeartbeatReply(abortRequested: [], notHeld: ["ffff"]))
        #expect(try store.agents().map(\.runs) == [[id]])
        #expect(try store.agents().first?.state == .busy)
        #expect(try store.queuedRuns(queue: "gpu").map(\.status) == [.running])

        var run = lease.spec.queuedRun(id: id)
        run.status = .running
        run.host = "elsewhere"
        run.pid = 4243
        run.startedAt = Clock.now()
        #expect(try store.startLeasedRun(run, lease: lease))
        #expect(try store.requestAbort(run: id) == .requested(agent: "remote-1"))
        #expect(try store.heartbeat(agent: agent.id, state: .busy, holding: [id], leaseSeconds: 30).abortRequested == [id])
        #expect(try store.endLeasedRun(lease, .finished(RunEnd(status: .completed, endedAt: Clock.now(), exitCode: 0)), logBytes: 0))
        // Ended, the lease is held no more: a second end records nothing.
        #expect(try !store.endLeasedRun(lease, .finished(RunEnd(status: .failed, endedAt: Clock.now(), exitCode: 1)), logBytes: 0))
        #expect(try !store.startLeasedRun(run, lease: lease))

        let shown = try box.show(id)
        #expect(shown["status"] as? String == "completed" && shown["exit_code"] as? Int == 0, "\(shown)")
        #expect(shown["host"] as? String == "elsewhere" && shown["pid"] as? Int == 4243 && shown["agent"] as? String == "remote-1")
        let attempts = try #require(shown["attempts"] as? [[String: Any]])
        #expect(attempts.count == 1 && attempts[0]["outcome"] as? String == "completed")
        #expect(try store.queuedRuns(queue: nil).isEmpty)
        #expect(try store.queueStats() == (try SQLiteStore(directory: box.store, access: .reading).queueStats()))

        // Waiting runs move and go; one that ran is refused, naming it.
        let (runs, created) = try store.enqueue([Self.spec("true"), Self.spec("false")], queue: "gpu", priority: 5, maxAttempts: 2)
        #expect(!created && runs.map(\.status) == [.queued, .queued] && runs.map { $0.queue?.priority } == [5, 5])
        #expect(try store.moveQueued([runs[0].id], to: "cpu"))
        #expect(try store.queueNames() == ["cpu", "gpu"])
        try store.removeQueued([runs[1].id])
        #expect(try store.queuedRuns(queue: nil).map(\.id) == [runs[0].id])
        let ran = Self.failure { () throws(CMLError) in try store.removeQueued([runs[0].id, id]) }
        #expect(ran?.message.contains("has already run") == true, "\(String(describing: ran))")
        #expect(try store.queuedRuns(queue: "cpu").map(\.id) == [runs[0].id])
        #expect(try store.requestAbort(run: runs[0].id) == .dequeued)
        try store.createQueue("later")
        #expect(try store.queueNames() == ["cpu", "gpu", "later"])

        try store.retireAgent(id: agent.id)
        #expect(try store.agents().first?.state == .lost)
        _ = try server.stop()
    }

    /// Leases run out and are reclaimed over HTTP as in the store.
    @Test func anExpiredLeaseIsReclaimedOverHTTP() async throws {
        let box = try Sandbox()
        let server = try Self.served(box)
        let store = try HTTPStore(url: server.url, token: nil)
        let id = try store.enqueue([Self.spec("true")], queue: "gpu", priority: 0, maxAttempts: 2).runs[0].id
        let gone = Self.agent("gone"), other = Self.agent("other")
        try store.registerAgent(gone)
        try store.registerAgent(other)
        let lease = try #require(try store.lease(agent: gone.id, queues: ["gpu"], seconds: 0.05))
        #expect(waitUntil(timeout: 20) { (try? store.expiredLeases().isEmpty) == false })
        let expired = try store.expiredLeases()
        #expect(expired.map(\.runID) == [id] && expired.map(\.agentID) == [gone.id] && expired.map(\.attempt) == [1])
        #expect(expired.map(\.agentName) == ["gone"] && expired.map(\.agentHost) == ["elsewhere"] && expired.map(\.agentPID) == [4242])
        #expect(try store.reclaim(expired) == 1)
        #expect(try store.queuedRuns(queue: "gpu").map(\.status) == [.queued])
        // The first agent's late end records nothing: the run is another's to take.
        #expect(try !store.endLeasedRun(lease, .finished(RunEnd(status: .completed, endedAt: Clock.now(), exitCode: 0)), logBytes: 0))
        #expect(try store.lease(agent: other.id, queues: ["gpu"], seconds: 30)?.attempt == 2)
        _ = try server.stop()
    }

    /// Agents on two machines asking at once, several requests in flight each: every run is leased once.
    @Test func aLeaseIsNeverGivenTwice() async throws {
        let box = try Sandbox()
        let server = try Self.served(box)
        let store = try HTTPStore(url: server.url, token: nil)
        let queued = try store.enqueue((0..<60).map { Self.spec("echo", String($0)) }, queue: "gpu", priority: 0, maxAttempts: 3).runs.map(\.id)
        let agents = [Self.agent("left"), Self.agent("right")]
        for agent in agents { try store.registerAgent(agent) }
        let results = Mutex<(taken: [(run: String, agent: String)], failures: [String])>(([], []))
        let url = server.url
        let leasers = DispatchGroup()
        for index in 0..<6 {
            let agent = agents[index % 2]
            leasers.enter()
            Thread.detachNewThread {
                defer { leasers.leave() }
                do throws(CMLError) {
                    let client = try HTTPStore(url: url, token: nil)
                    while let lease = try client.lease(agent: agent.id, queues: ["gpu"], seconds: 60) {
                        results.withLock { $0.taken.append((lease.runID, lease.agentID)) }
                    }
                } catch {
                    results.withLock { $0.failures.append(error.message) }
                }
            }
        }
        leasers.wait()
        let (taken, failures) = results.withLock { $0 }
        #expect(failures == [])
        #expect(taken.count == queued.count)
        #expect(Set(taken.map(\.run)) == Set(queued))
        #expect(Set(taken.map(\.agent)).count == 2, "both agents must have taken runs, or nothing raced")
        // The store says the same: each run is held by the agent that was told it leased it.
        let held = Dictionary(uniqueKeysWithValues: try store.agents().flatMap { agent in agent.runs.map { ($0, agent.id) } })
        #expect(held == Dictionary(uniqueKeysWithValues: taken.map { ($0.run, $0.agent) }))
        #expect(try store.queuedRuns(queue: nil).allSatisfy { $0.status == .running && $0.queue?.history.count == 1 })
        _ = try server.stop()
    }

    @Test func tokensAreRefusedWhatTheirScopeOrProjectsDoNotAllow() async throws {
        let box = try Sandbox()
        let server = try Self.served(box)
        func client(_ name: String, scope: String, projects: [String] = []) throws -> HTTPStore {
            try HTTPStore(url: server.url, token: try ServeAuthTests.create(box, name, scope: scope, projects: projects))
        }
        let reader = try client("reader", scope: "read"), writer = try client("writer", scope: "write")
        let agentToken = try client("agent", scope: "agent"), admin = try client("admin", scope: "admin")
        let boundWriter = try client("vision-writer", scope: "write", projects: ["vision"])
        let boundAgent = try client("vision-agent", scope: "agent", projects: ["vision"])
        let local = try SQLiteStore(directory: box.store, access: .reading)

        func refused(_ what: String, _ call: () throws(CMLError) -> Void) {
            let error = Self.failure(call)
            #expect(error?.kind == .refused, "\(what): \(String(describing: error))")
        }
        refused("a read token queueing") { () throws(CMLError) in _ = try reader.enqueue([Self.spec("true")], queue: "gpu", priority: 0, maxAttempts: 1) }
        refused("a read token creating a queue") { () throws(CMLError) in try reader.createQueue("gpu") }
        #expect(try local.queueNames() == [] && local.queuedRuns(queue: nil).isEmpty, "a refusal wrote")

        let mine = try writer.enqueue([Self.spec("true")], queue: "gpu", priority: 0, maxAttempts: 1).runs[0].id
        let agent = Self.agent("a1")
        refused("a write token registering an agent") { () throws(CMLError) in try writer.registerAgent(agent) }
        try agentToken.registerAgent(agent)
        refused("a write token leasing") { () throws(CMLError) in _ = try writer.lease(agent: agent.id, queues: ["gpu"], seconds: 30) }
        refused("a write token beating") { () throws(CMLError) in _ = try writer.heartbeat(agent: agent.id, state: .idle, holding: [], leaseSeconds: 30) }
        let lease = try WireCodec.decode(ExpiredLease.self, from: Array("""
            {"runID": "\(mine)", "attempt": 1, "agentID": "\(agent.id)", "agentName": "a1", "agentHost": "h", "agentPID": 1}
            """.utf8), what: "a lease")
        refused("a write token reclaiming") { () throws(CMLError) in _ = try writer.reclaim([lease]) }
        #expect(try local.queuedRuns(queue: nil).map(\.status) == [.queued], "a refusal leased")

        // Agents belong to no project: a project-bound token is refused every agent route, whatever its scope.
        let bound = Self.failure { () throws(CMLError) in try boundAgent.registerAgent(Self.agent("a2")) }
        #expect(bound?.kind == .refused && bound?.message == "a token bound to projects (vision) may not run an agent", "\(String(describing: bound))")
        refused("a project-bound agent leasing") { () throws(CMLError) in _ = try boundAgent.lease(agent: agent.id, queues: ["gpu"], seconds: 30) }
        refused("a project-bound agent beating") { () throws(CMLError) in _ = try boundAgent.heartbeat(agent: agent.id, state: .idle, holding: [], leaseSeconds: 30) }
        refused("a project-bound agent retiring") { () throws(CMLError) in try boundAgent.retireAgent(id: agent.id) }
        #expect(try local.agents().map(\.name) == ["a1"] && local.agents()[0].state == .idle)

        // A project-bound token queues only its projects' specs, and sees and changes only their runs.
        refused("queueing another project's spec") { () throws(CMLError) in
            _ = try boundWriter.enqueue([Self.spec("true", project: "vision"), Self.spec("true")], queue: "gpu", priority: 0, maxAttempts: 1)
        }
        #expect(try local.queuedRuns(queue: nil).map(\.id) == [mine], "a refusal queued")
        let theirs = try boundWriter.enqueue([Self.spec("true", project: "vision")], queue: "gpu", priority: 0, maxAttempts: 1).runs[0].id
        #expect(try boundWriter.queuedRuns(queue: nil).map(\.id) == [theirs])
        #expect(try Set(writer.queuedRuns(queue: nil).map(\.id)) == [mine, theirs])
        refused("aborting another project's run") { () throws(CMLError) in _ = try boundWriter.requestAbort(run: mine) }
        refused("removing another project's run") { () throws(CMLError) in try boundWriter.removeQueued([theirs, mine]) }
        refused("moving another project's run") { () throws(CMLError) in _ = try boundWriter.moveQueued([mine], to: "cpu") }
        #expect(Self.failure { () throws(CMLError) in _ = try boundWriter.spec(run: mine) }?.kind == .notFound)
        #expect(try local.queuedRuns(queue: nil).count == 2 && local.queueNames() == ["gpu"], "a refusal changed the queue")
        #expect(try boundWriter.moveQueued([theirs], to: "cpu"))

        // Dataset versions belong to no project either; gc needs admin.
        let draft = DatasetVersionDraft(id: RunID.make(), dataset: "mnist", parents: nil, message: nil, manifest: String(repeating: "0", count: 64),
                                        files: 0, size: 0, newBlobs: 0, newBytes: 0, source: nil, run: nil, createdAt: Clock.now(),
                                        blobs: [BlobDigest(hex: String(repeating: "0", count: 64))!])
        refused("a project-bound token recording a version") { () throws(CMLError) in _ = try boundWriter.createDatasetVersion(draft) }
        refused("a project-bound token removing a version") { () throws(CMLError) in _ = try boundWriter.removeDatasetVersions([draft.id]) }
        refused("a read token recording a version") { () throws(CMLError) in _ = try reader.createDatasetVersion(draft) }
        refused("a write token collecting garbage") { () throws(CMLError) in _ = try agentToken.collectGarbage(dryRun: true) }
        #expect(try admin.collectGarbage(dryRun: true).blobs == 0)
        #expect(try reader.datasetVersions(dataset: nil).isEmpty)
        _ = try server.stop()
    }

    /// A body that is not the record the route takes, or a record the store must not take, is a 400
    /// naming what was wrong, and nothing is written.
    @Test func malformedBodiesAreRefusedNamingWhatWasWrong() async throws {
        let box = try Sandbox()
        let server = try Self.served(box)
        let store = "\(server.url)/api/v1/store"
        let local = try SQLiteStore(directory: box.store, access: .reading)
        let agent = Self.agent("a1")
        try HTTPStore(url: server.url, token: nil).registerAgent(agent)

        func refused(_ path: String, _ body: [UInt8]?, method: String = "POST", saying: String) async throws {
            let reply = try await HTTPReply.send(store + path, method: method, body: body.map { Data($0) })
            #expect(reply.status == 400, "\(path): \(reply.status) \(reply.text)")
            #expect(reply.json["kind"] as? String == "invalid", "\(path): \(reply.text)")
            let message = reply.json["error"] as? String ?? ""
            #expect(message.contains(saying), "\(path): \(message)")
            #expect(!message.contains("\n"))
        }
        func enqueue(_ specs: [RunSpec]) throws -> [UInt8] {
            try WireCodec.encode(RemoteRecords.Enqueue(specs: specs, priority: 0, maxAttempts: 3))
        }

        try await refused("/queues/gpu/runs", Array("{".utf8), saying: "the runs to queue is not a valid record")
        try await refused("/queues/gpu/runs", Array(#"{"specs": [{"command": ["true"]}], "priority": 0, "maxAttempts": 3}"#.utf8),
                          saying: "the runs to queue is not a valid record: missing")
        var unsafe = Self.spec("true")
        unsafe.repository = "https://example.org/r.git"
        unsafe.commit = "main"
        try await refused("/queues/gpu/runs", try enqueue([Self.spec("true"), unsafe]), saying: "spec 2: \"commit\" must be a full commit id")
        var escaping = Self.spec("true")
        escaping.directory = "../../etc"
        try await refused("/queues/gpu/runs", try enqueue([escaping]), saying: "spec 1: \"directory\" must be a path inside the repository")
        try await refused("/queues/gpu/runs", try enqueue([Self.spec("")]), saying: "spec 1: \"command\" must name a program")
        try await refused("/queues/gpu/runs", Array(#"{"specs": [], "priority": 0, "maxAttempts": 0}"#.utf8), saying: "at least 1")
        try await refused("/queues/no%20spaces", nil, method: "PUT", saying: "'no spaces' is not a queue name")
        #expect(try local.queueNames() == [] && local.queuedRuns(queue: nil).isEmpty, "a refused body queued")

        try await refused("/agents/\(agent.id)/heartbeat", Array(#"{"state": "asleep", "holding": [], "leaseSeconds": 30}"#.utf8),
                          saying: "the heartbeat is not a valid record")
        try await refused("/agents/\(agent.id)/lease", Array(#"{"queues": ["gpu"], "seconds": -1}"#.utf8),
                          saying: "seconds must be a positive number of seconds")
        try await refused("/agents", try WireCodec.encode(AgentRecord(id: "x", name: "b", host: "h", pid: 1, queues: [], slots: 1, gpus: [],
                                                                     state: .idle, startedAt: 0, heartbeatAt: 0, leaseSeconds: .infinity)),
                          saying: "leaseSeconds must be a positive number")
        try await refused("/leases/end", Array(#"{"lease": {}, "logBytes": 0}"#.utf8), saying: "the end is not a valid record: missing")
        #expect(try local.agents().map(\.name) == ["a1"] && local.agents()[0].state == .idle, "a refused body changed the agent")

        let version = RunID.make(), manifest = String(repeating: "a", count: 64)
        func draft(id: String = version, manifest: String = manifest, blobs: [String] = [manifest]) throws -> [UInt8] {
            try WireCodec.encode(DatasetVersionDraft(id: id, dataset: "mnist", parents: nil, message: nil, manifest: manifest, files: 0,
                                                     size: 0, newBlobs: 0, newBytes: 0, source: nil, run: nil, createdAt: 0,
                                                     blobs: blobs.compactMap(BlobDigest.init(hex:))))
        }
        try await refused("/datasets/versions", try draft(id: "../x"), saying: "the version's id must be 32 lowercase hex digits")
        try await refused("/datasets/versions", try draft(blobs: []), saying: "the version's manifest \(manifest) must be the sha256 of a blob it references")
        try await refused("/datasets/versions", Array(#"{"id": 5}"#.utf8), saying: "the version is not a valid record")
        try await refused("/datasets/versions/remove", Array(#"["a", 5]"#.utf8), saying: "the version ids is not a valid record")
        try await refused("/datasets/resolve?version=mnist@x%2Fy", nil, method: "GET", saying: "does not name a version")
        try await refused("/queue-changes?after=1&wait=3600", nil, method: "GET", saying: "wait must be 0 to 60 seconds")
        #expect(try local.datasetVersions(dataset: nil).isEmpty, "a refused body recorded a version")
        _ = try server.stop()
    }

    /// A remote store's watcher wakes its waiter when a run is queued through the server, or by a
    /// command on the server's machine, and when interrupted.
    @Test func theRemoteWatcherWakesOnAnEnqueueAnywhere() async throws {
        let box = try Sandbox()
        let server = try Self.served(box)
        let store = try HTTPStore(url: server.url, token: nil)
        let watcher = try store.queueWatcher()
        // Woken by the change, not by the minute the wait would otherwise last.
        func wakes(_ what: String, after start: () throws -> Void) throws {
            let started = Date()
            try start()
            watcher.wait(timeout: 60)
            #expect(Date().timeIntervalSince(started) < 60, "\(what) did not wake the watcher")
        }
        try wakes("interrupt") {
            Thread.detachNewThread {
                Thread.sleep(forTimeInterval: 0.3)
                watcher.interrupt()
            }
        }
        try wakes("a run queued over HTTP") {
            Thread.detachNewThread {
                Thread.sleep(forTimeInterval: 0.3)
                _ = try? store.enqueue([Self.spec("true")], queue: "gpu", priority: 0, maxAttempts: 1)
            }
        }
        var adding: RunningCommand?
        try wakes("a run queued by cml-queue on the server's machine") { adding = try box.start("cml-queue", ["add", "gpu", "--", "true"]) }
        #expect(try adding?.wait().status == 0)
        // A change while no one waits is not lost: the next wait returns for it.
        let added = try box.run("cml-queue", ["add", "gpu", "--", "true"])
        #expect(added.status == 0, "\(added.stderr)")
        try wakes("a change before the wait") {}
        #expect(try store.queuedRuns(queue: "gpu").count == 3)

        // Long polls in progress (this one, and the watcher's, held 30 s) do not hold the server's shutdown:
        // they are answered, with no change.
        let changes = server.url + "/api/v1/store/queue-changes"
        let count = try #require(try await HTTPReply.send(changes).json["count"] as? Int)
        let started = Date()
        let poll = Task { try await HTTPReply.send(changes + "?after=\(count)&wait=60") }
        try await Task.sleep(for: .seconds(1))  // for the poll to reach the server
        let stopped = try server.stop()
        #expect(stopped.status == 0, "\(stopped.stderr)")
        let answer = try await poll.value
        #expect(answer.status == 200 && answer.json["count"] as? Int == count, "\(answer.text)")
        #expect(Date().timeIntervalSince(started) < 25, "the server waited for a poll to run out")
    }
}

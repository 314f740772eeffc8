import CMLKit
import Foundation
import Glibc
import Testing

/// `cml-agent --store URL`: agents on "other machines" (their own working directories and caches, no
/// access to the server's store directory) take runs from one `cml-serve`, record them into their spools
/// and upload them.
struct RemoteAgentTests {
    /// A queue box whose store is served, and what its remote agents and commands need.
    final class Remote {
        let q: QueueBox
        var server: ServerUnderTest
        var url: String { server.url }

        /// `port`: where the server listens, so that it can be started again at the same URL.
        init(port: UInt16 = 0) throws {
            q = try QueueBox()
            _ = try SQLiteStore(directory: q.box.store)
            server = try ServerUnderTest(q.box, ["--listen", "127.0.0.1:\(port)"])
        }

        /// A machine of its own: its cache (spool, clone cache) and working directory, and a CML_STORE
        /// that does not exist, so that nothing reaches the server's directory but through the URL.
        func env(_ name: String) -> [String: String] {
            ["XDG_CACHE_HOME": q.box.root + "/cache-" + name, "CML_STORE": q.box.root + "/no-store-" + name, "CML_TOKEN": ""]
        }

        func agent(_ name: String) throws -> RunningCommand {
            let home = q.box.root + "/machine-" + name
            try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
            return try q.box.start("cml-agent", ["--store", url, "--queue", "q", "--create", "--name", name, "--heartbeat", "0.2",
                                                 "--lease", "2", "--kill-grace", "2"], env: env(name), cwd: home)
        }

        /// `cml-run ARGS --store URL`.
        func cmlRun(_ args: [String]) throws -> CommandResult {
            try q.box.run("cml-run", args + ["--store", url], env: ["CML_TOKEN": ""])
        }

        func show(_ id: String) throws -> [String: Any] {
            let shown = try cmlRun(["show", id])
            #expect(shown.status == 0, "\(shown.stderr)")
            return try #require(shown.jsonLines.first)
        }

        func status(_ id: String) throws -> String? { try show(id)["status"] as? String }

        /// The run's record on the server, for a failed expectation's message.
        func describe(_ id: String) -> String { (try? cmlRun(["show", id]).out) ?? "no record of \(id)" }

        func waitIdle(_ names: [String]) throws -> Bool {
            try waitUntil(timeout: 30) {
                let agents = try q.box.run("cml-agent", ["ls", "--format", "jsonl", "--store", url], env: ["CML_TOKEN": ""]).jsonLines
                let idle = agents.filter { $0["state"] as? String == "idle" }.compactMap { $0["name"] as? String }
                return names.allSatisfy(idle.contains)
            }
        }

        /// Queues `command` through the server; returns the run's id.
        func add(_ command: [String]) throws -> String {
            let added = try q.box.run("cml-queue", ["add", "q", "--store", url, "--"] + command, env: ["CML_TOKEN": ""], cwd: q.repo)
            #expect(added.status == 0, "\(added.stderr)")
            return try #require(added.jsonLines.first?["id"] as? String)
        }

        /// The runs still in the agent's spool.
        func spooled(_ name: String) -> [Run] {
            let spools = q.box.root + "/cache-" + name + "/cml/agent-spool"
            let directories = (try? FileManager.default.contentsOfDirectory(atPath: spools)) ?? []
            return directories.flatMap { RemoteStoreTests.runsIn(spools + "/" + $0) }
        }
    }

    @Test func twoRemoteAgentsTakeEachRunOnceAndUploadIt() throws {
        let r = try Remote()
        let a = try r.agent("a"), b = try r.agent("b")
        #expect(try r.waitIdle(["a", "b"]), "\(a.stderrSoFar) \(b.stderrSoFar)")
        let rates = ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6"]
        let ids = try rates.map { lr in try r.add(["python3", "train.py", "--lr", lr, "--sleep", "0.5"]) }
        for id in ids {
            #expect(try waitUntil(timeout: 60) { try r.status(id) == "completed" }, "\(r.describe(id)) \(a.stderrSoFar) \(b.stderrSoFar)")
        }
        var agentsUsed = Set<String>()
        for (id, lr) in zip(ids, rates) {
            let run = try r.show(id)
            let attempts = run["attempts"] as? [[String: Any]] ?? []
            #expect(attempts.count == 1 && attempts.first?["outcome"] as? String == "completed", "\(run)")
            agentsUsed.insert(try #require(run["agent"] as? String))
            // Recorded on the agent's machine, from the code it reproduced there.
            #expect((run["cwd"] as? String)?.hasPrefix(r.q.box.root + "/cache-") == true, "\(run)")
            #expect((run["params"] as? [String: Any])?["lr"] as? Double == Double(lr))
            let log = try r.cmlRun(["log", id])
            #expect(log.status == 0 && log.out == "training with lr=\(lr)\nloss: \(String(format: "%.4f", Double(lr)! * 10))\n", "\(log.out) \(log.stderr)")
            let points = try r.cmlRun(["metrics", id, "--key", "loss"]).jsonLines
            #expect(points.count == 1 && abs((points.first?["value"] as? Double ?? 0) - Double(lr)! * 10) < 1e-9, "\(points)")
        }
        #expect(agentsUsed == ["a", "b"])
        // Everything went up: nothing waits in the spools, and the server's store is the only one written.
        #expect(r.spooled("a").isEmpty && r.spooled("b").isEmpty)
        #expect(!FileManager.default.fileExists(atPath: r.q.box.root + "/no-store-a") && !FileManager.default.fileExists(atPath: r.q.box.root + "/no-store-b"))
        for agent in [a, b] {
            kill(agent.pid, SIGTERM)
            let stopped = try agent.wait()
            #expect(stopped.status == 0 && !stopped.stderr.contains("warning"), "\(stopped.stderr)")
        }
    }

    @Test func anAbortThroughTheServerStopsARemoteAgentsRun() throws {
        let r = try Remote()
        let a = try r.agent("a")
        let id = try r.add(["sh", "-c", "echo started; sleep 60; echo never"])
        #expect(try waitUntil(timeout: 30) { try r.cmlRun(["log", id]).out.contains("started\n") }, "\(a.stderrSoFar)")
        let abort = try r.cmlRun(["abort", id])
        #expect(abort.status == 0, "\(abort.stderr)")
        #expect(try waitUntil(timeout: 30) { try r.status(id) == "aborted" }, "\(r.describe(id)) \(a.stderrSoFar)")
        #expect(try r.cmlRun(["log", id]).out == "started\n")
        let attempts = try r.show(id)["attempts"] as? [[String: Any]] ?? []
        #expect(attempts.map { $0["outcome"] as? String } == ["aborted"], "\(attempts)")
        #expect(r.spooled("a").isEmpty)
        kill(a.pid, SIGTERM)
        #expect(try a.wait().status == 0)
    }

    /// The second attempt's output and points go after the first's on the server, though the second
    /// agent's spool holds only its own.
    @Test func aRunLostWithItsRemoteAgentIsCompletedByAnotherAfterWhatTheFirstUploaded() throws {
        let r = try Remote()
        let script = """
            echo "start $CML_RUN_ATTEMPT"; echo "step=$CML_RUN_ATTEMPT loss=0.$CML_RUN_ATTEMPT"
            if [ "$CML_RUN_ATTEMPT" = 1 ]; then sleep 60; fi
            echo "end $CML_RUN_ATTEMPT"
            """
        let a = try r.agent("a")
        let id = try r.add(["sh", "-c", script])
        #expect(try waitUntil(timeout: 30) { try r.cmlRun(["metrics", id, "--key", "loss"]).jsonLines.count == 1 }, "\(a.stderrSoFar)")
        let b = try r.agent("b")
        #expect(try r.waitIdle(["b"]))
        kill(a.pid, SIGKILL)
        _ = try a.wait()
        #expect(try waitUntil(timeout: 60) { try r.status(id) == "completed" }, "\(r.describe(id)) \(b.stderrSoFar)")
        let log = try r.cmlRun(["log", id]).out
        #expect(log == "start 1\nstep=1 loss=0.1\ncml-agent: attempt 2 on agent b\nstart 2\nstep=2 loss=0.2\nend 2\n", "\(log)")
        let steps = try r.cmlRun(["metrics", id, "--key", "loss"]).jsonLines.compactMap { RemoteStoreTests.int($0["step"]) }
        // The series start again with each attempt, as on an agent of the store's own machine.
        #expect(steps == [2])
        #expect(r.spooled("b").isEmpty)
        kill(b.pid, SIGTERM)
        #expect(try b.wait().status == 0)
    }

    /// A dataset version on the server is checked out on the agent's machine, from blobs it fetched.
    @Test func aRemoteAgentsRunReadsTheServersDatasetVersion() throws {
        let r = try Remote()
        try r.q.box.write("data/labels.csv", "1,2\n")
        // Snapshotted into the served store (the server's machine); the agent sees it only through the URL.
        let snapshot = try r.q.box.run("cml-data", ["snapshot", r.q.box.work + "/data", "--name", "labels"])
        #expect(snapshot.status == 0, "\(snapshot.stderr)")
        let spec = #"{"command": ["sh", "-c", "cat \"$CML_DATA_LABELS/labels.csv\""], "data": ["labels@1"]}"# + "\n"
        let added = try r.q.box.run("cml-queue", ["add", "q", "--store", r.url], env: ["CML_TOKEN": ""], stdin: Data(spec.utf8))
        #expect(added.status == 0, "\(added.stderr)")
        let id = try #require(added.jsonLines.first?["id"] as? String)
        let a = try r.agent("a")
        #expect(try waitUntil(timeout: 30) { try r.status(id) == "completed" }, "\(r.describe(id)) \(a.stderrSoFar)")
        #expect(try r.cmlRun(["log", id]).out == "1,2\n")
        #expect((try r.show(id)["datasets"] as? [Any])?.count == 1)
        kill(a.pid, SIGTERM)
        #expect(try a.wait().status == 0)
    }

    /// The server is killed while the run goes and the command ends before it is back: the run waits in
    /// the agent's spool, and once the server answers again all of it goes up and it ends there, once.
    @Test func aRunThatEndsWhileTheServerIsDownGoesUpWhenItIsBack() throws {
        let port = try RemoteStoreTests.freePort()
        let r = try Remote(port: port)
        let a = try r.agent("a")
        let stop = r.q.box.root + "/stop"
        let id = try r.add(["sh", "-c", "echo started; while [ ! -e \(stop) ]; do sleep 0.05; done; echo 'loss: 0.25'; echo ended"])
        #expect(try waitUntil(timeout: 30) { try r.cmlRun(["log", id]).out == "started\n" }, "\(a.stderrSoFar)")
        kill(r.server.process.pid, SIGKILL)
        _ = try r.server.process.wait()
        try r.q.box.write(stop, "")
        #expect(waitUntil(timeout: 30) { r.spooled("a").first?.status == .completed }, "\(a.stderrSoFar)")
        #expect(waitUntil(timeout: 30) { a.stderrSoFar.contains("run \(RunID.short(id)): the server has not all of it yet") }, "\(a.stderrSoFar)")

        r.server = try ServerUnderTest(r.q.box, ["--listen", "127.0.0.1:\(port)"])
        #expect(try waitUntil(timeout: 90) { try r.status(id) == "completed" }, "\(r.describe(id)) \(a.stderrSoFar)")
        #expect(try r.cmlRun(["log", id]).out == "started\nloss: 0.25\nended\n")
        #expect(try r.cmlRun(["metrics", id, "--key", "loss"]).jsonLines.count == 1)
        let attempts = try r.show(id)["attempts"] as? [[String: Any]] ?? []
        #expect(attempts.map { $0["outcome"] as? String } == ["completed"], "\(attempts)")
        #expect(waitUntil(timeout: 10) { r.spooled("a").isEmpty })
        kill(a.pid, SIGTERM)
        #expect(try a.wait().status == 0)
    }
}

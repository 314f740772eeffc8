import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Glibc
import Testing
import CMLKit

/// Every command against `--store http://…` through the built executables and a real `cml-serve`: runs
/// recorded through the spool while the server is there, absent, or killed; push and pull between two
/// servers; the token scopes; and requests no client of ours would send.
struct RemoteStoreTests {
    /// The environment of a command against a server: its spool inside the sandbox, and no token
    /// unless the test gives one.
    static func remote(_ box: Sandbox, _ extra: [String: String] = [:]) -> [String: String] {
        ["XDG_CACHE_HOME": box.root + "/cache", "CML_UPLOAD_WAIT": "60", "CML_TOKEN": ""].merging(extra) { $1 }
    }

    /// A loopback port nothing listens on just now.
    static func freePort() throws -> UInt16 {
        let (fd, port) = try LoopbackSocket.bound()
        close(fd)
        return port
    }

    /// A script that prints `step=I loss=…` and some stderr every `interval` seconds until the file `stop`
    /// appears in its directory (and at least `minimum` steps went by), then exits `status`.
    static func writeTrainer(_ box: Sandbox, interval: Double, minimum: Int = 5, status: Int = 0) throws {
        try box.write("train.py", """
            import os, sys, time
            i = 0
            while i < \(minimum) or not os.path.exists("stop"):
                print(f"step={i} loss={1 / (i + 1):.6f}", flush=True)
                if i % 7 == 0:
                    print(f"checkpoint {i} written", file=sys.stderr, flush=True)
                i += 1
                time.sleep(\(interval))
                if i > 100000:
                    sys.exit(9)
            sys.exit(\(status))
            """)
    }

    /// The `loss` steps of a run as `cml-run metrics` prints them through `store`.
    static func lossSteps(_ box: Sandbox, _ id: String, store: String, env: [String: String] = [:], polling: Bool = false) throws -> [Int] {
        let metrics = try box.run("cml-run", ["metrics", id, "--key", "loss", "--store", store], env: env)
        #expect(metrics.status == 0 || polling, "\(metrics.stderr)")
        return metrics.jsonLines.compactMap { int($0["step"]) }
    }

    static func int(_ value: Any?) -> Int? { (value as? NSNumber)?.intValue }

    /// A Python proxy on loopback: listens on argv[1], and serves each connection with `serve(client)`
    /// (given), which may call `read_message(f, has_body)` to read one HTTP message by Content-Length.
    static func proxy(_ serve: String) -> String {
        """
            import socket, sys, threading
            def read_message(f, has_body=True):
                head = b""
                while not head.endswith(b"\\r\\n\\r\\n"):
                    c = f.read(1)
                    if not c:
                        return None
                    head += c
                length = 0
                for line in head.split(b"\\r\\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                return head + (f.read(length) if has_body else b"")
            """ + "\n" + serve + "\n" + """
            listener = socket.socket()
            listener.bind(("127.0.0.1", int(sys.argv[1])))
            listener.listen(16)
            print("listening", flush=True)
            while True:
                threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()
            """
    }

    /// The runs of the store directory `store`, read in this process.
    static func runsIn(_ store: String) -> [Run] {
        guard let opened = try? SQLiteStore(directory: store, access: .reading) else { return [] }
        return (try? opened.runs(RunQuery())) ?? []
    }

    /// Bytes of the store's files besides its database: blobs and console logs.
    static func fileBytes(_ store: String) -> Int {
        var total = 0
        let enumerator = FileManager.default.enumerator(atPath: store)
        while let path = enumerator?.nextObject() as? String {
            if path.hasPrefix("cml.db") { continue }
            let attributes = try? FileManager.default.attributesOfItem(atPath: store + "/" + path)
            if attributes?[.type] as? FileAttributeType == .typeRegular { total += (attributes?[.size] as? Int) ?? 0 }
        }
        return total
    }

    /// A point and a line of output every 0.2 s: another process sees both through the server while
    /// the run goes on; afterwards every reading command answers through the URL exactly what it
    /// answers on the server's store directory.
    @Test func aRunIsSeenLiveAndReadsTheSameThroughTheURL() throws {
        let box = try Sandbox()
        let server = try ServerUnderTest(box)
        let env = Self.remote(box)
        try Self.writeTrainer(box, interval: 0.2)
        let running = try box.start("cml-run", ["--store", server.url, "--name", "live", "--", "python3", "train.py", "--lr", "0.1"], env: env)

        var id = ""
        #expect(waitUntil(timeout: 60) {
            guard let line = try? box.run("cml-run", ["ls", "--store", server.url], env: env).jsonLines.first else { return false }
            id = line["id"] as? String ?? ""
            return !id.isEmpty
        }, "\(running.stderrSoFar)")
        // While it runs, what the server has is not all of it: listed as still waiting to upload.
        let listed = try box.run("cml-run", ["ls", "--store", server.url], env: env)
        #expect(listed.status == 0 && listed.jsonLines.count == 1, "\(listed.stderr)")
        #expect(listed.jsonLines.first?["upload"] as? String == "pending" && listed.jsonLines.first?["status"] as? String == "running",
                "\(listed.out)")
        let table = try box.run("cml-run", ["ls", "--store", server.url, "--format", "table"], env: env)
        #expect(table.out.contains("running*"), "\(table.out)")
        #expect(table.stderr.contains("* still waiting in \(box.root)/cache/cml/spool/"), "\(table.stderr)")

        // Points and output reach another process before the run ends.
        #expect(waitUntil(timeout: 60) { ((try? Self.lossSteps(box, id, store: server.url, env: env, polling: true)) ?? []).count >= 3 })
        #expect(waitUntil(timeout: 60) {
            (try? box.run("cml-run", ["log", id, "--store", server.url], env: env).out.contains("step=2 loss=0.333333\n")) == true
        })
        #expect(!running.hasExited, "the run must still be going: \(running.stderrSoFar)")

        try box.write("stop", "")
        let finished = try running.wait()
        #expect(finished.status == 0, "\(finished.stderr)")
        #expect(!finished.stderr.contains("cml-run: warning"), "\(finished.stderr)")

        // Everything arrived once: the points and the output the command printed.
        let printed = finished.out.split(separator: "\n")
        #expect(printed.count >= 5)
        #expect(try Self.lossSteps(box, id, store: server.url, env: env) == Array(0..<printed.count))
        let stdout = try box.run("cml-run", ["log", id, "--stream", "stdout", "--store", server.url], env: env)
        #expect(stdout.stdout == finished.stdout)
        let stderr = try box.run("cml-run", ["log", id, "--stream", "stderr", "--store", server.url], env: env)
        #expect(stderr.out == finished.stderr && !stderr.out.isEmpty)

        for command in [["ls", "--format", "jsonl"], ["show", id], ["show", "live"], ["metrics", id], ["metrics", id, "--key", "loss"],
                        ["log", id], ["log", "--raw", id], ["artifacts", id, "--format", "jsonl"], ["projects", "--format", "jsonl"]] {
            let remote = try box.run("cml-run", command + ["--store", server.url], env: env)
            let local = try box.run("cml-run", command + ["--store", box.store], env: env)
            #expect(remote.status == 0 && local.status == 0, "\(command): \(remote.stderr) \(local.stderr)")
            #expect(remote.stdout == local.stdout, "\(command)")
            #expect(remote.stderr.isEmpty, "\(command): \(remote.stderr)")
        }
        #expect(try box.run("cml-run", ["ls", "--store", server.url], env: env).jsonLines.first?["upload"] == nil)
    }

    /// Ctrl-C in a terminal signals cml-run's whole process group: the run still ends `aborted` on the
    /// server, with every point and line it printed.
    @Test func anInterruptedRunStillGoesUp() throws {
        let box = try Sandbox()
        let server = try ServerUnderTest(box)
        let env = Self.remote(box)
        try Self.writeTrainer(box, interval: 0.1, minimum: 1_000_000)
        // cml-run leads its own process group, as a terminal's foreground job does.
        let running = try box.start("/usr/bin/env", ["python3", "-c", "import os, sys; os.setpgrp(); os.execv(sys.argv[1], sys.argv[1:])",
                                                     binDirectory + "/cml-run", "--store", server.url, "--", "python3", "train.py"], env: env)
        var id = ""
        #expect(waitUntil(timeout: 60) {
            guard let line = try? box.run("cml-run", ["ls", "--store", server.url], env: env).jsonLines.first else { return false }
            id = line["id"] as? String ?? ""
            return !id.isEmpty && ((try? Self.lossSteps(box, id, store: server.url, env: env, polling: true)) ?? []).count >= 3
        }, "\(running.stderrSoFar)")
        kill(-running.pid, SIGINT)
        let finished = try running.wait()
        #expect(finished.status == 130, "\(finished.stderr)")
        #expect(!finished.stderr.contains("cml-run: warning"), "\(finished.stderr)")
        let run = try #require(try box.run("cml-run", ["ls", "--store", server.url], env: env).jsonLines.first)
        #expect(run["status"] as? String == "aborted" && run["upload"] == nil, "\(run)")
        let printed = finished.out.split(separator: "\n").filter { $0.hasPrefix("step=") }
        #expect(try Self.lossSteps(box, id, store: server.url, env: env) == Array(0..<printed.count))
        let stdout = try box.run("cml-run", ["log", id, "--stream", "stdout", "--store", server.url], env: env)
        #expect(stdout.stdout == finished.stdout)
    }

    /// No server at the start: the command runs and ends as it would, the run waits in the spool, and
    /// the next command that reaches the server uploads all of it, once.
    @Test func aRunWithoutItsServerWaitsAndGoesUpWithTheNextCommand() throws {
        let box = try Sandbox()
        let port = try Self.freePort()
        let url = "http://127.0.0.1:\(port)"
        let env = Self.remote(box, ["CML_UPLOAD_WAIT": "1"])
        try Self.writeTrainer(box, interval: 0, minimum: 40, status: 3)
        try box.write("stop", "")
        // Named with a trailing slash here and without one below: the same server, the same spool.
        let ran = try box.run("cml-run", ["--store", url + "/", "--", "python3", "train.py"], env: env)
        #expect(ran.status == 3, "\(ran.stderr)")
        let warnings = ran.stderr.split(separator: "\n").filter { $0.hasPrefix("cml-run: warning:") }
        #expect(warnings.count == 1, "\(ran.stderr)")
        #expect(warnings.first?.contains("waits in \(box.root)/cache/cml/spool/127.0.0.1_\(port)-") == true, "\(ran.stderr)")
        #expect(warnings.first?.contains("cml-serve push \(url)") == true, "\(ran.stderr)")
        let printed = ran.out.split(separator: "\n")
        #expect(printed.count == 40)

        // Still no server: a clear error, and the run stays where it is.
        let unreachable = try box.run("cml-run", ["ls", "--store", url], env: env)
        #expect(unreachable.status == 1 && unreachable.stderr.hasPrefix("cml-run: error: cannot reach \(url)"), "\(unreachable.stderr)")
        #expect(unreachable.stderr.split(separator: "\n").count == 1, "\(unreachable.stderr)")

        let server = try ServerUnderTest(box, ["--listen", "127.0.0.1:\(port)"])
        let listed = try box.run("cml-run", ["ls", "--store", url], env: env)
        #expect(listed.status == 0, "\(listed.stderr)")
        #expect(listed.stderr.hasPrefix("cml-run: uploaded 1 run that waited in \(box.root)/cache/cml/spool/"), "\(listed.stderr)")
        let run = try #require(listed.jsonLines.first)
        #expect(listed.jsonLines.count == 1 && run["upload"] == nil, "\(listed.out)")
        #expect(run["status"] as? String == "failed" && Self.int(run["exit_code"]) == 3, "\(run)")
        let id = try #require(run["id"] as? String)

        #expect(try Self.lossSteps(box, id, store: url, env: env) == Array(0..<40))
        let stdout = try box.run("cml-run", ["log", id, "--stream", "stdout", "--store", url], env: env)
        #expect(stdout.stdout == ran.stdout)
        let scriptErrors = ran.stderr.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("cml-run: ") }
        let stderr = try box.run("cml-run", ["log", id, "--stream", "stderr", "--store", url], env: env)
        #expect(stderr.out == scriptErrors.joined(separator: "\n"), "\(stderr.out)")
        #expect(stderr.out.split(separator: "\n").count == 6)

        // Nothing left to send: the next command says nothing, and the server has the run once.
        let again = try box.run("cml-run", ["ls", "--store", url], env: env)
        #expect(again.stderr.isEmpty && again.jsonLines.count == 1, "\(again.stderr)")
        #expect(Self.runsIn(box.store).count == 1)
        _ = try server.stop()
    }

    /// The server is killed (SIGKILL) and started again on its port while a run logs a point and a line
    /// every 50 ms: the run goes on undisturbed, and the server ends up with every point and every byte
    /// of output exactly once.
    @Test func aServerKilledMidRunLosesAndRepeatsNothing() throws {
        let box = try Sandbox()
        let port = try Self.freePort()
        var server = try ServerUnderTest(box, ["--listen", "127.0.0.1:\(port)"])
        let env = Self.remote(box)
        try Self.writeTrainer(box, interval: 0.05, minimum: 20)
        let running = try box.start("cml-run", ["--store", server.url, "--", "python3", "train.py"], env: env)

        func pointsOnServer() -> Int64 {
            Self.runsIn(box.store).first?.metrics.first { $0.key == "loss" }?.count ?? 0
        }
        #expect(waitUntil(timeout: 60) { pointsOnServer() >= 10 }, "\(running.stderrSoFar)")
        kill(server.process.pid, SIGKILL)
        _ = try server.process.wait()
        let atKill = pointsOnServer()
        let printedAtKill = running.stdoutSoFar.split(separator: "\n").count
        // It goes on printing while nothing answers.
        #expect(waitUntil(timeout: 60) { running.stdoutSoFar.split(separator: "\n").count >= printedAtKill + 40 })
        #expect(!running.hasExited)

        server = try ServerUnderTest(box, ["--listen", "127.0.0.1:\(port)"])
        #expect(waitUntil(timeout: 90) { pointsOnServer() >= atKill + 40 }, "uploads resume while the run goes on")
        try box.write("stop", "")
        let finished = try running.wait()
        #expect(finished.status == 0, "\(finished.stderr)")
        #expect(!finished.stderr.contains("cml-run: warning"), "\(finished.stderr)")

        let run = try #require(Self.runsIn(box.store).first)
        let printed = finished.out.split(separator: "\n").count
        #expect(try Self.lossSteps(box, run.id, store: server.url, env: env) == Array(0..<printed))
        let stdout = try box.run("cml-run", ["log", run.id, "--stream", "stdout", "--store", server.url], env: env)
        #expect(stdout.stdout == finished.stdout)
        let stderr = try box.run("cml-run", ["log", run.id, "--stream", "stderr", "--store", server.url], env: env)
        #expect(stderr.out == finished.stderr)
        #expect(run.status == .completed && run.end != nil)
        _ = try server.stop()
    }

    /// A store with a run of `project` that has metrics, output, a parameter, a tag and an artifact.
    static func record(_ box: Sandbox, name: String, project: String = "default") throws -> String {
        try box.write("train.py", """
            import sys
            for epoch in range(50):
                print(f"epoch={epoch} loss={1 / (epoch + 1):.5f} acc={epoch / 50:.3f}")
            print("done", file=sys.stderr)
            open("model.bin", "wb").write(bytes(range(256)) * 4000 + b"\(name)")
            """)
        let ran = try box.run("cml-run", ["--name", name, "--project", project, "--tag", "base", "--", "sh", "-c",
                                          "python3 train.py --lr 0.01 && \(binDirectory)/cml-log artifact model.bin"])
        #expect(ran.status == 0, "\(ran.stderr)")
        return try #require(box.runs().first { $0["name"] as? String == name }?["id"] as? String)
    }

    /// The JSON lines of a push or pull, by run id.
    static func copies(_ result: CommandResult) -> [String: [String: Any]] {
        Dictionary(result.jsonLines.map { ($0["id"] as? String ?? "", $0) }) { a, _ in a }
    }

    static func sentNothing(_ line: [String: Any]?) -> Bool {
        guard let line else { return false }
        return ["params", "tags", "points", "log_bytes", "artifacts", "blobs", "blob_bytes"].allSatisfy { int(line[$0]) == 0 }
            && line["created"] as? Bool == false && line["finished"] as? Bool == false && line["complete"] as? Bool == true
    }

    /// What the reading commands print of run `id` in the store directory `store`.
    static func readings(_ box: Sandbox, _ id: String, store: String) throws -> [Data] {
        try [["show", id], ["metrics", id], ["log", "--raw", id], ["artifacts", id, "--format", "jsonl"]].map { command in
            let result = try box.run("cml-run", command + ["--store", store])
            #expect(result.status == 0, "\(command): \(result.stderr)")
            return result.stdout
        }
    }

    /// Two servers, each with runs of its own: push and pull both ways, twice; the second time sends
    /// nothing (neither the JSON nor the other store's files say otherwise), and both end up with the
    /// same runs, read the same. A run whose id the other side holds as another run is refused, naming
    /// both, and neither side changes.
    /// A directory recorded with `cml-log artifact` against a server goes up whole (files, modes, a link),
    /// and `cml-run get` on another machine (another spool) writes it back the same; what the server
    /// already holds is not sent again.
    @Test func directoryArtifactsGoUpAndComeBackThroughTheServer() throws {
        let box = try Sandbox()
        let server = try ServerUnderTest(box)
        let env = Self.remote(box)
        #expect(try box.run("cml-run", ["--store", server.url, "--name", "trained", "--", "true"], env: env).status == 0)
        try box.write("model/config.json", "{\"layers\": 3}\n")
        try box.write("model/run.sh", "#!/bin/sh\n")
        chmod(box.work + "/model/run.sh", 0o755)
        var weights = [UInt8](repeating: 0, count: 2 << 20)
        for i in weights.indices { weights[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 13) }
        try FileManager.default.createDirectory(atPath: box.work + "/model/sub", withIntermediateDirectories: true)
        try Data(weights).write(to: URL(fileURLWithPath: box.work + "/model/sub/weights.bin"))
        symlink("config.json", box.work + "/model/latest")

        let stored = try box.run("cml-log", ["artifact", "model", "--run", "trained", "--store", server.url], env: env)
        #expect(stored.status == 0, "\(stored.stderr)")
        let serverBytes = Self.fileBytes(box.store)
        #expect(serverBytes >= weights.count)

        let elsewhere = Self.remote(box, ["XDG_CACHE_HOME": box.root + "/other-cache"])
        let fetched = try box.run("cml-run", ["get", "trained", "model", box.root + "/restored", "--store", server.url], env: elsewhere)
        #expect(fetched.status == 0, "\(fetched.stderr)")
        #expect(fetched.out == box.root + "/restored\n")
        try ArtifactTests.expectRestoredModel(box, at: box.root + "/restored")

        // The same directory again is a second version of the artifact, and stores nothing new on the server.
        #expect(try box.run("cml-log", ["artifact", "model", "--run", "trained", "--store", server.url], env: env).status == 0)
        #expect(Self.fileBytes(box.store) == serverBytes)
        let listed = try box.run("cml-run", ["artifacts", "trained", "--store", server.url], env: env)
        #expect(listed.jsonLines.count == 2 && listed.jsonLines.allSatisfy { $0["type"] as? String == "directory" }, "\(listed.out)")
    }

    @Test func pushAndPullBetweenTwoServersBothWaysSendNothingTwice() throws {
        let boxA = try Sandbox(), boxB = try Sandbox()
        let a1 = try Self.record(boxA, name: "a1")
        let b1 = try Self.record(boxB, name: "b1", project: "nlp")
        var serverA = try ServerUnderTest(boxA)
        var serverB = try ServerUnderTest(boxB)
        let envA = Self.remote(boxA), envB = Self.remote(boxB)

        let first = try boxA.run("cml-serve", ["push", serverB.url, "--all", "--store", boxA.store], env: envA)
        #expect(first.status == 0, "\(first.stderr)")
        let sent = try #require(Self.copies(first)[a1])
        #expect(sent["created"] as? Bool == true && sent["complete"] as? Bool == true && sent["finished"] as? Bool == true, "\(first.out)")
        let pointsOfA1 = Self.runsIn(boxA.store).first { $0.id == a1 }?.metrics.reduce(0) { $0 + $1.count }
        #expect(pointsOfA1 ?? 0 >= 100 && Self.int(sent["points"]) == pointsOfA1.map(Int.init), "\(first.out)")
        #expect(Self.int(sent["log_bytes"]) == Self.fileBytes(boxA.store + "/logs") && Self.int(sent["log_bytes"]) ?? 0 > 0, "\(first.out)")
        #expect(Self.int(sent["blobs"]) == 1 && Self.int(sent["blob_bytes"]) == 1_024_002, "\(first.out)")
        let bytesOnB = Self.fileBytes(boxB.store)
        let second = try boxA.run("cml-serve", ["push", serverB.url, "--all", "--store", boxA.store], env: envA)
        #expect(second.status == 0 && Self.sentNothing(Self.copies(second)[a1]), "\(second.out) \(second.stderr)")
        #expect(Self.fileBytes(boxB.store) == bytesOnB)

        // The other way: B's own run goes to A, A's comes back as it is.
        for _ in 0..<2 {
            let pushed = try boxB.run("cml-serve", ["push", serverA.url, "--all", "--store", boxB.store], env: envB)
            #expect(pushed.status == 0 && pushed.jsonLines.count == 2, "\(pushed.stderr)")
            #expect(Self.sentNothing(Self.copies(pushed)[a1]), "\(pushed.out)")
        }
        // New runs on each side, pulled across, twice each.
        let a2 = try Self.record(boxA, name: "a2")
        let b2 = try Self.record(boxB, name: "b2")
        for round in 0..<2 {
            let intoA = try boxA.run("cml-serve", ["pull", serverB.url, "--all", "--store", boxA.store], env: envA)
            let intoB = try boxB.run("cml-serve", ["pull", serverA.url, "--where", "name ~ 'a*'", "--store", boxB.store], env: envB)
            #expect(intoA.status == 0 && intoB.status == 0, "\(intoA.stderr) \(intoB.stderr)")
            #expect(intoA.jsonLines.count == 3 + round && intoB.jsonLines.count == 2, "\(intoA.out) \(intoB.out) \(intoA.stderr)")
            let pulledB2 = Self.copies(intoA)[b2], pulledA2 = Self.copies(intoB)[a2]
            #expect((pulledB2?["created"] as? Bool) == (round == 0) && (pulledA2?["created"] as? Bool) == (round == 0))
            if round == 1 {
                #expect(Self.copies(intoA).values.allSatisfy { Self.sentNothing($0) }, "\(intoA.out)")
                #expect(Self.copies(intoB).values.allSatisfy { Self.sentNothing($0) }, "\(intoB.out)")
            }
        }
        for id in [a1, a2, b1, b2] {
            #expect(try Self.readings(boxA, id, store: boxA.store) == Self.readings(boxB, id, store: boxB.store), "run \(id)")
        }

        // B's a1 becomes another run (as if another machine had made one with its id).
        #expect(try boxA.run("cml-run", ["tag", a1, "+late", "--store", boxA.store]).status == 0)
        _ = try serverB.stop()
        let changed = try shell("sqlite3 \(boxB.store)/cml.db \"UPDATE runs SET command = '[\\\"python3\\\",\\\"other.py\\\"]' WHERE id = '\(a1)'\"",
                                cwd: boxB.work)
        #expect(changed.status == 0, "\(changed.stderr)")
        serverB = try ServerUnderTest(boxB)
        let beforeB = try Self.readings(boxB, a1, store: boxB.store), beforeA = try Self.readings(boxA, a1, store: boxA.store)
        let refused = try boxA.run("cml-serve", ["push", serverB.url, a1, "--store", boxA.store], env: envA)
        #expect(refused.status == 1, "\(refused.stderr)")
        #expect(refused.stderr.contains("cml-serve: error: run \(a1) is another run in \(serverB.url): here (\(boxA.store)) sh -c 'python3 train.py --lr 0.01 && "),
                "\(refused.stderr)")
        #expect(refused.stderr.contains("there python3 other.py on "), "\(refused.stderr)")
        #expect(refused.out.isEmpty)
        #expect(try Self.readings(boxB, a1, store: boxB.store) == beforeB)
        let refusedPull = try boxA.run("cml-serve", ["pull", serverB.url, a1, "--store", boxA.store], env: envA)
        #expect(refusedPull.status == 1 && refusedPull.stderr.contains("there sh -c 'python3 train.py"), "\(refusedPull.stderr)")
        #expect(try Self.readings(boxA, a1, store: boxA.store) == beforeA)
        // The other runs still go.
        let others = try boxA.run("cml-serve", ["push", serverB.url, a2, "--store", boxA.store], env: envA)
        #expect(others.status == 0 && Self.sentNothing(Self.copies(others)[a2]), "\(others.stderr)")
        _ = try serverA.stop()
        serverA = try ServerUnderTest(boxA)
        _ = try serverA.stop()
        _ = try serverB.stop()
    }

    /// A push of a run of 300,000 points and megabytes of output, its server killed (SIGKILL) as soon as
    /// the run appears there: pushed again, the rest goes, and the server has all of it exactly once.
    @Test func anInterruptedPushResumesAndSendsEachPointOnce() throws {
        let boxA = try Sandbox(), boxB = try Sandbox()
        try boxA.write("big.py", """
            import sys
            out = sys.stdout
            for step in range(300000):
                out.write(f"step={step} loss={1 / (step + 1):.9f}\\n")
            """)
        let big = try boxA.run("cml-run", ["--monitor-interval", "0", "--", "python3", "big.py"])
        #expect(big.status == 0, "\(big.stderr)")
        let id = try #require(Self.runsIn(boxA.store).first?.id)
        #expect(Self.runsIn(boxA.store).first?.metrics.first { $0.key == "loss" }?.count == 300_000)
        let port = try Self.freePort()
        var serverB = try ServerUnderTest(boxB, ["--listen", "127.0.0.1:\(port)"])
        let env = Self.remote(boxA)

        let push = try boxA.start("cml-serve", ["push", serverB.url, id, "--store", boxA.store], env: env)
        #expect(waitUntil(timeout: 60) { !Self.runsIn(boxB.store).isEmpty || push.hasExited })
        kill(serverB.process.pid, SIGKILL)
        _ = try serverB.process.wait()
        let cut = try push.wait()
        #expect(cut.status == 1 && cut.stderr.contains("\(serverB.url)"), "the push was to be cut short: \(cut.out) \(cut.stderr)")
        let pointsInA = Self.runsIn(boxA.store).first?.metrics.reduce(0) { $0 + $1.count } ?? 0
        let pointsAtKill = Self.runsIn(boxB.store).first?.metrics.reduce(0) { $0 + $1.count } ?? 0
        #expect(pointsAtKill < pointsInA)

        serverB = try ServerUnderTest(boxB, ["--listen", "127.0.0.1:\(port)"])
        let resumed = try boxA.run("cml-serve", ["push", serverB.url, id, "--store", boxA.store], env: env)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let line = try #require(Self.copies(resumed)[id])
        #expect(Self.int(line["points"]) == Int(pointsInA - pointsAtKill) && line["complete"] as? Bool == true, "\(resumed.out)")
        #expect(Self.runsIn(boxB.store).first?.metrics.first { $0.key == "loss" }?.count == 300_000)
        #expect(try Self.readings(boxA, id, store: boxA.store) == Self.readings(boxB, id, store: boxB.store))
        let again = try boxA.run("cml-serve", ["push", serverB.url, id, "--store", boxA.store], env: env)
        #expect(again.status == 0 && Self.sentNothing(Self.copies(again)[id]), "\(again.out)")
        _ = try serverB.stop()
    }

    /// A batch of points whose answer is lost after the server stored it (a proxy drops the answer and
    /// closes the kept connection) is sent again by libcurl on a fresh connection; since the batch says
    /// where it starts in its series, the server skips what it holds, and has every point once.
    @Test func aBatchWhoseAnswerIsLostIsNotCountedTwice() throws {
        let boxA = try Sandbox(), boxB = try Sandbox()
        let ran = try boxA.run("cml-run", ["--monitor-interval", "0", "--", "python3", "-c", "for i in range(30): print(f'step={i} loss={i / 7:.4f}')"])
        #expect(ran.status == 0, "\(ran.stderr)")
        let id = try #require(Self.runsIn(boxA.store).first?.id)
        let server = try ServerUnderTest(boxB)
        let upstream = try #require(server.url.split(separator: ":").last.map(String.init))
        try boxA.write("proxy.py", Self.proxy("""
            dropped = []
            def serve(client):
                f = client.makefile("rb")
                served = 0
                while True:
                    request = read_message(f)
                    if request is None:
                        break
                    up = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
                    # Asked uncompressed: this proxy reads answers by Content-Length, not chunked.
                    up.sendall(b"\\r\\n".join(l for l in request.split(b"\\r\\n") if not l.lower().startswith(b"accept-encoding:")))
                    answer = read_message(up.makefile("rb"), not request.startswith(b"HEAD"))
                    up.close()
                    # The first batch of points sent on a kept connection: stored, but its answer never comes.
                    if served > 0 and request.startswith(b"POST") and b"/metrics" in request.split(b"\\r\\n")[0] and not dropped:
                        dropped.append(1)
                        print("dropped", flush=True)
                        break
                    client.sendall(answer)
                    served += 1
                client.close()
            """))
        let port = try Self.freePort()
        let proxy = try boxA.start("/usr/bin/env", ["python3", "proxy.py", String(port), upstream])
        defer { kill(proxy.pid, SIGKILL) }
        #expect(waitUntil(timeout: 20) { proxy.stdoutSoFar.contains("listening") })
        let env = Self.remote(boxA)
        let cut = try boxA.run("cml-serve", ["push", "http://127.0.0.1:\(port)", id, "--store", boxA.store], env: env)
        #expect(proxy.stdoutSoFar.contains("dropped"))
        // The batch went again on a fresh connection, saying where it starts: the server skipped it.
        #expect(cut.status == 0, "\(cut.out) \(cut.stderr)")
        #expect(Self.runsIn(boxB.store).first?.metrics.first { $0.key == "loss" }?.count == 30)
        let again = try boxA.run("cml-serve", ["push", "http://127.0.0.1:\(port)", id, "--store", boxA.store], env: env)
        #expect(again.status == 0 && Self.int(Self.copies(again)[id]?["points"]) == 0, "\(again.out) \(again.stderr)")
        #expect(Self.runsIn(boxB.store).first?.metrics.first { $0.key == "loss" }?.count == 30)
        #expect(try Self.readings(boxA, id, store: boxA.store) == Self.readings(boxB, id, store: boxB.store))
        _ = try server.stop()
    }

    /// A run that ends before its first upload goes up in one request once its command exits (the batch
    /// route), with its output, points and end, and leaves the spool empty. A server from before that
    /// route (here a proxy that answers it 404) gets the same run step by step.
    @Test func aShortRunGoesUpInOneRequest() throws {
        let box = try Sandbox()
        let server = try ServerUnderTest(box)
        let upstream = try #require(server.url.split(separator: ":").last.map(String.init))
        // Passes every request on, printing its request line; with `old`, answers the batch route 404.
        try box.write("proxy.py", Self.proxy("""
            def serve(client):
                f = client.makefile("rb")
                while True:
                    request = read_message(f)
                    if request is None:
                        break
                    line = request.split(b"\\r\\n")[0].decode()
                    print("request", line, flush=True)
                    if sys.argv[3] == "old" and line.split()[1].endswith("/batch"):
                        body = b'{"error":"no route","kind":"not_found"}'
                        client.sendall(b"HTTP/1.1 404 Not Found\\r\\nContent-Type: application/json\\r\\nContent-Length: %d\\r\\n\\r\\n%s" % (len(body), body))
                        continue
                    up = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
                    # Asked uncompressed: this proxy reads answers by Content-Length, not chunked.
                    up.sendall(b"\\r\\n".join(l for l in request.split(b"\\r\\n") if not l.lower().startswith(b"accept-encoding:")))
                    client.sendall(read_message(up.makefile("rb"), not request.startswith(b"HEAD")))
                    up.close()
                client.close()
            """))
        let command = ["--", "python3", "-c", "print('step=1 loss=0.5'); print('step=2 loss=0.25')"]
        for mode in ["new", "old"] {
            let port = try Self.freePort()
            let proxy = try box.start("/usr/bin/env", ["python3", "proxy.py", String(port), upstream, mode])
            defer { kill(proxy.pid, SIGKILL) }
            #expect(waitUntil(timeout: 20) { proxy.stdoutSoFar.contains("listening") })
            let ran = try box.run("cml-run", ["--store", "http://127.0.0.1:\(port)"] + command, env: Self.remote(box))
            #expect(ran.status == 0, "\(ran.stderr)")
            _ = waitUntil(timeout: 5) { proxy.stdoutSoFar.contains(mode == "new" ? "/batch" : "/finish") }
            let id = try #require(Self.runsIn(box.store).first { proxy.stdoutSoFar.contains($0.id) }?.id)
            let requests = proxy.stdoutSoFar.split(separator: "\n").filter { $0.contains("/api/v1/store/runs") }
                .map { $0.split(separator: " ").dropFirst().prefix(2).joined(separator: " ") }
            let batch = "POST /api/v1/store/runs/\(id)/batch"
            if mode == "new" {
                #expect(requests == [batch])
            } else {
                #expect(requests.first == batch && requests.contains("POST /api/v1/store/runs") && requests.last == "POST /api/v1/store/runs/\(id)/finish",
                        "\(requests)")
            }
            let run = try #require(Self.runsIn(box.store).first { $0.id == id })
            #expect(run.status == .completed && run.metrics.first { $0.key == "loss" }?.count == 2 && run.logBytes > 0)
            let log = try box.run("cml-run", ["log", id, "--store", box.store])
            #expect(String(decoding: log.stdout, as: UTF8.self).contains("step=1 loss=0.5\nstep=2 loss=0.25\n"), "\(log.stderr)")
            let spools = try FileManager.default.contentsOfDirectory(atPath: box.root + "/cache/cml/spool")
            #expect(spools.allSatisfy { Self.runsIn(box.root + "/cache/cml/spool/" + $0).isEmpty }, "the spool is empty")
        }
        _ = try server.stop()
    }

    /// Tokens through the commands: a read token cannot write (403, naming its scope), a token bound to
    /// a project writes only there, and a server with tokens answers no token with a clear 401.
    @Test func tokenScopesHoldThroughTheCommands() async throws {
        let box = try Sandbox()
        let mine = try Self.record(box, name: "mine", project: "mine")
        let theirs = try Self.record(box, name: "theirs", project: "other")
        let reader = try ServeAuthTests.create(box, "reader", scope: "read")
        let writer = try ServeAuthTests.create(box, "writer", scope: "write", projects: ["mine"])
        try box.write("writer.token", writer + "\n")
        let server = try ServerUnderTest(box)
        let env = Self.remote(box)
        let shown = try Self.readings(box, mine, store: box.store) + Self.readings(box, theirs, store: box.store)

        let read = try box.run("cml-log", ["--store", server.url, "--run", mine, "param", "seed", "7"], env: env.merging(["CML_TOKEN": reader]) { $1 })
        #expect(read.status == 1, "\(read.stderr)")
        #expect(read.stderr.hasPrefix("cml-log: error: the token's scope read does not allow POST /api/v1/store/runs/\(mine)/params"), "\(read.stderr)")
        #expect(read.stderr.split(separator: "\n").count == 1, "\(read.stderr)")
        #expect(try Self.readings(box, mine, store: box.store) == Array(shown[..<4]))

        // The project-bound writer: its own project's run takes the parameter; another's is not there to it.
        let token = ["--token-file", box.work + "/writer.token"]
        let own = try box.run("cml-log", ["--store", server.url, "--run", mine, "param", "seed", "7"] + token, env: env)
        #expect(own.status == 0, "\(own.stderr)")
        #expect(try box.show(mine)["params"].map { "\($0)" }?.contains("seed") == true)
        let other = try box.run("cml-log", ["--store", server.url, "--run", theirs, "param", "seed", "7"] + token, env: env)
        #expect(other.status == 1 && other.stderr.split(separator: "\n").count == 1, "\(other.stderr)")
        #expect(try Self.readings(box, theirs, store: box.store) == Array(shown[4...]))
        // Points sent straight to the API for a run the token may not write: 403, nothing written.
        let point = Data("[{\"key\": \"loss\", \"step\": 99, \"value\": 0.5, \"time\": 1}]".utf8)
        for (run, secret) in [(theirs, writer), (mine, reader)] {
            let reply = try await Self.send(server.url + "/api/v1/store/runs/\(run)/metrics?source=log", method: "POST", body: point,
                                            headers: ServeAuthTests.bearer(secret))
            #expect(reply.status == 403 && reply.json["kind"] as? String == "refused", "\(reply.text)")
        }
        #expect(try Self.readings(box, theirs, store: box.store) == Array(shown[4...]))
        #expect(try Self.readings(box, mine, store: box.store)[1] == shown[1])

        // A run in another project: recorded here, refused there, kept in the spool and listed as waiting.
        let spooled = try box.run("cml-run", ["--project", "other", "--store", server.url] + token + [
                                              "--", "sh", "-c", "echo hello; exit 4"], env: env)
        #expect(spooled.status == 4 && spooled.out == "hello\n", "\(spooled.stderr)")
        #expect(spooled.stderr.contains("this token may not write to project other"), "\(spooled.stderr)")
        #expect(Self.runsIn(box.store).count == 2)
        let listed = try box.run("cml-run", ["ls", "--store", server.url] + token, env: env)
        #expect(listed.status == 0, "\(listed.stderr)")
        #expect(listed.stderr.contains("stays in the spool") && listed.stderr.contains("this token may not write to project other"), "\(listed.stderr)")
        let names = listed.jsonLines.map { ($0["project"] as? String ?? "", $0["upload"] as? String) }
        #expect(names.count == 2 && names[0] == ("other", "pending") && names[1] == ("mine", nil), "\(listed.out)")
        let onlyMine = try box.run("cml-run", ["ls", "--store", server.url, "--project", "mine"] + token, env: env)
        #expect(onlyMine.jsonLines.count == 1 && onlyMine.jsonLines.first?["id"] as? String == mine, "\(onlyMine.out)")

        let anonymous = try box.run("cml-run", ["ls", "--store", server.url], env: env)
        #expect(anonymous.status == 1, "\(anonymous.stderr)")
        #expect(anonymous.stderr.hasPrefix("cml-run: error: this server needs a token") && anonymous.stderr.split(separator: "\n").count == 1,
                "\(anonymous.stderr)")
        #expect(Self.runsIn(box.store).count == 2)
        _ = try server.stop()
    }

    /// Requests no cml client sends: each is refused with the status of what is wrong with it, and
    /// nothing is written.
    @Test func hostileRequestsAreRefusedAndWriteNothing() async throws {
        let box = try Sandbox()
        let id = try Self.record(box, name: "target")
        let server = try ServerUnderTest(box)
        let store = server.url + "/api/v1/store"
        let before = try Self.readings(box, id, store: box.store)
        let bytesBefore = Self.fileBytes(box.store)

        for (path, body, what) in [("/runs/\(id)/params", "{\"lr\": ", "the parameters"), ("/runs", "not json", "the run"),
                                   ("/runs/\(id)/metrics?source=log", "[{\"key\": \"loss\", \"step\": 1}]", "the points"),
                                   ("/runs/\(id)/tags", "{\"add\": [1]}", "the tags")] {
            let reply = try await Self.send(store + path, method: "POST", body: Data(body.utf8))
            #expect(reply.status == 400, "\(path): \(reply.text)")
            #expect(reply.json["kind"] as? String == "invalid" && (reply.json["error"] as? String)?.contains(what) == true, "\(path): \(reply.text)")
        }
        let missing = try await Self.send(store + "/runs/ffffffffffffffffffffffffffffffff/metrics?source=log", method: "POST",
                                          body: Data("[{\"key\": \"loss\", \"step\": 1, \"value\": 0.5, \"time\": 1}]".utf8))
        #expect(missing.status == 404, "\(missing.text)")

        // Over 64 MiB: refused from its Content-Length, before any of it is read.
        let port = try #require(server.url.split(separator: ":").last.flatMap { UInt16($0) })
        let tooLarge = try Self.rawRequest(port: port, head: "POST /api/v1/store/runs/\(id)/metrics?source=log HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                           + "Content-Type: application/json\r\nContent-Length: \(65 << 20)\r\n\r\n")
        #expect(tooLarge.hasPrefix("HTTP/1.1 413"), "\(tooLarge)")
        #expect(tooLarge.contains("\"kind\":\"too_large\"") || tooLarge.contains("\"kind\": \"too_large\""), "\(tooLarge)")

        // A blob whose content is not its name.
        let named = SHA256Hasher.hex(Array("the real content".utf8))
        let wrong = try await Self.send(server.url + "/api/v1/blobs/" + named, method: "PUT", body: Data("other content".utf8))
        #expect(wrong.status == 400 && wrong.json["kind"] as? String == "invalid", "\(wrong.text)")
        #expect(try await HTTPReply.send(server.url + "/api/v1/blobs/" + named, method: "HEAD").status == 404)

        // A log upload past the log's end is a gap (409); the same bytes again at 0 are already there.
        let records = try await Self.send(store + "/runs/\(id)/log?offset=0&limit=16777216")
        #expect(records.status == 200 && !records.body.isEmpty)
        let size = records.body.count
        let gap = try await Self.send(store + "/runs/\(id)/log?offset=\(size + 1)", method: "POST", body: records.body, type: "application/octet-stream")
        #expect(gap.status == 409 && gap.json["kind"] as? String == "conflict", "\(gap.text)")
        let retried = try await Self.send(store + "/runs/\(id)/log?offset=0", method: "POST", body: records.body, type: "application/octet-stream")
        #expect(retried.status == 200 && retried.text == "\(size)", "\(retried.text)")
        let cut = try await Self.send(store + "/runs/\(id)/log?offset=\(size)", method: "POST", body: records.body.dropLast(),
                                      type: "application/octet-stream")
        #expect(cut.status == 400, "\(cut.text)")

        #expect(try Self.readings(box, id, store: box.store) == before)
        #expect(Self.fileBytes(box.store) == bytesBefore)
        #expect(Self.runsIn(box.store).count == 1)
        let stopped = try server.stop()
        #expect(stopped.status == 0, "\(stopped.stderr)")
    }

    /// One request with a body.
    static func send(_ url: String, method: String = "GET", body: Data? = nil, type: String = "application/json",
                     headers: [String: String] = [:]) async throws -> HTTPReply {
        var request = URLRequest(url: try #require(URL(string: url)))
        request.httpMethod = method
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        request.httpBody = body
        if body != nil { request.setValue(type, forHTTPHeaderField: "Content-Type") }
        let (answer, response) = try await HTTPReply.session.data(for: request)
        let http = try #require(response as? HTTPURLResponse)
        return HTTPReply(status: http.statusCode, headers: [:], body: answer)
    }

    /// Sends `head` over a socket of its own and reads the answer until the server closes or stops.
    static func rawRequest(port: UInt16, head: String) throws -> String {
        let fd = try LoopbackSocket.connect(port: port)
        defer { close(fd) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let bytes = Array(head.utf8)
        try #require(Glibc.send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count)
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count <= 0 { break }
            answer += buffer.prefix(count)
            // The whole answer is in once its body (a JSON error) has ended.
            if let text = String(bytes: answer, encoding: .utf8), text.contains("\r\n\r\n"), text.hasSuffix("}\n") { break }
        }
        return String(decoding: answer, as: UTF8.self)
    }
}

import CMLKit
import Foundation
import Glibc
import Testing

/// A sandbox with a git repository to queue runs from, and helpers to start agents with short timings.
final class QueueBox {
    let box: Sandbox
    var repo: String { box.work + "/repo" }

    init() throws {
        box = try Sandbox()
        try FileManager.default.createDirectory(atPath: repo, withIntermediateDirectories: true)
        // The lr it was given, and a metric, so that runs tell apart; then it sleeps a little so two
        // agents share three runs.
        try box.write(repo + "/train.py", """
            import argparse, time
            parser = argparse.ArgumentParser()
            parser.add_argument("--lr", type=float, default=0.01)
            parser.add_argument("--sleep", type=float, default=0)
            args = parser.parse_args()
            print(f"training with lr={args.lr}", flush=True)
            time.sleep(args.sleep)
            print(f"loss: {args.lr * 10:.4f}", flush=True)
            """)
        let commit = try shell("git init -q -b main && git add -A && git commit -qm init", cwd: repo)
        #expect(commit.status == 0, "\(commit.stderr)")
    }

    /// Starts an agent on `queue` (created if new) with sub-second heartbeats and a 2 s lease.
    func agent(_ name: String, queue: String = "q", _ extra: [String] = [], env: [String: String] = [:], workdir: String? = nil) throws -> RunningCommand {
        try box.start("cml-agent", ["--queue", queue, "--create", "--name", name, "--heartbeat", "0.2", "--lease", "2",
                                    "--kill-grace", "2", "--workdir", workdir ?? box.root + "/agent-" + name] + extra, env: env)
    }

    @discardableResult
    func queue(_ args: [String], stdin: String? = nil, cwd: String? = nil) throws -> CommandResult {
        try box.run("cml-queue", args, cwd: cwd ?? repo, stdin: stdin.map { Data($0.utf8) })
    }

    /// Queues `command` from the repository; returns the run's id.
    func add(_ command: [String], queue name: String = "q", options: [String] = []) throws -> String {
        let result = try queue(["add", name] + options + ["--"] + command)
        #expect(result.status == 0, "\(result.stderr)")
        return try #require(result.jsonLines.first?["id"] as? String)
    }

    func show(_ id: String) throws -> [String: Any] { try box.show(id) }

    func status(_ id: String) throws -> String? { try show(id)["status"] as? String }

    /// The run's record, for a failed expectation's message.
    func describe(_ id: String) -> String {
        (try? box.run("cml-run", ["show", id]).out) ?? "no record of \(id)"
    }

    /// Waits until the run has this status; false after `timeout`.
    func wait(_ id: String, for status: String, timeout: Double = 15) throws -> Bool {
        try waitUntil(timeout: timeout) { try self.status(id) == status }
    }

    func log(_ id: String) throws -> String { try box.run("cml-run", ["log", id]).out }

    func agents() throws -> [[String: Any]] { try box.run("cml-agent", ["ls", "--format", "jsonl"]).jsonLines }

    /// Waits until every named agent is registered and idle.
    func waitIdle(_ names: [String]) throws -> Bool {
        try waitUntil {
            let idle = try self.agents().filter { $0["state"] as? String == "idle" }.compactMap { $0["name"] as? String }
            return names.allSatisfy(idle.contains)
        }
    }

    func attempts(_ id: String) throws -> [[String: Any]] { try show(id)["attempts"] as? [[String: Any]] ?? [] }
}

struct QueueEndToEndTests {
    @Test func threeClonesWithDifferentParamsDrainThroughTwoAgents() throws {
        let q = try QueueBox()
        let base = try q.box.run("cml-run", ["--", "python3", "train.py", "--lr", "0.01", "--sleep", "0.6"], cwd: q.repo)
        #expect(base.status == 0, "\(base.stderr)")
        let baseID = try #require(try q.box.runs().first?["id"] as? String)
        let a = try q.agent("a"), b = try q.agent("b")
        #expect(try q.waitIdle(["a", "b"]))
        var specs = ""
        for lr in ["0.1", "0.2", "0.3"] {
            let clone = try q.box.run("cml-run", ["clone", baseID, "--set", "lr=\(lr)", "--name", "lr-\(lr)"])
            #expect(clone.status == 0, "\(clone.stderr)")
            specs += clone.out
        }
        let added = try q.queue(["add", "q"], stdin: specs)
        #expect(added.status == 0, "\(added.stderr)")
        let ids = added.jsonLines.compactMap { $0["id"] as? String }
        #expect(ids.count == 3)
        for id in ids { #expect(try q.wait(id, for: "completed"), "\(q.describe(id))") }

        var agentsUsed = Set<String>()
        for (id, lr) in zip(ids, [0.1, 0.2, 0.3]) {
            let run = try q.show(id)
            #expect((run["params"] as? [String: Any])?["lr"] as? Double == lr)
            #expect(run["name"] as? String == "lr-\(lr)")
            #expect(run["command"] as? [String] == ["python3", "train.py", "--lr", "\(lr)", "--sleep", "0.6"])
            #expect(try q.log(id).contains("training with lr=\(lr)\n"))
            let loss = try #require((run["metrics"] as? [String: Any])?["loss"] as? [String: Any])
            #expect(abs((loss["last"] as? Double ?? 0) - lr * 10) < 1e-9)
            // The agent recorded it from the reproduced code, not the repository.
            #expect((run["cwd"] as? String)?.hasPrefix(q.box.root + "/agent-") == true)
            agentsUsed.insert(try #require(run["agent"] as? String))
        }
        #expect(agentsUsed == ["a", "b"])
        #expect(try q.queue(["ls"]).out.isEmpty)
        let stats = try q.queue(["stats"]).jsonLines
        #expect(stats.first?["depth"] as? Int == 0 && stats.first?["running"] as? Int == 0)
        for agent in [a, b] { kill(agent.pid, SIGTERM); #expect(try agent.wait().status == 0) }
    }

    @Test func aQueuedRunImportsTheLogsItWritesNotThoseItsRepositoryHolds() throws {
        let q = try QueueBox()
        // A Keras CSV log committed with the code: the agent's checkout makes it new by its time.
        try q.box.write(q.repo + "/fixtures/old.csv", "epoch,loss\n0,9.5\n1,9.25\n")
        try q.box.write(q.repo + "/write_log.sh", "mkdir -p logs && printf 'epoch,loss\\n0,0.5\\n1,0.25\\n' > logs/new.csv\n")
        #expect(try shell("git add -A && git commit -qm logs", cwd: q.repo).status == 0)
        let id = try q.add(["sh", "write_log.sh"])
        let agent = try q.agent("a", ["--until-empty"])
        _ = try agent.wait()
        let run = try q.show(id)
        #expect(run["status"] as? String == "completed", "\(q.describe(id))")
        let loss = (run["metrics"] as? [String: Any])?["loss"] as? [String: Any]
        #expect(loss?["count"] as? Int == 2 && number(loss?["max"]) == 0.5 && loss?["source"] as? String == "csv", "\(run)")
    }

    @Test func killNineOfAnAgentRequeuesItsRunToAnotherWhichCompletesIt() throws {
        let q = try QueueBox()
        let starts = q.box.root + "/starts.txt"
        // Each start notes its attempt; the first then sleeps quietly (no output to lose through a broken pipe),
        // so only the reclaiming agent can stop it.
        let script = """
            echo "start $CML_RUN_ATTEMPT $$" >> \(starts); echo started
            if [ "$CML_RUN_ATTEMPT" = 1 ]; then sleep 30; fi
            echo "end $CML_RUN_ATTEMPT" >> \(starts); echo finished
            """
        let a = try q.agent("a")
        let id = try q.add(["sh", "-c", script])
        #expect(try waitUntil { try q.log(id).contains("started") })
        let busy = try #require(try q.agents().first { $0["name"] as? String == "a" })
        #expect(busy["state"] as? String == "busy" && busy["runs"] as? [String] == [id], "\(busy)")
        let b = try q.agent("b")
        #expect(try q.waitIdle(["b"]))
        kill(a.pid, SIGKILL)
        _ = try a.wait()
        #expect(try q.wait(id, for: "completed"), "\(q.describe(id))")
        let attempts = try q.attempts(id)
        #expect(attempts.map { $0["agent"] as? String } == ["a", "b"])
        #expect(attempts.map { $0["outcome"] as? String } == ["lost", "completed"])
        #expect((attempts.first?["reason"] as? String)?.contains("agent a") == true)
        let lines = try String(contentsOfFile: starts, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 3 && lines[0].hasPrefix("start 1 ") && lines[1].hasPrefix("start 2 ") && lines[2] == "end 2", "\(lines)")
        // The first attempt's process was killed before the second started: it never ended by itself, and
        // is gone (or a zombie, when nothing reaps orphans here).
        let firstPID = try #require(Int32(lines[0].split(separator: " ")[2]))
        let state = (try? String(contentsOfFile: "/proc/\(firstPID)/stat", encoding: .utf8))?.split(separator: ")").last?.split(separator: " ").first
        #expect(state == nil || state == "Z", "\(state ?? "")")
        let log = try q.log(id)
        #expect(log.contains("cml-agent: attempt 2 on agent b") && log.hasSuffix("started\nfinished\n"), "\(log)")
        #expect(try q.agents().first { $0["name"] as? String == "a" }?["state"] as? String == "lost")
        kill(b.pid, SIGTERM)
        #expect(try b.wait().status == 0)
        // The killed agent's run directory stays until an agent starts in its work directory.
        let abandoned = q.box.root + "/agent-a/runs/\(id)-1"
        #expect(FileManager.default.fileExists(atPath: abandoned))
        #expect(try q.agent("a2", ["--once"], workdir: q.box.root + "/agent-a").wait().status == 0)
        #expect(!FileManager.default.fileExists(atPath: abandoned))
    }

    /// With no other agent to take it up yet, a run whose agent died looks `lost`; following its log goes
    /// on into the attempt an agent starts later.
    @Test func followingTheLogOfARunWhoseAgentDiedGoesOnIntoItsNextAttempt() throws {
        let q = try QueueBox()
        let a = try q.agent("a")
        // The first attempt outlives its agent by 2 s: Foundation's wait for the killed agent lasts as long.
        let id = try q.add(["sh", "-c", "echo started; if [ \"$CML_RUN_ATTEMPT\" = 1 ]; then sleep 2; fi; echo finished"])
        #expect(try waitUntil { try q.log(id).contains("started") })
        let follow = try q.box.start("cml-run", ["log", "--follow", id])
        kill(a.pid, SIGKILL)
        _ = try a.wait()
        #expect(try q.status(id) == "lost")
        #expect(try waitUntil { follow.stderrSoFar.contains("is gone; following it into its next attempt") }, "\(follow.stderrSoFar)")
        usleep(500_000)
        #expect(!follow.hasExited, "following stopped while the run only looked lost")
        let b = try q.agent("b")
        #expect(try q.wait(id, for: "completed"), "\(q.describe(id))")
        let followed = try follow.wait()
        #expect(followed.status == 0 && followed.out.hasSuffix("started\nfinished\n"), "\(followed.out)")
        kill(b.pid, SIGTERM)
        #expect(try b.wait().status == 0)
    }

    @Test func theAgentLogsARunKilledByASignalAsTheRecordDoes() throws {
        // Issue 13: it logged "exit status 143" where the record says signal 15.
        let q = try QueueBox()
        let a = try q.agent("a")
        let running = try q.add(["sh", "-c", "echo ready; exec sleep 30"])
        #expect(try waitUntil { try q.log(running).contains("ready") })
        #expect(try q.box.run("cml-run", ["abort", running]).status == 0)
        #expect(try q.wait(running, for: "aborted"))
        #expect(try q.show(running)["signal"] as? Int == 15)
        kill(a.pid, SIGTERM)
        let stopped = try a.wait()
        #expect(stopped.stderr.contains("run \(running.prefix(16)) aborted (signal 15)"), "\(stopped.stderr)")
        #expect(!stopped.stderr.contains("exit status 143"))
    }

    @Test func abortStopsARunningRunAndDequeuesAWaitingOne() throws {
        let q = try QueueBox()
        let a = try q.agent("a")
        let running = try q.add(["sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo ready; sleep 30 & wait"])
        let waiting = try q.add(["sh", "-c", "echo should not run"])
        #expect(try waitUntil { try q.log(running).contains("ready") })

        let dequeued = try q.box.run("cml-run", ["abort", waiting])
        #expect(dequeued.jsonLines.first?["abort"] as? String == "dequeued", "\(dequeued.stderr)")
        #expect(try q.status(waiting) == "aborted")
        let requested = try q.box.run("cml-run", ["abort", running])
        #expect(requested.jsonLines.first?["abort"] as? String == "requested" && requested.jsonLines.first?["agent"] as? String == "a")
        #expect(try q.wait(running, for: "aborted"))
        // The command exited 0 on SIGTERM, and the run is still aborted, with what it printed.
        #expect(try q.show(running)["exit_code"] as? Int == 0)
        #expect(try q.log(running) == "ready\ngot TERM\n")
        #expect(try q.show(running)["error"] as? String == "aborted with cml-run abort")
        #expect(try q.attempts(waiting).isEmpty)

        let again = try q.box.run("cml-run", ["abort", running])
        #expect(again.status == 1 && again.stderr.contains("has already ended (aborted)"))
        kill(a.pid, SIGTERM)
        #expect(try a.wait().status == 0)
        #expect(try q.attempts(waiting).isEmpty && q.log(waiting).isEmpty)
    }

    @Test func sigtermDrainsLettingShortRunsFinishAndRequeueingTheRest() throws {
        let q = try QueueBox()
        // Two slots for three runs: the third waits while the first two run.
        let short = try q.add(["sh", "-c", "echo short; sleep 1; echo short done"])
        // Exits 0 when stopped: an interrupted run must still not be recorded completed.
        let long = try q.add(["sh", "-c", "trap 'exit 0' TERM; echo long; sleep 30 & wait"])
        let third = try q.add(["true"])
        let a = try q.agent("a", ["--slots", "2", "--grace", "2.5"])
        #expect(try waitUntil { try q.log(short).contains("short") && q.log(long).contains("long") })
        kill(a.pid, SIGTERM)
        let stopped = try a.wait()
        #expect(stopped.status == 0, "\(stopped.stderr)")
        #expect(stopped.stderr.contains("draining (SIGTERM)"))
        // Issue 13: runs the agent ended itself gave their leases back; none was taken from it.
        #expect(stopped.stderr.contains("run \(long.prefix(16)) stopped and requeued"), "\(stopped.stderr)")
        #expect(!stopped.stderr.contains("taken back"), "\(stopped.stderr)")
        #expect(try q.status(short) == "completed")
        #expect(try q.status(long) == "queued")
        let attempt = try #require(try q.attempts(long).first)
        #expect(attempt["outcome"] as? String == "requeued")
        #expect((attempt["reason"] as? String)?.contains("agent a was stopped (SIGTERM) and the run did not finish within the 2.5 s grace") == true)
        #expect(try q.show(long)["attempts_counted"] as? Int == 0)
        #expect(try q.status(third) == "queued" && q.attempts(third).isEmpty)
        #expect(try q.agents().first?["state"] as? String == "stopped")
    }

    @Test func aRunThatCompletedIsNotTakenForOneWhoseLeaseWasTakenBack() throws {
        // Issue 13: between recording a run's end (which gives its lease back) and freeing its slot (once
        // its directory is removed) the agent's heartbeats still named the run, and the agent warned that
        // its lease was taken back. Many files make the removal take several heartbeats.
        let q = try QueueBox()
        let id = try q.add(["python3", "-c", "import os\nfor i in range(30000): open(f'f{i}', 'w').close()"])
        let a = try q.agent("a", ["--once"])
        let stopped = try a.wait()
        #expect(stopped.status == 0, "\(stopped.stderr)")
        #expect(stopped.stderr.contains("run \(id.prefix(16)) completed (exit status 0)"), "\(stopped.stderr)")
        #expect(!stopped.stderr.contains("taken back"), "\(stopped.stderr)")
    }

    @Test func codeThatCannotBeReproducedFailsTheRunWithTheReason() throws {
        let q = try QueueBox()
        try q.box.write(q.repo + "/a.txt", "one\n")
        #expect(try shell("git add a.txt && git commit -qm one", cwd: q.repo).status == 0)
        try q.box.write(q.repo + "/a.txt", "two\n")
        let edited = try q.box.run("cml-run", ["spec", "--", "cat", "a.txt"], cwd: q.repo)
        let patch = try #require(edited.jsonLines.first?["patch_blob"] as? String)
        try q.box.write(q.repo + "/a.txt", "three\n")
        #expect(try shell("git commit -qam three", cwd: q.repo).status == 0)
        let clean = try #require(try q.box.run("cml-run", ["spec", "--", "cat", "a.txt"], cwd: q.repo).jsonLines.first)
        #expect(clean["patch_blob"] is NSNull)
        func spec(_ change: (inout [String: Any]) -> Void) throws -> String {
            var object = clean
            change(&object)
            return String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self) + "\n"
        }
        let specs = try spec { $0["patch_blob"] = patch }
            + spec { $0["commit"] = String(repeating: "0", count: 40) }
            + spec { $0["repository"] = q.box.root + "/no-such-repo" }
        let ids = try q.queue(["add", "q"], stdin: specs).jsonLines.compactMap { $0["id"] as? String }
        #expect(ids.count == 3)
        let agent = try q.agent("a", ["--slots", "3", "--once"])
        #expect(try agent.wait().status == 0)
        let errors = try ids.map { id in try q.show(id) }.map { ($0["status"] as? String, $0["error"] as? String ?? "") }
        #expect(errors.allSatisfy { $0.0 == "failed" }, "\(errors)")
        #expect(errors[0].1.hasPrefix("the patch \(patch.prefix(12)) does not apply to commit "), "\(errors[0].1)")
        #expect(errors[0].1.contains("a.txt"))
        #expect(errors[1].1 == "commit \(String(repeating: "0", count: 40)) is not in \(q.repo)", "\(errors[1].1)")
        #expect(errors[2].1 == "the repository \(q.box.root)/no-such-repo does not exist", "\(errors[2].1)")
        // The command never ran.
        for id in ids { #expect(try q.log(id).isEmpty) }
    }

    @Test func uncommittedUntrackedAndBinaryFilesAreReproduced() throws {
        let q = try QueueBox()
        try q.box.write(q.repo + "/old.txt", "old\n")
        #expect(try shell("git add old.txt && git commit -qm old", cwd: q.repo).status == 0)
        let change = """
            printf 'edited\\n' >> train.py && git rm -q old.txt && mkdir -p data sub && \
            head -c 5000 /dev/urandom > data/weights.bin && echo note > sub/notes.txt && chmod +x sub/notes.txt
            """
        #expect(try shell(change, cwd: q.repo).status == 0)
        let listing = "find . -path ./.git -prune -o -type f -print | sort | xargs sha256sum; ls -l sub/notes.txt | cut -c1-10; pwd"
        let expected = try shell(listing, cwd: q.repo).out
        // Queued from a subdirectory: the agent starts it in the same place of the reproduced tree.
        let fromSub = try q.queue(["add", "q", "--", "sh", "-c", "cd .. && " + listing], cwd: q.repo + "/sub")
        let subID = try #require(fromSub.jsonLines.first?["id"] as? String)
        let agent = try q.agent("a", ["--once"])
        #expect(try agent.wait().status == 0)
        #expect(try q.status(subID) == "completed")
        let output = try q.log(subID).split(separator: "\n")
        let wanted = expected.split(separator: "\n")
        // Every file with its hash and the mode, byte for byte; only the directory differs.
        #expect(Array(output.dropLast()) == Array(wanted.dropLast()), "\(output)")
        #expect(output.last?.hasPrefix(q.box.root + "/agent-a/runs/") == true)
    }
}

struct QueueControlTests {
    /// A nightly cron job's agent: it runs what waits, and what is queued while it works, then exits.
    @Test func untilEmptyRunsEverythingWaitingThenExits() throws {
        let q = try QueueBox()
        let first = try q.add(["sh", "-c", "sleep 1; echo first"])
        let second = try q.add(["sh", "-c", "echo second"])
        let agent = try q.agent("a", ["--until-empty"])
        #expect(try waitUntil { try q.status(first) == "running" })
        let third = try q.add(["sh", "-c", "echo third"])  // queued while the only slot is busy
        let finished = try agent.wait()
        #expect(finished.status == 0)
        // Each start is logged with its command as a shell would take it back.
        #expect(finished.stderr.contains("): sh -c 'sleep 1; echo first'\n"), "\(finished.stderr)")
        for id in [first, second, third] { #expect(try q.status(id) == "completed", "\(q.describe(id))") }
        // Nothing waiting: it exits at once; --once with it is refused.
        #expect(try q.agent("b", ["--until-empty"]).wait().status == 0)
        let both = try q.agent("c", ["--until-empty", "--once"]).wait()
        #expect(both.status == 2 && both.stderr.contains("--once and --until-empty cannot be given together"), "\(both.stderr)")
    }

    @Test func aNewRunStartsOnAnIdleAgentLongBeforeItsNextHeartbeat() throws {
        let q = try QueueBox()
        // Heartbeats 30 s apart: only the store's doorbell can wake it sooner. (The bound below leaves
        // room for a loaded machine: a latency is measured by bench/queue.py, not asserted here.)
        let agent = try q.agent("a", ["--heartbeat", "30", "--lease", "60"])
        #expect(try q.waitIdle(["a"]))
        // Not a repository: nothing to clone, so this is the queue's own latency.
        let queuedAt = Date().timeIntervalSince1970
        let id = try q.add(["python3", "-c", "import time; print(time.time())"])
        #expect(try q.wait(id, for: "completed"))
        let startedAt = try #require(Double(try q.log(id).trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(startedAt - queuedAt < 10, "started \(startedAt - queuedAt) s after it was queued")
        kill(agent.pid, SIGTERM)
        _ = try agent.wait()
    }

    /// A queued run has not started: `started_at` is null until an agent starts it, `queued_at` says when
    /// it was queued.
    @Test func startedAtIsWhenAnAgentStartedTheRunAndQueuedAtWhenItWasQueued() throws {
        let q = try QueueBox()
        let id = try q.add(["python3", "-c", "print('acc: 1')"])
        let aborted = try q.add(["true"])
        #expect(try q.box.run("cml-run", ["abort", aborted]).status == 0)
        for run in [try #require(q.box.runs().first { $0["id"] as? String == id }), try q.show(id)] {
            #expect(run["started_at"] is NSNull && run["duration"] is NSNull, "\(run)")
            #expect((run["queued_at"] as? String)?.hasSuffix("Z") == true, "\(run)")
        }
        // Aborted while it waited: it never started.
        let never = try q.show(aborted)
        #expect(never["started_at"] is NSNull && never["duration"] is NSNull && never["ended_at"] is String, "\(never)")
        let waiting = try q.box.run("cml-run", ["ls", "--where", "started_at > 2000-01-01 or queued_at < 2000-01-01", "--columns", "id"])
        #expect(waiting.status == 0 && waiting.out.isEmpty, "\(waiting.out)\(waiting.stderr)")
        #expect(try q.box.run("cml-run", ["ls", "--where", "status = queued", "--columns", "id"]).jsonLines.map { $0["id"] as? String } == [id])

        usleep(1_200_000)
        #expect(try q.agent("a", ["--until-empty"]).wait().status == 0)
        let run = try q.show(id)
        #expect(run["status"] as? String == "completed", "\(run)")
        let queuedAt = try #require(Clock.parseTime(run["queued_at"] as? String ?? ""))
        let startedAt = try #require(Clock.parseTime(run["started_at"] as? String ?? ""))
        #expect(startedAt - queuedAt >= 1.0, "queued \(queuedAt), started \(startedAt)")
        #expect(try q.box.run("cml-run", ["ls", "--where", "queued_at < started_at", "--columns", "id"]).jsonLines.count == 1)
    }

    @Test func gpusAreSharedOutAmongSlots() throws {
        let q = try QueueBox()
        let ids = try (0..<4).map { _ in try q.add(["sh", "-c", "echo gpu=$CUDA_VISIBLE_DEVICES; sleep 0.3"]) }
        let agent = try q.agent("a", ["--gpus", "0,1,2,3", "--slots", "2", "--once"])
        #expect(try agent.wait().status == 0)
        let taken = try ids.filter { try q.status($0) == "completed" }
        #expect(taken.count == 2)
        #expect(Set(try taken.map { try q.log($0) }) == ["gpu=0,1\n", "gpu=2,3\n"])
        let uneven = try q.agent("b", ["--gpus", "0,1,2", "--slots", "2"]).wait()
        #expect(uneven.status == 2 && uneven.stderr.contains("cannot be shared out equally among 2 slots"))
    }

    @Test func queueListingOrderMoveRemoveAndStats() throws {
        let q = try QueueBox()
        let low = try q.add(["true"], options: ["--name", "low"])
        let first = try q.add(["true"], options: ["--priority", "5", "--name", "first"])
        let second = try q.add(["true"], options: ["--priority", "5", "--name", "second"])
        #expect(try q.queue(["ls", "q"]).jsonLines.compactMap { $0["id"] as? String } == [first, second, low])
        let listed = try q.queue(["ls"]).jsonLines
        #expect(listed.allSatisfy { $0["status"] as? String == "queued" && $0["queue"] as? String == "q" && $0["attempt"] as? Int == 0 })
        // Queued runs are runs: they pipe into cml-diff.
        let diff = try q.box.run("cml-diff", [], stdin: try q.queue(["ls"]).stdout)
        #expect(diff.status == 0 && diff.out.contains("\"name\""), "\(diff.stderr)")

        let moved = try q.queue(["mv", low, "other"])
        #expect(moved.status == 0 && moved.stderr.contains("created queue other"))
        #expect(moved.jsonLines.first?["queue"] as? String == "other")
        let stats = try q.queue(["stats"]).jsonLines
        #expect(stats.map { $0["queue"] as? String } == ["other", "q"])
        #expect(stats.map { $0["depth"] as? Int } == [1, 2])
        #expect((stats[1]["oldest_wait"] as? Double ?? -1) >= 0)

        let refused = try q.queue(["rm", first, "ffff"])
        #expect(refused.status == 1 && refused.stderr.contains("no run with id ffff"))
        #expect(try q.queue(["ls", "q"]).jsonLines.count == 2)
        let removed = try q.queue(["rm"], stdin: try q.queue(["ls", "q"]).out)
        #expect(removed.status == 0, "\(removed.stderr)")
        #expect(try q.queue(["ls", "q"]).out.isEmpty)
        #expect(try q.box.run("cml-run", ["show", first]).status == 1)
        let unknown = try q.queue(["ls", "nope"])
        #expect(unknown.status == 1 && unknown.stderr == "cml-queue: error: unknown queue 'nope' (queues: other, q)\n")
    }

    @Test func aBadBatchQueuesNothing() throws {
        let q = try QueueBox()
        let base = try q.box.run("cml-run", ["--", "python3", "train.py"], cwd: q.repo)
        #expect(base.status == 0)
        let baseID = try #require(try q.box.runs().first?["id"] as? String)
        let good = try q.box.run("cml-run", ["clone", baseID, "--set", "lr=0.5"]).out
        #expect(good.contains("\"--lr\",\"0.5\""))

        let malformed = try q.queue(["add", "q"], stdin: good + "{\"command\": [\"true\"\n" + good)
        #expect(malformed.status == 1)
        #expect(malformed.stderr.hasPrefix("cml-queue: error: stdin line 2 is not a run spec: not valid JSON"), "\(malformed.stderr)")
        let typo = try q.queue(["add", "q"], stdin: good + "{\"comand\": [\"true\"]}\n")
        #expect(typo.status == 1 && typo.stderr.contains("stdin line 2 is not a run spec: unknown field \"comand\""), "\(typo.stderr)")
        let record = try q.queue(["add", "q"], stdin: try q.box.run("cml-run", ["ls"]).out)
        #expect(record.stderr.contains("this is a run record, not a run spec (make a spec with cml-run clone ID)"), "\(record.stderr)")
        let missingBlob = try q.queue(["add", "q"], stdin: good.replacingOccurrences(
            of: #""patch_blob":null"#, with: #""patch_blob":"\#(String(repeating: "ab", count: 32))""#))
        #expect(missingBlob.status == 1 && missingBlob.stderr.contains("is not in this store"), "\(missingBlob.stderr)")
        // Nothing was queued, and no queue made.
        #expect(try q.queue(["ls"]).out.isEmpty)
        #expect(try q.queue(["stats"]).out.isEmpty)
        #expect(try q.box.runs().count == 1)

        let agent = try q.box.run("cml-agent", ["--queue", "gpu", "--once"])
        #expect(agent.status == 1 && agent.stderr == "cml-agent: error: unknown queue 'gpu' (there are no queues yet; pass --create to create it)\n")
        #expect(try q.queue(["add", "cpu"], stdin: good).status == 0)
        let named = try q.box.run("cml-agent", ["--queue", "gpu", "--once"])
        #expect(named.stderr == "cml-agent: error: unknown queue 'gpu' (queues: cpu; pass --create to create it)\n")
        let badLease = try q.box.run("cml-agent", ["--queue", "cpu", "--heartbeat", "5", "--lease", "6"])
        #expect(badLease.status == 2 && badLease.stderr.contains("--lease must be at least twice --heartbeat"))
        let badSet = try q.box.run("cml-run", ["clone", baseID, "--set", "lr"])
        #expect(badSet.status == 2 && badSet.stderr.contains("--set lr is not key=value"))
    }

    @Test func aRestartedAgentTakesItsNameBackAtOnce() throws {
        let q = try QueueBox()
        // A long lease: only finding the predecessor dead frees the name.
        let first = try q.agent("a", ["--heartbeat", "5", "--lease", "60"])
        #expect(try q.waitIdle(["a"]))
        kill(first.pid, SIGKILL)
        _ = try first.wait()
        let second = try q.agent("a", ["--heartbeat", "5", "--lease", "60"])
        #expect(try waitUntil { try q.agents().contains { $0["name"] as? String == "a" && $0["pid"] as? Int == Int(second.pid) } })
        #expect(try q.agents().first { $0["pid"] as? Int == Int(first.pid) }?["state"] as? String == "lost")
        kill(second.pid, SIGTERM)
        let stopped = try second.wait()
        #expect(stopped.status == 0 && stopped.stderr.contains("agent a with pid \(first.pid) is gone"), "\(stopped.stderr)")
    }

    @Test func abortKillsARunThatIgnoresSigtermAfterTheGrace() throws {
        let q = try QueueBox()
        let agent = try q.agent("a", ["--kill-grace", "0.5"])
        let id = try q.add(["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"])
        #expect(try waitUntil { try q.log(id).contains("ready") })
        #expect(try q.box.run("cml-run", ["abort", id]).status == 0)
        #expect(try q.wait(id, for: "aborted", timeout: 5))
        #expect(try q.show(id)["signal"] as? Int == Int(SIGKILL))
        kill(agent.pid, SIGTERM)
        _ = try agent.wait()
    }

    @Test func abortOfARunRecordedByCmlRunSignalsItsCmlRun() throws {
        let box = try Sandbox()
        let running = try box.start("cml-run", ["--", "sh", "-c", SignalTests.trapScript("TERM", SIGTERM)])
        #expect(waitUntil { running.stdoutSoFar.contains("ready") })
        let id = try #require(try box.runs().first?["id"] as? String)
        let result = try box.run("cml-run", ["abort", id])
        #expect(result.jsonLines.first?["abort"] as? String == "signalled" && result.jsonLines.first?["pid"] as? Int == Int(running.pid))
        #expect(try running.wait().out == "ready\ngot TERM\n")
        #expect(try box.runs().first?["status"] as? String == "aborted")
    }

    @Test func aSpecCarriesTheRunsOptionsToTheAgent() throws {
        let q = try QueueBox()
        let spec = try q.box.run("cml-run", ["spec", "--name", "n", "--tag", "t", "--param", "seed=3", "--env", "FOO=bar",
                                             "--monitor-interval", "0", "--metric-pattern", "(?<key>acc) is (?<value>[0-9.]+)",
                                             "--", "sh", "-c", "echo $FOO; echo acc is 0.5; sleep 0.2"], cwd: q.repo)
        #expect(spec.status == 0, "\(spec.stderr)")
        let added = try q.queue(["add", "q", "--tag", "queued"], stdin: spec.out)
        let id = try #require(added.jsonLines.first?["id"] as? String)
        let agent = try q.agent("a", ["--once"])
        #expect(try agent.wait().status == 0)
        let run = try q.show(id)
        #expect(run["status"] as? String == "completed" && run["name"] as? String == "n")
        #expect(Set(run["tags"] as? [String] ?? []) == ["t", "queued"])
        #expect((run["params"] as? [String: Any])?["seed"] as? Int == 3)
        #expect((run["env"] as? [String: String])?["FOO"] == "bar")
        #expect(try q.log(id) == "bar\nacc is 0.5\n")
        let metrics = try #require(run["metrics"] as? [String: Any])
        #expect(Array(metrics.keys) == ["acc"], "no sys/ metrics with --monitor-interval 0")
        // Queue fields filter and show like any other.
        let listed = try q.box.run("cml-run", ["ls", "--where", "agent = a and queue = q and attempts = 1",
                                               "--columns", "id,queue,agent,attempts"])
        #expect(listed.out == "{\"id\":\"\(id)\",\"queue\":\"q\",\"agent\":\"a\",\"attempts\":1}\n", "\(listed.stderr)")
    }

    @Test func aClonedRunReadsTheSameDatasetVersionOnTheAgent() throws {
        let q = try QueueBox()
        try q.box.write("data/labels.csv", "1,2\n")
        #expect(try q.box.run("cml-data", ["snapshot", q.box.work + "/data", "--name", "labels"]).status == 0)
        try q.box.write("data/labels.csv", "3,4\n")
        #expect(try q.box.run("cml-data", ["snapshot", q.box.work + "/data", "--name", "labels"]).status == 0)
        let first = try q.box.run("cml-run", ["--monitor-interval", "0", "--data", "labels@1", "--",
                                              "sh", "-c", "cat \"$CML_DATA_LABELS/labels.csv\""], cwd: q.repo)
        #expect(first.status == 0 && first.out == "1,2\n", "\(first.stderr)")
        let original = try #require(try q.box.runs().first?["id"] as? String)
        let spec = try q.box.run("cml-run", ["clone", original])
        #expect(spec.status == 0, "\(spec.stderr)")
        let data = try #require(spec.jsonLines.first?["data"] as? [String])
        #expect(data.count == 1 && data[0].hasPrefix("labels@"))
        let id = try #require(try q.queue(["add", "q"], stdin: spec.out).jsonLines.first?["id"] as? String)
        #expect(try q.agent("a", ["--once"]).wait().status == 0)
        #expect(try q.log(id) == "1,2\n", "\(q.describe(id))")
        #expect((try q.show(id)["datasets"] as? [Any])?.count == 1)
        let bad = try q.queue(["add", "q"], stdin: "{\"command\": [\"true\"], \"data\": [\"labels@@\"]}\n")
        #expect(bad.status != 0 && bad.stderr.contains("line 1"), "\(bad.stderr)")
    }

    @Test func twoAgentsCannotShareAName() throws {
        let q = try QueueBox()
        let a = try q.agent("same")
        #expect(try q.waitIdle(["same"]))
        let twin = try q.agent("same").wait()
        #expect(twin.status == 1 && twin.stderr.contains("agent same is already running (pid \(a.pid) on"), "\(twin.stderr)")
        let listed = try #require(try q.agents().first)
        #expect(listed["name"] as? String == "same" && listed["state"] as? String == "idle" && listed["queues"] as? [String] == ["q"])
        kill(a.pid, SIGTERM)
        _ = try a.wait()
    }

    @Test func listingsShowCommandsShellQuoted() throws {
        let q = try QueueBox()
        _ = try q.add(["python3", "-c", "print(1)"], options: ["--name", "quoted"])
        let table = try q.queue(["ls", "--format", "table"])
        #expect(table.out.contains("python3 -c 'print(1)'\n"), "\(table.out)")
        let csv = try q.queue(["ls", "--format", "csv"])
        #expect(csv.out.hasPrefix("ID,") && csv.out.hasSuffix(",quoted,python3 -c 'print(1)'\n"), "\(csv.out)")
        #expect(try q.queue(["ls"]).jsonLines.first?["command"] as? [String] == ["python3", "-c", "print(1)"])
    }
}

/// The agent under systemd: the notify protocol over a real datagram socket, and the unit file.
struct SystemdTests {
    /// A bound unix datagram socket standing in for systemd's notify socket.
    final class NotifySocket {
        let path: String
        let fd: Int32

        init(path: String) throws {
            self.path = path
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
            }
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            try #require(bound == 0)
        }

        deinit { close(fd); unlink(path) }

        /// The next message, or nil after `timeout` seconds.
        func receive(timeout: Double) -> String? {
            var request = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&request, 1, Int32(timeout * 1000)) == 1 else { return nil }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &buffer, buffer.count, 0)
            return n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : nil
        }

        /// Messages until one contains `text`; nil if none does within `timeout`.
        func receive(until text: String, timeout: Double) -> [String]? {
            var messages: [String] = []
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline, let message = receive(timeout: deadline.timeIntervalSinceNow) {
                messages.append(message)
                if message.contains(text) { return messages }
            }
            return nil
        }
    }

    @Test func readyWatchdogAndStoppingReachTheNotifySocket() throws {
        let q = try QueueBox()
        let notify = try NotifySocket(path: q.box.root + "/notify")
        let agent = try q.agent("a", ["--heartbeat", "5", "--lease", "10"], env: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"])
        let ready = try #require(notify.receive(until: "READY=1", timeout: 10))
        #expect(ready.last == "READY=1\nSTATUS=idle")
        // WATCHDOG_USEC of 0.4 s: pings at least every 0.2 s, however long --heartbeat is.
        let start = Date()
        #expect(notify.receive(until: "WATCHDOG=1", timeout: 1) != nil)
        #expect(notify.receive(until: "WATCHDOG=1", timeout: 1) != nil)
        #expect(Date().timeIntervalSince(start) < 0.9)
        // A run does not see the agent's notify socket.
        let id = try q.add(["sh", "-c", "echo ${NOTIFY_SOCKET:-unset} ${WATCHDOG_USEC:-unset}"])
        #expect(try q.wait(id, for: "completed"))
        #expect(try q.log(id) == "unset unset\n")
        // Read what came meanwhile: the agent never blocks on a full socket, it drops the message.
        while notify.receive(timeout: 0) != nil {}
        kill(agent.pid, SIGTERM)
        #expect(notify.receive(until: "STOPPING=1", timeout: 10)?.last == "STOPPING=1\nSTATUS=draining")
        #expect(try agent.wait().status == 0)
    }

    @Test func logLinesCarrySyslogPrioritiesWhenStderrIsTheJournal() throws {
        let q = try QueueBox()
        // Under systemd, JOURNAL_STREAM names stderr's device and inode; the test's stderr is a file.
        let agent = try q.agent("a", ["--once"], env: ["JOURNAL_STREAM": "0:0"])
        let plain = try agent.wait()
        #expect(plain.stderr.contains(" cml-agent[a]: info: agent a started: queues q, 1 slot\n"), "\(plain.stderr)")
        let stderrFile = q.box.root + "/stderr"
        FileManager.default.createFile(atPath: stderrFile, contents: nil)
        var st = stat()
        #expect(stat(stderrFile, &st) == 0)
        let journal = try shell("JOURNAL_STREAM=\(st.st_dev):\(st.st_ino) CML_STORE=\(q.box.store) \(binDirectory)/cml-agent --queue q --name j --once --workdir \(q.box.root)/aj 2>> \(stderrFile)", cwd: q.box.work)
        #expect(journal.status == 0)
        let lines = try String(contentsOfFile: stderrFile, encoding: .utf8)
        #expect(lines == "<6>agent j started: queues q, 1 slot\n<6>agent j stopped\n", "\(lines)")
    }

    @Test func theUnitFilePassesSystemdAnalyzeVerify() throws {
        let unit = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("contrib/systemd/cml-agent@.service").path
        let text = try String(contentsOfFile: unit, encoding: .utf8)
        #expect(text.contains("Type=notify") && text.contains("KillMode=mixed") && text.contains("Restart=on-failure"))
        // systemd-analyze is part of systemd, which a build machine or container may lack; the unit's
        // content is checked above either way.
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze") else { return }
        let box = try Sandbox()
        // verify checks that ExecStart's program exists: point it at the one just built.
        try box.write(box.root + "/cml-agent@gpu.service", text.replacingOccurrences(of: "/usr/local/bin/cml-agent", with: binDirectory + "/cml-agent"))
        let verified = try shell("SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no \(box.root)/cml-agent@gpu.service", cwd: box.root)
        #expect(verified.status == 0, "\(verified.out)\(verified.stderr)")
        #expect(!verified.stderr.contains("cml-agent@"), "\(verified.stderr)")
    }
}

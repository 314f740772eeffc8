import Foundation
import Glibc
import Testing
import CMLKit

/// A repository with a training script whose loss is a known function of its parameters, a base run of
/// it, and helpers to run `cml-queue sweep` and read what it recorded.
final class SweepBox {
    let queue: QueueBox
    var box: Sandbox { queue.box }
    var repo: String { queue.repo }
    let base: String

    /// `--lr` at 5 or more crashes (exit 1); at 0 it ends well without printing a loss.
    init() throws {
        queue = try QueueBox()
        try queue.box.write(queue.repo + "/sweep.py", """
            import argparse, math, sys, time
            parser = argparse.ArgumentParser()
            parser.add_argument("--lr", type=float, default=0.1)
            parser.add_argument("--bs", type=int, default=32)
            parser.add_argument("--epochs", type=int, default=3)
            parser.add_argument("--sleep", type=float, default=0)
            args = parser.parse_args()
            if args.lr >= 5:
                sys.exit("diverged: lr too high")
            if args.lr == 0:
                sys.exit(0)
            for epoch in range(args.epochs):
                loss = (math.log10(args.lr) + 2) ** 2 + 1 / (epoch + 1) + args.bs / 1000
                print(f"epoch={epoch} loss={loss:.6f}", flush=True)
                time.sleep(args.sleep)
            """)
        let commit = try shell("git add -A && git commit -qm sweep", cwd: queue.repo)
        #expect(commit.status == 0, "\(commit.stderr)")
        let ran = try queue.box.run("cml-run", ["--name", "base", "--", "python3", "sweep.py", "--lr", "0.1", "--sleep", "0"], cwd: queue.repo)
        #expect(ran.status == 0, "\(ran.stderr)")
        base = try #require(try queue.box.runs().first?["id"] as? String)
    }

    /// The loss the script reports last for these values.
    static func loss(lr: Double, bs: Double, epochs: Double = 3) -> Double {
        (((log10(lr) + 2) * (log10(lr) + 2) + 1 / epochs + bs / 1000) * 1_000_000).rounded() / 1_000_000
    }

    func sweep(_ args: [String], env: [String: String] = [:]) throws -> CommandResult {
        try box.run("cml-queue", ["sweep", base] + args, env: env, cwd: repo)
    }

    /// `cml-queue sweep show ID` as JSON.
    func record(_ id: String) throws -> [String: Any] {
        let shown = try box.run("cml-queue", ["sweep", "show", id])
        #expect(shown.status == 0, "\(shown.stderr)")
        return try #require(shown.jsonLines.first)
    }

    func trials(_ id: String) throws -> [[String: Any]] { try record(id)["trials"] as? [[String: Any]] ?? [] }

    /// The sweep's id, from `cml-queue sweep ls` (the newest).
    func newestSweep() throws -> String {
        try #require(try box.run("cml-queue", ["sweep", "ls"]).jsonLines.first?["id"] as? String)
    }

    /// The runs `cml-run ls --where 'sweep = ID'` lists.
    func members(_ id: String) throws -> [[String: Any]] {
        let listed = try box.run("cml-run", ["ls", "--where", "sweep = \(id)"])
        #expect(listed.status == 0, "\(listed.stderr)")
        return listed.jsonLines
    }
}

func number(_ value: Any?) -> Double? { (value as? NSNumber)?.doubleValue }

struct SweepEndToEndTests {
    @Test func twelveRandomTrialsRunOnTwoAgentsWithTwoSlotsEach() throws {
        let s = try SweepBox()
        let agents = try ["a", "b"].map { try s.queue.agent($0, queue: "gpu", ["--slots", "2"]) }
        defer { for agent in agents { kill(agent.pid, SIGKILL) } }
        #expect(try s.queue.waitIdle(["a", "b"]))
        let swept = try s.sweep(["--objective", "loss", "--param", "lr=loguniform(1e-3,1)", "--param", "bs=choice(16,32)",
                                 "--param", "sleep=0.3", "--trials", "12", "--parallel", "4", "--queue", "gpu", "--seed", "7"])
        #expect(swept.status == 0, "\(swept.stderr)")
        let lines = swept.jsonLines
        #expect(lines.count == 12, "\(swept.out)")
        #expect(Set(lines.compactMap { $0["trial"] as? Int }) == Set(0..<12))
        let id = try s.newestSweep()

        // Each trial's objective is its run's loss, the script's own value for its parameters.
        var best = Double.infinity
        for line in lines {
            let params = try #require(line["params"] as? [String: Any])
            let lr = try #require(number(params["lr"])), bs = try #require(number(params["bs"]))
            #expect(line["status"] as? String == "completed", "\(line)")
            let objective = try #require(number(line["objective"]))
            #expect(abs(objective - SweepBox.loss(lr: lr, bs: bs)) < 1e-6, "\(line)")
            best = min(best, objective)
            let run = try s.box.show(try #require(line["id"] as? String))
            #expect((run["metrics"] as? [String: Any])?["loss"].flatMap { ($0 as? [String: Any])?["last"] }.flatMap(number) == objective)
            #expect(line["best"].flatMap(number)! >= best)
        }
        // The same seed draws the same values as cml-run clone --sample.
        let sampled = try s.box.run("cml-run", ["clone", s.base, "--sample", "lr=loguniform(1e-3,1)", "--sample", "bs=choice(16,32)",
                                                "-n", "12", "--seed", "7"])
        let sampledLR = sampled.jsonLines.map { ($0["command"] as? [String] ?? []).drop { $0 != "--lr" }.dropFirst().first ?? "" }
        let sweptLR = lines.sorted { ($0["trial"] as! Int) < ($1["trial"] as! Int) }.map { "\(($0["params"] as! [String: Any])["lr"]!)" }
        #expect(sampledLR.map { Double($0) } == sweptLR.map { Double($0) }, "\(sampledLR) \(sweptLR)")

        // Listed by cml-run ls --where 'sweep = ID', run by both agents, never more than 4 at once.
        let members = try s.members(id)
        #expect(Set(members.compactMap { $0["id"] as? String }) == Set(lines.compactMap { $0["id"] as? String }))
        let shown = try members.map { try s.box.show($0["id"] as! String) }
        let agentsUsed = Set(shown.compactMap { ($0["attempts"] as? [[String: Any]])?.first?["agent"] as? String })
        #expect(agentsUsed == ["a", "b"], "\(agentsUsed)")
        let spans: [(start: Double, end: Double)] = shown.map { run in (seconds(run["started_at"]), seconds(run["ended_at"])) }
        // At each start, the runs that had started and not yet ended.
        let overlaps: [Int] = spans.map { span in spans.filter { other in other.start <= span.start && other.end > span.start }.count }
        let mostAtOnce = overlaps.max() ?? 0
        #expect(mostAtOnce <= 4, "\(spans)")

        let record = try s.record(id)
        #expect(record["status"] as? String == "finished")
        #expect(number((record["best"] as? [String: Any])?["objective"]) == best)
        #expect(swept.stderr.contains("sweep \(id) finished; 12 of 12 trials completed"), "\(swept.stderr)")
        #expect(swept.stderr.contains("RANK  TRIAL  ID"), "\(swept.stderr)")
    }

    @Test func aCrashingTrialIsRecordedWithItsReasonAndTheSweepGoesOn() throws {
        let s = try SweepBox()
        let swept = try s.sweep(["--objective", "loss.min", "--param", "lr=0.1,10,0,0.01", "--strategy", "grid", "--local", "2"],
                                env: ["XDG_CACHE_HOME": s.box.root + "/cache"])
        #expect(swept.status == 0, "\(swept.stderr)")
        let lines = swept.jsonLines.sorted { ($0["trial"] as! Int) < ($1["trial"] as! Int) }
        #expect(lines.map { $0["status"] as? String } == ["completed", "failed", "failed", "completed"], "\(swept.out)")
        #expect(lines[1]["reason"] as? String == "exit status 1", "\(lines[1])")
        #expect(lines[2]["reason"] as? String == "it recorded no value of loss", "\(lines[2])")
        #expect(abs(number(lines[3]["objective"])! - SweepBox.loss(lr: 0.01, bs: 32)) < 1e-9)
        let record = try s.record(try s.newestSweep())
        #expect(record["status"] as? String == "finished")
        #expect(number((record["best"] as? [String: Any])?["trial"]) == 3)
        #expect(try s.queue.log(lines[1]["id"] as! String).contains("diverged: lr too high"))
    }

    @Test func maxFailuresStopsTheSweep() throws {
        let s = try SweepBox()
        let swept = try s.sweep(["--objective", "loss", "--param", "lr=10,0.1,0.01", "--strategy", "grid", "--local", "1",
                                 "--max-failures", "1"], env: ["XDG_CACHE_HOME": s.box.root + "/cache"])
        #expect(swept.status == 1)
        let id = try s.newestSweep()
        #expect(swept.stderr.hasSuffix("cml-queue: error: sweep \(String(id.prefix(16))) failed: 1 trials failed (--max-failures 1)\n"), "\(swept.stderr)")
        let record = try s.record(id)
        #expect(record["status"] as? String == "failed")
        #expect((record["trials"] as? [[String: Any]])?.count == 1)
        // Resumed, it goes on from where it stopped.
        let resumed = try s.box.run("cml-queue", ["sweep", "resume", id], env: ["XDG_CACHE_HOME": s.box.root + "/cache"])
        #expect(resumed.status == 1, "\(resumed.stderr)")
    }

    @Test func resumeAfterKillNineOfTheControllerRunsNoTrialTwice() throws {
        let s = try SweepBox()
        let agent = try s.queue.agent("a", queue: "gpu", ["--slots", "2"])
        defer { kill(agent.pid, SIGKILL) }
        #expect(try s.queue.waitIdle(["a"]))
        let arguments = ["--objective", "loss", "--param", "lr=loguniform(1e-3,1)", "--param", "sleep=0.4", "--trials", "8",
                         "--parallel", "2", "--queue", "gpu", "--seed", "3"]
        let controller = try s.box.start("cml-queue", ["sweep", s.base] + arguments, cwd: s.repo)
        #expect(waitUntil(timeout: 60) { controller.stdoutSoFar.split(separator: "\n").count >= 3 })
        kill(controller.pid, SIGKILL)
        let killed = try controller.wait()
        let id = try s.newestSweep()
        let listed = try s.box.run("cml-queue", ["sweep", "ls"]).jsonLines.first
        #expect(listed?["status"] as? String == "lost", "\(String(describing: listed))")

        let resumed = try s.box.run("cml-queue", ["sweep", "resume", String(id.prefix(10))], cwd: s.repo)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stderr.contains("sweep \(id) resumed: "), "\(resumed.stderr)")
        let trials = try s.trials(id)
        #expect(trials.map { $0["trial"] as? Int } == Array(0..<8))
        #expect(trials.allSatisfy { $0["status"] as? String == "completed" }, "\(trials)")
        // One run per trial, each started once, with the values its trial number draws.
        let members = try s.members(id)
        #expect(members.count == 8)
        #expect(Set(members.compactMap { $0["id"] as? String }) == Set(trials.compactMap { $0["id"] as? String }))
        for run in members {
            let shown = try s.box.show(run["id"] as! String)
            #expect((shown["attempts"] as? [[String: Any]])?.count == 1, "\(shown)")
        }
        let sampled = try s.box.run("cml-run", ["clone", s.base, "--sample", "lr=loguniform(1e-3,1)", "-n", "8", "--seed", "3"]).jsonLines
        let sampledLR = sampled.map { Double(($0["command"] as? [String] ?? []).drop { $0 != "--lr" }.dropFirst().first ?? "") }
        #expect(sampledLR == trials.map { number(($0["params"] as? [String: Any])?["lr"]) })
        #expect(try s.record(id)["status"] as? String == "finished")
        // Printed by the two controllers together: every trial once.
        let printed = (killed.out + resumed.out).split(separator: "\n").compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["trial"] as? Int
        }
        #expect(printed.sorted() == Array(0..<8), "\(printed)")
        let again = try s.box.run("cml-queue", ["sweep", "resume", id])
        #expect(again.status == 1 && again.stderr.contains("has finished: all its trials ran"), "\(again.stderr)")
    }

    @Test func ctrlCStopsQueueingAndLetsTheRunningTrialsFinish() throws {
        let s = try SweepBox()
        let env = ["XDG_CACHE_HOME": s.box.root + "/cache"]
        let controller = try s.box.start("cml-queue", ["sweep", s.base, "--objective", "loss", "--param", "lr=loguniform(1e-3,1)",
                                                       "--param", "sleep=0.5", "--trials", "10", "--local", "2", "--seed", "1"], env: env, cwd: s.repo)
        var id = ""
        #expect(waitUntil(timeout: 30) {
            guard let newest = (try? s.box.run("cml-queue", ["sweep", "ls"]))?.jsonLines.first?["id"] as? String else { return false }
            id = newest
            return (try? s.members(newest).filter { $0["status"] as? String == "running" }.count) == 2
        })
        kill(controller.pid, SIGINT)
        let stopped = try controller.wait()
        #expect(stopped.status == 0, "\(stopped.stderr)")
        #expect(stopped.stderr.contains("stopping: no new trials; waiting for those queued or running"), "\(stopped.stderr)")
        let record = try s.record(id)
        #expect(record["status"] as? String == "stopped", "\(record)")
        let trials = try #require(record["trials"] as? [[String: Any]])
        #expect(trials.count < 10 && trials.count >= 2)
        #expect(trials.allSatisfy { $0["status"] as? String == "completed" }, "\(trials)")

        // --abort-on-exit aborts what runs instead; resume then finishes the sweep.
        let aborting = try s.box.start("cml-queue", ["sweep", "resume", id, "--abort-on-exit"], env: env, cwd: s.repo)
        #expect(waitUntil(timeout: 30) { (try? s.members(id).filter { $0["status"] as? String == "running" }.count) == 2 })
        kill(aborting.pid, SIGINT)
        let aborted = try aborting.wait()
        #expect(aborted.status == 0, "\(aborted.stderr)")
        let afterAbort = try s.trials(id)
        #expect(afterAbort.filter { $0["status"] as? String == "aborted" }.count == 2, "\(afterAbort)")
        let finished = try s.box.run("cml-queue", ["sweep", "resume", id], env: env, cwd: s.repo)
        #expect(finished.status == 0, "\(finished.stderr)")
        let final = try s.trials(id)
        #expect(final.count == 10)
        #expect(final.filter { $0["status"] as? String == "completed" }.count == 8, "\(final)")
        #expect(try s.members(id).count == 10)
    }

    @Test func aSweepAgainstAServerIsRecordedThere() throws {
        let s = try SweepBox()
        let server = try ServeQueueTests.served(s.box)
        let env = ["XDG_CACHE_HOME": s.box.root + "/cache", "CML_STORE": server.url, "CML_TOKEN": "", "CML_UPLOAD_WAIT": "60"]
        let ran = try s.box.run("cml-run", ["--name", "remote-base", "--", "python3", "sweep.py", "--lr", "0.1"], env: env, cwd: s.repo)
        #expect(ran.status == 0, "\(ran.stderr)")
        let swept = try s.box.run("cml-queue", ["sweep", "remote-base", "--objective", "loss", "--param", "lr=0.1,0.01", "--param", "bs=16,32",
                                                "--strategy", "grid", "--local", "2"], env: env, cwd: s.repo)
        #expect(swept.status == 0, "\(swept.stderr)")
        #expect(swept.jsonLines.count == 4)
        // The server's store holds the sweep and its trials, as the directory reads them.
        let listed = try s.box.run("cml-queue", ["sweep", "ls", "--store", s.box.store])
        let id = try #require(listed.jsonLines.first?["id"] as? String)
        #expect(listed.jsonLines.first?["status"] as? String == "finished")
        #expect(abs(number(listed.jsonLines.first?["best"])! - SweepBox.loss(lr: 0.01, bs: 16)) < 1e-9)
        #expect(try s.members(id).count == 4)
        let remote = try s.box.run("cml-queue", ["sweep", "show", String(id.prefix(8))], env: env)
        #expect((try #require(remote.jsonLines.first))["id"] as? String == id, "\(remote.stderr)")
    }

    @Test func cloneMakesAGridAndSeededDrawsForAPipe() throws {
        let s = try SweepBox()
        let grid = try s.box.run("cml-run", ["clone", s.base, "--grid", "lr=0.1,0.01", "--grid", "bs=32,64", "--set", "epochs=2"])
        #expect(grid.status == 0, "\(grid.stderr)")
        #expect(grid.jsonLines.map { ($0["command"] as? [String] ?? []).joined(separator: " ") } == [
            "python3 sweep.py --lr 0.1 --sleep 0 --epochs 2 --bs 32", "python3 sweep.py --lr 0.1 --sleep 0 --epochs 2 --bs 64",
            "python3 sweep.py --lr 0.01 --sleep 0 --epochs 2 --bs 32", "python3 sweep.py --lr 0.01 --sleep 0 --epochs 2 --bs 64",
        ])
        let drawn = try s.box.run("cml-run", ["clone", s.base, "--sample", "lr=loguniform(1e-4,1e-1)", "--sample", "bs=choice(32,64,128)",
                                              "-n", "5", "--seed", "1"])
        #expect(drawn.jsonLines.count == 5 && drawn.stderr.isEmpty, "\(drawn.stderr)")
        let again = try s.box.run("cml-run", ["clone", s.base, "--sample", "lr=loguniform(1e-4,1e-1)", "--sample", "bs=choice(32,64,128)",
                                              "-n", "5", "--seed", "1"])
        #expect(again.out == drawn.out)
        let unseeded = try s.box.run("cml-run", ["clone", s.base, "--sample", "lr=loguniform(1e-4,1e-1)"])
        #expect(unseeded.jsonLines.count == 1 && unseeded.stderr.hasPrefix("cml-run: --sample drew with --seed "), "\(unseeded.stderr)")
        // They queue as any spec does.
        let queued = try s.box.run("cml-queue", ["add", "gpu"], stdin: grid.stdout)
        #expect(queued.status == 0 && queued.jsonLines.count == 4, "\(queued.stderr)")
        for (args, error) in [(["-n", "2"], "cml-run: error: -n 2 counts --sample's draws, and no --sample is given"),
                              (["--grid", "lr=1,2", "--set", "lr=3"], "cml-run: error: lr is given more than once among --set, --grid and --sample"),
                              (["--sample", "lr=1,2", "-n", "0"], "cml-run: error: -n must be at least 1")] {
            let refused = try s.box.run("cml-run", ["clone", s.base] + args)
            #expect(refused.status == 2 && refused.stderr.hasPrefix(error) && refused.out.isEmpty, "\(refused.stderr)")
        }
    }

    @Test func badSweepsAreRefusedAndRecordNothing() throws {
        let s = try SweepBox()
        func refused(_ args: [String]) throws -> String {
            let result = try s.sweep(args)
            #expect(result.status != 0, "\(args)")
            return result.stderr.split(separator: "\n").first.map(String.init) ?? ""
        }
        let space = ["--param", "lr=0.1,0.01"]
        #expect(try refused(["--objective", "loss", "--trials", "2"]).hasPrefix("cml-queue: error: no --param given: a sweep needs at least one parameter"))
        #expect(try refused(["--objective", "loss"] + space).hasPrefix("cml-queue: error: --trials is needed with --strategy random"))
        #expect(try refused(["--objective", "loss", "--trials", "2", "--strategy", "bayes"] + space).hasPrefix("cml-queue: error: unknown strategy 'bayes'"))
        #expect(try refused(["--objective", "loss", "--trials", "2", "--param", "lr=loguniform(0,1)"])
                == "cml-queue: error: --param lr=loguniform(0,1): loguniform needs 0 < low (e.g. --param 'lr=loguniform(1e-4,1e-1)', 'bs=choice(32,64)', 'layers=int(1,4)', 'lr=0.1,0.01', 'momentum=uniform(0.5,0.99) if optimizer=sgd')")
        #expect(try refused(["--objective", "loss", "--strategy", "grid", "--param", "lr=uniform(0,1)"]).hasPrefix("cml-queue: error: lr=uniform(0.0,1.0) has no finite values"))
        #expect(try refused(["--objective", "loss", "--trials", "2", "--param", "m=0.9 if opt=sgd"])
                .hasPrefix("cml-queue: error: --param m=0.9 if opt=sgd: the condition names 'opt', which is not a parameter given before it"))
        #expect(try refused(["--objective", "loss.count", "--trials", "2"] + space)
                == "cml-queue: error: --objective loss.count: a trial is judged by its metric's last, min or max, not its count")
        #expect(try refused(["--objective", "loss", "--trials", "0"] + space) == "cml-queue: error: --trials must be at least 1")
        #expect(try refused(["--objective", "loss", "--trials", "2", "--param", "api_key=1,2"]).contains("a secret parameter's value is not recorded"))
        let unknownBase = try s.box.run("cml-queue", ["sweep", "nosuch", "--objective", "loss", "--trials", "2"] + space)
        #expect(unknownBase.stderr.hasPrefix("cml-queue: error: no run is named 'nosuch'"), "\(unknownBase.stderr)")
        #expect(try s.box.run("cml-queue", ["sweep", "ls"]).out.isEmpty)
        #expect(try s.box.run("cml-queue", ["stats"]).out.isEmpty)
        let missing = try s.box.run("cml-queue", ["sweep", "show", "0123"])
        #expect(missing.stderr == "cml-queue: error: no sweep has the id 0123 (see cml-queue sweep ls)\n", "\(missing.stderr)")
    }
}

/// A record's RFC 3339 time as seconds, or 0.
func seconds(_ value: Any?) -> Double { (value as? String).flatMap { CMLKit.Clock.parseTime($0) } ?? 0 }

/// The records of sweeps through the store API: a project-bound token sees and writes only its own.
struct ControllerRoutesTests {
    @Test func aProjectBoundTokenSeesAndWritesOnlyItsProjectsRecords() throws {
        let box = try Sandbox()
        let local = try SQLiteStore(directory: box.store)
        func record(_ project: String) -> ControllerRecord {
            ControllerRecord(kind: "sweep", id: RunID.make(), project: project, createdAt: 1, updatedAt: 1, document: #"{"status":"running"}"#)
        }
        let mine = record("p1"), theirs = record("p2")
        try local.saveController(mine)
        try local.saveController(theirs)
        let token = try ServeAuthTests.create(box, "p1-writer", scope: "write", projects: ["p1"])
        let server = try ServerUnderTest(box)
        let remote = try HTTPStore(url: server.url, token: token)
        #expect(try remote.controllers(kind: "sweep") == [mine])
        #expect(try remote.controller(kind: "sweep", id: String(mine.id.prefix(20))) == mine)
        let hidden = ServeQueueTests.failure { () throws(CMLError) in _ = try remote.controller(kind: "sweep", id: theirs.id) }
        #expect(hidden?.kind == .notFound, "\(String(describing: hidden))")
        var changed = mine
        changed.document = #"{"status":"finished"}"#
        changed.updatedAt = 2
        try remote.saveController(changed)
        #expect(try local.controller(kind: "sweep", id: mine.id) == changed)
        // Another project's record is refused, also when the record says it is of the token's project.
        var claimed = theirs
        claimed.project = "p1"
        for refusedRecord in [theirs, claimed] {
            let refused = ServeQueueTests.failure { () throws(CMLError) in try remote.saveController(refusedRecord) }
            #expect(refused?.kind == .refused, "\(String(describing: refused))")
        }
        #expect(try local.controller(kind: "sweep", id: theirs.id) == theirs)
        // A document that is not a JSON object is refused before it is written.
        var bad = record("p1")
        bad.document = "[1]"
        #expect(ServeQueueTests.failure { () throws(CMLError) in try remote.saveController(bad) }?.kind == .invalid)
    }
}

import Foundation
import Glibc
import Testing
import CMLKit

/// A repository with the four steps of a small pipeline: prepare snapshots a dataset of N rows, two
/// trainings read it and keep a model file as an artifact, evaluate reads both models.
final class PipelineBox {
    let queue: QueueBox
    var box: Sandbox { queue.box }
    var repo: String { queue.repo }
    /// Where a step may be told to fail: `fail-STEP` there makes it fail; `count-STEP` counts its starts.
    var flags: String { box.root + "/flags" }
    var env: [String: String] {
        ["PATH": binDirectory + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"), "FLAGS": flags,
         "XDG_CACHE_HOME": box.root + "/cache"]
    }

    static let fourSteps = """
        name: demo
        steps:
          prepare:
            command: ./step.sh prepare && ./prepare.sh ${params.rows}
            params: {rows: 100}
          train_a:
            command: ./step.sh train_a && python3 train.py --lr ${params.lr} --sleep ${params.sleep}
            params: {lr: 0.1, sleep: 0.5}
            inputs: {data: prepare.rows}
            outputs: {artifacts: [model.txt]}
          train_b:
            command: ./step.sh train_b && python3 train.py --lr ${params.lr} --sleep ${params.sleep}
            params: {lr: 0.01, sleep: 0.5}
            inputs: {data: prepare.rows}
            outputs: {artifacts: [model.txt]}
          evaluate:
            command: ./step.sh evaluate && cat "$CML_INPUT_A" "$CML_INPUT_B" && echo "rows=${prepare.params.rows}"
            inputs: {a: train_a.model.txt, b: train_b.model.txt}
        """

    init(pipeline: String = PipelineBox.fourSteps) throws {
        queue = try QueueBox()
        try FileManager.default.createDirectory(atPath: box.root + "/flags", withIntermediateDirectories: true)
        // Counts its starts, and fails while its flag exists.
        try box.write(repo + "/step.sh", """
            #!/bin/sh
            echo start >> "$FLAGS/count-$1"
            if [ -e "$FLAGS/fail-$1" ]; then echo "$1 told to fail" >&2; exit 3; fi
            """, mode: 0o755)
        try box.write(repo + "/prepare.sh", """
            #!/bin/sh
            mkdir -p out && seq 1 "$1" > out/rows.txt
            cml-data snapshot out --name rows > /dev/null
            """, mode: 0o755)
        try box.write(repo + "/train.py", """
            import argparse, os, time
            parser = argparse.ArgumentParser()
            parser.add_argument("--lr", type=float)
            parser.add_argument("--sleep", type=float, default=0)
            args = parser.parse_args()
            rows = len(open(os.path.join(os.environ["CML_INPUT_DATA"], "rows.txt")).read().split())
            time.sleep(args.sleep)
            print(f"loss={1 / (rows * args.lr):.6f}", flush=True)
            with open("model.txt", "w") as f:
                f.write(f"model lr={args.lr} rows={rows}\\n")
            """)
        try box.write(repo + "/pipeline.yaml", pipeline)
        let commit = try shell("git add -A && git commit -qm pipeline", cwd: repo)
        #expect(commit.status == 0, "\(commit.stderr)")
    }

    func run(_ args: [String], file: String = "pipeline.yaml") throws -> CommandResult {
        try box.run("cml-queue", ["pipeline", "run", file] + args, env: env, cwd: repo)
    }

    func record(_ id: String) throws -> [String: Any] {
        let shown = try box.run("cml-queue", ["pipeline", "show", id])
        #expect(shown.status == 0, "\(shown.stderr)")
        return try #require(shown.jsonLines.first)
    }

    /// Each step's record by name.
    func steps(_ id: String) throws -> [String: [String: Any]] {
        var steps: [String: [String: Any]] = [:]
        for step in try record(id)["steps"] as? [[String: Any]] ?? [] { steps[step["step"] as! String] = step }
        return steps
    }

    func states(_ id: String) throws -> [String: String] { try steps(id).mapValues { $0["status"] as? String ?? "" } }

    func newest() throws -> String {
        try #require(try box.run("cml-queue", ["pipeline", "ls"]).jsonLines.first?["id"] as? String)
    }

    /// How many times each step's command started.
    func starts(_ step: String) -> Int {
        ((try? String(contentsOfFile: flags + "/count-" + step, encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    func allRuns() throws -> [[String: Any]] { try box.run("cml-run", ["ls"]).jsonLines }
}

struct PipelineEndToEndTests {
    @Test func fourStepsRunLocallyTheTrainingsInParallelThenARerunIsCachedAndOneParameterRerunsOnlyItsDescendants() throws {
        let p = try PipelineBox()
        let ran = try p.run(["--local", "2"])
        #expect(ran.status == 0, "\(ran.stderr)")
        let lines = ran.jsonLines
        #expect(lines.map { $0["step"] as? String } .count == 4, "\(ran.out)")
        #expect(lines.first?["step"] as? String == "prepare" && lines.last?["step"] as? String == "evaluate", "\(ran.out)")
        #expect(lines.allSatisfy { $0["status"] as? String == "completed" && $0["cached"] as? Bool == false }, "\(ran.out)")
        let id = try p.newest()
        let steps = try p.steps(id)

        // The two trainings ran at the same time, each after prepare and before evaluate.
        let shown = try steps.mapValues { try p.box.show($0["id"] as! String) }
        let start = shown.mapValues { seconds($0["started_at"]) }, end = shown.mapValues { seconds($0["ended_at"]) }
        #expect(start["train_a"]! < end["train_b"]! && start["train_b"]! < end["train_a"]!, "\(start) \(end)")
        #expect(end["prepare"]! <= min(start["train_a"]!, start["train_b"]!))
        #expect(start["evaluate"]! >= max(end["train_a"]!, end["train_b"]!))
        // Inputs reached the steps as files: the dataset (its rows), the models; and an earlier step's parameter.
        let evaluated = try p.box.run("cml-run", ["log", steps["evaluate"]!["id"] as! String]).out
        #expect(evaluated.contains("model lr=0.1 rows=100") && evaluated.contains("model lr=0.01 rows=100") && evaluated.contains("rows=100"),
                "\(evaluated)")
        #expect(number((shown["train_a"]!["metrics"] as? [String: Any])?["loss"].flatMap { ($0 as? [String: Any])?["last"] }) == 0.1)
        // The trainings record that they used the version prepare made, and cml-data log shows which run made it.
        let version = try #require(try p.box.run("cml-data", ["log", "rows"]).jsonLines.first)
        #expect(version["run"] as? String == steps["prepare"]!["id"] as? String, "\(version)")
        #expect(version["made_by_step"] as? [String: String] == ["pipeline": id, "step": "prepare"], "\(version)")
        #expect(((shown["train_b"]!["datasets"] as? [[String: Any]])?.first?["id"] as? String) == version["id"] as? String)
        // Listed by cml-run ls --where 'pipeline = ID'.
        let members = try p.box.run("cml-run", ["ls", "--where", "pipeline = \(id)"]).jsonLines
        #expect(Set(members.compactMap { $0["id"] as? String }) == Set(steps.values.compactMap { $0["id"] as? String }))

        // Again: every step cached, no run started.
        let runsBefore = try p.allRuns().count
        let again = try p.run(["--local", "2"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.jsonLines.allSatisfy { $0["status"] as? String == "cached" && $0["cached"] as? Bool == true }, "\(again.out)")
        #expect(again.jsonLines.count == 4)
        #expect(try p.allRuns().count == runsBefore)
        let cachedSteps = try p.steps(try p.newest())
        #expect(cachedSteps.mapValues { $0["id"] as? String } == steps.mapValues { $0["id"] as? String })
        // Its runs are the first pipeline's; cml-queue pipeline runs lists them as cml-run ls does, for cml-diff.
        let reused = try p.box.run("cml-queue", ["pipeline", "runs", try p.newest()]).jsonLines
        #expect(reused.compactMap { $0["id"] as? String } == ["prepare", "train_a", "train_b", "evaluate"].map { steps[$0]!["id"] as! String })
        #expect(reused.allSatisfy { $0["status"] as? String == "completed" && $0["params"] != nil }, "\(reused)")
        #expect(["prepare", "train_a", "train_b", "evaluate"].allSatisfy { p.starts($0) == 1 })

        // One parameter changed: that step and its descendants run, nothing else.
        let changed = try p.run(["--local", "2", "--set", "train_b.lr=0.5"])
        #expect(changed.status == 0, "\(changed.stderr)")
        #expect(try p.states(try p.newest()) == ["prepare": "cached", "train_a": "cached", "train_b": "completed", "evaluate": "completed"])
        #expect(p.starts("prepare") == 1 && p.starts("train_a") == 1 && p.starts("train_b") == 2 && p.starts("evaluate") == 2)

        // Forced, prepare runs again; it makes the same rows, so the trainings' inputs are the same content.
        let forced = try p.run(["--local", "2", "--set", "train_b.lr=0.5", "--force", "prepare"])
        #expect(forced.status == 0, "\(forced.stderr)")
        #expect(try p.states(try p.newest()) == ["prepare": "completed", "train_a": "cached", "train_b": "cached", "evaluate": "cached"])
        let everything = try p.run(["--local", "2", "--force-all"])
        #expect(everything.status == 0, "\(everything.stderr)")
        #expect(try p.states(try p.newest()).values.allSatisfy { $0 == "completed" })
    }

    @Test func stepsRunThroughTwoAgentsEachOnce() throws {
        let p = try PipelineBox()
        let agents = try ["a", "b"].map { try p.queue.agent($0, queue: "gpu", env: p.env) }
        defer { for agent in agents { kill(agent.pid, SIGKILL) } }
        #expect(try p.queue.waitIdle(["a", "b"]))
        let ran = try p.run(["--queue", "gpu"])
        #expect(ran.status == 0, "\(ran.stderr)")
        let steps = try p.steps(try p.newest())
        #expect(steps.values.allSatisfy { $0["status"] as? String == "completed" }, "\(steps)")
        let shown = try steps.mapValues { try p.box.show($0["id"] as! String) }
        #expect(shown.values.allSatisfy { ($0["attempts"] as? [[String: Any]])?.count == 1 && $0["queue"] as? String == "gpu" })
        let agentsUsed = Set(shown.values.compactMap { ($0["attempts"] as? [[String: Any]])?.first?["agent"] as? String })
        #expect(agentsUsed == ["a", "b"], "\(agentsUsed)")
        #expect(["prepare", "train_a", "train_b", "evaluate"].allSatisfy { p.starts($0) == 1 })
    }

    @Test func aFailedStepStopsItsDescendantsNotItsSiblingsRetriesAndResumeRerunsFromTheFailure() throws {
        let p = try PipelineBox(pipeline: PipelineBox.fourSteps.replacingOccurrences(
            of: "    params: {lr: 0.01, sleep: 0.5}\n", with: "    params: {lr: 0.01, sleep: 0.5}\n    retries: 1\n"))
        _ = FileManager.default.createFile(atPath: p.flags + "/fail-train_b", contents: nil)
        let ran = try p.run(["--local", "2"])
        #expect(ran.status == 1, "\(ran.stderr)")
        #expect(ran.stderr.contains("failed: step train_b failed: exit status 3"), "\(ran.stderr)")
        #expect(ran.stderr.contains("attempt 2 of 2"), "\(ran.stderr)")
        let id = try p.newest()
        let steps = try p.steps(id)
        #expect(try p.states(id) == ["prepare": "completed", "train_a": "completed", "train_b": "failed", "evaluate": "blocked"])
        #expect((steps["train_b"]!["attempts"] as? [String])?.count == 2 && p.starts("train_b") == 2)
        #expect(steps["evaluate"]!["reason"] as? String == "not run: train_b failed")
        #expect(p.starts("evaluate") == 0)
        #expect(try p.box.run("cml-queue", ["pipeline", "ls"]).jsonLines.first?["status"] as? String == "failed")

        // Fixed, resumed: the failed step and what it blocked run; what completed is kept.
        try FileManager.default.removeItem(atPath: p.flags + "/fail-train_b")
        let resumed = try p.box.run("cml-queue", ["pipeline", "resume", String(id.prefix(10))], env: p.env, cwd: p.repo)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try p.states(id).values.allSatisfy { $0 == "completed" })
        #expect(try p.steps(id)["train_a"]?["id"] as? String == steps["train_a"]?["id"] as? String)
        #expect(p.starts("prepare") == 1 && p.starts("train_a") == 1 && p.starts("train_b") == 3 && p.starts("evaluate") == 1)
        let again = try p.box.run("cml-queue", ["pipeline", "resume", id])
        #expect(again.status == 1 && again.stderr.contains("has completed"), "\(again.stderr)")
    }

    @Test func resumeAfterKillNineOfTheControllerRunsNoStepTwice() throws {
        let p = try PipelineBox(pipeline: PipelineBox.fourSteps.replacingOccurrences(of: "sleep: 0.5", with: "sleep: 2"))
        let agent = try p.queue.agent("a", queue: "gpu", ["--slots", "2"], env: p.env)
        defer { kill(agent.pid, SIGKILL) }
        #expect(try p.queue.waitIdle(["a"]))
        let controller = try p.box.start("cml-queue", ["pipeline", "run", "pipeline.yaml", "--queue", "gpu"], env: p.env, cwd: p.repo)
        #expect(waitUntil(timeout: 60) { p.starts("train_a") == 1 && p.starts("train_b") == 1 })
        kill(controller.pid, SIGKILL)
        _ = try controller.wait()
        let id = try p.newest()
        #expect(try p.box.run("cml-queue", ["pipeline", "ls"]).jsonLines.first?["status"] as? String == "lost")
        let refused = try p.box.run("cml-queue", ["pipeline", "resume", "nonexistent"])
        #expect(refused.status != 0)

        let resumed = try p.box.run("cml-queue", ["pipeline", "resume", id], env: p.env, cwd: p.repo)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let states = try p.states(id)
        #expect(states.values.allSatisfy { $0 == "completed" }, "\(states)")
        #expect(["prepare", "train_a", "train_b", "evaluate"].allSatisfy { p.starts($0) == 1 })
        let members = try p.box.run("cml-run", ["ls", "--where", "pipeline = \(id)"]).jsonLines
        #expect(members.count == 4, "\(members)")
    }

    @Test func ctrlCStopsStartingStepsAndLetsTheRunningOneFinish() throws {
        let p = try PipelineBox(pipeline: PipelineBox.fourSteps.replacingOccurrences(
            of: "./step.sh prepare && ./prepare.sh", with: "./step.sh prepare && sleep 2 && ./prepare.sh"))
        let controller = try p.box.start("cml-queue", ["pipeline", "run", "pipeline.yaml", "--local", "2"], env: p.env, cwd: p.repo)
        #expect(waitUntil(timeout: 30) { p.starts("prepare") == 1 })
        kill(controller.pid, SIGINT)
        let stopped = try controller.wait()
        #expect(stopped.status == 130, "\(stopped.stderr)")
        #expect(stopped.stderr.contains("stopping: no new steps; waiting for those queued or running"), "\(stopped.stderr)")
        let id = try p.newest()
        #expect(try p.states(id) == ["prepare": "completed", "train_a": "waiting", "train_b": "waiting", "evaluate": "waiting"])
        #expect(try p.record(id)["status"] as? String == "stopped")
        #expect(p.starts("train_a") == 0)
        let resumed = try p.box.run("cml-queue", ["pipeline", "resume", id], env: p.env, cwd: p.repo)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try p.states(id).values.allSatisfy { $0 == "completed" })
        #expect(["prepare", "train_a", "train_b", "evaluate"].allSatisfy { p.starts($0) == 1 })
    }

    @Test func aStepPastItsTimeoutIsAbortedAndFails() throws {
        let p = try PipelineBox(pipeline: """
            steps:
              slow:
                command: sleep 30
                timeout: 1s
              after:
                command: echo never
                needs: slow
            """)
        let started = Date()
        let ran = try p.run(["--local", "1"])
        #expect(ran.status == 1, "\(ran.stderr)")
        #expect(Date().timeIntervalSince(started) < 20)
        let steps = try p.steps(try p.newest())
        #expect(steps["slow"]?["status"] as? String == "failed" && steps["slow"]?["reason"] as? String == "timed out after 1 s", "\(steps)")
        #expect(steps["after"]?["status"] as? String == "blocked")
        #expect(try p.box.show(steps["slow"]!["id"] as! String)["status"] as? String == "aborted")
    }

    @Test func declaredOutputsAreRecordedByTheRunAndOneMissingFailsIt() throws {
        let p = try PipelineBox(pipeline: """
            steps:
              make:
                command: mkdir -p data && echo 1 > data/a && echo 2 > data/b && echo report > report.txt
                outputs: {datasets: {made: data}, artifacts: [report.txt]}
              use:
                command: cat "$CML_INPUT_DATA/a" "$CML_INPUT_DATA/b" "$CML_INPUT_REPORT"
                inputs: {data: make.made, report: make.report.txt}
              forgetful:
                command: "true"
                outputs: {artifacts: [never.txt]}
            """)
        let ran = try p.run(["--local", "2"])
        #expect(ran.status == 1, "\(ran.stderr)")
        let steps = try p.steps(try p.newest())
        #expect(steps["make"]?["status"] as? String == "completed" && steps["use"]?["status"] as? String == "completed", "\(steps)")
        #expect(steps["forgetful"]?["status"] as? String == "failed", "\(steps)")
        #expect(steps["forgetful"]?["reason"] as? String == "its outputs were not recorded: never.txt does not exist", "\(steps)")
        let used = try p.box.run("cml-run", ["log", steps["use"]!["id"] as! String]).out
        #expect(used == "1\n2\nreport\n", "\(used)")
        let version = try #require(try p.box.run("cml-data", ["log", "made"]).jsonLines.first)
        #expect(version["run"] as? String == steps["make"]?["id"] as? String && version["files"] as? Int == 2, "\(version)")
        let artifacts = try p.box.run("cml-run", ["artifacts", steps["make"]!["id"] as! String]).jsonLines
        #expect(artifacts.map { $0["name"] as? String } == ["report.txt"], "\(artifacts)")
    }

    @Test func aBadFileIsRefusedNamingItsLineAndNothingIsRecorded() throws {
        let p = try PipelineBox()
        let cases: [(String, String)] = [
            ("steps: [oops", "not valid YAML"),
            ("steps:\n  a:\n    comand: true\n", "bad.yaml:3: step a has no setting 'comand'"),
            ("steps:\n  a:\n    command: true\n    needs: [b]\n  b:\n    command: true\n    needs: a\n", "depend on each other in a cycle"),
            ("steps:\n  a:\n    command: true\n    inputs: {x: nowhere.model}\n", "input x comes from nowhere, which is not a step"),
            ("steps:\n  a:\n    command: echo ${params.lr}\n", "${params.lr} names no parameter of the step"),
            ("steps:\n  a.b:\n    command: true\n", "a step's name is letters, digits, _ and -"),
            ("steps:\n  a:\n    base: 0123\n    command: true\n", "has both a command and a base run"),
            ("steps:\n  a:\n    command: true\n    retries: many\n", "bad.yaml:4: step a: retries must be a whole number"),
            ("steps:\n  a:\n    command: true\n    outputs: {artifacts: [../x]}\n", "must be a path inside the directory"),
            ("", "a pipeline file is a mapping with steps"),
        ]
        for (text, message) in cases {
            try p.box.write(p.repo + "/bad.yaml", text)
            let ran = try p.run([], file: "bad.yaml")
            #expect(ran.status != 0 && ran.stderr.contains(message), "\(text): \(ran.stderr)")
        }
        let unknownStep = try p.run(["--set", "nope.lr=1"])
        #expect(unknownStep.status != 0 && unknownStep.stderr.contains("the pipeline has no step nope"), "\(unknownStep.stderr)")
        let unknownParam = try p.run(["--set", "prepare.lr=1"])
        #expect(unknownParam.status != 0 && unknownParam.stderr.contains("step prepare has no parameter lr"), "\(unknownParam.stderr)")
        let missing = try p.run([], file: "missing.yaml")
        #expect(missing.status != 0 && missing.stderr.contains("missing.yaml"), "\(missing.stderr)")
        #expect(try p.box.run("cml-queue", ["pipeline", "ls"]).jsonLines.isEmpty)
        #expect(try p.allRuns().isEmpty)
    }

    @Test func aPipelineAgainstAServerIsRecordedThereAndItsRerunIsCached() throws {
        let p = try PipelineBox()
        let server = try ServeQueueTests.served(p.box)
        var env = p.env
        env.merge(["CML_STORE": server.url, "CML_TOKEN": "", "CML_UPLOAD_WAIT": "60"]) { $1 }
        let ran = try p.box.run("cml-queue", ["pipeline", "run", "pipeline.yaml", "--local", "2"], env: env, cwd: p.repo)
        #expect(ran.status == 0, "\(ran.stderr)")
        #expect(ran.jsonLines.allSatisfy { $0["status"] as? String == "completed" } && ran.jsonLines.count == 4, "\(ran.out)")
        // The server's store holds the pipeline, its runs and the version prepare made, as the directory reads them.
        let id = try p.newest()
        #expect(try p.states(id).values.allSatisfy { $0 == "completed" })
        let evaluated = try p.box.run("cml-run", ["log", try p.steps(id)["evaluate"]!["id"] as! String]).out
        #expect(evaluated.contains("model lr=0.1 rows=100") && evaluated.contains("model lr=0.01 rows=100"), "\(evaluated)")
        #expect(try p.box.run("cml-data", ["log", "rows"]).jsonLines.first?["made_by_step"] as? [String: String] == ["pipeline": id, "step": "prepare"])
        let again = try p.box.run("cml-queue", ["pipeline", "run", "pipeline.yaml", "--local", "2"], env: env, cwd: p.repo)
        #expect(again.status == 0 && again.jsonLines.allSatisfy { $0["status"] as? String == "cached" }, "\(again.stderr)")
        let shown = try p.box.run("cml-queue", ["pipeline", "show", String(id.prefix(10))], env: env)
        #expect(shown.jsonLines.first?["id"] as? String == id, "\(shown.stderr)")
    }

    @Test func theGraphOfAFileAndOfARun() throws {
        let p = try PipelineBox()
        let text = try p.box.run("cml-queue", ["pipeline", "graph", "pipeline.yaml"], cwd: p.repo)
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.out == """
            ● prepare
              └─ train_a  ← prepare
              └─ train_b  ← prepare
                └─ evaluate  ← train_a, train_b, prepare

            """, "\(text.out)")
        let svg = try p.box.run("cml-queue", ["pipeline", "graph", "pipeline.yaml", "--svg"], cwd: p.repo)
        #expect(svg.out.hasPrefix("<svg ") && svg.out.components(separatedBy: "<rect ").count == 5
                && svg.out.components(separatedBy: "<line ").count == 6, "\(svg.out)")
        #expect(try p.run(["--local", "2"]).status == 0)
        let ofRun = try p.box.run("cml-queue", ["pipeline", "graph", try p.newest()])
        #expect(ofRun.out.contains("└─ evaluate [completed "), "\(ofRun.out)")
    }
}

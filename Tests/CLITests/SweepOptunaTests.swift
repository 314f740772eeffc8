import Foundation
import Glibc
import Testing

/// `--strategy optuna` with the real optuna package from PyPI: `$CML_OPTUNA`, else the virtual
/// environment scripts/test makes in .build/optuna-venv.
struct SweepOptunaTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    static func optuna() throws -> String {
        let path = ProcessInfo.processInfo.environment["CML_OPTUNA"] ?? root + "/.build/optuna-venv/bin/optuna"
        try #require(FileManager.default.isExecutableFile(atPath: path),
                     "\(path) is missing: scripts/test makes .build/optuna-venv with optuna and cmaes from PyPI (or set CML_OPTUNA)")
        return path
    }

    /// The sweep's study as Optuna's own API reads it (Tests/Optuna/read_study.py).
    static func study(_ s: SweepBox, sweep id: String) throws -> [String: Any] {
        let python = (try optuna() as NSString).deletingLastPathComponent + "/python3"
        let read = try s.box.run(python, [root + "/Tests/Optuna/read_study.py", "sqlite:///\(s.box.store)/sweeps/\(id)/study.db", id])
        #expect(read.status == 0, "\(read.stderr)")
        return try #require(read.jsonLines.first)
    }

    /// A base run of a script whose loss is (lr - 0.3)² + layers/100; with CRASH_ONCE set, the first trial
    /// to start crashes (it makes that file; the others find it).
    static func quadratic(_ s: SweepBox) throws {
        try s.box.write(s.repo + "/quad.py", """
            import argparse, os, sys
            parser = argparse.ArgumentParser()
            parser.add_argument("--lr", type=float, default=0.1)
            parser.add_argument("--layers", type=int, default=1)
            args, _ = parser.parse_known_args()
            if "CRASH_ONCE" in os.environ:
                try:
                    os.close(os.open(os.environ["CRASH_ONCE"], os.O_CREAT | os.O_EXCL))
                    sys.exit("crashed on purpose")
                except FileExistsError:
                    pass
            print(f"loss={(args.lr - 0.3) ** 2 + args.layers / 100:.6f}")
            """)
        #expect(try shell("git add -A && git commit -qm quad", cwd: s.repo).status == 0)
        let ran = try s.box.run("cml-run", ["--name", "quad", "--", "python3", "quad.py", "--lr", "0.1"], cwd: s.repo)
        #expect(ran.status == 0, "\(ran.stderr)")
    }

    @Test func tpeFromTheRealPackageSweepsAndTheStudyMatchesTheRecord() throws {
        let s = try SweepBox()
        try Self.quadratic(s)
        let env = ["XDG_CACHE_HOME": s.box.root + "/cache", "CML_OPTUNA": try Self.optuna(), "CRASH_ONCE": s.box.root + "/crashed"]
        let swept = try s.box.run("cml-queue", ["sweep", "quad", "--objective", "loss", "--strategy", "optuna", "--param", "lr=uniform(0,1)",
                                                "--param", "layers=int(1,3)", "--param", "opt=choice(sgd,adam)", "--trials", "12",
                                                "--local", "2", "--seed", "4"], env: env, cwd: s.repo)
        #expect(swept.status == 0, "\(swept.stderr)")
        let id = try s.newestSweep()
        #expect(swept.stderr.contains("cml-queue: its Optuna study: optuna trials --storage sqlite:///\(s.box.store)/sweeps/\(id)/study.db "
                                      + "--study-name \(id)\n"), "\(swept.stderr)")
        let record = try s.record(id)
        #expect(record["status"] as? String == "finished")
        #expect((record["configuration"] as? [String: Any])?["sampler"] as? String == "TPESampler")
        let trials = try #require(record["trials"] as? [[String: Any]])
        #expect(trials.count == 12)
        #expect(trials.filter { $0["status"] as? String == "completed" }.count == 11, "\(trials)")
        let crashed = try #require(trials.first { $0["status"] as? String == "failed" })
        #expect(crashed["reason"] as? String == "exit status 1")

        // Optuna's study says what cml recorded: each trial's number, state, value and params.
        let study = try Self.study(s, sweep: id)
        #expect(study["direction"] as? String == "MINIMIZE")
        let told = try #require(study["trials"] as? [[String: Any]])
        #expect(told.count == 12)
        for trial in trials {
            let optunaNumber = try #require((trial["info"] as? [String: Any])?["optuna_trial"] as? Int)
            let optuna = try #require(told.first { $0["number"] as? Int == optunaNumber })
            let params = try #require(trial["params"] as? [String: Any]), asked = try #require(optuna["params"] as? [String: Any])
            #expect(abs(number(params["lr"])! - number(asked["lr"])!) <= 5e-7, "\(params) \(asked)")
            #expect(params["layers"] as? Int == asked["layers"] as? Int && params["opt"] as? String == asked["opt"] as? String)
            if trial["status"] as? String == "completed" {
                #expect(optuna["state"] as? String == "COMPLETE")
                #expect(number(optuna["value"]) == number(trial["objective"]))
                let lr = number(params["lr"])!, layers = Double(params["layers"] as! Int)
                #expect(abs(number(trial["objective"])! - ((lr - 0.3) * (lr - 0.3) + layers / 100)) < 1e-6)
            } else {
                #expect(optuna["state"] as? String == "FAIL" && optuna["value"] is NSNull)
            }
        }
        let best = try #require(record["best"] as? [String: Any])
        let bestTrial = try #require(trials.first { $0["trial"] as? Int == best["trial"] as? Int })
        #expect((bestTrial["info"] as? [String: Any])?["optuna_trial"] as? Int == study["best"] as? Int)
    }

    @Test func anErrorOfOptunaFailsTheSweepAndResumeGoesOnWithTheStudy() throws {
        let s = try SweepBox()
        try Self.quadratic(s)
        let real = try Self.optuna()
        // Asks for a third trial, as Optuna, then fails as if its sampler had broken.
        try s.box.write(s.box.root + "/broken-optuna", """
            #!/bin/sh
            if [ "$1" = ask ]; then
              count=$(($(cat "\(s.box.root)/asks" 2>/dev/null || echo 0) + 1)); echo $count > "\(s.box.root)/asks"
              if [ $count -ge 3 ]; then "\(real)" "$@" > /dev/null 2>&1; echo "RuntimeError: the sampler broke" >&2; exit 1; fi
            fi
            exec "\(real)" "$@"
            """, mode: 0o755)
        var env = ["XDG_CACHE_HOME": s.box.root + "/cache", "CML_OPTUNA": s.box.root + "/broken-optuna"]
        let arguments = ["sweep", "quad", "--objective", "loss", "--strategy", "optuna", "--sampler", "RandomSampler",
                         "--param", "lr=uniform(0,1)", "--trials", "5", "--local", "1"]
        let broken = try s.box.run("cml-queue", arguments, env: env, cwd: s.repo)
        #expect(broken.status == 1)
        let id = try s.newestSweep()
        let error = "optuna ask failed (exit status 1): RuntimeError: the sampler broke"
        #expect(broken.stderr.hasSuffix("cml-queue: error: \(error) (the study is sqlite:///\(s.box.store)/sweeps/\(id)/study.db, "
                                        + "named \(id))\n"), "\(broken.stderr)")
        let record = try s.record(id)
        #expect(record["status"] as? String == "failed")
        #expect(record["reason"] as? String == "its strategy failed: \(error)")
        #expect(try s.box.run("cml-queue", ["sweep", "ls"]).jsonLines.first?["status"] as? String == "failed")
        #expect((record["trials"] as? [[String: Any]])?.map { $0["status"] as? String } == ["completed", "completed"])

        // Resumed with Optuna working, it goes on: the trial Optuna was asked for but the sweep never
        // recorded is told failed, and asked for anew.
        env["CML_OPTUNA"] = real
        let resumed = try s.box.run("cml-queue", ["sweep", "resume", id], env: env, cwd: s.repo)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let trials = try s.trials(id)
        #expect(trials.map { $0["status"] as? String } == Array(repeating: "completed", count: 5))
        #expect(trials.map { ($0["info"] as? [String: Any])?["optuna_trial"] as? Int } == [0, 1, 3, 4, 5])
        let told = try #require(try Self.study(s, sweep: id)["trials"] as? [[String: Any]])
        #expect(told.map { $0["state"] as? String } == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE", "COMPLETE"])
    }

    @Test func optunaSweepsItCannotRunAreRefusedAndRecordNothing() throws {
        let s = try SweepBox()
        let env = ["CML_OPTUNA": try Self.optuna()]
        func refused(_ args: [String], env: [String: String] = env) throws -> String {
            let result = try s.sweep(["--objective", "loss", "--trials", "4"] + args, env: env)
            #expect(result.status != 0, "\(args)")
            return result.stderr.split(separator: "\n").first.map(String.init) ?? ""
        }
        #expect(try refused(["--strategy", "optuna", "--param", "opt=sgd,adam", "--param", "m=uniform(0.5,0.9) if opt=sgd"])
                .hasPrefix("cml-queue: error: --param m=uniform(0.5,0.9) if opt=sgd: --strategy optuna takes no condition"))
        #expect(try refused(["--strategy", "optuna", "--sampler", "GridSampler", "--param", "lr=0.1,0.01"])
                .hasPrefix("cml-queue: error: --sampler GridSampler: it walks a finite grid, which --strategy grid does"))
        #expect(try refused(["--sampler", "TPESampler", "--param", "lr=0.1,0.01"])
                .hasPrefix("cml-queue: error: --sampler TPESampler is Optuna's, not random's (--strategy optuna --sampler TPESampler)"))
        let missing = try refused(["--strategy", "optuna", "--param", "lr=uniform(0,1)"], env: ["CML_OPTUNA": "", "PATH": "/usr/bin:/bin"])
        #expect(missing == "cml-queue: error: --strategy optuna runs Optuna's command line, but CML_OPTUNA is not set and there is no "
                + "optuna on PATH (pip install optuna, e.g. python3 -m venv ~/optuna && ~/optuna/bin/pip install optuna cmaes, then set "
                + "CML_OPTUNA=~/optuna/bin/optuna or put that directory on PATH)")
        #expect(try refused(["--strategy", "optuna", "--param", "lr=uniform(0,1)"], env: ["CML_OPTUNA": "/nonexistent/optuna"])
                .hasPrefix("cml-queue: error: CML_OPTUNA=/nonexistent/optuna is not an executable file"))
        #expect(try s.box.run("cml-queue", ["sweep", "ls"]).out.isEmpty)
    }
}

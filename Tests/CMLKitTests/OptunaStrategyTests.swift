import Foundation
import Glibc
import Testing
@testable import CMLKit

/// The real optuna package from PyPI: `$CML_OPTUNA`, else the virtual environment scripts/test makes in
/// .build/optuna-venv.
enum RealOptuna {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    static func executable() throws -> String {
        let path = ProcessInfo.processInfo.environment["CML_OPTUNA"] ?? root + "/.build/optuna-venv/bin/optuna"
        try #require(FileManager.default.isExecutableFile(atPath: path),
                     "\(path) is missing: scripts/test makes .build/optuna-venv with optuna and cmaes from PyPI (or set CML_OPTUNA)")
        return path
    }

    /// The study as Optuna's own API reads it (Tests/Optuna/read_study.py, by the python beside optuna).
    static func study(storage: String, name: String) throws -> [String: Any] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: (try executable() as NSString).deletingLastPathComponent + "/python3")
        process.arguments = [root + "/Tests/Optuna/read_study.py", storage, name]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "read_study.py failed")
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    static func trials(storage: String, name: String) throws -> [[String: Any]] {
        try study(storage: storage, name: name)["trials"] as? [[String: Any]] ?? []
    }
}

struct OptunaStrategyTests {
    private func directory() -> String {
        var template = Array("/tmp/cml-optuna-XXXXXX".utf8CString)
        return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    private func context(_ space: [String], in directory: String, seed: UInt64 = 7, sampler: String? = nil, maximize: Bool = false,
                         parallel: Int = 1, base: String = RunID.make()) throws -> SweepContext {
        var configuration = SweepConfiguration(base: base, objective: try SweepObjective(parsing: "loss", maximize: maximize, metrics: []),
                                               space: try SearchSpace(parsing: space), strategy: "optuna", trials: 20, parallel: parallel,
                                               queue: "q", seed: seed)
        configuration.sampler = sampler
        return SweepContext(configuration: configuration, sweepID: RunID.make(), stateDirectory: directory)
    }

    private func number(_ trial: SweepTrial) -> Int64? {
        if case .int(let number)? = trial.info[OptunaStrategy.trialNumberKey] { return number }
        return nil
    }

    @Test func suggestionsAreInsideTheSpaceAndTheStudyHoldsThem() throws {
        let root = directory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let context = try context(["lr=loguniform(1e-4,1e-1)", "x=uniform(-2,2)", "layers=int(1,4)", "opt=choice(sgd,adam)", "bs=64"], in: root)
        let strategy = try OptunaStrategy(context: context, executable: try RealOptuna.executable())
        var trials: [SweepTrial] = []
        for index in 0..<12 {
            let suggestion = try #require(try strategy.suggest(index: index, trials: trials))
            let values = Dictionary(uniqueKeysWithValues: suggestion.assignment.map { ($0.key, $0.value) })
            #expect(suggestion.assignment.map(\.key) == ["lr", "x", "layers", "opt", "bs"])
            let lr = try #require(Double(values["lr"]!)), x = try #require(Double(values["x"]!))
            #expect(lr >= 1e-4 && lr <= 1e-1 && x >= -2 && x <= 2, "\(values)")
            // Floats as the sweep writes them (six digits, never read back as integers).
            #expect(values["lr"] == SearchSpace.format(lr) && values["x"] == SearchSpace.format(x))
            #expect((1...4).contains(try #require(Int(values["layers"]!))))
            #expect(["sgd", "adam"].contains(values["opt"]!) && values["bs"] == "64")
            #expect(suggestion.info == .object([(OptunaStrategy.trialNumberKey, .int(Int64(index)))]))
            trials.append(SweepTrial(index: index, assignment: suggestion.assignment, info: suggestion.info, state: .queued))
        }
        // Each ask has a seed of its own: the draws differ.
        #expect(Set(trials.map { $0.assignment[0].value }).count == 12)

        let study = try RealOptuna.study(storage: strategy.storage, name: context.sweepID)
        #expect(strategy.storage == "sqlite:///" + root + "/study.db")
        #expect(study["direction"] as? String == "MINIMIZE")
        let studied = try #require(study["trials"] as? [[String: Any]])
        #expect(studied.map { $0["number"] as? Int } == Array(0..<12))
        for (trial, asked) in zip(trials, studied) {
            #expect(asked["state"] as? String == "RUNNING")
            let params = try #require(asked["params"] as? [String: Any])
            for key in ["lr", "x"] {
                let recorded = Double(trial.assignment.first { $0.key == key }!.value)!
                let suggested = try #require((params[key] as? NSNumber)?.doubleValue)
                #expect(abs(recorded - suggested) <= 5e-6 * abs(suggested), "\(key): \(recorded) \(suggested)")
            }
            #expect((params["layers"] as? Int).map(String.init) == trial.assignment[2].value)
            #expect(params["opt"] as? String == trial.assignment[3].value && params["bs"] as? String == "64")
        }
    }

    @Test func endedTrialsAreToldCompleteFailedOrPrunedAndOnlyOnce() throws {
        let root = directory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let context = try context(["x=uniform(0,1)"], in: root, maximize: true)
        let optuna = try RealOptuna.executable()
        let strategy = try OptunaStrategy(context: context, executable: optuna)
        let states: [TrialState] = [.completed, .failed, .lost, .stopped, .aborted, .completed]
        var trials: [SweepTrial] = []
        for (index, state) in states.enumerated() {
            let suggestion = try #require(try strategy.suggest(index: index, trials: trials))
            var trial = SweepTrial(index: index, assignment: suggestion.assignment, info: suggestion.info, state: state)
            trial.objective = state == .completed ? Double(index) - 0.75 : state == .stopped ? 0.5 : nil
            trials.append(trial)
        }
        for trial in trials { try strategy.ended(trial) }
        func told() throws -> [String] {
            try RealOptuna.trials(storage: strategy.storage, name: context.sweepID).map { "\($0["state"]!) \($0["value"].map { "\($0)" } ?? "")" }
        }
        let expected = ["COMPLETE -0.75", "FAIL <null>", "FAIL <null>", "PRUNED <null>", "PRUNED <null>", "COMPLETE 4.25"]
        #expect(try told() == expected)
        #expect(try RealOptuna.study(storage: strategy.storage, name: context.sweepID)["best"] as? Int == 5)
        #expect(try RealOptuna.study(storage: strategy.storage, name: context.sweepID)["direction"] as? String == "MAXIMIZE")

        // Told again, by this strategy and by a new one (a resumed sweep's), even with another value:
        // the study keeps what it was told first.
        trials[0].objective = 9
        for trial in trials { try strategy.ended(trial) }
        let resumed = try OptunaStrategy(context: context, executable: optuna)
        for trial in trials { try resumed.ended(trial) }
        #expect(try told() == expected)
    }

    @Test func aResumedStrategyAsksOnAndFailsATrialAskedForButNeverRecorded() throws {
        let root = directory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let context = try context(["x=uniform(0,1)"], in: root)
        let optuna = try RealOptuna.executable()
        let first = try OptunaStrategy(context: context, executable: optuna)
        var trials: [SweepTrial] = []
        for index in 0..<3 {
            let suggestion = try #require(try first.suggest(index: index, trials: trials))
            trials.append(SweepTrial(index: index, assignment: suggestion.assignment, info: suggestion.info, state: .running))
        }
        trials[0].state = .completed
        trials[0].objective = 1.5
        try first.ended(trials[0])
        // The controller was killed after asking for trial 3 and before recording it.
        _ = try first.suggest(index: 3, trials: trials)

        let resumed = try OptunaStrategy(context: context, executable: optuna)
        try resumed.ended(trials[0])
        let next = try #require(try resumed.suggest(index: 3, trials: trials))
        #expect(next.info == .object([(OptunaStrategy.trialNumberKey, .int(4))]))
        let studied = try RealOptuna.trials(storage: resumed.storage, name: context.sweepID)
        #expect(studied.map { $0["state"] as? String } == ["COMPLETE", "RUNNING", "RUNNING", "FAIL", "RUNNING"])
    }

    @Test func theSameSeedAsksTheSameValuesInANewStudy() throws {
        let optuna = try RealOptuna.executable()
        func asked(seed: UInt64, sampler: String) throws -> [String] {
            let root = directory()
            defer { try? FileManager.default.removeItem(atPath: root) }
            let strategy = try OptunaStrategy(context: try context(["x=uniform(0,1)", "n=int(1,100)"], in: root, seed: seed, sampler: sampler),
                                              executable: optuna)
            return try (0..<3).map { index in
                try #require(try strategy.suggest(index: index, trials: [])).assignment.map(\.value).joined(separator: " ")
            }
        }
        for sampler in ["TPESampler", "RandomSampler"] {
            let once = try asked(seed: 11, sampler: sampler)
            #expect(try asked(seed: 11, sampler: sampler) == once)
            #expect(try asked(seed: 12, sampler: sampler) != once)
        }
    }

    @Test func conditionsAndSamplersItCannotUseAreRefused() throws {
        let root = directory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        func refusal(_ space: [String], sampler: String? = nil, strategy: String = "optuna") throws -> String? {
            var configuration = try context(space, in: root, sampler: sampler).configuration
            configuration.strategy = strategy
            do throws(CMLError) {
                // SweepStrategies.check also looks for Optuna's command line, on this PATH or not.
                if strategy == "optuna" { try OptunaStrategy.check(configuration) } else { try SweepStrategies.check(configuration) }
                return nil
            } catch {
                return error.description
            }
        }
        #expect(try refusal(["opt=sgd,adam", "momentum=uniform(0.5,0.99) if opt=sgd"])
                == "--param momentum=uniform(0.5,0.99) if opt=sgd: --strategy optuna takes no condition, as optuna ask suggests one fixed "
                + "space for every trial (drop the condition, or sweep it with --strategy random or grid)")
        #expect(try refusal(["x=1,2"], sampler: "GridSampler")?.hasPrefix("--sampler GridSampler: it walks a finite grid, which --strategy grid does") == true)
        #expect(try refusal(["x=1,2"], sampler: "PartialFixedSampler")?.hasPrefix("--sampler PartialFixedSampler: not a sampler optuna ask makes") == true)
        #expect(try refusal(["x=1,2"], sampler: "TPESampler", strategy: "random")?.hasPrefix("--sampler TPESampler is Optuna's, not random's") == true)
        for sampler in OptunaStrategy.samplers { #expect(try refusal(["x=uniform(0,1)"], sampler: sampler) == nil) }
    }

    @Test func optunaFailingIsAnErrorWithWhatItSaid() throws {
        let root = directory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let broken = root + "/optuna"
        try "#!/bin/sh\necho 'Traceback (most recent call last):' >&2\necho 'ValueError: the storage is broken' >&2\nexit 3\n"
            .write(toFile: broken, atomically: true, encoding: .utf8)
        chmod(broken, 0o755)
        let made = Result { () throws(CMLError) in try OptunaStrategy(context: try! context(["x=1,2"], in: root), executable: broken) }
        guard case .failure(let error) = made else { Issue.record("a failing optuna made a strategy"); return }
        #expect(error.message == "optuna create-study failed (exit status 3): ValueError: the storage is broken", "\(error)")
    }

    /// A trial recorded `planned` with its Optuna number, its run never queued (the controller was killed
    /// in between): the resumed sweep queues it with the values it was given, and asks Optuna only for
    /// the trials after it.
    @Test func aPlannedTrialTakenUpOnResumeIsNotAskedForAgain() throws {
        let root = directory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = try SQLiteStore(directory: root + "/store")
        let base = try store.createRun(Run(id: RunID.make(), name: "base", project: "default", status: .running,
                                           command: ["sh", "-c", "echo loss: $2", "sh", "--x", "0"], cwd: root, host: "h", user: "u", pid: nil,
                                           startedAt: 1, environment: [], code: .object([("in_repository", .bool(false))]), tags: [], params: []),
                                       patch: [])
        try store.finishRun(id: base.id, end: RunEnd(status: .completed, endedAt: 2, exitCode: 0), logBytes: 0)
        var context = try context(["x=uniform(0,1)"], in: root + "/sweep", base: base.id)
        context.configuration.trials = 3
        try FileSystem.makeDirectories(context.stateDirectory)
        var sweep = Sweep(id: context.sweepID, project: "default", configuration: context.configuration, now: Clock.now() - 100)
        let optuna = try RealOptuna.executable()
        let asked = try #require(try OptunaStrategy(context: context, executable: optuna).suggest(index: 0, trials: []))
        sweep.trials = [SweepTrial(index: 0, assignment: asked.assignment, info: asked.info)]
        try store.saveController(sweep.record)

        let agent = try LocalAgent(store: store, queue: "q", slots: 1, name: "local-optuna-test")
        defer { agent.stop() }
        let strategy = try OptunaStrategy(context: context, executable: optuna)
        let baseSpec = try SweepController.baseSpec(of: base, in: store) { _ in }
        let ended = try SweepController(resuming: sweep, store: store, strategy: strategy, baseSpec: baseSpec, pollInterval: 0.2) { _ in }.run()
        #expect(ended.status == .finished)
        #expect(ended.trials.map(\.state) == [.completed, .completed, .completed])
        #expect(ended.trials.map(number) == [0, 1, 2])
        #expect(ended.trials[0].assignment.map(\.value) == asked.assignment.map(\.value))
        let studied = try RealOptuna.trials(storage: strategy.storage, name: sweep.id)
        #expect(studied.map { $0["state"] as? String } == ["COMPLETE", "COMPLETE", "COMPLETE"])
        // Each told the loss its run printed: the value of x it was given.
        for (trial, told) in zip(ended.trials, studied) {
            #expect(trial.objective == Double(trial.assignment[0].value))
            #expect((told["value"] as? NSNumber)?.doubleValue == trial.objective)
        }
    }
}

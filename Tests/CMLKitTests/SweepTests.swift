import Foundation
import Glibc
import Testing

@testable import CMLKit

/// Search spaces: what `--param`, `--grid` and `--sample` read, and the trials made from them.
struct SearchSpaceTests {
    @Test func parametersReadAsWritten() throws {
        let space = try SearchSpace(parsing: ["lr=loguniform(1e-4, 1e-1)", "bs=choice(32,64)", "layers=int(1,4)", "opt=sgd,adam",
                                              "momentum=uniform(0.5,0.99) if opt=sgd"])
        #expect(space.parameters.map(\.domain) == [.logUniform(low: 1e-4, high: 0.1), .choice(["32", "64"]), .integer(low: 1, high: 4),
                                                   .choice(["sgd", "adam"]), .uniform(low: 0.5, high: 0.99)])
        #expect(space.parameters[4].condition == .init(key: "opt", values: ["sgd"]))
        // What a record keeps reads back the same.
        let again = try SearchSpace(parsing: space.parameters.map(\.description))
        #expect(again == space)
    }

    @Test func badParametersNameWhatIsWrong() {
        func message(_ texts: [String]) -> String? {
            do throws(CMLError) {
                _ = try SearchSpace(parsing: texts)
                return nil
            } catch {
                return error.message
            }
        }
        #expect(message(["lr"]) == "--param lr is not key=values")
        #expect(message(["lr=uniform(1)"]) == "--param lr=uniform(1): uniform takes two numbers, low and high")
        #expect(message(["lr=uniform(2,1)"]) == "--param lr=uniform(2,1): uniform needs low < high")
        #expect(message(["lr=loguniform(-1,1)"]) == "--param lr=loguniform(-1,1): loguniform needs 0 < low")
        #expect(message(["n=int(1.5,3)"]) == "--param n=int(1.5,3): int takes two whole numbers, low and high (both included)")
        #expect(message(["lr=normal(0,1)"]) == "--param lr=normal(0,1): unknown distribution 'normal'")
        #expect(message(["lr=0.1,,0.2"]) == "--param lr=0.1,,0.2: no values")
        #expect(message(["lr=1,2", "lr=3"]) == "--param lr is given twice")
        #expect(message(["9x=1,2"]) == "--param 9x=1,2: '9x' is not a parameter name")
        #expect(message(["m=1 if opt"]) == "--param m=1 if opt: the condition 'opt' is not key=value[,value…]")
    }

    @Test func aGridWalksEveryCombinationAndConditionsOnlyWhereTheyHold() throws {
        let space = try SearchSpace(parsing: ["opt=sgd,adam", "momentum=0.5,0.9 if opt=sgd", "layers=int(1,2)"])
        let grid = try space.grid().map { $0.map { "\($0.key)=\($0.value)" }.joined(separator: " ") }
        #expect(grid == ["opt=sgd momentum=0.5 layers=1", "opt=sgd momentum=0.5 layers=2", "opt=sgd momentum=0.9 layers=1",
                         "opt=sgd momentum=0.9 layers=2", "opt=adam layers=1", "opt=adam layers=2"])
    }

    @Test func drawsRepeatForASeedAndTrialAndStayInTheirRanges() throws {
        let space = try SearchSpace(parsing: ["lr=loguniform(1e-4,1e-1)", "n=int(1,3)", "x=uniform(-1,1)", "opt=sgd,adam",
                                              "m=uniform(0,1) if opt=sgd"])
        var seenN = Set<String>(), seenOpt = Set<String>()
        for index in 0..<400 {
            let draw = space.sample(seed: 42, index: index)
            #expect(draw.map(\.value) == space.sample(seed: 42, index: index).map(\.value))
            let values = Dictionary(uniqueKeysWithValues: draw.map { ($0.key, $0.value) })
            let lr = try #require(Double(values["lr"]!))
            #expect(lr >= 1e-4 * 0.99999 && lr <= 0.1)
            #expect(values["lr"]!.contains(where: { $0 == "." || $0 == "e" }))
            seenN.insert(values["n"]!)
            let x = try #require(Double(values["x"]!))
            #expect(x >= -1 && x <= 1)
            seenOpt.insert(values["opt"]!)
            #expect((values["m"] != nil) == (values["opt"] == "sgd"))
        }
        #expect(seenN == ["1", "2", "3"] && seenOpt == ["sgd", "adam"])
        #expect(space.sample(seed: 42, index: 0).map(\.value) != space.sample(seed: 43, index: 0).map(\.value))
        #expect(space.sample(seed: 42, index: 0).map(\.value) != space.sample(seed: 42, index: 1).map(\.value))
    }

    @Test func drawnFloatsNeverReadAsIntegers() {
        #expect(SearchSpace.format(32) == "32.0")
        #expect(SearchSpace.format(0.000123456789) == "0.000123457")
        #expect(SearchSpace.format(1e-7) == "1e-07")
    }

    @Test func objectivesReadAsWhereNamesThem() throws {
        #expect(try SweepObjective(parsing: "val_loss", maximize: false, metrics: []).aggregate == .last)
        let min = try SweepObjective(parsing: "val_loss.min", maximize: false, metrics: ["val_loss"])
        #expect(min.key == "val_loss" && min.aggregate == .min && min.name == "val_loss.min")
        // A key with a dot of its own, which the base run has, reads whole.
        let dotted = try SweepObjective(parsing: "acc.max", maximize: true, metrics: ["acc.max"])
        #expect(dotted.key == "acc.max" && dotted.aggregate == .last)
        #expect(dotted.isBetter(0.9, than: 0.8) && !min.isBetter(0.9, than: 0.8))
    }
}

/// The sweep's record in a real store, and what a resumed controller does with it.
struct SweepRecordTests {
    private func store() throws -> (SQLiteStore, String) {
        var template = Array("/tmp/cml-sweep-XXXXXX".utf8CString)
        let root = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        return (try SQLiteStore(directory: root + "/store"), root)
    }

    private func configuration(base: String) throws -> SweepConfiguration {
        SweepConfiguration(base: base, objective: try SweepObjective(parsing: "loss.min", maximize: false, metrics: []),
                           space: try SearchSpace(parsing: ["x=1,2,3"]), strategy: "grid", trials: 3, parallel: 2, queue: "q", seed: 1 << 63)
    }

    @Test func aRecordReadsBackAsItWasWritten() throws {
        let (store, root) = try store()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var sweep = Sweep(id: RunID.make(), project: "p", configuration: try configuration(base: RunID.make()), now: 1_800_000_000)
        sweep.configuration.budgetParameter = "epochs"
        sweep.configuration.maxBudget = 27
        var trial = SweepTrial(index: 0, run: RunID.make(), assignment: [("x", "1")], info: .object([("bracket", .int(2))]), state: .completed)
        trial.objective = 0.25
        trial.steps = 9
        trial.endedAt = 1_800_000_010
        sweep.trials = [trial, SweepTrial(index: 1, assignment: [("x", "2")])]
        try store.saveController(sweep.record)
        let read = try Sweep(record: try store.controller(kind: Sweep.kind, id: String(sweep.id.prefix(12))))
        #expect(read.json == sweep.json)
        #expect(read.configuration == sweep.configuration)
        #expect(read.best?.index == 0)
        #expect(try store.controllers(kind: Sweep.kind).count == 1 && (try store.controllers(kind: "pipeline")).isEmpty)
        let missing = Result { () throws(CMLError) in try store.controller(kind: Sweep.kind, id: "ffff") }
        #expect((try? missing.get()) == nil)
    }

    @Test func aPlannedTrialWhoseRunWasQueuedIsTakenUpNotQueuedAgain() throws {
        let (store, root) = try store()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let base = try store.createRun(Run(id: RunID.make(), name: "base", project: "default", status: .running,
                                           command: ["sh", "-c", "echo loss: $0", "1"], cwd: root, host: "h", user: "u", pid: nil,
                                           startedAt: 1, environment: [], code: .object([("in_repository", .bool(false))]), tags: [], params: []), patch: [])
        try store.finishRun(id: base.id, end: RunEnd(status: .completed, endedAt: 2, exitCode: 0), logBytes: 0)
        var sweep = Sweep(id: RunID.make(), project: "default", configuration: try configuration(base: base.id), now: Clock.now() - 100)
        // A controller killed after it queued trial 0's run and before it recorded the run.
        sweep.trials = [SweepTrial(index: 0, assignment: [("x", "1")])]
        let baseSpec = try SweepController.baseSpec(of: base, in: store) { _ in }
        var spec = baseSpec
        try spec.apply([("x", "1")])
        spec.params += [Param(key: "sweep", value: .string(sweep.id), source: "option"), Param(key: "trial", value: .int(0), source: "option")]
        let queued = try store.enqueue([spec], queue: "q", priority: 0, maxAttempts: 1).runs[0].id
        try store.saveController(sweep.record)

        let agent = try LocalAgent(store: store, queue: "q", slots: 2, name: "local-test")
        defer { agent.stop() }
        let strategy = try SweepStrategies.make(SweepContext(configuration: sweep.configuration, sweepID: sweep.id, stateDirectory: root))
        var notes: [String] = []
        let controller = try SweepController(resuming: sweep, store: store, strategy: strategy, baseSpec: baseSpec, pollInterval: 0.2) { event in
            if case .note(let text) = event { notes.append(text) }
        }
        let ended = try controller.run()
        #expect(ended.status == .finished)
        #expect(ended.trials.map(\.run) == [queued] + ended.trials.dropFirst().map(\.run))
        #expect(ended.trials.map(\.state) == [.completed, .completed, .completed])
        #expect(notes == ["trial 0 was queued before the controller stopped: run \(RunID.short(queued))"])
        let members = try store.runs(RunQuery(filter: try RunFilter.parse("sweep = \(sweep.id)")))
        #expect(members.count == 3)
        // A clone of a trial is not a trial.
        let clone = try RunSpec.clone(try store.run(id: queued), queuedSpec: try store.spec(run: queued), settings: []) { _ in }
        #expect(!clone.params.contains { $0.key == "sweep" || $0.key == "trial" })
    }

    @Test func aSweepWhoseControllerIsGoneHereIsAbandoned() throws {
        var sweep = Sweep(id: RunID.make(), project: "p", configuration: try configuration(base: RunID.make()), now: Clock.now())
        #expect(!sweep.isAbandoned(now: Clock.now()))
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/true")
        try child.run()
        child.waitUntilExit()
        sweep.pid = child.processIdentifier
        #expect(sweep.isAbandoned(now: Clock.now()) && sweep.observedStatus(now: Clock.now()) == "lost")
        sweep.status = .stopped
        #expect(!sweep.isAbandoned(now: Clock.now()))
    }
}

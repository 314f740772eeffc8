import Foundation
import Glibc
import Synchronization
import Testing

@testable import CMLKit

/// ASHA and Hyperband (`SuccessiveHalvingSearch`): rungs, who is stopped where, brackets, and the same
/// decisions from a strategy made afresh on resume.
struct EarlyStoppingTests {
    /// Points at steps 0, 1, … with these values, recorded a second apart from `start`.
    static func curve(_ values: [Double], start: Double = 0) -> MetricColumns {
        var columns = MetricColumns()
        for (step, value) in values.enumerated() {
            columns.append(MetricPoint(key: "loss", step: Int64(step), value: value, time: start + Double(step)))
        }
        return columns
    }

    static func trial(_ index: Int, state: TrialState = .running, bracket: Int? = nil) -> SweepTrial {
        SweepTrial(index: index, run: "run\(index)", assignment: [("lr", "0.1")],
                   info: bracket.map { .object([("bracket", .int(Int64($0)))]) } ?? .null, state: state)
    }

    static func asha(objective: String = "loss", maximize: Bool = false, minBudget: Int64 = 1, maxBudget: Int64 = 9,
                     eta: Int = 3, hyperband: Bool = false) throws -> SuccessiveHalvingSearch {
        SuccessiveHalvingSearch(space: try SearchSpace(parsing: ["lr=loguniform(1e-4,1)"]), seed: 1,
                                objective: try SweepObjective(parsing: objective, maximize: maximize, metrics: []),
                                minBudget: minBudget, maxBudget: maxBudget, eta: eta, hyperband: hyperband)
    }

    /// The stops a strategy decides for the running trials, each trial's points read from `curves`.
    static func stops(_ strategy: SuccessiveHalvingSearch, running: [SweepTrial], curves: [Int: MetricColumns]) throws -> [Int: EarlyStop] {
        var read: [Int] = []
        let stops = try strategy.trialsToStop(running) { (trial) throws(CMLError) -> MetricColumns in
            read.append(trial.index)
            return curves[trial.index] ?? MetricColumns()
        }
        return Dictionary(uniqueKeysWithValues: stops.map { ($0.index, $0) })
    }

    @Test func rungsAreMinBudgetTimesPowersOfEtaBelowTheWholeTrial() {
        #expect(SuccessiveHalvingSearch.rungs(minBudget: 1, maxBudget: 27, eta: 3) == [1, 3, 9])
        #expect(SuccessiveHalvingSearch.rungs(minBudget: 1, maxBudget: 28, eta: 3) == [1, 3, 9, 27])
        #expect(SuccessiveHalvingSearch.rungs(minBudget: 2, maxBudget: 100, eta: 3) == [2, 6, 18, 54])
        #expect(SuccessiveHalvingSearch.rungs(minBudget: 1, maxBudget: 10, eta: 2) == [1, 2, 4, 8])
        #expect(SuccessiveHalvingSearch.rungs(minBudget: 5, maxBudget: 5, eta: 3) == [])
        #expect(SuccessiveHalvingSearch.rungs(minBudget: 1, maxBudget: .max, eta: 1 << 20).count == 4)
    }

    @Test func aValueAtARungIsTheAggregateOfThePointsUpToItsFirstThere() throws {
        let last = try SweepObjective(parsing: "loss", maximize: false, metrics: [])
        let least = try SweepObjective(parsing: "loss.min", maximize: false, metrics: [])
        let most = try SweepObjective(parsing: "acc.max", maximize: true, metrics: [])
        let columns = Self.curve([5, 2, 4, 3, 1, 6], start: 100)
        #expect(SuccessiveHalvingSearch.values(at: [1, 3], of: columns, objective: last).map(\.value) == [2, 3])
        #expect(SuccessiveHalvingSearch.values(at: [1, 3], of: columns, objective: least).map(\.value) == [2, 2])
        #expect(SuccessiveHalvingSearch.values(at: [1, 3], of: columns, objective: most).map(\.value) == [5, 5])
        #expect(SuccessiveHalvingSearch.values(at: [1, 3], of: columns, objective: last).map(\.time) == [101, 103])
        // Not reached: no value.
        #expect(SuccessiveHalvingSearch.values(at: [1, 3, 9], of: columns, objective: last).count == 2)
        // Points every 5 steps: both rungs are reached at step 5, with its value.
        var sparse = MetricColumns()
        for (step, value) in [(0, 9.0), (5, 4.0), (10, 1.0)] { sparse.append(MetricPoint(key: "loss", step: Int64(step), value: value, time: Double(step))) }
        #expect(SuccessiveHalvingSearch.values(at: [1, 3, 9], of: sparse, objective: last).map(\.value) == [4, 4, 1])
        // A value that is not a number is skipped by min and max, and is the last value when it is last.
        let gap = Self.curve([3, .nan, 2])
        #expect(SuccessiveHalvingSearch.values(at: [1, 2], of: gap, objective: least).map(\.value) == [3, 2])
        #expect(SuccessiveHalvingSearch.values(at: [1], of: gap, objective: last).first?.value.isNaN == true)
    }

    @Test func onlyTheBestThirdAtARungGoesOnOnceThreeHaveReachedIt() throws {
        let strategy = try Self.asha()
        // Two trials at step 1: too few to judge.
        var curves: [Int: MetricColumns] = [0: Self.curve([3, 2]), 1: Self.curve([4, 3])]
        #expect(try Self.stops(strategy, running: [Self.trial(0), Self.trial(1)], curves: curves).isEmpty)
        // A third: one of three goes on.
        curves[2] = Self.curve([3, 1])
        let stops = try Self.stops(strategy, running: (0...2).map { Self.trial($0) }, curves: curves)
        #expect(stops.keys.sorted() == [0, 1])
        #expect(stops[1]?.reason == "at step 1 its loss 3.0 was not in the best 1/3 of 3 trials")
        #expect(stops[1]?.value == 3 && stops[0]?.value == 2)
        // With four at the rung, two go on (ceil(4/3)); equal values go on together.
        let four = try Self.asha()
        let tied: [Int: MetricColumns] = [0: Self.curve([9, 1]), 1: Self.curve([9, 2]), 2: Self.curve([9, 2]), 3: Self.curve([9, 3])]
        #expect(try Self.stops(four, running: (0...3).map { Self.trial($0) }, curves: tied).keys.sorted() == [3])
    }

    @Test func aTrialIsJudgedAtItsHighestRungAgainstAllAndAtALowerOneAgainstThoseThereBeforeItWentOn() throws {
        let strategy = try Self.asha(objective: "acc", maximize: true, maxBudget: 27)
        // Trial 0 reached step 1 (0.5) and step 3 first, at t=1 and t=3; trials 1-3 reached step 1 later
        // (t=11…) with better values: by the time trial 0 went on from step 1, it was alone there.
        var curves: [Int: MetricColumns] = [0: Self.curve([0.1, 0.5, 0.6, 0.7])]
        for index in 1...3 { curves[index] = Self.curve([0.1, 0.8], start: 10) }
        let stops = try Self.stops(strategy, running: (0...3).map { Self.trial($0) }, curves: curves)
        #expect(stops.isEmpty, "\(stops)")
        // A fifth at step 1, its highest rung, is judged against all five there: 0.7 is not in the best two.
        curves[4] = Self.curve([0.1, 0.7], start: 20)
        let after = try Self.stops(strategy, running: (0...4).map { Self.trial($0) }, curves: curves)
        #expect(after.keys.sorted() == [4])
        #expect(after[4]?.reason == "at step 1 its acc 0.7 was not in the best 1/3 of 5 trials")
        // Trials that ended count: two ended trials better at step 3 and one worse stop trial 0 there (they
        // reached step 1 after trial 0 went on from it). Trial 4, being stopped, counts once it ends.
        let ended = [Self.trial(5, state: .completed), Self.trial(6, state: .stopped), Self.trial(7, state: .completed)]
        curves[5] = Self.curve([0.1, 0.9, 0.9, 0.95], start: 5)
        curves[6] = Self.curve([0.1, 0.9, 0.9, 0.9], start: 5)
        curves[7] = Self.curve([0.1, 0.2, 0.2, 0.1], start: 5)
        for trial in ended { strategy.ended(trial) }
        let withEnded = try Self.stops(strategy, running: (0...3).map { Self.trial($0) }, curves: curves)
        #expect(withEnded.keys.sorted() == [0])
        #expect(withEnded[0]?.reason == "at step 3 its acc 0.7 was not in the best 1/3 of 4 trials", "\(withEnded)")
    }

    @Test func anEndedTrialIsReadOnceAndATrialPastItsLastRungNoMore() throws {
        let strategy = try Self.asha(maxBudget: 3)
        var reads: [Int] = []
        // Trial 1 has not reached step 1 yet; trial 2 has, its only rung.
        let curves: [Int: MetricColumns] = [0: Self.curve([1, 1, 1]), 1: Self.curve([1]), 2: Self.curve([1, 1])]
        func look(_ running: [SweepTrial]) throws {
            _ = try strategy.trialsToStop(running) { (trial) throws(CMLError) -> MetricColumns in
                reads.append(trial.index)
                return curves[trial.index] ?? MetricColumns()
            }
        }
        strategy.ended(Self.trial(0, state: .completed))
        try look([Self.trial(1), Self.trial(2)])
        try look([Self.trial(1), Self.trial(2)])
        strategy.ended(Self.trial(0, state: .completed))  // told again: not read again
        try look([Self.trial(1), Self.trial(2)])
        #expect(reads == [0, 1, 2, 1, 1])
    }

    @Test func hyperbandBracketsStartAtLaterRungsInHyperbandsProportions() throws {
        let strategy = try Self.asha(maxBudget: 27, hyperband: true)
        #expect(strategy.brackets == [[1, 3, 9], [3, 9], [9], []])
        // One round: 27, 12, 6 and 4 trials, spread over it.
        let round = (0..<49).map { strategy.bracket(ofTrial: $0) }
        #expect((0..<4).map { s in round.filter { $0 == s }.count } == [27, 12, 6, 4])
        let first = Array(round.prefix(10))
        #expect((0..<4).allSatisfy { first.contains($0) }, "\(first)")
        #expect((49..<98).map { strategy.bracket(ofTrial: $0) } == round)
        // The bracket is in the trial's info; the values are random's.
        let suggestion = try #require(strategy.suggest(index: 1, trials: []))
        #expect(suggestion.info == .object([("bracket", .int(Int64(round[1])))]))
        let space = try SearchSpace(parsing: ["lr=loguniform(1e-4,1)"])
        #expect(suggestion.assignment.map(\.value) == space.sample(seed: 1, index: 1).map(\.value))
        #expect(try Self.asha(maxBudget: 27).suggest(index: 1, trials: [])?.info == .null)
    }

    @Test func aHyperbandTrialIsJudgedOnlyAtItsBracketsRungsAgainstItsBracket() throws {
        let strategy = try Self.asha(maxBudget: 27, hyperband: true)
        // Three trials of bracket 1 at step 1 (not a rung of theirs) and three of bracket 0 there.
        var curves: [Int: MetricColumns] = [:]
        for index in 0..<6 { curves[index] = Self.curve([5, Double(index)]) }
        let running = (0..<6).map { Self.trial($0, bracket: $0 < 3 ? 1 : 0) }
        #expect(try Self.stops(strategy, running: running, curves: curves).keys.sorted() == [4, 5])
        // At step 3, bracket 1 judges its own three.
        for index in 0..<3 { curves[index] = Self.curve([5, 5, 5, Double(index)]) }
        #expect(try Self.stops(strategy, running: running, curves: curves).keys.sorted() == [1, 2, 4, 5])
        // The last bracket stops nothing.
        let last = (0..<4).map { Self.trial($0, bracket: 3) }
        #expect(try Self.stops(try Self.asha(maxBudget: 27, hyperband: true), running: last,
                               curves: [0: Self.curve(Array(repeating: 1, count: 20)), 1: Self.curve(Array(repeating: 2, count: 20)),
                                        2: Self.curve(Array(repeating: 3, count: 20)), 3: Self.curve(Array(repeating: 4, count: 20))]).isEmpty)
    }

    @Test func aStrategyMadeAfreshOnResumeDecidesAsTheOneThatLookedAllAlong() throws {
        // Trial N starts at look N and runs three looks (3 steps a look, a step a second from 4N s), unless
        // stopped; at each look, a strategy made afresh and told of the trials ended so far decides the same.
        var endedAtLook: [Int: Int] = [:]
        func curve(_ index: Int, look: Int) -> MetricColumns {
            let steps = 3 * (min(look, endedAtLook[index] ?? look) - index) + 2
            return Self.curve((0..<steps).map { step in Double((index * 7) % 5) + 1 / Double(step + 1) }, start: Double(index * 4))
        }
        let original = try Self.asha(maxBudget: 27)
        var ended: [SweepTrial] = []
        var originalDecisions: [[Int: String]] = [], resumedDecisions: [[Int: String]] = []
        for look in 0..<12 {
            let running = (max(0, look - 2)...look).filter { endedAtLook[$0] == nil }.map { Self.trial($0) }
            let curves = Dictionary(uniqueKeysWithValues: (0...look).map { ($0, curve($0, look: look)) })
            let stops = try Self.stops(original, running: running, curves: curves)
            originalDecisions.append(stops.mapValues(\.reason))
            let fresh = try Self.asha(maxBudget: 27)
            for trial in ended { fresh.ended(trial) }
            resumedDecisions.append(try Self.stops(fresh, running: running, curves: curves).mapValues(\.reason))
            // The stopped trials end, and the oldest running completes.
            var ending = stops.keys.map { Self.trial($0, state: .stopped) }
            if look >= 2, endedAtLook[look - 2] == nil, stops[look - 2] == nil { ending.append(Self.trial(look - 2, state: .completed)) }
            for trial in ending {
                endedAtLook[trial.index] = look
                original.ended(trial)
                ended.append(trial)
            }
        }
        #expect(originalDecisions.contains { !$0.isEmpty })
        #expect(resumedDecisions == originalDecisions)
    }

    @Test func earlyStoppingOptionsAreCheckedAndRefusedWhereTheyDoNothing() throws {
        func message(_ strategy: String, _ change: (inout SweepConfiguration) -> Void) throws -> String? {
            var configuration = SweepConfiguration(
                base: "b", objective: try SweepObjective(parsing: "loss", maximize: false, metrics: []),
                space: try SearchSpace(parsing: ["lr=0.1,0.01"]), strategy: strategy, trials: 4, parallel: 2, queue: "q", seed: 1)
            change(&configuration)
            do throws(CMLError) {
                try SweepStrategies.check(configuration)
                return nil
            } catch {
                return error.message
            }
        }
        #expect(try message("asha") { _ in } == "--strategy asha needs --max-budget: the steps of a whole trial")
        #expect(try message("hyperband") { $0.maxBudget = 27 } == nil)
        #expect(try message("asha") { $0.maxBudget = 27; $0.reductionFactor = 1 } == "--eta must be at least 2: one in eta trials goes on at each rung")
        #expect(try message("asha") { $0.maxBudget = 2; $0.minBudget = 3 } == "--max-budget 2 is less than --min-budget 3")
        #expect(try message("asha") { $0.maxBudget = 2; $0.minBudget = 0 } == "--min-budget must be at least 1")
        #expect(try message("random") { $0.reductionFactor = 3 } == "--eta is for strategies that stop trials early (asha and hyperband), not random")
        #expect(try message("grid") { $0.minBudget = 1 } == "--min-budget is for strategies that stop trials early (asha and hyperband), not grid")
        #expect(try message("random") { $0.maxBudget = 9 } == "--max-budget without --budget-param tells random nothing")
        #expect(try message("random") { $0.maxBudget = 9; $0.budgetParameter = "epochs" } == nil)
        #expect(try message("asha") { $0.maxBudget = 9; $0.sampler = "TPESampler" } == "--sampler TPESampler is Optuna's, not asha's")
        let made = try SweepStrategies.make(SweepContext(configuration: {
            var configuration = SweepConfiguration(base: "b", objective: try SweepObjective(parsing: "loss", maximize: false, metrics: []),
                                                   space: try SearchSpace(parsing: ["lr=0.1,0.01"]), strategy: "hyperband", trials: 4,
                                                   parallel: 2, queue: "q", seed: 1)
            configuration.maxBudget = 9
            configuration.minBudget = 3
            configuration.reductionFactor = 2
            return configuration
        }(), sweepID: "s", stateDirectory: "/tmp"))
        #expect((made as? SuccessiveHalvingSearch)?.brackets == [[3, 6], [6], []])
    }
}

/// A controller killed after it recorded why it stops a trial and before it aborted the trial's run.
struct SweepStopResumeTests {
    static let reason = "at step 1 its loss 3.0 was not in the best 1/3 of 3 trials"

    /// A store whose sweep's one trial runs `command` through a local agent until `until` holds of its
    /// run, recorded `running` with a stop reason as a killed controller leaves it; and a controller
    /// resuming it.
    static func resumeStopping(_ command: [String], root: String, until: @escaping (RunStatus) -> Bool)
        throws -> (store: SQLiteStore, run: String, controller: SweepController, agent: ScratchAgent, notes: () -> [String]) {
        let store = try SQLiteStore(directory: root + "/store")
        let base = try store.createRun(Run(id: RunID.make(), name: "base", project: "default", status: .running, command: command,
                                           cwd: root, host: "h", user: "u", pid: nil, startedAt: 1, environment: [],
                                           code: .object([("in_repository", .bool(false))]), tags: [], params: []), patch: [])
        try store.finishRun(id: base.id, end: RunEnd(status: .completed, endedAt: 2, exitCode: 0), logBytes: 0)
        var configuration = SweepConfiguration(base: base.id, objective: try SweepObjective(parsing: "loss", maximize: false, metrics: []),
                                               space: try SearchSpace(parsing: ["x=1"]), strategy: "asha", trials: 1, parallel: 1,
                                               queue: "q", seed: 1)
        configuration.maxBudget = 9
        var sweep = Sweep(id: RunID.make(), project: "default", configuration: configuration, now: Clock.now() - 100)
        let baseSpec = try SweepController.baseSpec(of: base, in: store) { _ in }
        var spec = baseSpec
        try spec.apply([("x", "1")])
        spec.params += [Param(key: "sweep", value: .string(sweep.id), source: "option"), Param(key: "trial", value: .int(0), source: "option")]
        let run = try store.enqueue([spec], queue: "q", priority: 0, maxAttempts: 1).runs[0].id
        let agent = try ScratchAgent(store: store, directory: root + "/agent")
        #expect(waitUntil(timeout: 30) { (try? store.run(id: run).observedStatus).map(until) == true })
        var trial = SweepTrial(index: 0, run: run, assignment: [("x", "1")], state: .running)
        trial.reason = reason
        trial.objective = 3
        sweep.trials = [trial]
        try store.saveController(sweep.record)

        let strategy = try SweepStrategies.make(SweepContext(configuration: configuration, sweepID: sweep.id, stateDirectory: root))
        let notes = Mutex<[String]>([])
        let controller = try SweepController(resuming: try Sweep(record: try store.controller(kind: Sweep.kind, id: sweep.id)), store: store,
                                             strategy: strategy, baseSpec: baseSpec, pollInterval: 0.2) { event in
            if case .note(let text) = event { notes.withLock { $0.append(text) } }
        }
        return (store, run, controller, agent, { notes.withLock { $0 } })
    }

    static func scratch() -> String {
        var template = Array("/tmp/cml-sweep-XXXXXX".utf8CString)
        return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    @Test func aTrialLeftRunningWithItsStopReasonIsAbortedOnResume() throws {
        let root = Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let resumed = try Self.resumeStopping(["sh", "-c", "echo step=0 loss=3; sleep 20; echo step=1 loss=$0", "2"], root: root) { $0 == .running }
        defer { resumed.agent.stop() }
        let started = Clock.now()
        let ended = try resumed.controller.run()
        #expect(Clock.now() - started < 15, "the trial ran to its end instead of being aborted")
        #expect(ended.status == .finished)
        #expect(ended.trials.map(\.state) == [.stopped])
        #expect(ended.trials[0].reason == Self.reason && ended.trials[0].objective == 3)
        #expect(try resumed.store.run(id: resumed.run).observedStatus == .aborted)
        #expect(resumed.notes() == ["trial 0 was being stopped when the controller stopped: aborting run \(RunID.short(resumed.run))"])
    }

    @Test func oneThatEndedMeanwhileIsRecordedAsItEnded() throws {
        let root = Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let resumed = try Self.resumeStopping(["sh", "-c", "echo step=0 loss=3; echo step=1 loss=$0", "2"], root: root) { $0 == .completed }
        defer { resumed.agent.stop() }
        let ended = try resumed.controller.run()
        #expect(ended.trials.map(\.state) == [.completed])
        #expect(ended.trials[0].reason == nil && ended.trials[0].objective == 2)
        #expect(ended.best?.index == 0)
        #expect(resumed.notes().isEmpty)
    }
}

/// An agent of one slot on queue q, on a thread, in a work directory of its own: `LocalAgent`'s is the
/// user's cache, shared by every test in this process, where an agent of another store would take a
/// running trial's directory for one abandoned and remove it.
final class ScratchAgent: @unchecked Sendable {  // set once; the agent is thread-safe
    private let agent: Agent
    private let stopped = DispatchSemaphore(value: 0)

    init(store: SQLiteStore, directory: String) throws {
        agent = try Agent(configuration: AgentConfiguration(name: "scratch", queues: ["q"], slots: 1, workDirectory: directory,
                                                            heartbeatInterval: 2, leaseSeconds: 20, drainGrace: 0, killGrace: 10),
                          store: store, log: AgentLog(name: "scratch", environment: [:], threshold: .warning), notifier: nil)
        let agent = self.agent, stopped = self.stopped
        Thread.detachNewThread {
            _ = try? agent.run()
            stopped.signal()
        }
    }

    func stop() {
        agent.drain(signal: SIGTERM)
        agent.drain(signal: SIGTERM)
        stopped.wait()
    }
}

/// Polls `condition` every 50 ms until it holds or `timeout` seconds pass.
private func waitUntil(timeout: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Clock.now() + timeout
    while Clock.now() < deadline {
        if condition() { return true }
        usleep(50_000)
    }
    return condition()
}

import Foundation
import Glibc
import Synchronization

/// What a sweep tells whoever runs it, as it happens.
public enum SweepEvent: Sendable {
    /// A trial was queued.
    case queued(SweepTrial)
    /// A trial ended; `best` is the sweep's best completed trial after it.
    case ended(SweepTrial, best: SweepTrial?)
    /// A running trial is being stopped early, with the reason.
    case stopping(SweepTrial, reason: String)
    /// Something the user should know that changes nothing (a trial run adopted on resume).
    case note(String)
}

/// Runs a sweep: keeps `parallel` trials queued or running, each a clone of the base run with the
/// strategy's values (and the parameters `sweep` and `trial`, so that `cml-run ls --where 'sweep = ID'`
/// lists them), reads each ended trial's objective from its metric summary, and stops what the
/// strategy says to stop. The record in the store is the sweep's memory: a trial is written there as
/// `planned` before its run is queued, so that a controller killed at any point is resumed
/// (`SweepController(resuming:)`) without a trial run twice.
public final class SweepController: @unchecked Sendable {  // one thread runs it; `stop` comes from another, behind a mutex
    public static let sweepParameter = "sweep"
    public static let trialParameter = "trial"

    let store: any Store
    public private(set) var sweep: Sweep
    let strategy: any SweepStrategy
    /// The spec every trial is cloned from.
    let baseSpec: RunSpec
    let report: (SweepEvent) -> Void
    let watcher: any QueueWatcher
    private let stopRequest = Mutex(StopRequest.none)
    /// Seconds between looks at the trials when nothing wakes the controller.
    let pollInterval: Double

    enum StopRequest: Comparable { case none, finishRunning, abortRunning, leaveRunning }

    /// Starts a new sweep, recorded at once.
    public init(store: any Store, sweep: Sweep, strategy: any SweepStrategy, baseSpec: RunSpec, pollInterval: Double = 1,
                report: @escaping (SweepEvent) -> Void) throws(CMLError) {
        self.store = store
        self.sweep = sweep
        self.strategy = strategy
        self.baseSpec = baseSpec
        self.report = report
        self.pollInterval = pollInterval
        watcher = try store.queueWatcher()
        try save()
    }

    /// The spec the trials of a sweep on `base` are cloned from: the base run's own spec when it was
    /// queued, else the one `cml-run clone` makes.
    public static func baseSpec(of base: Run, in store: any Store, warn: (String) -> Void) throws(CMLError) -> RunSpec {
        try RunSpec.clone(base, queuedSpec: try store.spec(run: base.id), settings: [], warn: warn)
    }

    /// Asks the controller to stop queueing trials and end once those queued or running have; with
    /// `abortRunning`, to abort them first. From any thread (a signal's).
    public func requestStop(abortRunning: Bool) {
        stopRequest.withLock { $0 = max($0, abortRunning ? .abortRunning : .finishRunning) }
        watcher.interrupt()
    }

    /// Asks the controller to end at once, leaving the trials queued or running to a resume.
    public func requestStop(leaveRunning: Bool) {
        stopRequest.withLock { $0 = .leaveRunning }
        watcher.interrupt()
    }

    /// Runs the sweep until every trial has ended, or it is stopped and its trials have ended. Returns it
    /// as recorded last.
    public func run() throws(CMLError) -> Sweep {
        try adoptPlannedTrials()
        // A resumed strategy learns what ended before.
        for trial in sweep.trials where trial.state.isFinished { try askStrategy { () throws(CMLError) in try strategy.ended(trial) } }
        try abortTrialsLeftStopping()
        var abortedActive = false
        var strategyHasMore = true
        var lastBeat = Clock.now()
        while true {
            try refreshActiveTrials()
            let request = stopRequest.withLock { $0 }
            if request == .abortRunning && !abortedActive {
                abortedActive = true
                try abortActiveTrials()
            }
            if let maxFailures = sweep.configuration.maxFailures, sweep.failures >= maxFailures, sweep.status == .running {
                sweep.status = .failed
                sweep.reason = "\(sweep.failures) trials failed (--max-failures \(maxFailures))"
                report(.note("stopping: \(sweep.reason!); the trials queued or running finish"))
                try save()
            }
            if request == .none && sweep.status == .running {
                try stopTrialsEarly()
                strategyHasMore = try fillSlots()
            }
            let active = sweep.active
            let done = sweep.trials.count >= sweep.configuration.trials || !strategyHasMore
            if active.isEmpty && (done || request != .none || sweep.status != .running) { break }
            if request == .leaveRunning { break }
            if Clock.now() - lastBeat >= Sweep.heartbeatInterval {
                lastBeat = Clock.now()
                try save()
            }
            watcher.wait(timeout: pollInterval)
        }
        if sweep.status == .running {
            let request = stopRequest.withLock { $0 }
            if request == .none {
                sweep.status = .finished
            } else {
                sweep.status = .stopped
                sweep.reason = switch request {
                case .abortRunning: "stopped; its unfinished trials were aborted"
                case .leaveRunning where !sweep.active.isEmpty: "stopped, leaving \(sweep.active.count) trials queued or running"
                default: "stopped before all its trials were queued"
                }
            }
        }
        try save()
        return sweep
    }

    // MARK: Trials

    /// Queues new trials while slots are free: each written `planned` first, then queued, then recorded
    /// with its run. False when the strategy has no more to give.
    private func fillSlots() throws(CMLError) -> Bool {
        while sweep.active.count < sweep.configuration.parallel && sweep.trials.count < sweep.configuration.trials {
            let index = sweep.trials.count
            let trials = sweep.trials
            guard let suggestion = try askStrategy({ () throws(CMLError) in try strategy.suggest(index: index, trials: trials) }) else {
                return false
            }
            sweep.trials.append(SweepTrial(index: index, assignment: suggestion.assignment, info: suggestion.info))
            try save()
            try enqueue(index)
        }
        return true
    }

    private func enqueue(_ index: Int) throws(CMLError) {
        let trial = sweep.trials[index]
        var spec = baseSpec
        var settings = trial.assignment
        if let budget = sweep.configuration.budgetParameter, let maxBudget = sweep.configuration.maxBudget,
           !settings.contains(where: { $0.key == budget }) {
            settings.append((budget, String(maxBudget)))
        }
        try spec.apply(settings)
        // Its own name: the base's name, shared by every trial, would no longer name a run.
        spec.name = "\(spec.name ?? "sweep-" + RunID.short(sweep.id))-trial\(index)"
        spec.params.append(Param(key: Self.sweepParameter, value: .string(sweep.id), source: "option"))
        spec.params.append(Param(key: Self.trialParameter, value: .int(Int64(index)), source: "option"))
        let (runs, _) = try store.enqueue([spec], queue: sweep.configuration.queue, priority: sweep.configuration.priority, maxAttempts: 3)
        sweep.trials[index].run = runs[0].id
        sweep.trials[index].state = .queued
        try save()
        report(.queued(sweep.trials[index]))
    }

    /// A trial left `planned` by a controller killed before it recorded the trial's run: its run, when
    /// it was queued, is found by its parameters; otherwise it is queued now.
    private func adoptPlannedTrials() throws(CMLError) {
        let planned = sweep.trials.filter { $0.state == .planned }
        guard !planned.isEmpty else { return }
        let members = try store.runs(parameter: Self.sweepParameter, is: sweep.id)
        for trial in planned {
            let found = members.filter { run in
                run.params.contains { $0.key == Self.trialParameter && $0.value.number == Double(trial.index) }
            }.min { ($0.queue?.enqueuedAt ?? 0, $0.id) < ($1.queue?.enqueuedAt ?? 0, $1.id) }
            if let found {
                sweep.trials[trial.index].run = found.id
                sweep.trials[trial.index].state = .queued
                report(.note("trial \(trial.index) was queued before the controller stopped: run \(RunID.short(found.id))"))
                try save()
            } else if stopRequest.withLock({ $0 }) == .none {
                try enqueue(trial.index)
            }
        }
    }

    /// Reads the runs of the trials not ended, and records those that ended.
    private func refreshActiveTrials() throws(CMLError) {
        for trial in sweep.active {
            guard let id = trial.run else { continue }
            let run = try store.run(id: id)
            var updated = trial
            switch run.observedStatus {
            case .queued: updated.state = .queued
            case .running: updated.state = .running
            case .completed:
                updated.objective = sweep.configuration.objective.value(of: run)
                if updated.objective == nil {
                    updated.state = .failed
                    updated.reason = "it recorded no value of \(sweep.configuration.objective.key)"
                } else {
                    updated.state = .completed
                    // A stop that came after it had ended: it ran its whole budget.
                    updated.reason = nil
                }
            case .failed:
                updated.state = .failed
                updated.reason = run.end?.error ?? run.end?.exitCode.map { "exit status \($0)" } ?? "it failed"
            case .lost:
                updated.state = .lost
                updated.reason = run.end?.error ?? "its agent stopped answering"
            case .aborted:
                // Stopped by the strategy (its reason was recorded as it was stopped), else by someone.
                if trial.reason != nil {
                    updated.state = .stopped
                } else {
                    updated.state = .aborted
                    updated.reason = run.end?.error ?? "aborted"
                }
            }
            guard updated.state != trial.state else { continue }
            if updated.state.isFinished {
                updated.endedAt = run.end?.endedAt ?? Clock.now()
                updated.steps = run.metrics.first { $0.key == sweep.configuration.objective.key }?.lastStep
            }
            sweep.trials[trial.index] = updated
            if updated.state.isFinished {
                try askStrategy { () throws(CMLError) in try strategy.ended(updated) }
                try save()
                report(.ended(updated, best: sweep.best))
            }
        }
    }

    private func stopTrialsEarly() throws(CMLError) {
        let running = sweep.trials.filter { $0.state == .running && $0.reason == nil }
        guard !running.isEmpty else { return }
        let key = sweep.configuration.objective.key
        let store = self.store
        let stops = try askStrategy { () throws(CMLError) in
            try strategy.trialsToStop(running) { (trial) throws(CMLError) -> MetricColumns in
                guard let id = trial.run else { return MetricColumns() }
                return try store.metricColumns(run: id, key: key)
            }
        }
        for stop in stops where sweep.trials[stop.index].state == .running && sweep.trials[stop.index].reason == nil {
            guard let id = sweep.trials[stop.index].run else { continue }
            sweep.trials[stop.index].reason = stop.reason
            sweep.trials[stop.index].objective = stop.value
            try save()
            report(.stopping(sweep.trials[stop.index], reason: stop.reason))
            try abortStoppedTrial(stop.index, run: id)
        }
    }

    /// Aborts the run of a trial whose stop reason is recorded.
    private func abortStoppedTrial(_ index: Int, run id: String) throws(CMLError) {
        do {
            _ = try RunAbort.abort(id, store: store)
        } catch {
            let status = try store.run(id: id).observedStatus
            guard status.isFinished else { throw error }
            // It ended on its own meanwhile: it is read as it ended. (Aborted, it was stopped: by an
            // abort of an earlier controller, which was killed before it read the run's end.)
            if status != .aborted {
                sweep.trials[index].reason = nil
                sweep.trials[index].objective = nil
            }
        }
    }

    /// A controller killed between recording a trial's stop reason and aborting its run left the trial
    /// running with its reason, which `stopTrialsEarly` passes over: its run is aborted now.
    private func abortTrialsLeftStopping() throws(CMLError) {
        guard sweep.active.contains(where: { $0.reason != nil }) else { return }
        try refreshActiveTrials()
        for trial in sweep.active where trial.reason != nil {
            guard let id = trial.run else { continue }
            report(.note("trial \(trial.index) was being stopped when the controller stopped: aborting run \(RunID.short(id))"))
            try abortStoppedTrial(trial.index, run: id)
        }
    }

    private func abortActiveTrials() throws(CMLError) {
        for trial in sweep.active {
            guard let id = trial.run else { continue }
            do {
                _ = try RunAbort.abort(id, store: store)
            } catch {
                report(.note("trial \(trial.index) (run \(RunID.short(id))): \(error.message)"))
            }
        }
    }

    /// Calls the strategy. Its error (Optuna's command line failing) ends the sweep: it is recorded
    /// failed with the error as its reason, its trials queued or running left to a resume, and the error
    /// is thrown on.
    private func askStrategy<Answer>(_ call: () throws(CMLError) -> Answer) throws(CMLError) -> Answer {
        do {
            return try call()
        } catch {
            sweep.status = .failed
            sweep.reason = "its strategy failed: \(error.message)"
            try save()
            throw error
        }
    }

    // MARK: The record

    private func save() throws(CMLError) {
        let now = Clock.now()
        sweep.updatedAt = now
        sweep.heartbeatAt = now
        try store.saveController(sweep.record)
    }
}

extension SweepController {
    /// Takes up a sweep whose controller stopped (Ctrl-C, `--max-failures`) or was killed: refused while
    /// its controller still runs.
    public convenience init(resuming sweep: Sweep, store: any Store, strategy: any SweepStrategy, baseSpec: RunSpec,
                            pollInterval: Double = 1, report: @escaping (SweepEvent) -> Void) throws(CMLError) {
        let now = Clock.now()
        if sweep.status == .finished {
            throw CMLError("sweep \(RunID.short(sweep.id)) has finished: all its trials ran", kind: .conflict)
        }
        if sweep.status == .running && !sweep.isAbandoned(now: now) {
            throw ControllerLiveness.stillRunning("sweep", sweep.id, pid: sweep.pid, host: sweep.host, heardAgo: now - sweep.heartbeatAt)
        }
        var resumed = sweep
        resumed.status = .running
        resumed.reason = nil
        resumed.host = ProcessPlace.here.host
        resumed.pid = getpid()
        resumed.pidScope = ProcessPlace.here.scope
        try self.init(store: store, sweep: resumed, strategy: strategy, baseSpec: baseSpec, pollInterval: pollInterval, report: report)
    }
}

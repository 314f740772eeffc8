import Foundation
import Glibc
import Synchronization

/// How an agent works: what it takes, how many at once, and its timings.
public struct AgentConfiguration: Sendable {
    public var name: String
    /// Taken from in this order: all of the first queue's waiting runs before the second's.
    public var queues: [String]
    public var slots: Int
    /// GPU ids shared out among the slots, each run seeing its slot's in `CUDA_VISIBLE_DEVICES`.
    public var gpus: [String]
    /// Take what fills the slots once, run it, and exit.
    public var once: Bool
    /// Keep taking runs as slots free up, and exit once nothing waits on its queues and nothing runs
    /// (a nightly cron job's agent).
    public var untilEmpty: Bool
    /// Holds `repos/` (the clone cache) and `runs/` (one fresh directory per run, removed after it).
    public var workDirectory: String
    public var heartbeatInterval: Double
    public var leaseSeconds: Double
    /// How long a drained agent lets its runs finish before it requeues them.
    public var drainGrace: Double
    /// Between SIGTERM and SIGKILL when a run is stopped.
    public var killGrace: Double

    public init(name: String, queues: [String], slots: Int = 1, gpus: [String] = [], once: Bool = false,
                untilEmpty: Bool = false, workDirectory: String, heartbeatInterval: Double = 5, leaseSeconds: Double = 30,
                drainGrace: Double = 60, killGrace: Double = 10) {
        self.name = name
        self.queues = queues
        self.slots = slots
        self.gpus = gpus
        self.once = once
        self.untilEmpty = untilEmpty
        self.workDirectory = workDirectory
        self.heartbeatInterval = heartbeatInterval
        self.leaseSeconds = leaseSeconds
        self.drainGrace = drainGrace
        self.killGrace = killGrace
    }

    /// The `CUDA_VISIBLE_DEVICES` of each slot: the GPUs dealt out in equal, consecutive shares.
    public var gpuShares: [String?] {
        guard !gpus.isEmpty else { return Array(repeating: nil, count: slots) }
        let share = gpus.count / slots
        return (0..<slots).map { slot in gpus[(slot * share)..<((slot + 1) * share)].joined(separator: ",") }
    }
}

/// Stops one run's command when its agent is told to: `cml-run abort`, a drain that ran out of grace,
/// or a lease another agent has taken back. SIGTERM goes to the command's process group at once and
/// SIGKILL after the grace; the first reason given is how the run ends.
final class RunControl: RunSupervisor, @unchecked Sendable {  // all state behind the mutex
    private let killGrace: Double
    private struct State {
        var child: ChildProcess?
        var finished = false
        var stop: RunStop?
        var grace = 0.0
        var killAt: Double?
    }
    private let state = Mutex(State())

    /// `killGrace`: how long an aborted command gets between SIGTERM and SIGKILL.
    init(killGrace: Double) {
        self.killGrace = killGrace
    }

    func supervise(_ child: ChildProcess) {
        let pending = state.withLock { state -> Bool in
            state.child = child
            guard state.stop != nil else { return false }
            state.killAt = Clock.now() + state.grace
            return true
        }
        if pending { terminate(child) }
    }

    var stop: RunStop? { state.withLock { $0.stop } }

    /// Asks the command to stop (SIGTERM now, or as soon as it starts; SIGKILL `grace` seconds later);
    /// a later request changes nothing.
    func request(_ stop: RunStop, killAfter grace: Double) {
        let child = state.withLock { state -> ChildProcess? in
            guard state.stop == nil, !state.finished else { return nil }
            state.stop = stop
            state.grace = grace
            guard let child = state.child else { return nil }
            state.killAt = Clock.now() + grace
            return child
        }
        if let child { terminate(child) }
    }

    func abort() {
        request(.aborted(reason: "aborted with cml-run abort"), killAfter: killGrace)
    }

    private func terminate(_ child: ChildProcess) {
        child.signalGroup(SIGTERM)
        child.signalGroup(SIGCONT)  // a stopped group acts on SIGTERM only once continued
    }

    /// When SIGKILL is due, if it is.
    var killAt: Double? { state.withLock { $0.finished ? nil : $0.killAt } }

    func killIfDue(now: Double) {
        let child = state.withLock { state -> ChildProcess? in
            guard !state.finished, let at = state.killAt, now >= at else { return nil }
            state.killAt = nil
            return state.child
        }
        child?.signalGroup(SIGKILL)
    }

    /// The command was reaped (or never started): its process id may be reused, so no more signals go to
    /// it.
    func reaped() {
        state.withLock { $0.finished = true }
    }

    /// Its command has ended: the run's end is recorded, or about to be, and its lease given back.
    var hasEnded: Bool { state.withLock { $0.finished } }
}

/// Takes queued runs and runs them, each exactly as `cml-run` would (`RunCapture`), keeping its leases
/// alive with heartbeats; see docs/design.md.
public final class Agent: @unchecked Sendable {  // mutable state behind `state`; the rest is set once
    private struct Slot {
        var lease: QueueLease
        var control: RunControl
    }
    private struct State {
        var slots: [Slot?]
        var draining = false
        var drainDeadline = Double.infinity
        var drainSignal: Int32?
        var requeueing = false
    }

    public let configuration: AgentConfiguration
    /// This process's identity in the store (its leases are this id's).
    let id = RunID.make()
    /// Where the queue, the leases and the agents are: the store, or a remote agent's server.
    private let queue: any Store
    /// Where the runs record: the same store, or a remote agent's spool of the server.
    private let store: SQLiteStore
    /// A remote agent's spool, whose runs it uploads before it ends their leases on the server.
    private let spool: RunSpool?
    private let log: AgentLog
    private let notifier: SystemdNotifier?
    private let watcher: QueueWatcher
    private let reproducer: CodeReproducer
    private let state: Mutex<State>
    private let host = RunEnvironment.hostName

    /// An agent of a store on this machine.
    public convenience init(configuration: AgentConfiguration, store: SQLiteStore, log: AgentLog, notifier: SystemdNotifier?) throws(CMLError) {
        try self.init(configuration: configuration, queue: store, recording: store, spool: nil, log: log, notifier: notifier)
    }

    /// An agent of the server `queue` whose runs record in `spool`, opened as `recording`, and go up from there.
    public convenience init(configuration: AgentConfiguration, server queue: any Store, spool: RunSpool, log: AgentLog,
                            notifier: SystemdNotifier?) throws(CMLError) {
        try self.init(configuration: configuration, queue: queue, recording: try spool.open(), spool: spool, log: log, notifier: notifier)
    }

    private init(configuration: AgentConfiguration, queue: any Store, recording: SQLiteStore, spool: RunSpool?, log: AgentLog,
                 notifier: SystemdNotifier?) throws(CMLError) {
        self.configuration = configuration
        self.queue = queue
        self.store = recording
        self.spool = spool
        self.log = log
        self.notifier = notifier
        watcher = try queue.queueWatcher()
        reproducer = CodeReproducer(cacheDirectory: configuration.workDirectory + "/repos")
        state = Mutex(State(slots: Array(repeating: nil, count: configuration.slots)))
    }

    /// Stops taking runs and lets the current ones finish within the grace, then requeues what still
    /// runs. A second call ends the grace at once. Safe from a signal thread.
    public func drain(signal: Int32) {
        let first = state.withLock { state -> Bool in
            if state.draining {
                state.drainDeadline = min(state.drainDeadline, Clock.now())
                return false
            }
            state.draining = true
            state.drainSignal = signal
            state.drainDeadline = Clock.now() + configuration.drainGrace
            return true
        }
        log(.info, first ? "draining (\(Self.signalName(signal))): taking nothing new; running runs have \(Self.seconds(configuration.drainGrace)) to finish"
                : "\(Self.signalName(signal)) again: requeueing running runs now")
        if first { notifier?.notify("STOPPING=1\nSTATUS=draining") }
        watcher.interrupt()
    }

    /// Runs until drained, or with `once` until what it took has ended. Returns the exit status.
    public func run() throws(CMLError) -> Int32 {
        try FileSystem.makeDirectories(configuration.workDirectory + "/runs")
        // A predecessor of the same name killed a moment ago (systemd restarts us after 5 s) would hold
        // the name until its heartbeat runs out.
        for other in try queue.agents() where other.name == configuration.name && other.isDeadOnThisHost {
            try queue.retireAgent(id: other.id)
            log(.info, "agent \(other.name) with pid \(other.pid) is gone; its runs are requeued when their leases run out")
        }
        try queue.registerAgent(AgentRecord(
            id: id, name: configuration.name, host: host, pid: getpid(), queues: configuration.queues,
            slots: configuration.slots, gpus: configuration.gpus, state: .idle, startedAt: Clock.now(),
            heartbeatAt: Clock.now(), leaseSeconds: configuration.leaseSeconds))
        log(.info, "agent \(configuration.name) started: queues \(configuration.queues.joined(separator: ", ")), \(configuration.slots) slot\(configuration.slots == 1 ? "" : "s")"
            + (configuration.gpus.isEmpty ? "" : ", GPUs \(configuration.gpus.joined(separator: ","))"))
        reclaimExpiredLeases()
        removeAbandonedDirectories()
        notifier?.notify("READY=1\nSTATUS=idle")

        // Heartbeats come often enough for the lease and for systemd's watchdog.
        let tick = min(configuration.heartbeatInterval, notifier?.watchdogInterval.map { $0 / 2 } ?? .infinity)
        var nextHeartbeat = Clock.now() + tick
        var nextReclaim = Clock.now() + configuration.heartbeatInterval
        var took = false
        var reported = 0  // runs held at the last heartbeat
        while true {
            let now = Clock.now()
            let (draining, deadline, active) = state.withLock { ($0.draining, $0.drainDeadline, $0.slots.compactMap { $0 }) }
            if draining || (configuration.once && took) {
                if active.isEmpty { break }
                if draining && now >= deadline { requeueRunning(active) }
            }
            if now >= nextHeartbeat || !active.isEmpty || active.count != reported {
                // Also on every wake-up while runs are held (an abort rings the doorbell), and when runs
                // started or ended, so that the agent's state in the store is current.
                heartbeat(active)
                reported = active.count
                notifier?.notify("WATCHDOG=1")
                if now >= nextHeartbeat { nextHeartbeat = now + tick }
            }
            if now >= nextReclaim {
                reclaimExpiredLeases()
                nextReclaim = now + configuration.heartbeatInterval
            }
            for slot in active { slot.control.killIfDue(now: now) }
            if !draining && !(configuration.once && took) {
                let started = takeWork()
                took = took || started > 0
                if configuration.once && !took { break }  // nothing was waiting
                if configuration.untilEmpty && started == 0 && active.isEmpty { break }  // nothing waits or runs
                if started > 0 { continue }
            }
            let kills = state.withLock { $0.slots.compactMap { $0?.control.killAt } }
            let wakeAt = ([nextHeartbeat, nextReclaim] + kills + (draining ? [deadline] : [])).min()!
            watcher.wait(timeout: max(0.001, wakeAt - Clock.now()))
        }
        do {
            _ = try queue.heartbeat(agent: id, state: .stopped, holding: [], leaseSeconds: configuration.leaseSeconds)
        } catch {
            log(.warning, "could not record that the agent stopped: \(error.message)")
        }
        log(.info, "agent \(configuration.name) stopped")
        return 0
    }

    /// Leases runs for the free slots; returns how many started.
    private func takeWork() -> Int {
        var started = 0
        while let slot = state.withLock({ $0.slots.firstIndex { $0 == nil } }) {
            let lease: QueueLease?
            do {
                lease = try queue.lease(agent: id, queues: configuration.queues, seconds: configuration.leaseSeconds)
            } catch {
                log(.warning, "could not take a run: \(error.message)")
                return started
            }
            guard let lease else { return started }
            let control = RunControl(killGrace: configuration.killGrace)
            state.withLock { $0.slots[slot] = Slot(lease: lease, control: control) }
            Thread.detachNewThread { [self] in
                execute(lease, slot: slot, control: control)
            }
            started += 1
        }
        return started
    }

    private func heartbeat(_ active: [Slot]) {
        let busy = !active.isEmpty
        let draining = state.withLock { $0.draining }
        let reply: HeartbeatReply
        do {
            reply = try queue.heartbeat(agent: id, state: draining ? .draining : (busy ? .busy : .idle),
                                        holding: active.map(\.lease.runID), leaseSeconds: configuration.leaseSeconds)
        } catch {
            log(.warning, "heartbeat failed (retrying): \(error.message)")
            return
        }
        for slot in active {
            let runID = slot.lease.runID
            // A run this agent is stopping already (drained and requeued, aborted), or whose command has
            // ended, gave its lease back itself.
            if reply.notHeld.contains(runID), slot.control.stop == nil, !slot.control.hasEnded {
                log(.warning, "run \(RunID.short(runID)): its lease was taken back (heartbeats came too late); stopping it")
                slot.control.request(.requeue(reason: "its lease was taken back from agent \(configuration.name)"), killAfter: 0)
            } else if reply.abortRequested.contains(runID), slot.control.stop == nil {
                log(.info, "run \(RunID.short(runID)): aborting (cml-run abort)")
                slot.control.abort()
            }
        }
        let count = active.count
        notifier?.notify("STATUS=\(draining ? "draining" : (busy ? "busy" : "idle")): \(count) of \(configuration.slots) slot\(configuration.slots == 1 ? "" : "s") busy")
    }

    /// Leases of agents that stopped renewing them: their leftover processes on this host are killed
    /// first, then the runs go back on their queues (or end `lost`).
    private func reclaimExpiredLeases() {
        do {
            let expired = try queue.expiredLeases().filter { $0.agentID != id }
            if expired.isEmpty { return }
            for lease in expired where lease.agentHost == host {
                let killed = LeftoverProcesses.kill(run: lease.runID, attempt: lease.attempt)
                if killed > 0 { log(.info, "run \(RunID.short(lease.runID)): killed \(killed) leftover process\(killed == 1 ? "" : "es") of agent \(lease.agentName)") }
            }
            let requeued = try queue.reclaim(expired)
            for lease in expired {
                log(.warning, "run \(RunID.short(lease.runID)) lost: agent \(lease.agentName) (pid \(lease.agentPID) on \(lease.agentHost)) stopped renewing its lease")
            }
            if requeued > 0 { log(.info, "requeued \(requeued) lost run\(requeued == 1 ? "" : "s")") }
        } catch {
            log(.warning, "could not reclaim expired leases: \(error.message)")
        }
    }

    /// Run directories (`runs/ID-ATTEMPT`, and `ID-ATTEMPT.patch`) that a killed agent left behind: any
    /// whose attempt is not running now. Agents sharing the work directory keep theirs.
    private func removeAbandonedDirectories() {
        let runs = configuration.workDirectory + "/runs"
        guard let handle = opendir(runs) else { return }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(handle)
        for name in names {
            // A directory, or the patch beside it while it is applied.
            let parts = (name.hasSuffix(".patch") ? String(name.dropLast(6)) : name).split(separator: "-")
            let run = parts.count == 2 ? try? queue.run(id: String(parts[0])) : nil
            let running = run.map { $0.status == .running && $0.queue?.history.count == Int(parts[1]) } ?? false
            if !running { FileSystem.removeTree(runs + "/" + name) }
        }
    }

    private func requeueRunning(_ active: [Slot]) {
        let (first, signal) = state.withLock { state -> (Bool, Int32?) in
            defer { state.requeueing = true }
            return (!state.requeueing, state.drainSignal)
        }
        guard first else { return }
        let reason = "agent \(configuration.name) was stopped (\(signal.map(Self.signalName) ?? "drain")) and the run did not finish within the \(Self.seconds(configuration.drainGrace)) grace"
        for slot in active {
            log(.info, "run \(RunID.short(slot.lease.runID)): requeueing (\(reason))")
            slot.control.request(.requeue(reason: reason), killAfter: configuration.killGrace)
        }
    }

    /// One run, on its own thread: reproduce the code, then run and record it as cml-run does.
    private func execute(_ lease: QueueLease, slot: Int, control: RunControl) {
        let runID = lease.runID
        let short = RunID.short(runID)
        let directory = configuration.workDirectory + "/runs/" + runID + "-" + String(lease.attempt)
        defer {
            control.reaped()
            FileSystem.removeTree(directory)
            state.withLock { $0.slots[slot] = nil }
            watcher.interrupt()
        }
        let spec = lease.spec
        log(.info, "run \(short) (attempt \(lease.attempt), queue \(lease.queue)): \(ShellQuoting.commandLine(spec.command))")
        // Lines for the run's console log: a remote agent's run is in its spool only once it has started.
        var notes: [String] = []
        func note(_ line: String) {
            if spool == nil { writeNote(line, lease) } else { notes.append(line) }
        }
        if lease.attempt > 1 { note("attempt \(lease.attempt) on agent \(configuration.name)") }

        func end(_ end: LeasedRunEnd) {
            do {
                if try !queue.endLeasedRun(lease, end, logBytes: 0) {
                    log(.warning, "run \(short): its lease was taken back; its end is not recorded here")
                }
            } catch {
                log(.error, "run \(short): its end was not recorded: \(error.message)")
            }
        }
        let command: [String]
        let start: String
        do {
            // The spec's environment is set on top of ours, so its variables win.
            command = try SecretParameters.fill(spec.command, from: RunEnvironment.current() + spec.environment.map { ($0.name, $0.value) })
            start = try reproducer.reproduce(spec, into: directory) { () throws(CMLError) in try queue.blob(spec.patchBlob!) }
        } catch {
            log(.warning, "run \(short) failed: \(error.message)")
            end(.finished(RunEnd(status: .failed, endedAt: Clock.now(), error: error.message)))
            return
        }
        if !spec.leftOut.isEmpty {
            let line = "not in the reproduced code (left out when it was captured): \(spec.leftOut.map(\.summary).joined(separator: ", "))"
            log(.warning, "run \(short): \(line)")
            // The command that fails for want of them then says why next to its error.
            note(line)
        }
        switch control.stop {
        case .aborted(let reason)?:
            end(.finished(RunEnd(status: .aborted, endedAt: Clock.now(), error: (reason ?? "aborted") + " before it started")))
            return
        case .requeue(let reason)?:
            end(.requeued(reason: reason))
            return
        case nil: break
        }
        var environment = spec.environment.map { ($0.name, $0.value) }
        if let gpus = configuration.gpuShares[slot] { environment.append(("CUDA_VISIBLE_DEVICES", gpus)) }
        let launch = RunLaunch(record: .leased(lease), workingDirectory: start, environment: environment,
                               passThrough: false, detached: true)
        // A remote agent's run goes up from the spool as it runs, after what earlier attempts left on the server.
        var upload: LeasedRunUpload?
        var earlier = RunSync.LeasedStart.empty
        if spool != nil {
            do {
                earlier = try RunSync.leasedStart(of: runID, in: queue)
            } catch {
                log(.warning, "run \(short): not started, as the server did not say what it holds of it (\(error.message)); it is requeued when its lease runs out")
                return
            }
        }
        defer { if let upload { endUploaded(lease, upload: upload, control: control) } }
        do {
            let (status, signal, _) = try RunCapture.run(command, options: try spec.runOptions(), launch: launch,
                                                 queueStore: spool == nil ? nil : queue, openStore: { store },
                                                 recorded: { [self] _ in
                                                     for line in notes { writeNote(line, lease) }
                                                     guard spool != nil else { return }
                                                     upload = LeasedRunUpload(from: store, to: queue, run: runID, after: earlier)
                                                     upload?.start()
                                                 },
                                                 supervisor: control) { [log] warning in
                log(.warning, "run \(short): \(warning)")
            }
            let outcome = switch control.stop {
            case .aborted?: "aborted"
            case .requeue?: "stopped and requeued"
            case nil: status == 0 ? "completed" : "failed"
            }
            // As the run's record says it: a signal is not an exit status.
            log(.info, "run \(short) \(outcome) (\(signal.map { "signal \($0)" } ?? "exit status \(status)"))")
        } catch {
            log(.warning, "run \(short) failed: \(error.message)")
        }
    }

    /// Writes a line of the agent's about the run into its console log (stderr): where a new attempt
    /// starts after the output of the lost one, which files the reproduced code lacks.
    private func writeNote(_ line: String, _ lease: QueueLease) {
        do {
            let writer = try store.logWriter(run: lease.runID)
            try writer.append(.stderr, time: Clock.now(), Array("cml-agent: \(line)\n".utf8))
        } catch {
            log(.warning, "run \(RunID.short(lease.runID)): could not write to its log (\(error.message)): \(line)")
        }
    }

    /// A remote agent's run whose command has ended: uploads the rest of it, then ends its lease on the
    /// server as the spool's record says it ended, then takes it out of the spool. While the server does
    /// not answer, keeps trying (the slot stays taken, and the heartbeats keep the lease); should the
    /// lease run out meanwhile, the server requeues the run and this end is not recorded.
    private func endUploaded(_ lease: QueueLease, upload: LeasedRunUpload, control: RunControl) {
        let runID = lease.runID
        let short = RunID.short(runID)
        upload.stop()
        var pause = 0.2
        var warned = false
        while true {
            do throws(CMLError) {
                _ = try upload.copy()
                let run = try store.run(id: runID)
                let end: LeasedRunEnd = if let runEnd = run.end {
                    .finished(runEnd)
                } else if case .requeue(let reason)? = control.stop {
                    .requeued(reason: reason)
                } else {
                    .finished(RunEnd(status: .failed, endedAt: Clock.now(), error: "the agent could not record how the command ended"))
                }
                // The output of this attempt, as a local agent's run records it.
                if try !queue.endLeasedRun(lease, end, logBytes: run.logBytes) {
                    log(.warning, "run \(short): its lease was taken back; its end is not recorded on the server")
                }
                _ = try store.removeRuns([runID])
                if warned { log(.info, "run \(short): uploaded to the server") }
                return
            } catch where error.kind == .unavailable || error.kind == .busy {
                if !warned {
                    log(.warning, "run \(short): the server has not all of it yet (\(error.message)); it waits in \(spool?.directory ?? "") and goes up when the server answers")
                    warned = true
                }
            } catch {
                log(.error, "run \(short): it stays in \(spool?.directory ?? ""), not uploaded: \(error.message); the server requeues it when its lease runs out")
                return
            }
            usleep(useconds_t(pause * 1_000_000))
            pause = min(pause * 2, 30)
        }
    }

    static func signalName(_ signal: Int32) -> String {
        switch signal {
        case SIGTERM: "SIGTERM"
        case SIGINT: "SIGINT"
        case SIGHUP: "SIGHUP"
        default: "signal \(signal)"
        }
    }

    static func seconds(_ value: Double) -> String {
        value == value.rounded() ? "\(Int(value)) s" : "\(value) s"
    }
}

/// SIGINT, SIGTERM and SIGHUP for a long-running process that handles them itself (the agent drains):
/// blocked in every thread and taken by one sigwait thread, so they reach neither a handler at an
/// arbitrary point nor the process's children.
public enum ShutdownSignals {
    public static let handled: [Int32] = [SIGINT, SIGTERM, SIGHUP]

    /// Call first thing in main, before any other thread exists, so that every thread inherits the mask.
    public static func block() {
        var blocked = sigset_t()
        sigemptyset(&blocked)
        for signal in handled { sigaddset(&blocked, signal) }
        pthread_sigmask(SIG_BLOCK, &blocked, nil)
        signal(SIGPIPE, SIG_IGN)
    }

    /// Hands each signal to `handler` on a thread of its own.
    public static func listen(_ handler: @escaping @Sendable (Int32) -> Void) {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in handled { sigaddset(&set, signal) }
        let waitSet = set
        Thread.detachNewThread {
            var set = waitSet
            while true {
                var info = siginfo_t()
                let received = sigwaitinfo(&set, &info)
                if received > 0 { handler(received) }
            }
        }
    }
}

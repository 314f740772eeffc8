import Glibc

/// `cml-run abort`: a queued run through its queue (see `Store.requestAbort(run:)`); a run recorded by
/// `cml-run` through the store (`Store.requestAbort(directRun:)`), which its cml-run hears within a
/// second on whatever host it runs, or, when it runs here, by SIGTERM to that cml-run at once; either way
/// cml-run forwards SIGTERM and records the run `aborted`. A run with a heartbeat and no process (a client
/// recording over the network, as ClearML's SDK does) hears of it through the store the same way. A run whose cml-run is gone (`lost`: killed
/// with `kill -9`) may have left its command running: those processes, found on this host by the
/// `CML_RUN_ID` in their environment, get SIGTERM, then SIGKILL, and the run ends `aborted`.
public enum RunAbort {
    /// How long the processes a lost run left get to exit after SIGTERM.
    static let leftoverGrace = 3.0

    public static func abort(_ id: String, store: any Store) throws(CMLError) -> AbortOutcome {
        let run = try store.run(id: id)
        if run.queue != nil { return try store.requestAbort(run: id) }
        let status = run.observedStatus
        let here = run.liveness.pidIsHere(.here)
        if status == .lost, here {
            return try stopLeftovers(of: run, store: store)
        }
        guard status == .running else {
            throw CMLError("run \(RunID.short(id)) has already ended (\(status.rawValue))",
                           hint: status == .lost ? "its cml-run on \(run.host) stopped answering; run cml-run abort there to stop what it left" : nil)
        }
        if here, let pid = run.pid {
            guard kill(pid, SIGTERM) == 0 else {
                throw CMLError("cannot signal the cml-run of run \(RunID.short(id)) (pid \(pid)): \(String(cString: strerror(errno)))")
            }
            return .signalled(pid: pid)
        }
        // Elsewhere, or with no process at all (a client that records over the network, as ClearML's SDK
        // does): through the store, which the run's heartbeat reads.
        guard run.heartbeat != nil else {
            throw CMLError("run \(RunID.short(id)) runs under cml-run on \(run.host)\(run.pid.map { " (pid \($0))" } ?? ""), which predates aborts through the store",
                           hint: "stop it there")
        }
        try store.requestAbort(directRun: id)
        return .requestedOfCMLRun(host: run.host)
    }

    private static func stopLeftovers(of run: Run, store: any Store) throws(CMLError) -> AbortOutcome {
        let found = LeftoverProcesses.kill(run: run.id, attempt: nil, signal: SIGTERM)
        guard found > 0 else {
            throw CMLError("run \(RunID.short(run.id)) has already ended (lost)", hint: "no process of it is left on this host")
        }
        let deadline = Clock.now() + leftoverGrace
        while Clock.now() < deadline && LeftoverProcesses.kill(run: run.id, attempt: nil, signal: 0) > 0 { usleep(50_000) }
        LeftoverProcesses.kill(run: run.id, attempt: nil, signal: SIGKILL)
        let reason = "its cml-run was gone; cml-run abort stopped \(found) process\(found == 1 ? "" : "es") it left"
        try store.finishRun(id: run.id, end: RunEnd(status: .aborted, endedAt: Clock.now(), error: reason), logBytes: run.logBytes)
        return .stoppedLeftovers(processes: found)
    }
}

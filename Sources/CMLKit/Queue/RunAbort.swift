import Glibc

/// `cml-run abort`: a queued run through its queue (see `Store.requestAbort`), a run recorded by
/// `cml-run` on this host by SIGTERM to that cml-run, which forwards it and records the run `aborted`.
public enum RunAbort {
    public static func abort(_ id: String, store: any Store) throws(CMLError) -> AbortOutcome {
        let run = try store.run(id: id)
        if run.queue != nil { return try store.requestAbort(run: id) }
        guard run.observedStatus == .running, let pid = run.pid else {
            throw CMLError("run \(RunID.short(id)) has already ended (\(run.observedStatus.rawValue))")
        }
        guard run.host == RunEnvironment.hostName else {
            throw CMLError("run \(RunID.short(id)) runs under cml-run on \(run.host) (pid \(pid))", hint: "stop it there")
        }
        guard kill(pid, SIGTERM) == 0 else {
            throw CMLError("cannot signal the cml-run of run \(RunID.short(id)) (pid \(pid)): \(String(cString: strerror(errno)))")
        }
        return .signalled(pid: pid)
    }
}

import Glibc

/// Processes of a run whose agent was killed: they are in their own process groups, so nothing stops them
/// when the agent dies outside a service manager. Before another agent starts the run again, agents on
/// the same host find them by the `CML_RUN_ID` and `CML_RUN_ATTEMPT` the agent put in their environment
/// (which every process they start inherits) and kill them, so that no run is executed twice at once. An
/// attempt number makes sure a later attempt's processes are never taken for leftovers.
public enum LeftoverProcesses {
    /// Sends `signal` to every process of ours whose environment names this run (and attempt, when
    /// given); returns how many there were.
    @discardableResult
    public static func kill(run id: String, attempt: Int?, signal: Int32 = SIGKILL) -> Int {
        let wanted = [Array("CML_RUN_ID=\(id)".utf8)] + (attempt.map { [Array("CML_RUN_ATTEMPT=\($0)".utf8)] } ?? [])
        guard let proc = opendir("/proc") else { return 0 }
        defer { closedir(proc) }
        var killed = 0
        let me = getpid()
        while let entry = readdir(proc) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard let pid = Int32(name), pid != me else { continue }
            // Other users' environments are unreadable, and their processes not ours to kill.
            guard let environment = try? FileSystem.readAll("/proc/\(pid)/environ") else { continue }
            let variables = environment.split(separator: 0)
            if wanted.allSatisfy({ variable in variables.contains { $0.elementsEqual(variable) } }) {
                if Glibc.kill(pid, signal) == 0 { killed += 1 }
            }
        }
        return killed
    }
}

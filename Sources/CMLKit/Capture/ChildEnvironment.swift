/// The environment a run's command starts with: ours without another run's `CML_RUN_*` variables, the
/// launch's on top, then cml's own (`CML_RUN_ID`, `CML_STORE`, the log channel, `import cml`).
struct ChildEnvironment {
    private(set) var variables: [(String, String)]

    init(run id: String, lease: QueueLease?, launch: RunLaunch, store: any Store, channel: LogChannel) {
        variables = RunEnvironment.current().filter { !$0.0.hasPrefix("CML_RUN_") }
        for (name, value) in launch.environment { set(name, value) }
        set("PYTHONUNBUFFERED", "1", override: false)
        set("CML_RUN_ID", id)
        if let lease { set("CML_RUN_ATTEMPT", String(lease.attempt)) }
        set("CML_STORE", store.location)
        set("CML_LOG_FD", String(channel.childDescriptor))
        if let cmlLog = PythonModule.cmlLog { set("CML_LOG", cmlLog) }
        if let module = PythonModule.directory {
            // `import cml` works in the child without installing anything.
            let existing = variables.first { $0.0 == "PYTHONPATH" }?.1 ?? ""
            set("PYTHONPATH", existing.isEmpty ? module : module + ":" + existing)
        }
    }

    /// Sets `name` to `value`; without `override`, only when it is not set yet.
    mutating func set(_ name: String, _ value: String, override: Bool = true) {
        if let at = variables.firstIndex(where: { $0.0 == name }) {
            if override { variables[at].1 = value }
        } else {
            variables.append((name, value))
        }
    }
}

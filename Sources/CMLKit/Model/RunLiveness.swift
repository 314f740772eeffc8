/// The one rule for the status a reader sees: `Run.observedStatus`, and `cml_status` in SQL (so that
/// `--where status = lost` agrees with `ls` and `show`). A `running` run is `lost`
/// - on any host, when its cml-run has missed `missedBeatsBeforeLost` beats (its heartbeat is older than
///   that many of its intervals): a killed cml-run, a dead or unreachable machine;
/// - at once, when the reader is where its pid means something (`ProcessPlace`) and no such process is
///   left: `kill -9` of cml-run is seen without waiting for the heartbeat to age.
/// A run without a heartbeat (queued runs, whose agents' leases say whether they live, and runs recorded
/// before heartbeats) is judged by the second rule alone, by host name, as before.
public struct RunLiveness: Sendable {
    /// 30 s without a beat at the default interval (`RunHeartbeat.defaultInterval`, 5 s).
    public static let missedBeatsBeforeLost = 6.0

    public var status: RunStatus
    public var host: String
    public var pid: Int32?
    public var pidScope: String?
    public var heartbeatAt: Double?
    public var heartbeatInterval: Double?

    public init(status: RunStatus, host: String, pid: Int32?, pidScope: String?, heartbeatAt: Double?, heartbeatInterval: Double?) {
        self.status = status
        self.host = host
        self.pid = pid
        self.pidScope = pidScope
        self.heartbeatAt = heartbeatAt
        self.heartbeatInterval = heartbeatInterval
    }

    /// `processExists` is asked only about a pid that means something here.
    public func observedStatus(now: Double, here: ProcessPlace = .here,
                               processExists: (Int32) -> Bool = ProcessPlace.processExists) -> RunStatus {
        guard status == .running else { return status }
        if let heartbeatAt, let heartbeatInterval, now - heartbeatAt > heartbeatInterval * Self.missedBeatsBeforeLost {
            return .lost
        }
        if let pid, pidIsHere(here), !processExists(pid) { return .lost }
        return status
    }

    /// Whether `pid` names the run's process for a reader at `here`: the same host name and, for a run
    /// that recorded its scope, the same kernel boot and pid namespace (two machines or containers may
    /// share a name; a rebooted machine reuses pids).
    public func pidIsHere(_ here: ProcessPlace) -> Bool {
        guard host == here.host else { return false }
        guard let pidScope else { return true }
        return pidScope == here.scope
    }
}

extension Run {
    public var liveness: RunLiveness {
        RunLiveness(status: status, host: host, pid: pid, pidScope: pidScope, heartbeatAt: heartbeat?.at,
                    heartbeatInterval: heartbeat?.interval)
    }
}

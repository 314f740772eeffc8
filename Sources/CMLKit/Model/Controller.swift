import Glibc

/// The record of a process that drives runs: a sweep (`cml-queue sweep`) or a pipeline. The store keeps
/// its document whole and knows only its kind, id and project; what the document holds is its kind's
/// (a `Sweep` for "sweep"), so a new kind of controller needs no new table or route.
public struct ControllerRecord: Sendable, Codable, Equatable {
    public var kind: String
    public var id: String
    /// What a project-bound token may see and write.
    public var project: String
    public var createdAt: Double
    public var updatedAt: Double
    /// A JSON object.
    public var document: String

    public init(kind: String, id: String, project: String, createdAt: Double, updatedAt: Double, document: String) {
        self.kind = kind
        self.id = id
        self.project = project
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.document = document
    }
}

/// Whether a controller (a sweep's, a pipeline's) is gone though its record says it runs: its process
/// is not there (when it ran on this machine), or it has not been heard of for three heartbeats.
public enum ControllerLiveness {
    /// Seconds between a controller's heartbeats.
    public static let heartbeatInterval = 5.0

    public static func isAbandoned(host: String, pid: Int32, pidScope: String?, heartbeatAt: Double, now: Double) -> Bool {
        if pidScope != nil && ProcessPlace(host: host, scope: pidScope) == .here && !ProcessPlace.processExists(pid) { return true }
        return now - heartbeatAt > 3 * heartbeatInterval
    }

    /// Why a controller that still runs is not taken up (`resume`).
    public static func stillRunning(_ kind: String, _ id: String, pid: Int32, host: String, heardAgo: Double) -> CMLError {
        CMLError("\(kind) \(RunID.short(id)) is running: its controller (pid \(pid) on \(host)) was heard of \(Int(heardAgo)) s ago",
                 hint: "stop it with Ctrl-C or kill \(pid) first", kind: .conflict)
    }
}

import Glibc

/// Where a process id names a process: the host name, and the `scope` within it, the kernel's boot id
/// (/proc/sys/kernel/random/boot_id, new at every boot) and the pid namespace (/proc/self/ns/pid, one
/// per container). A host name alone says too little: containers and machines of a cluster may share
/// one, and a rebooted machine gives a dead cml-run's pid to another process. nil where /proc does not
/// tell.
public struct ProcessPlace: Sendable, Equatable {
    public var host: String
    public var scope: String?

    public init(host: String, scope: String?) {
        self.host = host
        self.scope = scope
    }

    /// This process's place, read once.
    public static let here = ProcessPlace(host: RunEnvironment.hostName, scope: currentScope())

    static func currentScope() -> String? {
        guard let boot = try? FileSystem.readAll("/proc/sys/kernel/random/boot_id"),
              let namespace = try? FileSystem.readLink("/proc/self/ns/pid") else { return nil }
        let id = String(decoding: boot, as: UTF8.self).filter { !$0.isWhitespace }
        return id.isEmpty ? nil : id + " " + namespace
    }

    /// Whether a process with this id exists here (one of another user counts).
    public static func processExists(_ pid: Int32) -> Bool {
        kill(pid, 0) == 0 || errno != ESRCH
    }
}

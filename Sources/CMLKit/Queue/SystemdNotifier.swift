import Glibc

/// The sd_notify(3) protocol without libsystemd: one datagram per message to the unix socket named in
/// `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace). Without that variable (not run by
/// systemd with `Type=notify`) every call does nothing.
public final class SystemdNotifier: @unchecked Sendable {  // the socket is only written to
    private let socket: Int32
    private var address = sockaddr_un()
    private let addressLength: socklen_t
    /// How often systemd expects WATCHDOG=1 (`WatchdogSec=`), when it does.
    public let watchdogInterval: Double?

    /// Reads `$NOTIFY_SOCKET` and `$WATCHDOG_USEC`; nil when there is nothing to notify.
    public init?(environment: [String: String]) {
        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty, path.utf8.count < 108 else { return nil }
        socket = Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard socket >= 0 else { return nil }
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }  // abstract namespace
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        addressLength = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1))
        // WATCHDOG_PID, when set, names the process systemd watches; a child of ours must not answer.
        if let usec = environment["WATCHDOG_USEC"].flatMap(Double.init), usec > 0,
           environment["WATCHDOG_PID"].flatMap(Int32.init).map({ $0 == getpid() }) ?? true {
            watchdogInterval = usec / 1_000_000
        } else {
            watchdogInterval = nil
        }
    }

    deinit { close(socket) }

    /// Sends `state` (newline-separated assignments such as `READY=1\nSTATUS=idle`). Failures are ignored,
    /// as sd_notify's are: the service manager may be gone. Never blocks: a reader that fell behind loses
    /// a message rather than stopping the agent's loop.
    public func notify(_ state: String) {
        var message = Array(state.utf8)
        var target = address
        _ = withUnsafePointer(to: &target) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                sendto(socket, &message, message.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT), socketAddress, addressLength)
            }
        }
    }

    /// The variables a service manager gives its service, which the service's own children must not see.
    public static let serviceVariables: Set<String> = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS",
                                                       "LISTEN_PID", "LISTEN_FDNAMES"]
}

import Glibc
import Synchronization

/// The agent's log on stderr, one line per event. Under systemd (stderr is the journal stream named in
/// `$JOURNAL_STREAM`) each line starts with its syslog priority (`<6>`) and carries no time, which the
/// journal records itself; elsewhere a line reads `2026-11-27T10:21:40.123Z cml-agent[gpu0]: info: …`.
public final class AgentLog: Sendable {
    public enum Level: Int32, Sendable {
        case error = 3, warning = 4, info = 6

        var word: String {
            switch self {
            case .error: "error"
            case .warning: "warning"
            case .info: "info"
            }
        }
    }

    private let toJournal: Bool
    private let name: String
    /// Lines less severe than this are left out.
    private let threshold: Level
    private let writing = Mutex(())

    public init(name: String, environment: [String: String], threshold: Level = .info) {
        self.name = name
        self.threshold = threshold
        toJournal = Self.stderrIsJournal(environment["JOURNAL_STREAM"])
    }

    public func callAsFunction(_ level: Level, _ message: String) {
        guard level.rawValue <= threshold.rawValue else { return }
        // One line per event: a multi-line message (git's) would read as several events.
        let flat = message.split(whereSeparator: \.isNewline).joined(separator: " ")
        let line = toJournal ? "<\(level.rawValue)>\(flat)\n"
            : "\(Clock.rfc3339(Clock.now())) cml-agent[\(name)]: \(level.word): \(flat)\n"
        writing.withLock { _ in
            var text = line
            text.withUTF8 { bytes in
                var offset = 0
                while offset < bytes.count {
                    let n = write(STDERR_FILENO, bytes.baseAddress! + offset, bytes.count - offset)
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { return }
                    offset += n
                }
            }
        }
    }

    /// `$JOURNAL_STREAM` is "device:inode" of the journal's socket, which stderr is when it matches.
    static func stderrIsJournal(_ value: String?) -> Bool {
        guard let parts = value?.split(separator: ":"), parts.count == 2,
              let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var st = stat()
        return fstat(STDERR_FILENO, &st) == 0 && UInt64(st.st_dev) == device && UInt64(st.st_ino) == inode
    }
}

/// The one error type that reaches a command's edge, where it becomes one line on stderr:
/// `cml-run: error: <message> (<hint>)`; `cml-serve` answers it as `{"error": …, "kind": …}` with the
/// HTTP status its kind maps to.
public struct CMLError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public let hint: String?
    /// Exit status the command should end with (1 failure, 2 usage).
    public let exitCode: Int32
    public let kind: Kind
    /// Where in the expression the user typed the error is (1-based character), when it is in one
    /// (`--where`): the web UI points at it.
    public private(set) var position: Int?

    /// What went wrong, in terms a client of a remote store can act on: the same for every store, and
    /// carried over HTTP (the server maps each kind to a status).
    public enum Kind: String, Sendable, CaseIterable {
        /// What was asked for (a run, a blob, a metric) does not exist.
        case notFound = "not_found"
        /// A prefix or name matches more than one thing.
        case ambiguous
        /// The request itself is wrong (a usage error, a bad expression, a bad value).
        case invalid
        /// The request clashes with the store's state (a run not in the state the operation needs).
        case conflict
        /// Another process holds the store; retrying later can succeed.
        case busy
        /// The store cannot be reached now (a server refusing connections, a name that does not resolve,
        /// a timeout, a connection lost); retrying later can succeed.
        case unavailable
        /// Not allowed here (a read-only store, a token whose scope does not allow it).
        case refused
        /// Who asks is not known: no token, or one that is unknown or revoked.
        case unauthenticated
        /// What the store holds is damaged (a blob whose content does not match its hash, a torn log).
        case damaged
        /// What was sent is larger than the store takes at once.
        case tooLarge = "too_large"
        /// Anything else.
        case failed
    }

    public init(_ message: String, hint: String? = nil, exitCode: Int32 = 1, kind: Kind? = nil) {
        self.message = message
        self.hint = hint
        self.exitCode = exitCode
        self.kind = kind ?? (exitCode == 2 ? .invalid : .failed)
    }

    /// The same error, pointing at character `position` of the expression it is about.
    public func at(_ position: Int) -> CMLError {
        var copy = self
        copy.position = position
        return copy
    }

    public static func usage(_ message: String, hint: String? = nil) -> CMLError {
        CMLError(message, hint: hint, exitCode: 2)
    }

    /// stdout's reader went away (`| head`): the command stops, and its tool ends quietly with status 0,
    /// as Unix tools do.
    public static let outputClosed = CMLError("standard output was closed", exitCode: 0)

    public var isOutputClosed: Bool { exitCode == 0 }

    public var description: String {
        if let hint { return "\(message) (\(hint))" }
        return message
    }
}

/// The one error type that reaches a command's edge, where it becomes one line on stderr:
/// `cml-run: error: <message> (<hint>)`.
public struct CMLError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public let hint: String?
    /// Exit status the command should end with (1 failure, 2 usage).
    public let exitCode: Int32

    public init(_ message: String, hint: String? = nil, exitCode: Int32 = 1) {
        self.message = message
        self.hint = hint
        self.exitCode = exitCode
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

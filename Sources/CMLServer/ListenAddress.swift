import CMLKit

/// `--listen HOST:PORT` (`[::1]:PORT` for IPv6); port 0 lets the system choose a free one.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init(parsing text: String) throws(CMLError) {
        let invalid = CMLError.usage("--listen '\(text)' is not HOST:PORT", hint: "e.g. 127.0.0.1:8080, or 127.0.0.1:0 for any free port")
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw invalid
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, !host.contains("[") else { throw invalid }
        self.init(host: host, port: port)
    }

    /// Only this machine can connect: `localhost`, 127.0.0.0/8 or ::1.
    public var isLoopback: Bool {
        if host == "localhost" || host == "::1" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }

    public var url: String { url(scheme: "http") }

    public func url(scheme: String) -> String {
        host.contains(":") ? "\(scheme)://[\(host)]:\(port)" : "\(scheme)://\(host):\(port)"
    }

    public var description: String { url }
}

import Glibc

/// The environment a run sees, and how it is stored: names that look like secrets (`Secrets.isSecretName`)
/// keep their name but lose their value.
public enum RunEnvironment {

    public static func current() -> [(String, String)] {
        var out: [(String, String)] = []
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let eq = text.firstIndex(of: "=") {
                out.append((String(text[..<eq]), String(text[text.index(after: eq)...])))
            }
            pointer += 1
        }
        return out
    }

    /// Sorted by name, with secret values replaced.
    public static func redact(_ variables: [(String, String)]) -> [(String, String)] {
        variables.map { (name, value) in (name, Secrets.isSecretName(name) ? Secrets.redacted : value) }.sorted { $0.0 < $1.0 }
    }

    public static var hostName: String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count - 1)
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    public static var userName: String {
        if let pw = getpwuid(getuid()), let name = pw.pointee.pw_name { return String(cString: name) }
        if let user = getenv("USER") { return String(cString: user) }
        return String(getuid())
    }

    public static var workingDirectory: String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return "." }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}

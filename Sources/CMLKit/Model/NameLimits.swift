/// How long the names in a record may be. A name comes back in every listing, comparison and error
/// that mentions it, so a runaway one (a 10 MB metric name) would flood them all; each is refused where it
/// enters, before anything is stored.
public enum NameLimits {
    /// Metric keys, tags, run names, project names and parameter keys, in UTF-8 bytes.
    public static let nameBytes = 256
    /// Parameter values, as their JSON text (a string's content) in UTF-8 bytes.
    public static let paramValueBytes = 64 << 10

    /// Refuses `text` when it is longer than `limit` bytes; `what` names it in the error ("metric name").
    public static func check(_ text: String, _ what: String, limit: Int = nameBytes) throws(CMLError) {
        if let problem = problem(text, what, limit: limit) { throw .usage(problem) }
    }

    /// Refuses a parameter whose key or value is too long.
    public static func check(_ param: Param) throws(CMLError) {
        if let problem = problem(param) { throw .usage(problem) }
    }

    /// What is wrong with a parameter's length, or nil when it is within the limits.
    public static func problem(_ param: Param) -> String? {
        problem(param.key, "parameter name")
            ?? problem(param.value.stringValue ?? param.value.serialized, "value of parameter \(excerpt(param.key))",
                       limit: paramValueBytes)
    }

    static func problem(_ text: String, _ what: String, limit: Int = nameBytes) -> String? {
        let length = text.utf8.count
        guard length > limit else { return nil }
        return "\(what) \(excerpt(text)) is too long (\(length) bytes; at most \(limit))"
    }

    /// The start of `text`, quoted: enough to recognise it, short enough for one line.
    static func excerpt(_ text: String) -> String {
        let start = text.prefix(40)
        return JSON.string(String(start) + (start.endIndex < text.endIndex ? "…" : "")).serialized
    }
}

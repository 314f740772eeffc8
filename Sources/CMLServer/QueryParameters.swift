import CMLKit
import Foundation

/// A request's query string, decoded as HTML forms and curl's `--data-urlencode` encode it (`+` is a
/// space, `%2B` a plus), with only the parameters its route takes: a misspelt one is an error, as an
/// unknown option is on the command line.
struct QueryParameters: Sendable {
    private var pairs: [(name: String, value: String)] = []

    init(_ query: String?, route: ServerRoute) throws(CMLError) {
        try self.init(query, parameters: route.parameters, describing: "\(route.method) \(route.path)")
    }

    /// `parameters`: the names taken; `describing`: what takes them, for the error naming them.
    init(_ query: String?, parameters: [String], describing: String) throws(CMLError) {
        for part in (query ?? "").split(separator: "&") {
            let (rawName, rawValue) = part.firstIndex(of: "=").map { (part[..<$0], part[part.index(after: $0)...]) } ?? (part, "")
            guard let name = Self.decode(rawName), let value = Self.decode(rawValue) else {
                throw CMLError.usage("query parameter '\(part.prefix(60))' is not percent-encoded correctly")
            }
            guard parameters.contains(name) else {
                throw CMLError.usage("unknown query parameter '\(name.prefix(60))'",
                                     hint: parameters.isEmpty ? "\(describing) takes none" : "\(describing) takes \(parameters.joined(separator: ", "))")
            }
            pairs.append((name, value))
        }
    }

    private static func decode(_ text: Substring) -> String? {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }

    /// The last value given for `name`.
    func string(_ name: String) -> String? { pairs.last { $0.name == name }?.value }

    /// Every value given for `name` (`tag=a&tag=b`).
    func strings(_ name: String) -> [String] { pairs.filter { $0.name == name }.map(\.value) }

    func integer(_ name: String) throws(CMLError) -> Int? {
        guard let text = string(name) else { return nil }
        guard let value = Int(text) else { throw CMLError.usage("\(name) must be an integer, not '\(text.prefix(40))'") }
        return value
    }

    /// `1`, `true` or an empty value (`?raw`) is true; `0` or `false` false.
    func flag(_ name: String) throws(CMLError) -> Bool {
        guard let text = string(name) else { return false }
        switch text {
        case "", "1", "true": return true
        case "0", "false": return false
        default: throw CMLError.usage("\(name) must be 1 or 0, not '\(text.prefix(40))'")
        }
    }
}

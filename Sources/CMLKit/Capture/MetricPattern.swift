import Foundation

/// A user's pattern for metrics the default rules do not see (`--metric-pattern`): a regular expression
/// with the named groups `key` and `value`, and optionally `step`, e.g. `(?<key>\w+) is (?<value>[\d.]+)`.
public struct MetricPattern: @unchecked Sendable {  // NSRegularExpression is immutable once made
    public let source: String
    private let expression: NSRegularExpression
    private let hasStep: Bool

    public init(_ source: String) throws(CMLError) {
        for group in ["key", "value"] where !source.contains("(?<\(group)>") {
            throw .usage("--metric-pattern \(source) has no (?<\(group)>…) group", hint: "e.g. (?<key>\\w+) is (?<value>[0-9.]+)")
        }
        do {
            expression = try NSRegularExpression(pattern: source)
        } catch {
            throw .usage("--metric-pattern \(source) is not a valid regular expression")
        }
        self.source = source
        hasStep = source.contains("(?<step>")
    }

    /// The pairs the pattern finds in `line`; a match whose value is not a number is skipped.
    public func pairs(in line: String) -> [MetricLineParser.Pair] {
        let whole = NSRange(line.startIndex..., in: line)
        return expression.matches(in: line, range: whole).compactMap { match in
            func group(_ name: String) -> String? {
                let range = match.range(withName: name)
                guard range.location != NSNotFound, let bounds = Range(range, in: line) else { return nil }
                return String(line[bounds])
            }
            guard let key = group("key"), !key.isEmpty, let value = group("value").flatMap(Double.init) else { return nil }
            return MetricLineParser.Pair(key: key, value: value, step: hasStep ? group("step").flatMap { Int64($0) } : nil)
        }
    }
}

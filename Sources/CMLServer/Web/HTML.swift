import CMLKit
import Foundation

/// Markup that is safe to send: the only way to make it from text is to escape the text. Literals are
/// markup (`StaticString`, so a string known only at run time cannot pass for one), and whatever is
/// interpolated into a literal is escaped unless it is `HTML` already:
///
///     let cell: HTML = "<td title=\"\(run.command.joined(separator: " "))\">\(name)</td>"
///
/// Every attribute value is written in double quotes, so escaping `&<>"'` makes text safe in element
/// content and attribute values alike. A URL is built with `Href`, which percent-encodes its parts.
struct HTML: Sendable, Equatable, CustomStringConvertible, ExpressibleByStringInterpolation {
    private(set) var markup: String

    private init(markup: String) { self.markup = markup }

    init(stringLiteral literal: StaticString) { markup = literal.description }

    init(stringInterpolation: Interpolation) { markup = stringInterpolation.markup }

    /// Text shown as it is: `<script>` is shown, never run.
    init(text: some StringProtocol) { markup = HTML.escape(text) }

    static let empty = HTML(markup: "")

    var description: String { markup }

    struct Interpolation: StringInterpolationProtocol {
        var markup = ""

        init(literalCapacity: Int, interpolationCount: Int) { markup.reserveCapacity(literalCapacity + 16 * interpolationCount) }

        mutating func appendLiteral(_ literal: StaticString) { markup += literal.description }

        /// Text: escaped.
        mutating func appendInterpolation(_ text: some StringProtocol) { markup += HTML.escape(text) }

        mutating func appendInterpolation(_ html: HTML) { markup += html.markup }

        mutating func appendInterpolation(_ parts: [HTML]) { for part in parts { markup += part.markup } }

        mutating func appendInterpolation(_ number: Int) { markup += String(number) }

        mutating func appendInterpolation(_ href: Href) { markup += HTML.escape(href.description) }

        /// ` name` when `on`, else nothing: `<input type="checkbox"\(attribute: "checked", on: picked)>`.
        mutating func appendInterpolation(attribute name: StaticString, on: Bool) { if on { markup += " " + name.description } }
    }

    /// `&`, `<`, `>`, `"` and `'` as character references.
    static func escape(_ text: some StringProtocol) -> String { markupEscaped(text) }

    static func + (a: HTML, b: HTML) -> HTML { HTML(markup: a.markup + b.markup) }

    static func += (a: inout HTML, b: HTML) { a.markup += b.markup }
}

extension Array where Element == HTML {
    func joined(separator: HTML = .empty) -> HTML {
        var out = HTML.empty
        for (index, part) in enumerated() {
            if index > 0 { out += separator }
            out += part
        }
        return out
    }
}

/// A link within this server: a path of segments and a query, each percent-encoded, so a run's name or
/// a filter (`acc>0.9&x`) cannot change where the link goes.
struct Href: Sendable, Equatable, CustomStringConvertible {
    var segments: [String]
    var query: [(name: String, value: String)]

    /// `Href("runs", id)` is `/runs/ID`; no segment is `/`.
    init(_ segments: String..., query: [(name: String, value: String)] = []) {
        self.segments = segments
        self.query = query
    }

    /// A path the server itself made (`/static/cml.1a2b.css`): segments split at `/`.
    init(path: String) {
        segments = path.split(separator: "/").map(String.init)
        query = []
    }

    static func == (a: Href, b: Href) -> Bool { a.description == b.description }

    func adding(_ name: String, _ value: String?) -> Href {
        var copy = self
        if let value { copy.query.append((name, value)) }
        return copy
    }

    var description: String {
        let path = "/" + segments.map { Self.encode($0, keeping: Self.segmentCharacters) }.joined(separator: "/")
        guard !query.isEmpty else { return path }
        return path + "?" + query.map { Self.encode($0.name, keeping: Self.queryCharacters) + "=" + Self.encode($0.value, keeping: Self.queryCharacters) }
            .joined(separator: "&")
    }

    private static let segmentCharacters = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    /// Query values keep what reads well in a URL bar (`-acc`, `lr,acc.max`, `*`); `+`, `&`, `=`, `#`,
    /// `%` and spaces are encoded.
    private static let queryCharacters = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~,*/:")

    private static func encode(_ text: String, keeping allowed: CharacterSet) -> String {
        text.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }
}

/// The small language of `cml-run ls --where`: comparisons of run fields, parameters and metric
/// summaries, joined with `and`, `or`, `not` and parentheses.
///
///     acc > 0.9 and lr <= 0.01 and status = completed
///     loss.min < 0.2 or (name ~ 'bert*' and not tag = old)
///
/// A bare word on the right of a comparison that names no key is text (`status = completed`); text may
/// also be quoted with ' or ". Keys with other characters are written in backquotes: `` `my key` > 1 ``.
public indirect enum RunFilter: Sendable, Codable, Equatable {
    case and(RunFilter, RunFilter)
    case or(RunFilter, RunFilter)
    case not(RunFilter)
    case compare(key: String, keyPosition: Int, op: ComparisonOperator, value: FilterValue)

    public enum ComparisonOperator: String, Sendable, Codable, Equatable {
        case equal = "=", notEqual = "!=", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
        /// Glob match of text (`*`, `?`), as in `name ~ 'bert*'`.
        case matches = "~"
    }

    public enum FilterValue: Sendable, Codable, Equatable {
        case number(Double)
        case text(String)
        /// A bare word: a key when one is called so, else text.
        case word(String, position: Int)
        case bool(Bool)
    }

    /// The keys the expression names, in order, with their positions (1-based characters).
    public var keys: [(String, Int)] {
        switch self {
        case .and(let a, let b), .or(let a, let b): return a.keys + b.keys
        case .not(let a): return a.keys
        case .compare(let key, let position, _, _): return [(key, position)]
        }
    }

    public static func parse(_ text: String) throws(CMLError) -> RunFilter {
        var parser = FilterParser(text: text)
        return try parser.parseWhole()
    }

    /// `-12`, `0.5`, `.5`, `3.`, `1e-3`: digits with an optional sign, point and exponent.
    static func isDecimal(_ word: String) -> Bool {
        var rest = Substring(word)
        func digits() -> Int {
            let count = rest.prefix { $0.isASCII && $0.isNumber }.count
            rest = rest.dropFirst(count)
            return count
        }
        if rest.first == "-" { rest = rest.dropFirst() }
        var mantissa = digits()
        if rest.first == "." {
            rest = rest.dropFirst()
            mantissa += digits()
        }
        guard mantissa > 0 else { return false }
        if let e = rest.first, e == "e" || e == "E" {
            rest = rest.dropFirst()
            if let sign = rest.first, sign == "+" || sign == "-" { rest = rest.dropFirst() }
            guard digits() > 0 else { return false }
        }
        return rest.isEmpty
    }
}

private struct FilterParser {
    enum Token: Equatable {
        case word(String)
        case quoted(String)
        case number(Double)
        case op(RunFilter.ComparisonOperator)
        case open, close, end
    }

    let text: String
    let characters: [Character]
    var index = 0
    /// Where the token last read started (0-based).
    var tokenStart = 0
    var lookahead: Token?

    init(text: String) {
        self.text = text
        characters = Array(text)
    }

    func failure(_ what: String, at position: Int? = nil) -> CMLError {
        let at = (position ?? tokenStart) + 1
        return CMLError.usage("--where \(JSON.string(text).serialized): \(what) at character \(at)",
                              hint: "e.g. --where 'acc > 0.9 and lr <= 0.01 and status = completed'").at(at)
    }

    mutating func parseWhole() throws(CMLError) -> RunFilter {
        let filter = try parseOr()
        let token = try next()
        guard token == .end else { throw failure("unexpected \(describe(token))") }
        return filter
    }

    mutating func parseOr() throws(CMLError) -> RunFilter {
        var left = try parseAnd()
        while try peekKeyword("or") {
            _ = try next()
            left = .or(left, try parseAnd())
        }
        return left
    }

    mutating func parseAnd() throws(CMLError) -> RunFilter {
        var left = try parseNot()
        while try peekKeyword("and") {
            _ = try next()
            left = .and(left, try parseNot())
        }
        return left
    }

    /// How deep `not` and parentheses may nest: the parser recurses, and a typed expression never needs more.
    static let maximumDepth = 100
    var depth = 0

    mutating func parseNot() throws(CMLError) -> RunFilter {
        if try peekKeyword("not") {
            _ = try next()
            return .not(try nested { (parser: inout FilterParser) throws(CMLError) in try parser.parseNot() })
        }
        return try parseComparison()
    }

    mutating func nested(_ body: (inout FilterParser) throws(CMLError) -> RunFilter) throws(CMLError) -> RunFilter {
        depth += 1
        defer { depth -= 1 }
        guard depth <= Self.maximumDepth else { throw failure("nested more than \(Self.maximumDepth) deep") }
        return try body(&self)
    }

    mutating func parseComparison() throws(CMLError) -> RunFilter {
        let token = try next()
        let keyStart = tokenStart
        switch token {
        case .open:
            let inner = try nested { (parser: inout FilterParser) throws(CMLError) in try parser.parseOr() }
            guard try next() == .close else { throw failure("expected ')'") }
            return inner
        case .word(let key) where !["and", "or", "not"].contains(key.lowercased()):
            guard case .op(let op) = try next() else {
                throw failure("expected a comparison (=, !=, <, <=, >, >=, ~) after \(key)")
            }
            let value: RunFilter.FilterValue
            switch try next() {
            case .number(let n): value = .number(n)
            case .quoted(let s): value = .text(s)
            case .word(let w) where w == "true" || w == "false": value = .bool(w == "true")
            case .word(let w) where !["and", "or", "not"].contains(w.lowercased()): value = .word(w, position: tokenStart + 1)
            case let other: throw failure("expected a value after \(op.rawValue), found \(describe(other))")
            }
            if op == .matches, case .number = value { throw failure("~ matches text, not a number") }
            return .compare(key: key, keyPosition: keyStart + 1, op: op, value: value)
        case let other:
            throw failure("expected a key, found \(describe(other))")
        }
    }

    func describe(_ token: Token) -> String {
        switch token {
        case .word(let w): return "'\(w)'"
        case .quoted(let s): return JSON.string(s).serialized
        case .number(let n): return "\(n)"
        case .op(let op): return "'\(op.rawValue)'"
        case .open: return "'('"
        case .close: return "')'"
        case .end: return "the end"
        }
    }

    mutating func peekKeyword(_ keyword: String) throws(CMLError) -> Bool {
        if case .word(let w) = try peek() { return w.lowercased() == keyword }
        return false
    }

    mutating func peek() throws(CMLError) -> Token {
        if let lookahead { return lookahead }
        let token = try scan()
        lookahead = token
        return token
    }

    mutating func next() throws(CMLError) -> Token {
        if let token = lookahead {
            lookahead = nil
            return token
        }
        return try scan()
    }

    static func isWordCharacter(_ c: Character) -> Bool {
        c.isLetter || c.isNumber || c == "_" || c == "." || c == "/" || c == "-" || c == "@"
    }

    mutating func scan() throws(CMLError) -> Token {
        while index < characters.count, characters[index].isWhitespace { index += 1 }
        tokenStart = index
        guard index < characters.count else { return .end }
        let c = characters[index]
        switch c {
        case "(": index += 1; return .open
        case ")": index += 1; return .close
        case "~": index += 1; return .op(.matches)
        case "=":
            index += 1
            if index < characters.count, characters[index] == "=" { index += 1 }
            return .op(.equal)
        case "!":
            guard index + 1 < characters.count, characters[index + 1] == "=" else { throw failure("expected '!='") }
            index += 2
            return .op(.notEqual)
        case "<", ">":
            index += 1
            let orEqual = index < characters.count && characters[index] == "="
            if orEqual { index += 1 }
            if c == "<" { return .op(orEqual ? .lessOrEqual : .less) }
            return .op(orEqual ? .greaterOrEqual : .greater)
        case "'", "\"", "`":
            index += 1
            var value = ""
            while index < characters.count, characters[index] != c {
                value.append(characters[index])
                index += 1
            }
            guard index < characters.count else { throw failure("unterminated \(c == "`" ? "key" : "text")") }
            index += 1
            return c == "`" ? .word(value) : .quoted(value)
        default:
            // A number, when the whole word reads as one (`1e-3`, `-2`, `0.5`); else a word.
            var end = index
            while end < characters.count, Self.isWordCharacter(characters[end]) || characters[end] == "+" { end += 1 }
            let word = String(characters[index..<end])
            guard end > index else { throw failure("unexpected '\(c)'") }
            index = end
            if let first = word.first, first.isNumber || first == "-" || first == ".", let number = Double(word) {
                // Double also reads hexadecimal (0x10) and inf or nan, which would compare as no one meant.
                guard RunFilter.isDecimal(word) else { throw failure("'\(word)' is not a decimal number") }
                return .number(number)
            }
            if word.contains("+") { throw failure("unexpected '+'", at: tokenStart + word.distance(from: word.startIndex, to: word.firstIndex(of: "+")!)) }
            return .word(word)
        }
    }
}

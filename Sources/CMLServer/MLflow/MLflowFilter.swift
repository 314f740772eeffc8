import CMLKit

/// MLflow's search filters and orderings (`metrics.acc > 0.9 and params.lr = '0.1'`, `attributes.status
/// = 'FINISHED'`, `tags.\`my tag\` LIKE 'a%'`; `metrics.acc DESC`): clauses joined by AND, each an entity's
/// key, a comparator and a value. Keys may be quoted with backticks or double quotes. A clause on a key a
/// run lacks is false, as in MLflow's own stores.
struct MLflowFilter: Sendable {
    enum Entity: String, Sendable {
        case metric, param, tag, attribute

        init(_ word: String) throws(CMLError) {
            switch word.lowercased() {
            case "metric", "metrics": self = .metric
            case "param", "params", "parameter", "parameters": self = .param
            case "tag", "tags": self = .tag
            case "attribute", "attributes", "attr", "run": self = .attribute
            default:
                throw MLflowError.invalid("'\(word.prefix(40))' is not an entity a filter may name: use metrics., params., tags. or attributes.")
            }
        }
    }

    /// A value a subject holds for a key.
    enum Field: Sendable {
        case number(Double)
        case text(String)
    }

    enum Value: Sendable {
        case number(Double)
        case text(String)
        case list([String])
    }

    enum Comparator: String, Sendable {
        case equal = "=", notEqual = "!=", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
        case like = "LIKE", ilike = "ILIKE", isIn = "IN", notIn = "NOT IN"
    }

    struct Clause: Sendable {
        var entity: Entity
        var key: String
        var comparator: Comparator
        var value: Value
    }

    struct Order: Sendable {
        var entity: Entity
        var key: String
        var ascending: Bool
    }

    var clauses: [Clause] = []

    static func parse(_ text: String?) throws(CMLError) -> MLflowFilter {
        var filter = MLflowFilter()
        guard let text, !text.trimmingCharacters(in: .whitespaces).isEmpty else { return filter }
        var scanner = Scanner(text)
        repeat {
            let (entity, key) = try scanner.identifier()
            let comparator = try scanner.comparator()
            let value = try scanner.value(list: comparator == .isIn || comparator == .notIn)
            filter.clauses.append(Clause(entity: entity, key: key, comparator: comparator, value: value))
        } while try scanner.and()
        return filter
    }

    static func orders(_ texts: [String]) throws(CMLError) -> [Order] {
        try texts.map { text throws(CMLError) in
            var scanner = Scanner(text)
            let (entity, key) = try scanner.identifier()
            let direction = scanner.word().uppercased()
            guard scanner.atEnd, ["", "ASC", "DESC"].contains(direction) else {
                throw MLflowError.invalid("order_by '\(text.prefix(80))' is not 'ENTITY.KEY [ASC|DESC]'")
            }
            return Order(entity: entity, key: key, ascending: direction != "DESC")
        }
    }

    func matches(_ field: (Entity, String) -> Field?) -> Bool {
        clauses.allSatisfy { clause in
            guard let held = field(clause.entity, clause.key) else { return false }
            return Self.compare(held, clause.comparator, clause.value)
        }
    }

    private static func compare(_ held: Field, _ comparator: Comparator, _ value: Value) -> Bool {
        switch (held, value) {
        case (.number(let number), .number(let wanted)): return ordered(number, comparator, wanted)
        case (.number(let number), .text(let text)):
            guard let wanted = Double(text) else { return comparator == .notEqual }
            return ordered(number, comparator, wanted)
        case (.text(let text), .number(let wanted)):
            guard let number = Double(text) else { return comparator == .notEqual }
            return ordered(number, comparator, wanted)
        case (.text(let text), .text(let wanted)):
            switch comparator {
            case .like: return like(Array(text), Array(wanted))
            case .ilike: return like(Array(text.lowercased()), Array(wanted.lowercased()))
            default: return ordered(text, comparator, wanted)
            }
        case (.number(let number), .list(let items)):
            let contained = items.contains { Double($0) == number }
            return comparator == .isIn ? contained : !contained
        case (.text(let text), .list(let items)):
            return comparator == .isIn ? items.contains(text) : !items.contains(text)
        }
    }

    private static func ordered<T: Comparable>(_ held: T, _ comparator: Comparator, _ wanted: T) -> Bool {
        switch comparator {
        case .equal: held == wanted
        case .notEqual: held != wanted
        case .less: held < wanted
        case .lessOrEqual: held <= wanted
        case .greater: held > wanted
        case .greaterOrEqual: held >= wanted
        case .like, .ilike, .isIn, .notIn: false
        }
    }

    /// SQL's LIKE: `%` any run of characters, `_` any one.
    private static func like(_ text: [Character], _ pattern: [Character]) -> Bool {
        var memo: [Int: Bool] = [:]
        func match(_ t: Int, _ p: Int) -> Bool {
            if let known = memo[t * (pattern.count + 1) + p] { return known }
            let result: Bool
            if p == pattern.count {
                result = t == text.count
            } else if pattern[p] == "%" {
                result = match(t, p + 1) || (t < text.count && match(t + 1, p))
            } else {
                result = t < text.count && (pattern[p] == "_" || pattern[p] == text[t]) && match(t + 1, p + 1)
            }
            memo[t * (pattern.count + 1) + p] = result
            return result
        }
        return match(0, 0)
    }

    /// Sorts by `orders`, then newest first; a subject without a key sorts after those with it, either way.
    static func sorted<Subject>(_ subjects: [Subject], by orders: [Order], field: (Subject, Entity, String) -> Field?,
                                then fallback: (Subject, Subject) -> Bool) -> [Subject] {
        subjects.sorted { a, b in
            for order in orders {
                let left = field(a, order.entity, order.key), right = field(b, order.entity, order.key)
                switch (left, right) {
                case (nil, nil): continue
                case (nil, _): return false
                case (_, nil): return true
                case (.number(let x)?, .number(let y)?):
                    if x == y || (x.isNaN && y.isNaN) { continue }
                    if x.isNaN { return false }
                    if y.isNaN { return true }
                    return order.ascending ? x < y : x > y
                default:
                    let x = text(left!), y = text(right!)
                    if x == y { continue }
                    return order.ascending ? x < y : x > y
                }
            }
            return fallback(a, b)
        }
    }

    private static func text(_ field: Field) -> String {
        switch field {
        case .number(let number): JSON.double(number).serialized
        case .text(let text): text
        }
    }
}

/// Reads a filter or an ordering, character by character.
private struct Scanner {
    let characters: [Character]
    var position = 0

    init(_ text: String) {
        characters = Array(text)
    }

    var atEnd: Bool {
        mutating get {
            skipSpaces()
            return position == characters.count
        }
    }

    mutating func skipSpaces() {
        while position < characters.count, characters[position].isWhitespace { position += 1 }
    }

    func failure(_ what: String) -> CMLError {
        MLflowError.invalid("Invalid filter '\(String(characters).prefix(200))': \(what) at character \(position)")
    }

    /// A bare word: letters, digits, `_`.
    mutating func word() -> String {
        skipSpaces()
        let start = position
        while position < characters.count, characters[position].isLetter || characters[position].isNumber || characters[position] == "_" {
            position += 1
        }
        return String(characters[start..<position])
    }

    /// `entity.key`, the key bare or in backticks or double quotes; a bare key (`status`) is an attribute.
    mutating func identifier() throws(CMLError) -> (MLflowFilter.Entity, String) {
        skipSpaces()
        if position < characters.count, characters[position] == "`" || characters[position] == "\"" {
            return (.attribute, try quoted())
        }
        let first = word()
        guard !first.isEmpty else { throw failure("expected ENTITY.KEY") }
        guard position < characters.count, characters[position] == "." else { return (.attribute, first) }
        position += 1
        let entity = try MLflowFilter.Entity(first)
        if position < characters.count, characters[position] == "`" || characters[position] == "\"" {
            return (entity, try quoted())
        }
        let start = position
        while position < characters.count, !characters[position].isWhitespace, !"=!<>(".contains(characters[position]) { position += 1 }
        guard position > start else { throw failure("expected a key after '\(first).'") }
        return (entity, String(characters[start..<position]))
    }

    mutating func quoted() throws(CMLError) -> String {
        let quote = characters[position]
        position += 1
        let start = position
        while position < characters.count, characters[position] != quote { position += 1 }
        guard position < characters.count else { throw failure("an unclosed \(quote)") }
        defer { position += 1 }
        return String(characters[start..<position])
    }

    mutating func comparator() throws(CMLError) -> MLflowFilter.Comparator {
        skipSpaces()
        for symbol in ["!=", "<=", ">=", "=", "<", ">"] where characters[position...].starts(with: symbol) {
            position += symbol.count
            return MLflowFilter.Comparator(rawValue: symbol)!
        }
        let word = word().uppercased()
        switch word {
        case "LIKE": return .like
        case "ILIKE": return .ilike
        case "IN": return .isIn
        case "NOT":
            guard self.word().uppercased() == "IN" else { throw failure("expected IN after NOT") }
            return .notIn
        default: throw failure("expected a comparator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN)")
        }
    }

    mutating func value(list: Bool) throws(CMLError) -> MLflowFilter.Value {
        skipSpaces()
        guard position < characters.count else { throw failure("expected a value") }
        if list {
            guard characters[position] == "(" else { throw failure("expected a list in parentheses") }
            position += 1
            var items: [String] = []
            while true {
                skipSpaces()
                guard position < characters.count else { throw failure("an unclosed (") }
                if characters[position] == ")" {
                    position += 1
                    return .list(items)
                }
                if characters[position] == "," {
                    position += 1
                    continue
                }
                switch try value(list: false) {
                case .text(let text): items.append(text)
                case .number(let number): items.append(JSON.double(number).serialized)
                case .list: throw failure("a list in a list")
                }
            }
        }
        if characters[position] == "'" || characters[position] == "\"" { return .text(try quoted()) }
        let start = position
        while position < characters.count, !characters[position].isWhitespace, characters[position] != ")", characters[position] != "," {
            position += 1
        }
        let text = String(characters[start..<position])
        guard let number = Double(text) else { throw failure("'\(text.prefix(40))' is neither a number nor a quoted string") }
        return .number(number)
    }

    /// Past an AND: true; at the end: false.
    mutating func and() throws(CMLError) -> Bool {
        if atEnd { return false }
        guard word().uppercased() == "AND" else { throw failure("expected AND (MLflow's filters join clauses with AND only)") }
        return true
    }
}

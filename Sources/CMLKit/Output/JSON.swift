import Foundation

/// A JSON value whose objects keep their key order, so records print with `id` first and stay stable.
public enum JSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    public static func == (lhs: JSON, rhs: JSON) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.int(a), .int(b)): return a == b
        case let (.double(a), .double(b)): return a == b || (a.isNaN && b.isNaN)
        case let (.string(a), .string(b)): return a == b
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    public subscript(key: String) -> JSON? {
        if case .object(let members) = self { return members.first { $0.0 == key }?.1 }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// Compact one-line serialisation (a JSON line).
    public var serialized: String {
        var out = ""
        out.reserveCapacity(256)
        write(to: &out)
        return out
    }

    /// How NaN and the infinities are spelled: cml's own `"nan"`, `"inf"`, `"-inf"`, or protobuf's JSON
    /// (`"NaN"`, `"Infinity"`, `"-Infinity"`), the only one MLflow's client parses.
    public enum NonFiniteSpelling: Sendable {
        case cml, protobuf
    }

    public func write(to out: inout String, nonFinite: NonFiniteSpelling = .cml) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d) where nonFinite == .protobuf && !d.isFinite:
            out += d.isNaN ? "\"NaN\"" : d > 0 ? "\"Infinity\"" : "\"-Infinity\""
        case .double(let d): JSON.writeNumber(d, to: &out)
        case .string(let s): JSON.writeString(s, to: &out)
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.write(to: &out, nonFinite: nonFinite)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (i, (key, value)) in members.enumerated() {
                if i > 0 { out += "," }
                JSON.writeString(key, to: &out)
                out += ":"
                value.write(to: &out, nonFinite: nonFinite)
            }
            out += "}"
        }
    }

    /// JSON has no NaN or infinity: those are written as the strings "nan", "inf", "-inf".
    public static func writeNumber(_ d: Double, to out: inout String) {
        if d.isNaN { out += "\"nan\"" }
        else if d.isInfinite { out += d > 0 ? "\"inf\"" : "\"-inf\"" }
        else if d == d.rounded(), abs(d) < 1e15 { out += String(Int64(d)) }
        else { out += d.description }
    }

    public static func writeString(_ s: String, to out: inout String) {
        out += "\""
        // Most strings need no escape: appended whole rather than scalar by scalar.
        if !s.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") || $0 == 0x7f }) {
            out += s
            out += "\""
            return
        }
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let c where c.value < 0x20 || c.value == 0x7f:
                let hex = String(c.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    /// Parses one JSON document (RFC 8259); object key order is kept.
    public static func parse(_ text: String) throws(CMLError) -> JSON {
        var bytes = Array(text.utf8)
        return try parse(bytes: &bytes)
    }

    public static func parse(bytes: inout [UInt8]) throws(CMLError) -> JSON {
        var parser = JSONParser(bytes: bytes)
        let value = try parser.parseDocument()
        return value
    }
}

/// Edits of objects, and their members and arrays' items read without a `case` (what the routes of
/// other clients' protocols do with the documents they keep).
extension JSON {
    /// An object's members; none for anything else.
    public var members: [(String, JSON)] {
        if case .object(let members) = self { return members }
        return []
    }

    /// An array's items; none for anything else.
    public var items: [JSON] {
        if case .array(let items) = self { return items }
        return []
    }

    /// Sets an object's member, keeping its place when it is there already (a non-object becomes one).
    public mutating func set(_ key: String, _ value: JSON) {
        guard case .object(var members) = self else {
            self = .object([(key, value)])
            return
        }
        if let index = members.firstIndex(where: { $0.0 == key }) { members[index].1 = value } else { members.append((key, value)) }
        self = .object(members)
    }

    /// The object with `key` set to `value` (`set`).
    public func setting(_ key: String, _ value: JSON) -> JSON {
        var copy = self
        copy.set(key, value)
        return copy
    }

    public mutating func remove(_ key: String) {
        guard case .object(var members) = self else { return }
        members.removeAll { $0.0 == key }
        self = .object(members)
    }

    /// The object without the members named in `keys`.
    public func removing(_ keys: Set<String>) -> JSON {
        guard case .object(let members) = self else { return self }
        return .object(members.filter { !keys.contains($0.0) })
    }
}

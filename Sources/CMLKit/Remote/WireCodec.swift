import Foundation

/// How records travel between a store and its clients (`cml-serve` and `HTTPStore`): every field of the
/// model, numbers exact (a Double is written in its shortest form that reads back to the same bits,
/// NaN and the infinities as strings), apart from the JSON the commands print for people and `jq`,
/// which may round, rename and leave out.
public enum WireCodec {
    static let nan = "NaN", infinity = "Infinity", negativeInfinity = "-Infinity"

    public static func encode<Value: Encodable>(_ value: Value) throws(CMLError) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: infinity, negativeInfinity: negativeInfinity, nan: nan)
        do {
            return Array(try encoder.encode(value))
        } catch {
            throw CMLError("cannot encode \(Value.self) for the wire: \(error)")
        }
    }

    /// `what` names the record in the error: a malformed body is an `invalid` error saying what was wrong.
    public static func decode<Value: Decodable>(_ type: Value.Type, from bytes: [UInt8], what: String) throws(CMLError) -> Value {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: infinity, negativeInfinity: negativeInfinity, nan: nan)
        do {
            return try decoder.decode(type, from: Data(bytes))
        } catch let error as DecodingError {
            throw CMLError("\(what) is not a valid record: \(describe(error))", kind: .invalid)
        } catch {
            throw CMLError("\(what) is not a valid record: \(error)", kind: .invalid)
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? "." + $0.stringValue }.joined()
            return keys.isEmpty ? "" : " at \(keys.hasPrefix(".") ? String(keys.dropFirst()) : keys)"
        }
        switch error {
        case .dataCorrupted(let context): return context.debugDescription + path(context)
        case .keyNotFound(let key, let context): return "missing \(key.stringValue)\(path(context))"
        case .typeMismatch(let type, let context): return "expected \(type)\(path(context))"
        case .valueNotFound(let type, let context): return "expected \(type)\(path(context))"
        @unknown default: return "\(error)"
        }
    }
}

/// A JSON value on the wire: null, booleans, integers, strings and arrays as themselves; a double as
/// `{"d": 2}` (a bare `2.0` would read back as an int) and an object as `{"o": [[key, value], …]}` (its
/// members keep their order).
extension JSON: Codable {
    private enum Tag: String, CodingKey { case d, o }

    public init(from decoder: any Decoder) throws {
        if let container = try? decoder.singleValueContainer() {
            if container.decodeNil() { self = .null; return }
            if let value = try? container.decode(Bool.self) { self = .bool(value); return }
            if let value = try? container.decode(Int64.self) { self = .int(value); return }
            if let value = try? container.decode(String.self) { self = .string(value); return }
            if let value = try? container.decode([JSON].self) { self = .array(value); return }
        }
        let tagged = try decoder.container(keyedBy: Tag.self)
        if tagged.contains(.d) {
            self = .double(try tagged.decode(Double.self, forKey: .d))
        } else {
            self = .object(try tagged.decode([Member].self, forKey: .o).map { ($0.key, $0.value) })
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .double(let value):
            var tagged = encoder.container(keyedBy: Tag.self)
            try tagged.encode(value, forKey: .d)
        case .object(let members):
            var tagged = encoder.container(keyedBy: Tag.self)
            try tagged.encode(members.map { Member(key: $0.0, value: $0.1) }, forKey: .o)
        default:
            var container = encoder.singleValueContainer()
            switch self {
            case .null: try container.encodeNil()
            case .bool(let value): try container.encode(value)
            case .int(let value): try container.encode(value)
            case .string(let value): try container.encode(value)
            case .array(let values): try container.encode(values)
            case .double, .object: break
            }
        }
    }

    /// An object member, as a pair in an array.
    private struct Member: Codable {
        var key: String
        var value: JSON

        init(key: String, value: JSON) {
            self.key = key
            self.value = value
        }

        init(from decoder: any Decoder) throws {
            var container = try decoder.unkeyedContainer()
            key = try container.decode(String.self)
            value = try container.decode(JSON.self)
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.unkeyedContainer()
            try container.encode(key)
            try container.encode(value)
        }
    }
}

extension BlobDigest: Codable {
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let digest = BlobDigest(hex: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "\(text) is not a sha256"))
        }
        self = digest
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(hex)
    }
}

extension Run: Codable {
    private enum CodingKeys: String, CodingKey {
        case id, name, project, status, command, cwd, host, user, pid, startedAt, end, environment, code, logBytes,
             tags, params, metrics, queue, datasets, heartbeat, pidScope, extra
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(id: try c.decode(String.self, forKey: .id), name: try c.decodeIfPresent(String.self, forKey: .name),
                  project: try c.decode(String.self, forKey: .project), status: try c.decode(RunStatus.self, forKey: .status),
                  command: try c.decode([String].self, forKey: .command), cwd: try c.decode(String.self, forKey: .cwd),
                  host: try c.decode(String.self, forKey: .host), user: try c.decode(String.self, forKey: .user),
                  pid: try c.decodeIfPresent(Int32.self, forKey: .pid),
                  startedAt: try c.decodeIfPresent(Double.self, forKey: .startedAt),
                  end: try c.decodeIfPresent(RunEnd.self, forKey: .end),
                  environment: try c.decode([[String]].self, forKey: .environment).map { pair in
                      guard pair.count == 2 else {
                          throw DecodingError.dataCorruptedError(forKey: .environment, in: c, debugDescription: "a variable is not a [name, value] pair")
                      }
                      return (pair[0], pair[1])
                  },
                  code: try c.decode(JSON.self, forKey: .code), logBytes: try c.decode(Int64.self, forKey: .logBytes),
                  tags: try c.decode([String].self, forKey: .tags), params: try c.decode([Param].self, forKey: .params),
                  metrics: try c.decode([MetricSummary].self, forKey: .metrics),
                  queue: try c.decodeIfPresent(QueueEntryInfo.self, forKey: .queue))
        datasets = try c.decode([DatasetUse].self, forKey: .datasets)
        heartbeat = try c.decodeIfPresent(Heartbeat.self, forKey: .heartbeat)
        pidScope = try c.decodeIfPresent(String.self, forKey: .pidScope)
        extra = try c.decodeIfPresent(JSON.self, forKey: .extra)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encodeIfPresent(name, forKey: .name)
        try c.encode(project, forKey: .project)
        try c.encode(status, forKey: .status)
        try c.encode(command, forKey: .command)
        try c.encode(cwd, forKey: .cwd)
        try c.encode(host, forKey: .host)
        try c.encode(user, forKey: .user)
        try c.encodeIfPresent(pid, forKey: .pid)
        try c.encodeIfPresent(startedAt, forKey: .startedAt)
        try c.encodeIfPresent(end, forKey: .end)
        try c.encode(environment.map { [$0.0, $0.1] }, forKey: .environment)
        try c.encode(code, forKey: .code)
        try c.encode(logBytes, forKey: .logBytes)
        try c.encode(tags, forKey: .tags)
        try c.encode(params, forKey: .params)
        try c.encode(metrics, forKey: .metrics)
        try c.encodeIfPresent(queue, forKey: .queue)
        try c.encode(datasets, forKey: .datasets)
        try c.encodeIfPresent(heartbeat, forKey: .heartbeat)
        try c.encodeIfPresent(pidScope, forKey: .pidScope)
        try c.encodeIfPresent(extra, forKey: .extra)
    }
}

/// Points are most of what travels (batches of thousands, series of millions): they are written and read
/// here by hand, in the form `WireCodec.encode` gives them, because Foundation's coders spend most of
/// their time on generic metadata, several times what the store spends storing them.
extension WireCodec {
    public static func encodePoints(_ points: some Collection<MetricPoint>) -> [UInt8] {
        var out = "["
        out.reserveCapacity(points.count * 72 + 2)
        var first = true
        for point in points {
            if !first { out += "," }
            first = false
            appendPoint(point, to: &out)
        }
        out += "]"
        return Array(out.utf8)
    }

    /// One point as a JSON object, the line `GET …/metrics` streams.
    public static func appendPoint(_ point: MetricPoint, to out: inout String) {
        out += "{\"key\":"
        JSON.writeString(point.key, to: &out)
        out += ",\"step\":"
        out += String(point.step)
        out += ",\"value\":"
        appendDouble(point.value, to: &out)
        out += ",\"time\":"
        appendDouble(point.time, to: &out)
        out += "}"
    }

    /// A double as `encode` writes it: its shortest exact form (`2.0`, `-0.0`, `1e-300`), NaN and the
    /// infinities as strings.
    static func appendDouble(_ value: Double, to out: inout String) {
        if value.isNaN { out += "\"\(nan)\"" }
        else if value.isInfinite { out += value > 0 ? "\"\(infinity)\"" : "\"\(negativeInfinity)\"" }
        else { out += value.description }
    }

    public static func decodePoints(_ bytes: [UInt8], what: String) throws(CMLError) -> [MetricPoint] {
        var direct = JSONParser(bytes: bytes)
        if let points = direct.plainPoints() { return points }
        return try decodePointsInFull(bytes, what: what)
    }

    /// `decodePoints` through the JSON tree: every form it accepts, and the error naming what is wrong.
    static func decodePointsInFull(_ bytes: [UInt8], what: String) throws(CMLError) -> [MetricPoint] {
        var input = bytes
        let document: JSON
        do { document = try JSON.parse(bytes: &input) } catch {
            throw CMLError("\(what) is not valid JSON: \(error.message)", kind: .invalid)
        }
        guard case .array(let items) = document else { throw CMLError("\(what) is not an array of points", kind: .invalid) }
        var points: [MetricPoint] = []
        points.reserveCapacity(items.count)
        for (index, item) in items.enumerated() {
            guard case .object = item, let key = item["key"]?.stringValue else {
                throw CMLError("\(what): point \(index) has no key", kind: .invalid)
            }
            guard case .int(let step)? = item["step"] else { throw CMLError("\(what): point \(index) has no integer step", kind: .invalid) }
            guard let value = item["value"].flatMap(wireDouble), let time = item["time"].flatMap(wireDouble) else {
                throw CMLError("\(what): point \(index) needs a number value and time", kind: .invalid)
            }
            points.append(MetricPoint(key: key, step: step, value: value, time: time))
        }
        return points
    }

    /// One line of `GET …/metrics`.
    public static func decodePoint(_ line: ArraySlice<UInt8>, what: String) throws(CMLError) -> MetricPoint {
        try decodePoints([UInt8(ascii: "[")] + line + [UInt8(ascii: "]")], what: what)[0]
    }

    fileprivate static func wireDouble(_ json: JSON) -> Double? {
        switch json {
        case .int(let value): return Double(value)
        case .double(let value): return value
        case .string(nan): return .nan
        case .string(infinity): return .infinity
        case .string(negativeInfinity): return -.infinity
        default: return nil
        }
    }
}

extension JSONParser {
    /// A body of points in the form the clients send, `[{"key":…,"step":…,"value":…,"time":…}, …]`, read
    /// straight into points: building the JSON tree first cost the server most of its ingestion time.
    /// Nil for anything else (another member, one twice, a wrong type, bad JSON): `decodePoints` then
    /// reads the body in full, to accept what it accepts and name what is wrong as it does.
    mutating func plainPoints() -> [MetricPoint]? {
        var points: [MetricPoint] = []
        skipSpace()
        guard take(UInt8(ascii: "[")) else { return nil }
        skipSpace()
        if take(UInt8(ascii: "]")) { return atEnd() ? points : nil }
        while true {
            skipSpace()
            guard take(UInt8(ascii: "{")) else { return nil }
            var key: String?, step: Int64?, value: Double?, time: Double?
            while true {
                skipSpace()
                guard take(UInt8(ascii: "\"")) else { return nil }
                let member: UInt8 = if take(word: "key\"") { 0 } else if take(word: "step\"") { 1 }
                    else if take(word: "value\"") { 2 } else if take(word: "time\"") { 3 } else { 4 }
                skipSpace()
                guard member < 4, take(UInt8(ascii: ":")) else { return nil }
                skipSpace()
                guard let parsed = try? parseValue(depth: 2) else { return nil }
                switch (member, parsed) {
                case (0, .string(let text)) where key == nil: key = text
                case (1, .int(let number)) where step == nil: step = number
                case (2, _) where value == nil: value = WireCodec.wireDouble(parsed)
                case (3, _) where time == nil: time = WireCodec.wireDouble(parsed)
                default: return nil
                }
                if (member == 2 && value == nil) || (member == 3 && time == nil) { return nil }
                skipSpace()
                if take(UInt8(ascii: ",")) { continue }
                if take(UInt8(ascii: "}")) { break }
                return nil
            }
            guard let key, let step, let value, let time else { return nil }
            points.append(MetricPoint(key: key, step: step, value: value, time: time))
            skipSpace()
            if take(UInt8(ascii: ",")) { continue }
            if take(UInt8(ascii: "]")) { return atEnd() ? points : nil }
            return nil
        }
    }

    private mutating func take(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    private mutating func take(word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count,
              word.withUTF8Buffer({ w in (0..<count).allSatisfy { bytes[index + $0] == w[$0] } }) else { return false }
        index += count
        return true
    }

    private mutating func atEnd() -> Bool {
        skipSpace()
        return index == bytes.count
    }
}

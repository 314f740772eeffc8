import CMLKit
import Hummingbird

/// JSON as MLflow's client reads it: its responses go through protobuf's JSON parser, which takes NaN
/// and the infinities only as the strings "NaN", "Infinity" and "-Infinity" (cml's own JSON writes
/// "nan" and "inf"): `JSON.write(to:nonFinite: .protobuf)`.
enum MLflowJSON {
    static func serialized(_ value: JSON) -> String {
        var out = ""
        value.write(to: &out, nonFinite: .protobuf)
        return out
    }

    static func response(_ value: JSON) -> Response {
        Response(status: .ok, headers: [.contentType: Media.json], body: ResponseBody(byteBuffer: ByteBuffer(string: serialized(value))))
    }

    static let empty = response(.object([]))

    /// MLflow's `[{"key": …, "value": …}]` lists (tags, params).
    static func keyValues(_ pairs: [(String, String)]) -> JSON {
        .array(pairs.map { .object([("key", .string($0.0)), ("value", .string($0.1))]) })
    }

    /// Milliseconds since the epoch, as MLflow's times are.
    static func millis(_ seconds: Double) -> JSON { .int(Int64((seconds * 1000).rounded())) }
}

/// A request's JSON body, read as MLflow's client writes it (protobuf's JSON: 64-bit integers may come as
/// strings, NaN and the infinities as "NaN", "Infinity", "-Infinity"); fields it does not know are ignored.
struct MLflowBody: Sendable {
    let json: JSON

    init(_ json: JSON) {
        self.json = json
    }

    init(_ route: RouteRequest) async throws(CMLError) {
        var bytes = try await route.bodyBytes(limit: StoreAPI.maxRecordBytes)
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            json = .object([])
            return
        }
        let parsed: JSON
        do { parsed = try JSON.parse(bytes: &bytes) } catch { throw MLflowError.invalid("the request's body is not JSON: \(error.message)") }
        guard case .object = parsed else { throw MLflowError.invalid("the request's body is not a JSON object") }
        json = parsed
    }

    subscript(key: String) -> JSON? {
        guard let value = json[key], value != .null else { return nil }
        return value
    }

    func string(_ key: String) throws(CMLError) -> String {
        guard let value = optionalString(key) else { throw MLflowError.missing(key) }
        return value
    }

    func optionalString(_ key: String) -> String? {
        switch self[key] {
        case .string(let text): text
        case .int(let number): String(number)
        case .double(let number): JSON.double(number).serialized
        case .bool(let flag): String(flag)
        default: nil
        }
    }

    func int64(_ key: String) throws(CMLError) -> Int64? {
        switch self[key] {
        case nil: return nil
        case .int(let number): return number
        case .double(let number) where number.rounded() == number && abs(number) < 9e18: return Int64(number)
        case .string(let text):
            guard let number = Int64(text) else { throw MLflowError.invalid("\(key) must be an integer, not '\(text.prefix(40))'") }
            return number
        default: throw MLflowError.invalid("\(key) must be an integer")
        }
    }

    func double(_ key: String) throws(CMLError) -> Double {
        guard let value = self[key] else { throw MLflowError.missing(key) }
        return try Self.double(value, key: key)
    }

    static func double(_ value: JSON, key: String) throws(CMLError) -> Double {
        switch value {
        case .int(let number): return Double(number)
        case .double(let number): return number
        case .string(let text):
            switch text {
            case "NaN", "nan": return .nan
            case "Infinity", "inf": return .infinity
            case "-Infinity", "-inf": return -.infinity
            default:
                guard let number = Double(text) else { throw MLflowError.invalid("\(key) must be a number, not '\(text.prefix(40))'") }
                return number
            }
        default: throw MLflowError.invalid("\(key) must be a number")
        }
    }

    func array(_ key: String) throws(CMLError) -> [MLflowBody] {
        switch self[key] {
        case nil: return []
        case .array(let items):
            return try items.map { item throws(CMLError) in
                guard case .object = item else { throw MLflowError.invalid("\(key) must hold objects") }
                return MLflowBody(item)
            }
        default: throw MLflowError.invalid("\(key) must be an array")
        }
    }

    /// `[{"key": …, "value": …}]`, in order.
    func keyValues(_ key: String) throws(CMLError) -> [(String, String)] {
        try array(key).map { item throws(CMLError) in (try item.string("key"), item.optionalString("value") ?? "") }
    }
}

/// A malformed protocol buffer message.
struct ProtobufError: Error {
    let reason: String
}

/// One field's value as the wire format carries it.
enum WireValue {
    case varint(UInt64)
    case fixed64(UInt64)
    /// Where the bytes (a string, a nested message or a packed repeated field) lie in the buffer.
    case lengthDelimited(Range<Int>)
    case fixed32(UInt32)
}

/// Reads the fields of one protocol buffer message in order, without a schema: the caller picks the
/// field numbers it knows and skips the rest. Nested messages are read with a reader over their range.
struct ProtobufReader {
    let bytes: [UInt8]
    private var position: Int
    private let end: Int

    init(_ bytes: [UInt8], range: Range<Int>? = nil) {
        self.bytes = bytes
        position = range?.lowerBound ?? 0
        end = range?.upperBound ?? bytes.count
    }

    /// The next field, or nil at the end of the message.
    mutating func next() throws(ProtobufError) -> (number: Int, value: WireValue)? {
        guard position < end else { return nil }
        let key = try readVarint()
        let number = Int(key >> 3)
        guard number > 0 else { throw ProtobufError(reason: "field number 0") }
        switch key & 7 {
        case 0: return (number, .varint(try readVarint()))
        case 1: return (number, .fixed64(try readFixed(8)))
        case 2:
            let length = try readVarint()
            guard length <= UInt64(end - position) else { throw ProtobufError(reason: "field \(number) runs past the message") }
            let range = position..<(position + Int(length))
            position = range.upperBound
            return (number, .lengthDelimited(range))
        case 5: return (number, .fixed32(UInt32(try readFixed(4))))
        default: throw ProtobufError(reason: "wire type \(key & 7) of field \(number) is not supported")
        }
    }

    private mutating func readVarint() throws(ProtobufError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while position < end, shift < 64 {
            let byte = bytes[position]
            position += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
        throw ProtobufError(reason: "truncated varint")
    }

    private mutating func readFixed(_ size: Int) throws(ProtobufError) -> UInt64 {
        guard end - position >= size else { throw ProtobufError(reason: "truncated fixed-size field") }
        let value = Self.littleEndian(bytes, at: position, size: size)
        position += size
        return value
    }

    static func littleEndian(_ bytes: [UInt8], at offset: Int, size: Int) -> UInt64 {
        var value: UInt64 = 0
        for index in (0..<size).reversed() { value = value << 8 | UInt64(bytes[offset + index]) }
        return value
    }

    /// The text of a string field.
    func string(_ range: Range<Int>) -> String {
        String(decoding: bytes[range], as: UTF8.self)
    }

    /// A reader over a nested message.
    func message(_ range: Range<Int>) -> ProtobufReader {
        ProtobufReader(bytes, range: range)
    }

    /// The first element of a packed repeated varint field.
    func firstPackedVarint(_ range: Range<Int>) throws(ProtobufError) -> UInt64? {
        guard !range.isEmpty else { return nil }
        var reader = ProtobufReader(bytes, range: range)
        return try reader.readVarint()
    }
}

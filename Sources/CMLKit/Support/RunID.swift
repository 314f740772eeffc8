/// Time-ordered ids (UUIDv7-like): 48 bits of milliseconds since the epoch, then 80 random bits,
/// printed as 32 lowercase hex digits. Sorting ids sorts by creation time.
public enum RunID {
    public static func make(at seconds: Double = Clock.now()) -> String {
        let millis = UInt64(seconds * 1000) & 0xFFFF_FFFF_FFFF
        var generator = SystemRandomNumberGenerator()
        let high = (millis << 16) | UInt64(generator.next() as UInt16)
        let low: UInt64 = generator.next()
        return hex(high) + hex(low)
    }

    private static func hex(_ value: UInt64) -> String {
        let s = String(value, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    /// True when `text` could be an id or a prefix of one (1 to 32 lowercase hex digits).
    public static func isPrefix(_ text: String) -> Bool {
        !text.isEmpty && text.count <= 32 && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// True when `text` is a whole id (32 lowercase hex digits).
    public static func isFull(_ text: String) -> Bool { text.utf8.count == 32 && isPrefix(text) }

    /// The error for a reference that names no run (as `resolveRunID` throws it): the server answers a
    /// run a token may not see with it too, so that the answer does not tell whether the run exists.
    public static func noRun(_ reference: String) -> CMLError {
        isPrefix(reference.lowercased()) ? CMLError("no run with id \(reference)", hint: "nor one named so; see cml-run ls", kind: .notFound)
            : CMLError("no run is named '\(reference)', and it is not a run id", hint: "ids are hexadecimal; see cml-run ls", kind: .notFound)
    }

    /// The short form shown in tables: enough digits to tell apart runs started in the same millisecond.
    public static func short(_ id: String) -> String { String(id.prefix(16)) }
}

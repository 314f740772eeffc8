/// Lowercase hex digits written straight into a buffer: a snapshot writes a digest and a CRC per file,
/// hundreds of thousands of them.
enum HexDigits {
    /// The low `digits` hex digits of `value`, most significant first, at `out`.
    static func write(_ value: UInt64, digits: Int, to out: UnsafeMutablePointer<UInt8>) {
        var rest = value
        for position in stride(from: digits - 1, through: 0, by: -1) {
            let nibble = UInt8(truncatingIfNeeded: rest & 0xF)
            out[position] = nibble < 10 ? 0x30 + nibble : 0x61 - 10 + nibble
            rest >>= 4
        }
    }
}

import CSupport

/// CRC-32C (Castagnoli): TFRecord framing's checksum, and the fast check a manifest keeps beside each
/// file's sha256 (see `ContentHasher`). Runs on the CPU's crc32 instruction where there is one.
public enum CRC32C {
    /// The checksum of `bytes` continued from `crc` (0 to start).
    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress else { return crc }
        return cml_crc32c(crc, base, bytes.count)
    }

    /// The checksum of A followed by B, from A's, B's and B's length.
    public static func combine(_ first: UInt32, _ second: UInt32, secondLength: Int64) -> UInt32 {
        cml_crc32c_combine(first, second, UInt64(secondLength))
    }

    public static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        bytes.withUnsafeBytes { update(0, $0) }
    }

    /// The form TFRecord stores: rotated and offset, because a CRC over bytes that hold CRCs is weak.
    static func masked(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        let crc = checksum(bytes)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }

    /// 8 lowercase hex digits, as manifests write it.
    public static func hex(_ crc: UInt32) -> String {
        String(unsafeUninitializedCapacity: 8) { out in
            HexDigits.write(UInt64(crc), digits: 8, to: out.baseAddress!)
            return 8
        }
    }

    public static func parseHex(_ text: String) -> UInt32? {
        guard text.utf8.count == 8, text.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
            return nil
        }
        return UInt32(text, radix: 16)
    }
}

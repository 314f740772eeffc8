/// How a run ended, when the cml-run that ran it could not record that in the store (its disk was full,
/// another process held the store's lock too long): kept in the store's directory until an open of the
/// store records it. It is kept as the name of an empty file, `unrecorded-end.ID.STATUS.…`, not as a
/// file's content: a name needs no data block, so it can be written on a full disk, and it appears whole
/// or not at all.
struct KeptRunEnd {
    static let prefix = "unrecorded-end."
    /// The longest file name Linux filesystems take.
    static let maxNameBytes = 255

    var run: String
    var end: RunEnd
    var logBytes: Int64

    /// `unrecorded-end.ID.STATUS.EXIT.SIGNAL.ENDED.CPU_USER.CPU_SYSTEM.MAX_RSS.LOG_BYTES.ERROR`: times in
    /// microseconds, `-` for a value it does not have, the error percent-encoded and cut to fit.
    var fileName: String {
        func number<T: BinaryInteger>(_ value: T?) -> String { value.map { String($0) } ?? "-" }
        func micros(_ seconds: Double?) -> String { number(seconds.map { Int64(($0 * 1_000_000).rounded()) }) }
        var name = Self.prefix + [run, end.status.rawValue, number(end.exitCode), number(end.signal), micros(end.endedAt),
                                  micros(end.cpuUser), micros(end.cpuSystem), number(end.maxRSS), String(logBytes)]
            .joined(separator: ".") + "."
        for byte in (end.error ?? "").utf8 {
            let escaped = Self.keepsAsIs(byte) ? String(UnicodeScalar(byte)) : "%" + Self.hex(byte)
            if name.utf8.count + escaped.utf8.count > Self.maxNameBytes { break }
            name += escaped
        }
        return name
    }

    init(run: String, end: RunEnd, logBytes: Int64) {
        self.run = run
        self.end = end
        self.logBytes = logBytes
    }

    /// Nil for a name this type did not make.
    init?(fileName: String) {
        guard fileName.hasPrefix(Self.prefix) else { return nil }
        let fields = fileName.dropFirst(Self.prefix.count).split(separator: ".", maxSplits: 9, omittingEmptySubsequences: false)
        guard fields.count == 10, !fields[0].isEmpty, let status = RunStatus(rawValue: String(fields[1])),
              let endedAt = Self.seconds(fields[4]), let logBytes = Int64(fields[8]) else { return nil }
        func optional<T>(_ field: Substring, _ parse: (Substring) -> T?) -> T?? {
            field == "-" ? .some(nil) : parse(field).map { .some($0) }
        }
        guard let exitCode = optional(fields[2], { Int32($0) }), let signal = optional(fields[3], { Int32($0) }),
              let cpuUser = optional(fields[5], Self.seconds), let cpuSystem = optional(fields[6], Self.seconds),
              let maxRSS = optional(fields[7], { Int64($0) }), let error = Self.percentDecoded(fields[9]) else { return nil }
        run = String(fields[0])
        end = RunEnd(status: status, endedAt: endedAt, exitCode: exitCode, signal: signal, cpuUser: cpuUser,
                     cpuSystem: cpuSystem, maxRSS: maxRSS, error: error.isEmpty ? nil : error)
        self.logBytes = logBytes
    }

    private static func seconds(_ field: Substring) -> Double? { Int64(field).map { Double($0) / 1_000_000 } }

    /// Letters, digits, space, `-`, `_`, `,` and `:` stay as they are; `.` separates fields, and `/` and
    /// `%` cannot stay either.
    private static func keepsAsIs(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: " "), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: ","), UInt8(ascii: ":"): true
        default: false
        }
    }

    private static func hex(_ byte: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
    }

    private static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var rest = Array(text.utf8)[...]
        while let byte = rest.popFirst() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard rest.count >= 2, let value = UInt8(String(decoding: rest.prefix(2), as: UTF8.self), radix: 16) else { return nil }
            bytes.append(value)
            rest = rest.dropFirst(2)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

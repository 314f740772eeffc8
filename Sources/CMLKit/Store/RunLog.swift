import Glibc

/// Which stream a piece of console output came from. Under a pseudo-terminal both arrive as `stdout`.
public enum OutputStream: UInt8, Sendable {
    case stdout = 1
    case stderr = 2

    public var name: String { self == .stdout ? "stdout" : "stderr" }
}

/// One record of a run's log file: a header of 13 bytes (stream: 1, time in microseconds since the epoch:
/// 8 little-endian, length: 4 little-endian) followed by the bytes exactly as printed.
public struct LogRecord: Sendable {
    public var stream: OutputStream
    public var time: Double
    public var bytes: [UInt8]

    static let headerSize = 13
}

/// Appends records to a run's log file. Each record goes out in one write(2), so what was handed to the
/// kernel survives a `kill -9` of the writer; a torn last record is ignored by readers.
public final class RunLogWriter {
    private let fd: Int32
    public let path: String
    public private(set) var bytesWritten: Int64 = 0

    init(path: String) throws(CMLError) {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileSystem.error("cannot open the run's log", path) }
    }

    deinit { close(fd) }

    public func append(_ stream: OutputStream, time: Double, _ bytes: [UInt8]) throws(CMLError) {
        if bytes.isEmpty { return }
        var header = [UInt8]()
        header.reserveCapacity(LogRecord.headerSize)
        header.append(stream.rawValue)
        let micros = UInt64(max(0, time * 1_000_000))
        for shift in stride(from: 0, to: 64, by: 8) { header.append(UInt8(truncatingIfNeeded: micros >> UInt64(shift))) }
        let length = UInt32(bytes.count)
        for shift in stride(from: 0, to: 32, by: 8) { header.append(UInt8(truncatingIfNeeded: length >> UInt32(shift))) }
        // Header and bytes in one writev(2): one record, one system call, no copy.
        let written = header.withUnsafeBytes { h in
            bytes.withUnsafeBytes { b in
                var parts = [iovec(iov_base: UnsafeMutableRawPointer(mutating: h.baseAddress), iov_len: h.count),
                             iovec(iov_base: UnsafeMutableRawPointer(mutating: b.baseAddress), iov_len: b.count)]
                return writev(fd, &parts, 2)
            }
        }
        if written < 0 { throw FileSystem.error("cannot write the run's log", path) }
        if written < header.count + bytes.count {
            // A short write (a full disk, a signal): finish the record byte-exactly.
            try FileSystem.writeAll(fd, Array((header + bytes)[written...]), path: path)
        }
        bytesWritten += Int64(bytes.count)
    }
}

/// Reads a run's log records in order; `next()` returns nil at the end of what is complete so far, so a
/// follower can call it again later.
public final class RunLogReader {
    public let path: String
    private var fd: Int32 = -1
    private var buffer: [UInt8] = []
    private var start = 0

    init(path: String) {
        self.path = path
    }

    deinit { if fd >= 0 { close(fd) } }

    public func next() -> LogRecord? {
        if fd < 0 {
            fd = open(path, O_RDONLY | O_CLOEXEC)
            if fd < 0 { return nil }
        }
        while true {
            if let record = decode() { return record }
            if !fill() { return nil }
        }
    }

    private func decode() -> LogRecord? {
        let available = buffer.count - start
        guard available >= LogRecord.headerSize else { return nil }
        var micros: UInt64 = 0
        for i in 0..<8 { micros |= UInt64(buffer[start + 1 + i]) << UInt64(8 * i) }
        var length = 0
        for i in 0..<4 { length |= Int(buffer[start + 9 + i]) << (8 * i) }
        guard available >= LogRecord.headerSize + length else { return nil }
        let stream = OutputStream(rawValue: buffer[start]) ?? .stdout
        let bodyStart = start + LogRecord.headerSize
        let record = LogRecord(stream: stream, time: Double(micros) / 1_000_000,
                               bytes: Array(buffer[bodyStart..<bodyStart + length]))
        start = bodyStart + length
        return record
    }

    /// Reads more of the file; false when nothing more is there yet.
    private func fill() -> Bool {
        if start > 0 {
            buffer.removeSubrange(0..<start)
            start = 0
        }
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return false }
        buffer.append(contentsOf: chunk[0..<n])
        return true
    }
}

/// Renders stored output the way a terminal would leave it: a carriage return that does not end a line
/// discards what came before it on that line, so only the last state of a progress bar remains.
public struct ConsoleRenderer {
    private var line: [UInt8] = []
    private var pendingCR = false

    public init() {}

    /// Feeds bytes and returns what is final: complete lines, collapsed.
    public mutating func feed(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        for byte in bytes {
            if pendingCR {
                pendingCR = false
                if byte == 0x0A {
                    line.append(0x0D)
                } else {
                    line.removeAll(keepingCapacity: true)
                }
            }
            switch byte {
            case 0x0D: pendingCR = true
            case 0x0A:
                line.append(0x0A)
                out.append(contentsOf: line)
                line.removeAll(keepingCapacity: true)
            default: line.append(byte)
            }
        }
        return out
    }

    /// Whatever remains at the end of the output: the last, unterminated line.
    public mutating func finish() -> [UInt8] {
        defer { line.removeAll() }
        return line
    }
}

import CSupport
import CZstd
import Glibc

/// Which stream a piece of console output came from. Under a pseudo-terminal both arrive as `stdout`.
public enum OutputStream: UInt8, Sendable {
    case stdout = 1
    case stderr = 2
}

/// One record of a run's log file: a header of 13 bytes (flags: 1, time in microseconds since the epoch:
/// 8 little-endian, stored length: 4 little-endian) followed by the bytes. The flags byte holds the stream
/// (1 or 2) and, in its high bit, whether the bytes are one zstd frame; either way they decode to the
/// output exactly as printed.
public struct LogRecord: Sendable {
    public var stream: OutputStream
    public var time: Double
    public var bytes: [UInt8]

    static let headerSize = 13
    static let compressedFlag: UInt8 = 0x80

    public init(stream: OutputStream, time: Double, bytes: [UInt8]) {
        self.stream = stream
        self.time = time
        self.bytes = bytes
    }

    /// The record as a log file holds it, uncompressed: what `RunStore.appendLog` takes from a client
    /// that has no log writer of its own (output that arrives over another protocol).
    public var encoded: [UInt8] {
        var out: [UInt8] = [stream.rawValue]
        out.reserveCapacity(Self.headerSize + bytes.count)
        let micros = UInt64(max(0, time * 1_000_000))
        for shift in stride(from: 0, to: 64, by: 8) { out.append(UInt8(truncatingIfNeeded: micros >> UInt64(shift))) }
        let length = UInt32(bytes.count)
        for shift in stride(from: 0, to: 32, by: 8) { out.append(UInt8(truncatingIfNeeded: length >> UInt32(shift))) }
        return out + bytes
    }

    /// How many of `bytes` (read from a record boundary) are whole records; the rest is the start of a
    /// record still to come. Nil when a header is garbled (an unknown stream).
    public static func wholeRecordsLength(_ bytes: ArraySlice<UInt8>) -> Int? {
        var position = bytes.startIndex
        while bytes.endIndex - position >= headerSize {
            guard OutputStream(rawValue: bytes[position] & ~compressedFlag) != nil else { return nil }
            var length = 0
            for i in 0..<4 { length |= Int(bytes[position + 9 + i]) << (8 * i) }
            guard bytes.endIndex - position >= headerSize + length else { break }
            position += headerSize + length
        }
        return position - bytes.startIndex
    }
}

/// Appends records to a run's log file. Each record goes out in one writev(2), so what was handed to the
/// kernel survives a `kill -9` of the writer; a torn last record is ignored by readers. Records of 4 KiB
/// or more are compressed with zstd (when asked, and when that saves a tenth): console output shrinks
/// several times.
public final class RunLogWriter {
    private let fd: Int32
    public let path: String
    /// Output bytes recorded (before compression).
    public private(set) var bytesWritten: Int64 = 0
    private let compressor: OpaquePointer?
    private var compressed: [UInt8] = []
    static let compressFrom = 4 << 10

    init(path: String) throws(CMLError) {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileSystem.error("cannot open the run's log", path) }
        compressor = ZSTD_createCCtx()
    }

    deinit {
        close(fd)
        ZSTD_freeCCtx(compressor)
    }

    public func append(_ stream: OutputStream, time: Double, _ bytes: [UInt8], compress: Bool = true) throws(CMLError) {
        if bytes.isEmpty { return }
        var flags = stream.rawValue
        var useCompressed = false
        if compress, bytes.count >= Self.compressFrom, let compressor {
            let bound = ZSTD_compressBound(bytes.count)
            if compressed.count < bound { compressed = [UInt8](repeating: 0, count: bound) }
            let size = compressed.withUnsafeMutableBytes { out in
                bytes.withUnsafeBytes { input in
                    ZSTD_compressCCtx(compressor, out.baseAddress, out.count, input.baseAddress, input.count, 1)
                }
            }
            if ZSTD_isError(size) == 0 && size < bytes.count - bytes.count / 10 {
                flags |= LogRecord.compressedFlag
                useCompressed = true
                try writeRecord(flags: flags, time: time, compressed, count: size)
            }
        }
        if !useCompressed { try writeRecord(flags: flags, time: time, bytes, count: bytes.count) }
        bytesWritten += Int64(bytes.count)
    }

    private func writeRecord(flags: UInt8, time: Double, _ body: [UInt8], count: Int) throws(CMLError) {
        var header = [UInt8]()
        header.reserveCapacity(LogRecord.headerSize)
        header.append(flags)
        let micros = UInt64(max(0, time * 1_000_000))
        for shift in stride(from: 0, to: 64, by: 8) { header.append(UInt8(truncatingIfNeeded: micros >> UInt64(shift))) }
        let length = UInt32(count)
        for shift in stride(from: 0, to: 32, by: 8) { header.append(UInt8(truncatingIfNeeded: length >> UInt32(shift))) }
        // Header and body in one writev(2): one record, one system call, no copy.
        let written = header.withUnsafeBytes { h in
            body.withUnsafeBytes { b in
                var parts = [iovec(iov_base: UnsafeMutableRawPointer(mutating: h.baseAddress), iov_len: h.count),
                             iovec(iov_base: UnsafeMutableRawPointer(mutating: b.baseAddress), iov_len: count)]
                return writev(fd, &parts, 2)
            }
        }
        if written < 0 { throw FileSystem.error("cannot write the run's log", path) }
        if written < header.count + count {
            // A short write (a full disk, a signal): finish the record byte-exactly.
            try FileSystem.writeAll(fd, Array((header + body[..<count])[written...]), path: path)
        }
    }
}

/// Reads a run's log records in order; `next()` returns nil at the end of what is complete so far, so a
/// follower can call it again later. Damage does not stop what can be read before it: a record whose
/// header is garbled ends the reading (what follows it cannot be found again) and is noted in `damage`; a
/// record whose compressed bytes do not decode is printed as a note, noted, and skipped.
public final class RunLogReader {
    private let store: any RunStore
    public let runID: String
    private var buffer: [UInt8] = []
    private var start = 0
    /// The log offset of `buffer[0]`.
    private var bufferOffset: Int64 = 0
    private let decompressor: OpaquePointer? = ZSTD_createDCtx()
    /// Output bytes of the records read so far (after decompression).
    public private(set) var outputBytes: Int64 = 0
    /// Set when the store says the run has no log (it never wrote output).
    public private(set) var missing = false
    /// Set when the log could not be read; why.
    public private(set) var readError: CMLError?
    /// Each damaged record met so far, in log order.
    public private(set) var damage: [RunLogDamage] = []
    /// After a garbled header: where the next record starts is unknown.
    private var stopped = false

    /// Reads through `store.readLog`, so the same reader serves a local store and a remote one; from
    /// `offset`, a record boundary an earlier reader's `offset` gave (the web page's live tail).
    public init(store: any RunStore, run id: String, from offset: Int64 = 0) {
        self.store = store
        self.runID = id
        self.bufferOffset = offset
    }

    deinit {
        ZSTD_freeDCtx(decompressor)
    }

    /// The log offset of the first byte not yet read as part of a complete record.
    public var offset: Int64 { bufferOffset + Int64(start) }

    /// Bytes after the last complete record (a record still being written, or a torn one), as far as read.
    public var incompleteBytes: Int { buffer.count - start }

    public func next() -> LogRecord? {
        while !stopped {
            if let record = decode() { return record }
            if stopped || !fill() { return nil }
        }
        return nil
    }

    private func decode() -> LogRecord? {
        let available = buffer.count - start
        guard available >= LogRecord.headerSize else { return nil }
        let flags = buffer[start]
        guard let stream = OutputStream(rawValue: flags & ~LogRecord.compressedFlag) else {
            damage.append(.garbledHeader(offset: offset))
            stopped = true
            return nil
        }
        var micros: UInt64 = 0
        for i in 0..<8 { micros |= UInt64(buffer[start + 1 + i]) << UInt64(8 * i) }
        var length = 0
        for i in 0..<4 { length |= Int(buffer[start + 9 + i]) << (8 * i) }
        guard available >= LogRecord.headerSize + length else { return nil }
        let recordOffset = offset
        let bodyStart = start + LogRecord.headerSize
        start = bodyStart + length
        var bytes = Array(buffer[bodyStart..<bodyStart + length])
        if flags & LogRecord.compressedFlag != 0 {
            if let decoded = decompress(bytes) {
                bytes = decoded
            } else {
                damage.append(.badCompression(offset: recordOffset))
                bytes = Array("[cml: damaged log record]\n".utf8)
                return LogRecord(stream: stream, time: Double(micros) / 1_000_000, bytes: bytes)
            }
        }
        outputBytes += Int64(bytes.count)
        return LogRecord(stream: stream, time: Double(micros) / 1_000_000, bytes: bytes)
    }

    /// Nil when the frame does not decode.
    private func decompress(_ frame: [UInt8]) -> [UInt8]? {
        let size = frame.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, $0.count) }
        guard size < UInt64(Int32.max) else { return nil }
        var out = [UInt8](repeating: 0, count: Int(size))
        let produced = out.withUnsafeMutableBytes { o in
            frame.withUnsafeBytes { f in ZSTD_decompressDCtx(decompressor, o.baseAddress, o.count, f.baseAddress, f.count) }
        }
        guard ZSTD_isError(produced) == 0, produced == Int(size) else { return nil }
        return out
    }

    /// Reads more of the log; false when nothing more is there yet.
    private func fill() -> Bool {
        if start > 0 {
            buffer.removeSubrange(0..<start)
            bufferOffset += Int64(start)
            start = 0
        }
        let chunk: [UInt8]?
        do {
            chunk = try store.readLog(run: runID, from: bufferOffset + Int64(buffer.count), limit: 1 << 20)
        } catch {
            readError = error
            return false
        }
        readError = nil
        guard let chunk else {
            missing = true
            return false
        }
        missing = false
        guard !chunk.isEmpty else { return false }
        buffer.append(contentsOf: chunk)
        return true
    }

    /// What is wrong with the log of `run`, once `next()` has returned nil. A run that is still running,
    /// or whose recorder was killed (`lost`), may end in a torn record: only a run that ended otherwise
    /// (and so recorded its output's size) is held to having every byte.
    public func problems(of run: Run) -> [RunLogProblem] {
        if let readError { return [.unreadable(readError.description)] }
        if missing { return run.logBytes > 0 ? [.missing(recordedBytes: run.logBytes)] : [] }
        var found = damage.map(RunLogProblem.damaged)
        guard run.end != nil, run.status != .lost, damage.isEmpty else { return found }
        if incompleteBytes > 0 {
            found.append(.cutShort(offset: offset))
        } else if outputBytes < run.logBytes || (outputBytes > run.logBytes && run.queue == nil) {
            // A queued run's log also holds the output of earlier attempts and the agent's notes.
            found.append(.sizeMismatch(readBytes: outputBytes, recordedBytes: run.logBytes))
        }
        return found
    }
}

/// A record of a run's log that could not be read.
public enum RunLogDamage: Sendable, Equatable {
    /// Its flags byte is none the writer writes: nothing after it can be found.
    case garbledHeader(offset: Int64)
    /// Its zstd frame does not decode.
    case badCompression(offset: Int64)
}

/// What is wrong with a run's console log as a whole.
public enum RunLogProblem: Sendable, Equatable, CustomStringConvertible {
    case missing(recordedBytes: Int64)
    case unreadable(String)
    case damaged(RunLogDamage)
    /// The file ends inside a record although the run ended.
    case cutShort(offset: Int64)
    case sizeMismatch(readBytes: Int64, recordedBytes: Int64)

    /// `missing` or `damaged`, as `cml-data verify` names a blob's problem.
    public var kind: String {
        if case .missing = self { return "missing" }
        return "damaged"
    }

    /// Reads after the log's name: "logs/ID.log is missing (…)".
    public var description: String {
        switch self {
        case .missing(let bytes): "is missing (the run recorded \(bytes) bytes of output)"
        case .unreadable(let reason): "cannot be read: \(reason)"
        case .damaged(.garbledHeader(let offset)): "is damaged at byte offset \(offset) (a garbled record header; nothing after it can be read)"
        case .damaged(.badCompression(let offset)): "is damaged at byte offset \(offset) (a compressed record that does not decode)"
        case .cutShort(let offset): "is cut short at byte offset \(offset) (its last record is incomplete though the run ended)"
        case .sizeMismatch(let read, let recorded): "holds \(read) bytes of output where the run recorded \(recorded)"
        }
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
        bytes.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress, buffer.count > 0 else { return }
            let n = buffer.count
            var position = 0
            if pendingCR {
                pendingCR = false
                if base[0] == 0x0A { line.append(0x0D) } else { line.removeAll(keepingCapacity: true) }
            }
            while position < n {
                let cr = memchr(base + position, 0x0D, n - position).map { UnsafePointer($0.assumingMemoryBound(to: UInt8.self)) - base } ?? n
                // [position, cr) holds no carriage return: complete lines go out, the rest extends the line.
                if cr > position, let newline = cml_memrchr(base + position, 0x0A, cr - position) {
                    let end = UnsafePointer(newline.assumingMemoryBound(to: UInt8.self)) - base + 1
                    out.append(contentsOf: line)
                    out.append(contentsOf: UnsafeBufferPointer(start: base + position, count: end - position))
                    line.removeAll(keepingCapacity: true)
                    line.append(contentsOf: UnsafeBufferPointer(start: base + end, count: cr - end))
                } else {
                    line.append(contentsOf: UnsafeBufferPointer(start: base + position, count: cr - position))
                }
                if cr == n { break }
                if cr + 1 == n {
                    pendingCR = true
                } else if base[cr + 1] == 0x0A {
                    line.append(0x0D)
                } else {
                    line.removeAll(keepingCapacity: true)
                }
                position = cr + 1
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

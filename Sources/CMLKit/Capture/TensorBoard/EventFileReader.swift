import Glibc

/// Reads the scalars of one TensorBoard event file, incrementally: the file is being written while the
/// run lives, so each call reads the records added since the last, and an incomplete record at the end
/// is left for the next call. Each record is a little-endian UInt64 length, the masked CRC-32C of those
/// 8 bytes, the data (an `Event`), and the data's masked CRC-32C. A record whose checksum does not match
/// is reported with the file and offset, and the file is not read further.
struct EventFileReader {
    let path: String
    /// Names a tag's series (see `TensorBoardImporter.seriesKey`).
    private let seriesKey: (String) -> String
    /// Where the next record starts.
    private(set) var offset: Int64 = 0
    /// Set once the file is found damaged or unreadable; it is not read again.
    private(set) var stopped = false
    /// The plugin each tag's metadata named last: TensorFlow 2 writes it with a tag's first value only.
    private var plugins: [String: String] = [:]
    /// Each tag's series key, worked out once.
    private var keys: [String: String] = [:]
    private let chunkSize: Int
    /// Beyond any real event (images are megabytes): a length this large means a damaged file.
    private static let maxRecordBytes = 1 << 30

    init(path: String, chunkSize: Int = 1 << 20, seriesKey: @escaping (String) -> String = { $0 }) {
        self.path = path
        self.chunkSize = chunkSize
        self.seriesKey = seriesKey
    }

    /// The scalar points of the complete records between `offset` and `size` (the file's size when it
    /// was looked at).
    mutating func readNew(upTo size: Int64, warn: (String) -> Void) -> [MetricPoint] {
        guard !stopped, size > offset else { return [] }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            // A file removed since it was found is simply gone; anything else is worth a word.
            if errno != ENOENT { warn("cannot read TensorBoard events in \(path): \(String(cString: strerror(errno)))") }
            stopped = true
            return []
        }
        defer { close(fd) }
        var points: [MetricPoint] = []
        var needed = 0
        while offset < size, !stopped {
            let wanted = Int(min(size - offset, Int64(max(chunkSize, needed))))
            var buffer = [UInt8](repeating: 0, count: wanted)
            let count = Self.read(fd, into: &buffer, at: offset)
            guard count >= 0 else {
                warn("cannot read TensorBoard events in \(path): \(String(cString: strerror(errno)))")
                stopped = true
                break
            }
            let consumed = parse(buffer, count: count, points: &points, needed: &needed, warn: warn)
            offset += Int64(consumed)
            // Done when the next record is not all written yet, or the file shrank under us.
            if consumed == 0 && Int64(needed) > size - offset || count < wanted { break }
        }
        return points
    }

    /// Parses the complete records in the first `count` bytes of `buffer`; returns how many bytes they
    /// take, and sets `needed` to the size of the record that follows them when it is not all there.
    private mutating func parse(_ buffer: [UInt8], count: Int, points: inout [MetricPoint], needed: inout Int,
                                warn: (String) -> Void) -> Int {
        var position = 0
        needed = 0
        while position < count {
            let recordOffset = offset + Int64(position)
            guard count - position >= 12 else { needed = 12; break }
            let length = ProtobufReader.littleEndian(buffer, at: position, size: 8)
            guard CRC32C.masked(buffer[position..<(position + 8)])
                    == UInt32(ProtobufReader.littleEndian(buffer, at: position + 8, size: 4)) else {
                stop("the length's checksum does not match", at: recordOffset, warn: warn)
                break
            }
            guard length <= UInt64(Self.maxRecordBytes) else {
                stop("a record of \(length) bytes", at: recordOffset, warn: warn)
                break
            }
            let total = 12 + Int(length) + 4
            guard count - position >= total else { needed = total; break }
            let data = (position + 12)..<(position + 12 + Int(length))
            guard CRC32C.masked(buffer[data]) == UInt32(ProtobufReader.littleEndian(buffer, at: data.upperBound, size: 4)) else {
                stop("the data's checksum does not match", at: recordOffset, warn: warn)
                break
            }
            do throws(ProtobufError) {
                points += scalars(of: try TensorBoardEvent(decoding: buffer, range: data), warn: warn)
            } catch {
                // The framing is sound, so the next record can still be read.
                warn("TensorBoard events \(path): the record at offset \(recordOffset) was skipped: \(error.reason)")
            }
            position += total
        }
        return position
    }

    private mutating func stop(_ problem: String, at recordOffset: Int64, warn: (String) -> Void) {
        warn("TensorBoard events \(path) are damaged at offset \(recordOffset) (\(problem)); the rest of the file is not imported")
        stopped = true
    }

    /// The event's scalars as points; remembers the plugins its metadata names.
    private mutating func scalars(of event: TensorBoardEvent, warn: (String) -> Void) -> [MetricPoint] {
        var points: [MetricPoint] = []
        for value in event.values {
            if let plugin = value.plugin { plugins[value.tag] = plugin }
            let number: Double
            switch value.scalar {
            case .simple(let simple)?: number = simple
            case .tensor(let tensor)?:
                let plugin = plugins[value.tag] ?? ""
                guard plugin == "scalars" || plugin.isEmpty else { continue }
                number = tensor
            case nil: continue
            }
            let key = keys[value.tag] ?? seriesKey(value.tag)
            if keys[value.tag] == nil, let problem = NameLimits.problem(key, "metric name") {
                warn("TensorBoard events \(path): \(problem): its scalars are not recorded")
            }
            keys[value.tag] = key
            guard key.utf8.count <= NameLimits.nameBytes else { continue }
            points.append(MetricPoint(key: key, step: event.step, value: number, time: event.wallTime))
        }
        return points
    }

    /// Reads up to `buffer.count` bytes at `offset`; fewer only at the end of the file. -1 on an error.
    private static func read(_ fd: Int32, into buffer: inout [UInt8], at offset: Int64) -> Int {
        var count = 0
        while count < buffer.count {
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + count, $0.count - count, off_t(offset) + off_t(count)) }
            if n < 0 {
                if errno == EINTR { continue }
                return -1
            }
            if n == 0 { break }
            count += n
        }
        return count
    }
}

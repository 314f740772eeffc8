import Glibc

/// Finds the CSV metric logs that training frameworks write under some directories and reads the points
/// of the rows written to them since the last pass:
/// - PyTorch Lightning's `CSVLogger`: files named `metrics.csv` whose header has a `step` column. Rows are
///   sparse; each non-empty cell of a row but its step is a point at that step (`epoch` too: Lightning
///   logs it as a metric).
/// - Keras's `CSVLogger`: files (names ending .csv or .log) whose header starts with `epoch` and has no
///   `step` column; each cell of a row but the epoch is a point at that epoch.
/// Other CSV files (data sets) are left alone. CSV holds no wall time: a point's time is its file's
/// modification time when it was read. The search is bounded as TensorBoard's is (`MetricLogSearch`).
public struct CSVLogImporter: Sendable {
    /// Larger files are passed over, with a warning: no logger of these writes so much.
    public static let maxFileBytes: Int64 = 64 << 20

    /// The directories searched, absolute.
    public var directories: [String] { finder.directories }
    private var finder: MetricLogFinder
    /// Every file looked at, log or not, by path: a file rewritten in place is the same log.
    private var files: [String: CSVLogFile] = [:]

    public init(directories: [String], modifiedSince: Double? = nil, maxEntries: Int = 50_000) {
        finder = MetricLogFinder(directories: directories, modifiedSince: modifiedSince, maxEntries: maxEntries)
    }

    /// The points of the rows written since the last call, file by file in path order, rows in file order.
    public mutating func importNew(warn: (String) -> Void) -> [MetricPoint] {
        let current = self
        let found = finder.find(named: Self.wants, following: current.follows) { directory, limit in
            warn("stopped looking for CSV metric logs in \(directory) after \(limit) entries")
        }
        return read(found, warn: warn)
    }

    /// The points of the rows written to these files since they were last read.
    mutating func read(_ found: [MetricLogFinder.Found], warn: (String) -> Void) -> [MetricPoint] {
        var points: [MetricPoint] = []
        for file in found {
            points += files[file.path, default: CSVLogFile(path: file.path)]
                .readNew(CSVLogFile.Stamp(size: file.size, modified: file.modified), warn: warn)
        }
        return points
    }

    /// Whether the file is read already (and so followed, whatever its time).
    func follows(_ file: MetricLogFinder.Found) -> Bool { files[file.path] != nil }

    /// The directories that do not exist.
    public func missingDirectories() -> [String] {
        finder.missingDirectories()
    }

    /// Whether a file's name is one a CSV log may have: it ends in .csv or .log.
    static func wants(_ name: UnsafePointer<CChar>) -> Bool {
        let length = strlen(name)
        guard length > 4 else { return false }
        return strcmp(name + (length - 4), ".csv") == 0 || strcmp(name + (length - 4), ".log") == 0
    }
}

/// One file that is, or may become, a CSV metric log, and how far its rows were read. The header is read
/// again whenever the file changed: Lightning writes the whole file again, with a wider header, when a
/// metric appears, and otherwise appends rows.
struct CSVLogFile: Sendable {
    /// A file's size and modification time when it was found.
    struct Stamp: Equatable, Sendable {
        var size: Int64
        var modified: Double
    }

    let path: String
    /// The file as it was when last read: while it stays so, it is not opened.
    private var lastStamp: Stamp?
    /// The header line last read (line end left off), and the layout it gave; nil when not a log's.
    private var header: [UInt8] = []
    private var layout: CSVLogLayout?
    /// How many data rows were read, their points returned: the file's first rows.
    private var rowsRead = 0
    /// Where the row after them starts; nil when the file is read from its start again, passing over
    /// `rowsRead` rows (it was rewritten, or holds fewer rows than were read).
    private var resumeOffset: Int64?
    private var warnedTooLarge = false
    /// A header line longer than this is not a log's.
    private static let maxHeaderBytes: Int64 = 64 << 10

    init(path: String) {
        self.path = path
    }

    /// The points of the complete rows not read before, the file being as `stamp` says.
    mutating func readNew(_ stamp: Stamp, warn: (String) -> Void) -> [MetricPoint] {
        guard stamp != lastStamp else { return [] }
        lastStamp = stamp
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            // Whether an unreadable file is a log is not known; a log removed since it was found is gone.
            if layout != nil, errno != ENOENT { cannotRead(warn: warn) }
            return []
        }
        defer { close(fd) }
        guard let head = Self.read(fd, from: 0, to: min(stamp.size, Self.maxHeaderBytes)) else {
            if layout != nil { cannotRead(warn: warn) }
            return []
        }
        // A header still being written is looked at again when the file changes.
        guard let (headerRange, dataStart) = head.withUnsafeBufferPointer({ CSVRecords.record(in: $0, from: 0) }) else {
            return []
        }
        if !head[headerRange].elementsEqual(header) {
            header = Array(head[headerRange])
            let name = path[path.index(after: path.lastIndex(of: "/") ?? path.startIndex)...]
            layout = header.withUnsafeBufferPointer { CSVLogLayout(header: $0, fileName: name) }
            for column in layout?.columns ?? [] {
                if let problem = NameLimits.problem(column, "metric name") {
                    warn("CSV metric log \(path): \(problem): its column is not recorded")
                }
            }
            resumeOffset = nil
        }
        guard let layout else { return [] }
        guard stamp.size <= CSVLogImporter.maxFileBytes else {
            if !warnedTooLarge {
                warn("CSV metric log \(path) is over \(CSVLogImporter.maxFileBytes >> 20) MiB; it is not imported")
                warnedTooLarge = true
            }
            return []
        }
        // Rows appended after those read follow a line end; anything else (the file was truncated and
        // written again) is read from the start.
        if let resumeOffset, resumeOffset <= stamp.size, let appended = Self.read(fd, from: resumeOffset - 1, to: stamp.size),
           appended.first == CSVRecords.newline {
            return readRows(appended.dropFirst(), at: resumeOffset, skipping: 0, layout: layout, time: stamp.modified)
        }
        guard let rows = Self.read(fd, from: Int64(dataStart), to: stamp.size) else {
            cannotRead(warn: warn)
            return []
        }
        return readRows(rows[...], at: Int64(dataStart), skipping: rowsRead, layout: layout, time: stamp.modified)
    }

    /// The points of the complete rows in `bytes`, which start at `offset` in the file, but the first
    /// `skipped` (blank lines are no rows).
    private mutating func readRows(_ bytes: ArraySlice<UInt8>, at offset: Int64, skipping skipped: Int,
                                   layout: CSVLogLayout, time: Double) -> [MetricPoint] {
        var points: [MetricPoint] = []
        var toSkip = skipped
        let consumed = bytes.withUnsafeBufferPointer { buffer in
            var next = 0
            while let (record, after) = CSVRecords.record(in: buffer, from: next) {
                next = after
                guard !record.isEmpty else { continue }
                if toSkip > 0 {
                    toSkip -= 1
                    continue
                }
                points += layout.points(in: UnsafeBufferPointer(rebasing: buffer[record]), time: time)
                rowsRead += 1
            }
            return next
        }
        resumeOffset = toSkip == 0 ? offset + Int64(consumed) : nil
        return points
    }

    private func cannotRead(warn: (String) -> Void) {
        warn("cannot read CSV metric log \(path): \(String(cString: strerror(errno)))")
    }

    /// The bytes from `start` up to `end`, fewer when the file ended sooner; nil on an error.
    private static func read(_ fd: Int32, from start: Int64, to end: Int64) -> [UInt8]? {
        let wanted = Int(max(end - start, 0))
        var failed = false
        let bytes = [UInt8](unsafeUninitializedCapacity: wanted) { buffer, count in
            count = 0
            while count < wanted {
                let n = pread(fd, buffer.baseAddress! + count, wanted - count, off_t(start) + off_t(count))
                if n < 0 && errno == EINTR { continue }
                if n < 0 { failed = true }
                if n <= 0 { break }
                count += n
            }
        }
        return failed ? nil : bytes
    }
}

/// What the header of a CSV metric log says: its columns, and which holds the step.
struct CSVLogLayout: Sendable {
    let columns: [String]
    let stepColumn: Int

    /// The layout of Lightning's (`metrics.csv` with a `step` column) or Keras's (`epoch` first, no
    /// `step`) log with this header; nil for any other CSV file.
    init?(header: UnsafeBufferPointer<UInt8>, fileName: Substring) {
        let columns = CSVRecords.fields(of: header).map { CSVRecords.text(of: UnsafeBufferPointer(rebasing: header[$0])) }
        if fileName == "metrics.csv", let step = columns.firstIndex(of: "step") {
            stepColumn = step
        } else if columns.first == "epoch", !columns.contains("step") {
            stepColumn = 0
        } else {
            return nil
        }
        self.columns = columns
    }

    /// A row's points: each numeric cell but the step's, at the row's step. A row whose step is not an
    /// integer has none.
    func points(in record: UnsafeBufferPointer<UInt8>, time: Double) -> [MetricPoint] {
        let fields = CSVRecords.fields(of: record)
        guard stepColumn < fields.count, let stepValue = Self.number(UnsafeBufferPointer(rebasing: record[fields[stepColumn]])),
              stepValue.rounded() == stepValue, abs(stepValue) < 0x1p63 else { return [] }
        let step = Int64(stepValue)
        var points: [MetricPoint] = []
        for (column, field) in zip(columns.indices, fields) where column != stepColumn && columns[column].utf8.count <= NameLimits.nameBytes {
            guard let value = Self.number(UnsafeBufferPointer(rebasing: record[field])) else { continue }
            points.append(MetricPoint(key: columns[column], step: step, value: value, time: time))
        }
        return points
    }

    /// The cell as a number when all of it is one: decimal, or nan, inf, -inf in any case.
    private static func number(_ cell: UnsafeBufferPointer<UInt8>) -> Double? {
        guard let (value, end) = MetricLineParser.number(in: cell, at: 0), end == cell.count else { return nil }
        return value
    }
}

/// Records of CSV as Python's csv module writes it: fields separated by commas, records by line ends
/// (\n or \r\n) outside double quotes; a quoted field may hold commas, line ends and doubled quotes.
enum CSVRecords {
    static let newline: UInt8 = 0x0A
    private static let carriageReturn: UInt8 = 0x0D
    private static let quote: UInt8 = 0x22
    private static let comma: UInt8 = 0x2C

    /// The record that starts at `start` (its line end left off) and where the next one starts; nil when
    /// it does not end in `bytes`, not all written yet.
    static func record(in bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> (Range<Int>, next: Int)? {
        var quoted = false
        var index = start
        while index < bytes.count {
            let byte = bytes[index]
            if byte == quote {
                quoted.toggle()
            } else if byte == newline, !quoted {
                let end = index > start && bytes[index - 1] == carriageReturn ? index - 1 : index
                return (start..<end, index + 1)
            }
            index += 1
        }
        return nil
    }

    /// The ranges of a record's fields; a quoted field's without its quotes, doubled quotes left doubled
    /// (no number holds one, and `text(of:)` undoes them).
    static func fields(of record: UnsafeBufferPointer<UInt8>) -> [Range<Int>] {
        var fields: [Range<Int>] = []
        var start = 0
        while true {
            var end = start
            var quotedText: Range<Int>?
            if start < record.count, record[start] == quote {
                // To the quote that closes the field: a doubled quote is part of its text.
                end = start + 1
                while end < record.count, record[end] != quote || end + 1 < record.count && record[end + 1] == quote {
                    end += record[end] == quote ? 2 : 1
                }
                quotedText = (start + 1)..<end
            }
            while end < record.count, record[end] != comma { end += 1 }
            fields.append(quotedText ?? start..<end)
            guard end < record.count else { return fields }
            start = end + 1
        }
    }

    /// A field's text, doubled quotes made single.
    static func text(of field: UnsafeBufferPointer<UInt8>) -> String {
        var bytes: [UInt8] = []
        var index = 0
        while index < field.count {
            bytes.append(field[index])
            index += field[index] == quote && index + 1 < field.count && field[index + 1] == quote ? 2 : 1
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

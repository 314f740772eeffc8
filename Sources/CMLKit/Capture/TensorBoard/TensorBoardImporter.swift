import Glibc

/// Finds TensorBoard event files (names holding "tfevents") under some directories and reads the scalar
/// points written to them since the last pass. The search is bounded (see `MetricLogSearch`).
public struct TensorBoardImporter {
    public static let maxDepth = MetricLogSearch.maxDepth

    /// The directories searched, absolute.
    public var directories: [String] { finder.directories }
    private var finder: MetricLogFinder
    private var readers: [MetricLogFinder.FileKey: EventFileReader] = [:]

    public init(directories: [String], modifiedSince: Double? = nil, maxEntries: Int = 50_000) {
        finder = MetricLogFinder(directories: directories, modifiedSince: modifiedSince, maxEntries: maxEntries)
    }

    /// The points written since the last call, file by file in path order.
    public mutating func importNew(warn: (String) -> Void) -> [MetricPoint] {
        let current = self
        let found = finder.find(named: Self.wants, following: current.follows) { directory, limit in
            warn("stopped looking for TensorBoard event files in \(directory) after \(limit) entries "
                 + "(name their directory with --tb-dir, or turn this off with --no-tensorboard)")
        }
        return read(found, warn: warn)
    }

    /// The directories that do not exist (a mistyped `--tb-dir`).
    public func missingDirectories() -> [String] {
        finder.missingDirectories()
    }

    /// The points written to these event files since they were last read.
    mutating func read(_ files: [MetricLogFinder.Found], warn: (String) -> Void) -> [MetricPoint] {
        var points: [MetricPoint] = []
        for file in files {
            if readers[file.key] == nil {
                readers[file.key] = EventFileReader(path: file.path) { Self.seriesKey(tag: $0, file: file.path) }
            }
            points += readers[file.key]!.readNew(upTo: file.size, warn: warn)
        }
        return points
    }

    static func wants(_ name: UnsafePointer<CChar>) -> Bool { strstr(name, "tfevents") != nil }

    /// Whether the file is read already (and so followed to its end, whatever its time).
    func follows(_ file: MetricLogFinder.Found) -> Bool { readers[file.key] != nil }

    /// The metric a tag's points go to. Usually the tag itself; but `add_scalars("loss", {"train": …})`
    /// writes tag "loss" through one writer per key, in a directory below the writer's own: tensorboardX
    /// in `loss/train/`, PyTorch in `loss_train/`. Those become "loss/train", so the keys stay apart.
    /// The writer's own directory must hold an event file, which it always does once add_scalars ran.
    static func seriesKey(tag: String, file: String) -> String {
        let directory = parent(file)
        let name = String(directory[directory.index(after: directory.lastIndex(of: "/") ?? directory.startIndex)...])
        let above = parent(directory)
        if above.hasSuffix("/" + tag), holdsEventFile(String(above.dropLast(tag.count + 1))) {
            return tag + "/" + name
        }
        let prefix = String(tag.map { $0 == "/" ? "_" : $0 }) + "_"
        if name.hasPrefix(prefix), name.count > prefix.count, holdsEventFile(above) {
            return tag + "/" + name.dropFirst(prefix.count)
        }
        // Keras's callback writes the same tags (`epoch_loss`) into `train/` and `validation/`, and
        // PyTorch users name writers the same way: the split keeps the two series apart.
        if Self.splitDirectories.contains(name.lowercased()) { return name + "/" + tag }
        return tag
    }

    static let splitDirectories: Set<String> = ["train", "training", "val", "valid", "validation", "eval", "evaluation", "test"]

    private static func parent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return String(path[..<slash])
    }

    private static func holdsEventFile(_ directory: String) -> Bool {
        guard let stream = opendir(directory.isEmpty ? "/" : directory) else { return false }
        defer { closedir(stream) }
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name.contains("tfevents") { return true }
        }
        return false
    }
}

extension TensorBoardImporter {
    /// Imports the scalars of every event file under `directory`, whatever its age, into run `id`,
    /// leaving out the points the run already has with the same key, step and wall time: importing the
    /// same files twice adds nothing. Returns how many points were added and how many left out.
    public static func importAll(from directory: String, into id: String, store: any Store,
                                 warn: (String) -> Void) throws(CMLError) -> (added: Int, skipped: Int) {
        var info = stat()
        guard stat(directory, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else {
            throw CMLError("\(directory) is not a directory", hint: "name the directory the event files are in")
        }
        var importer = TensorBoardImporter(directories: [directory])
        let points = importer.importNew(warn: warn)
        struct PointIdentity: Hashable {
            var key: String
            var step: Int64
            var time: UInt64
        }
        var known: Set<PointIdentity> = []
        for key in Set(points.map(\.key)) {
            try store.forEachMetric(run: id, key: key) { point in
                known.insert(PointIdentity(key: point.key, step: point.step, time: point.time.bitPattern))
            }
        }
        let new = points.filter { known.insert(PointIdentity(key: $0.key, step: $0.step, time: $0.time.bitPattern)).inserted }
        try store.appendMetrics(run: id, new, source: .tensorboard)
        return (new.count, points.count - new.count)
    }
}

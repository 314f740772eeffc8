import Glibc

/// Finds TensorBoard event files (names holding "tfevents") under some directories and reads the scalar
/// points written to them since the last pass. The search is bounded (see `MetricLogSearch`).
public struct TensorBoardImporter {
    public static let maxDepth = MetricLogSearch.maxDepth

    /// The directories searched, absolute.
    public let directories: [String]
    private let maxEntries: Int
    /// Files last modified before this time are left alone (a previous run's logs); nil imports all.
    private let modifiedSince: Double?
    private var readers: [FileIdentity: EventFileReader] = [:]
    private var warnedAboutLimit: Set<String> = []

    private struct FileIdentity: Hashable {
        var device: UInt64
        var inode: UInt64
    }

    public init(directories: [String], modifiedSince: Double? = nil, maxEntries: Int = 50_000) {
        self.directories = directories
        self.modifiedSince = modifiedSince
        self.maxEntries = maxEntries
    }

    /// The points written since the last call, file by file in path order.
    public mutating func importNew(warn: (String) -> Void) -> [MetricPoint] {
        var found: [(path: String, identity: FileIdentity, size: Int64)] = []
        var seen: Set<FileIdentity> = []
        for directory in directories {
            let complete = Self.findEventFiles(in: directory, maxEntries: maxEntries) { path, info in
                let identity = FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
                guard seen.insert(identity).inserted else { return }
                let modified = Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
                // Once a file is being read it is followed to the end, whatever its time.
                if readers[identity] == nil, let modifiedSince, modified < modifiedSince { return }
                found.append((path, identity, Int64(info.st_size)))
            }
            if !complete, warnedAboutLimit.insert(directory).inserted {
                warn("stopped looking for TensorBoard event files in \(directory) after \(maxEntries) entries "
                     + "(name their directory with --tb-dir, or turn this off with --no-tensorboard)")
            }
        }
        var points: [MetricPoint] = []
        for file in found.sorted(by: { $0.path < $1.path }) {
            if readers[file.identity] == nil {
                readers[file.identity] = EventFileReader(path: file.path) { Self.seriesKey(tag: $0, file: file.path) }
            }
            points += readers[file.identity]!.readNew(upTo: file.size, warn: warn)
        }
        return points
    }

    /// The directories that do not exist (a mistyped `--tb-dir`).
    public func missingDirectories() -> [String] {
        directories.filter { access($0, F_OK) != 0 }
    }

    /// Calls `body` with each event file under `directory` and its lstat; false when the search stopped
    /// at `maxEntries`.
    static func findEventFiles(in directory: String, maxEntries: Int, _ body: (String, stat) -> Void) -> Bool {
        MetricLogSearch.findFiles(in: directory, maxEntries: maxEntries, named: { strstr($0, "tfevents") != nil }, body)
    }

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
        try store.metricWriter(run: id).append(new, source: .tensorboard)
        return (new.count, points.count - new.count)
    }
}

/// The bounded search for the metric logs training frameworks write (TensorBoard event files, CSV logs)
/// under a directory, so that a run started in a huge data directory does not stall: hidden directories
/// (.git, .venv), `node_modules` and `__pycache__` are skipped, symbolic links are not followed, and each
/// directory is searched `maxDepth` levels deep (a file directly in it is 1 level down) and `maxEntries`
/// entries far at most.
enum MetricLogSearch {
    static let maxDepth = 8

    /// Calls `body` with each regular file under `directory` whose name `named` accepts, and its lstat;
    /// false when the search stopped at `maxEntries`. A directory that cannot be opened (gone, not
    /// permitted) is passed over. Names are looked at in place and made Strings only for directories and
    /// wanted files: every run searches its working directory once at the end, so this is on the path of
    /// cml-run's overhead.
    static func findFiles(in directory: String, maxEntries: Int, named: (UnsafePointer<CChar>) -> Bool,
                          _ body: (String, stat) -> Void) -> Bool {
        // Breadth first, so that ./runs/… is found before the search spends its entries deep in data.
        var pending: [(path: String, depth: Int)] = [(directory, 0)]
        var next = 0
        var entries = 0
        while next < pending.count {
            let (path, depth) = pending[next]
            next += 1
            guard let stream = opendir(path) else { continue }
            defer { closedir(stream) }
            while let entry = readdir(stream) {
                var type = Int(entry.pointee.d_type)
                let (selfOrParent, hidden, wantedFile, name): (Bool, Bool, Bool, String?) = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    let name = raw.bindMemory(to: CChar.self).baseAddress!
                    let dot: CChar = 0x2E
                    let hidden = name[0] == dot
                    let selfOrParent = hidden && (name[1] == 0 || name[1] == dot && name[2] == 0)
                    let wantedFile = named(name)
                    let wanted = (type == DT_DIR && !hidden) || type == DT_UNKNOWN || wantedFile
                    return (selfOrParent, hidden, wantedFile, wanted ? String(cString: name) : nil)
                }
                if selfOrParent { continue }
                entries += 1
                guard entries <= maxEntries else { return false }
                guard let name else { continue }
                let child = path + "/" + name
                var info = stat()
                if type == DT_UNKNOWN {
                    // Some file systems do not fill in d_type.
                    guard lstat(child, &info) == 0 else { continue }
                    type = (info.st_mode & S_IFMT) == S_IFDIR ? DT_DIR : (info.st_mode & S_IFMT) == S_IFREG ? DT_REG : DT_LNK
                }
                if type == DT_DIR {
                    // Deeper trees are passed over without a word: they are common, and logs seldom lie there.
                    if hidden || name == "node_modules" || name == "__pycache__" || depth + 1 >= maxDepth { continue }
                    pending.append((child, depth + 1))
                } else if type == DT_REG, wantedFile, lstat(child, &info) == 0 {
                    body(child, info)
                }
            }
        }
        return true
    }
}

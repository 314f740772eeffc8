import Glibc

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

/// The log files of one kind under some directories, each once (the directories may hold each other: the
/// working directory and a log directory in it), skipping a previous run's files, and warning once per
/// directory whose search stopped at its limit.
struct MetricLogFinder: Sendable {
    /// A file as the file system knows it, whatever path reached it.
    struct FileKey: Hashable, Sendable {
        var device: UInt64
        var inode: UInt64
    }

    struct Found {
        var path: String
        var key: FileKey
        var size: Int64
        var modified: Double
    }

    /// A file's last modification and size, as they were when it was seen.
    struct Stamp: Equatable, Sendable {
        var modified: Double
        var size: Int64
    }

    /// The directories searched, absolute.
    let directories: [String]
    /// Files last modified before this time are left alone (a previous run's logs); nil finds all.
    let modifiedSince: Double?
    /// Files that were there before the command started, left alone while they stay as they were.
    let existing: [FileKey: Stamp]
    let maxEntries: Int
    private var warnedAboutLimit: Set<String> = []

    init(directories: [String], modifiedSince: Double?, existing: [FileKey: Stamp] = [:], maxEntries: Int) {
        self.directories = directories
        self.modifiedSince = modifiedSince
        self.existing = existing
        self.maxEntries = maxEntries
    }

    /// The files whose name `named` accepts, in path order. A file already `following` is found whatever
    /// its time. `stopped(directory, limit)` is called the first time a directory's search hits its limit.
    mutating func find(named: (UnsafePointer<CChar>) -> Bool, following: (Found) -> Bool,
                       stopped: (String, Int) -> Void) -> [Found] {
        var found: [Found] = []
        var seen: Set<FileKey> = []
        for directory in directories {
            let complete = MetricLogSearch.findFiles(in: directory, maxEntries: maxEntries, named: named) { path, info in
                let file = Found(path: path, key: FileKey(device: UInt64(info.st_dev), inode: UInt64(info.st_ino)),
                                 size: Int64(info.st_size),
                                 modified: Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9)
                guard seen.insert(file.key).inserted else { return }
                if let modifiedSince, file.modified < modifiedSince, !following(file) { return }
                if existing[file.key] == Stamp(modified: file.modified, size: file.size), !following(file) { return }
                found.append(file)
            }
            if !complete, warnedAboutLimit.insert(directory).inserted { stopped(directory, maxEntries) }
        }
        return found.sorted { $0.path < $1.path }
    }

    /// The files whose name `named` accepts under `directories` now, by what they are.
    static func stamps(in directories: [String], maxEntries: Int, named: (UnsafePointer<CChar>) -> Bool) -> [FileKey: Stamp] {
        var stamps: [FileKey: Stamp] = [:]
        for directory in directories {
            _ = MetricLogSearch.findFiles(in: directory, maxEntries: maxEntries, named: named) { _, info in
                stamps[FileKey(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))] =
                    Stamp(modified: Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9, size: Int64(info.st_size))
            }
        }
        return stamps
    }

    /// The directories that do not exist.
    func missingDirectories() -> [String] {
        directories.filter { access($0, F_OK) != 0 }
    }
}

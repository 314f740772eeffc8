import CSupport
import Glibc

/// Writes stored content back out as files, checking every file on the way: directory manifests
/// (`cml-data checkout|get`, `cml-run get` of a directory artifact) and single blobs. A file whose manifest
/// entry keeps a CRC-32C is checked with it, else with its sha256. sha256 is one sequential stream, slower
/// than the kernel copies; the CRC runs several times faster than the copy, so checking costs next to
/// nothing beside it. (`cml-data verify` checks the sha256 of everything stored.) Output goes to a
/// temporary place first and is renamed into place only when complete, so a failure (a damaged blob, a
/// full disk) leaves nothing behind.
public enum Materializer {
    public struct Options: Sendable {
        /// Hard-link blobs stored as files of their own instead of copying them (read-only then); blobs
        /// in packs, and files whose mode a link cannot give (executables), are copied.
        public var link: Bool
        /// Files without write permission, directories too (`cml-data get`'s shared copy).
        public var readOnly: Bool
        public var jobs: Int

        public init(link: Bool = false, readOnly: Bool = false, jobs: Int = ParallelWork.availableCPUs) {
            self.link = link
            self.readOnly = readOnly || link
            self.jobs = max(1, jobs)
        }
    }

    /// How the files were written.
    public struct Report: Sendable, Equatable {
        public var files = 0
        public var bytes: Int64 = 0
        public var reflinked = 0
        public var hardLinked = 0
    }

    /// Writes `manifest`'s files and links under `directory`, which must not exist yet (it is created).
    public static func write(_ manifest: Manifest, from store: SQLiteStore, into directory: String, options: Options,
                             progress: Progress? = nil) throws(CMLError) -> Report {
        try manifest.checkStructure()
        guard mkdir(directory, 0o755) == 0 else { throw FileSystem.error("cannot create directory", directory) }
        var folders: Set<String> = []
        for entry in manifest.entries {
            var folder = Substring(entry.path)
            while let slash = folder.lastIndex(of: "/") {
                folder = folder[..<slash]
                if !folders.insert(String(folder)).inserted { break }
            }
        }
        // Sorted, a folder comes before what it holds.
        for folder in folders.sorted() {
            guard mkdir(directory + "/" + folder, 0o755) == 0 else { throw FileSystem.error("cannot create directory", directory + "/" + folder) }
        }
        let files = manifest.entries
        let buffers = WorkerBuffers(count: options.jobs, size: BlobDirectory.packThreshold)
        let packs = PackDescriptors(count: options.jobs)
        let spareCores = options.jobs > 1 && files.count < options.jobs * 2
        let outcomes = ParallelWork.map(count: files.count, workers: options.jobs) { worker, item -> Result<FileCopy.Method?, CMLError> in
            let entry = files[item]
            let path = directory + "/" + entry.path
            do throws(CMLError) {
                if let target = entry.linkTarget {
                    guard symlink(target, path) == 0 else { throw FileSystem.error("cannot create the link", path) }
                    return .success(nil)
                }
                let method = try writeFile(Expected(blob: entry.sha256!, size: entry.size, crc32c: entry.crc32c),
                                           mode: entry.mode, to: path, from: store,
                                           options: options, buffer: buffers[worker], packs: packs.forWorker(worker),
                                           copyWhileHashing: spareCores)
                progress?.add(bytes: entry.size)
                return .success(method)
            } catch {
                return .failure(error)
            }
        }
        var report = Report()
        for (entry, outcome) in zip(files, outcomes) {
            switch outcome {
            case .failure(let error): throw error
            case .success(let method):
                report.files += 1
                report.bytes += entry.size
                if method == .reflink { report.reflinked += 1 }
                if method == nil && entry.linkTarget == nil { report.hardLinked += 1 }
            }
        }
        if options.readOnly {
            for folder in folders.sorted().reversed() { chmod(directory + "/" + folder, 0o555) }
        }
        return report
    }

    /// A blob to write, and what its content must be.
    private struct Expected {
        var blob: String
        var size: Int64
        /// Checked instead of the sha256 when known.
        var crc32c: UInt32?
    }

    /// Writes one blob as a new file at `path` (its sha256 checked), with `mode`; returns how the bytes
    /// got there (nil: hard-linked).
    public static func writeFile(_ blob: String, size: Int64, mode: UInt32, to path: String, from store: SQLiteStore,
                                 options: Options = Options(jobs: 1)) throws(CMLError) -> FileCopy.Method? {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: BlobDirectory.packThreshold, alignment: 64)
        defer { buffer.deallocate() }
        let packs = PackDescriptors(count: 1)
        return try writeFile(Expected(blob: blob, size: size, crc32c: nil), mode: mode, to: path, from: store, options: options,
                             buffer: buffer, packs: packs.forWorker(0), copyWhileHashing: false)
    }

    private static func writeFile(_ expected: Expected, mode: UInt32, to path: String, from store: SQLiteStore,
                                  options: Options, buffer: UnsafeMutableRawBufferPointer, packs: PackDescriptors.Worker,
                                  copyWhileHashing: Bool) throws(CMLError) -> FileCopy.Method? {
        let (blob, size) = (expected.blob, expected.size)
        let finalMode = mode_t(options.readOnly ? mode & ~0o222 : mode)
        var (source, location) = try packs.open(blob, store: store)
        defer { if location.isWholeFile { close(source) } }
        guard location.size == size else {
            throw CMLError("blob \(blob) is damaged (\(location.size) bytes where the manifest says \(size))")
        }
        // A hard link shares the blob's inode and so its mode, read-only 0444: files meant to be
        // executable, or with other unusual bits, are copied instead.
        if options.link && location.isWholeFile && mode & 0o7777 & ~0o222 == 0o444 {
            try verify(expected, source: source, location: location, buffer: buffer)
            guard link(location.path, path) == 0 else { throw FileSystem.error("cannot link", path) }
            return nil
        }
        // Read and write: a copy made in parts is read back to be checked.
        let output = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw FileSystem.error("cannot write", path) }
        defer { close(output) }
        let method: FileCopy.Method
        if !location.isWholeFile && size <= Int64(buffer.count) {
            // A small blob: read once, checked, written.
            let content = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Int(size)])
            do throws(CMLError) {
                try FileSystem.readExactly(source, into: content, at: location.offset, path: location.path)
            } catch {
                // The pack was rewritten by a concurrent gc since its index was read: find the blob anew.
                (source, location) = try packs.open(blob, store: store, refresh: true)
                try FileSystem.readExactly(source, into: content, at: location.offset, path: location.path)
            }
            try check(expected, UnsafeRawBufferPointer(content))
            try FileSystem.writeAll(output, UnsafeRawBufferPointer(content), path: path)
            method = .userspace
        } else if copyWhileHashing && location.isWholeFile, let wanted = expected.crc32c,
                  let how = try copyInParts(expected, wanted: wanted, source: source, location: location, to: output, path: path,
                                            parts: options.jobs, buffer: buffer) {
            method = how
        } else if copyWhileHashing && location.isWholeFile {
            // A large blob and a free core: copy in the kernel on one thread while this one checks it.
            let (from, wholeLength, sourcePath) = (source, location.size, location.path)
            let copying = Background { () -> Result<FileCopy.Method, CMLError> in
                do throws(CMLError) {
                    return .success(try FileCopy.copy(from: from, offset: 0, length: wholeLength, whole: true, to: output,
                                                      sourcePath: sourcePath, destinationPath: path))
                } catch {
                    return .failure(error)
                }
            }
            let verified: CMLError?
            do throws(CMLError) {
                try verify(expected, source: source, location: location, buffer: buffer)
                verified = nil
            } catch {
                verified = error
            }
            let copied = copying.value
            if let verified { throw verified }
            switch copied {
            case .success(let how): method = how
            case .failure(let error): throw error
            }
        } else {
            try verify(expected, source: source, location: location, buffer: buffer)
            method = try FileCopy.copy(from: source, offset: location.offset, length: location.size, whole: location.isWholeFile,
                                       to: output, sourcePath: location.path, destinationPath: path)
        }
        guard fchmod(output, finalMode) == 0 else { throw FileSystem.error("cannot set the mode of", path) }
        return method
    }

    /// A large blob, spare cores, and a CRC to check it by. Cloned where the filesystem shares blocks (then
    /// read for its CRC). Else the file gets its size and blocks first, which finds a full disk before
    /// anything is written and lets ext4 take writes to different ranges of one file at once (without
    /// it, two threads copying into one file take as long as one); then each of `parts` threads copies its
    /// range in the kernel and reads the written range back for its CRC, and the ranges' CRCs are joined.
    /// Nil when the filesystem cannot allocate ahead: the caller copies on one thread instead.
    private static func copyInParts(_ expected: Expected, wanted: UInt32, source: Int32, location: BlobLocation, to output: Int32,
                                    path: String, parts: Int, buffer: UnsafeMutableRawBufferPointer) throws(CMLError) -> FileCopy.Method? {
        // An empty blob can be a file of its own (stored whole by an older build): nothing to split.
        guard location.size > 0 else { return nil }
        if cml_clone_file(output, source) == 0 {
            try verify(expected, source: source, location: location, buffer: buffer)
            return .reflink
        }
        let size = location.size
        if cml_allocate(output, size) != 0 {
            if [EOPNOTSUPP, ENOSYS, EINVAL].contains(errno) { return nil }
            throw FileSystem.error("cannot write", path)
        }
        let mebibyte: Int64 = 1 << 20
        let step = (size / Int64(parts) + mebibyte - 1) / mebibyte * mebibyte
        let ranges = stride(from: Int64(0), to: size, by: Int(step)).map { (start: $0, length: min(step, size - $0)) }
        let sourcePath = location.path
        // Threads of their own: Dispatch runs a concurrentPerform nested in another on the calling thread.
        let copyPart = { @Sendable (index: Int) -> Result<(FileCopy.Method, UInt32), CMLError> in
            let range = ranges[index]
            do throws(CMLError) {
                let how = try FileCopy.copy(from: source, offset: range.start, length: range.length, whole: false, to: output,
                                            at: range.start, sourcePath: sourcePath, destinationPath: path)
                var crc: UInt32 = 0
                try FileSystem.copyChunks(from: output, path: path, offset: range.start, length: range.length) { chunk in
                    crc = CRC32C.update(crc, chunk)
                }
                return .success((how, crc))
            } catch {
                return .failure(error)
            }
        }
        let others = ranges.indices.dropFirst().map { index in Background { copyPart(index) } }
        let outcomes = [copyPart(0)] + others.map(\.value)
        var crc: UInt32 = 0
        var method = FileCopy.Method.kernel
        for (outcome, range) in zip(outcomes, ranges) {
            switch outcome {
            case .failure(let error): throw error
            case .success(let (how, part)):
                crc = CRC32C.combine(crc, part, secondLength: range.length)  // from 0, the CRC of nothing
                if how == .userspace { method = how }
            }
        }
        guard crc == wanted else { throw crcMismatch(expected.blob, actual: crc, wanted: wanted) }
        return method
    }

    private static func crcMismatch(_ blob: String, actual: UInt32, wanted: UInt32) -> CMLError {
        CMLError("blob \(blob) is damaged (its CRC-32C is \(CRC32C.hex(actual)), its manifest says \(CRC32C.hex(wanted)))")
    }

    /// Reads the blob through and checks it.
    private static func verify(_ expected: Expected, source: Int32, location: BlobLocation,
                               buffer: UnsafeMutableRawBufferPointer) throws(CMLError) {
        var check = ContentCheck(expected)
        var position: Int64 = 0
        while position < location.size {
            let n = pread(source, buffer.baseAddress!, Int(min(Int64(buffer.count), location.size - position)),
                          off_t(location.offset + position))
            if n < 0 {
                if errno == EINTR { continue }
                throw FileSystem.error("cannot read blob", location.path)
            }
            if n == 0 { throw CMLError("blob \(expected.blob) is damaged (shorter than \(location.size) bytes)") }
            check.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            position += Int64(n)
        }
        try check.finish()
    }

    private static func check(_ expected: Expected, _ content: UnsafeRawBufferPointer) throws(CMLError) {
        var check = ContentCheck(expected)
        check.update(content)
        try check.finish()
    }

    /// The CRC-32C when the manifest keeps one, else the sha256.
    private struct ContentCheck: ~Copyable {
        let expected: Expected
        var crc32c: UInt32 = 0
        var sha256: SHA256Hasher?

        init(_ expected: Expected) {
            self.expected = expected
            sha256 = expected.crc32c == nil ? SHA256Hasher() : nil
        }

        mutating func update(_ bytes: UnsafeRawBufferPointer) {
            if sha256 != nil { sha256!.update(bytes) } else { crc32c = CRC32C.update(crc32c, bytes) }
        }

        consuming func finish() throws(CMLError) {
            if let wanted = expected.crc32c {
                guard crc32c == wanted else { throw crcMismatch(expected.blob, actual: crc32c, wanted: wanted) }
            } else if let hasher = sha256.take() {
                let actual = hasher.finalizeHex()
                guard actual == expected.blob else { throw CMLError("blob \(expected.blob) is damaged (its content hashes to \(actual))") }
            }
        }
    }

    /// Puts a finished temporary file or tree at `target`. An existing empty directory is replaced; any
    /// other existing file or directory only with `replace` (moved aside first, removed after).
    public static func place(_ temporary: String, at target: String, replace: Bool) throws(CMLError) {
        var existing = stat()
        if lstat(target, &existing) == 0 {
            let isDirectory = (existing.st_mode & S_IFMT) == S_IFDIR
            if isDirectory && rmdir(target) == 0 {
                // It was empty.
            } else if replace {
                let old = "\(FileSystem.directoryName(target))/.\(FileSystem.baseName(target)).cml-old-\(RunID.make())"
                guard rename(target, old) == 0 else { throw FileSystem.error("cannot replace", target) }
                FileSystem.removeTree(old)
            } else {
                throw CMLError("\(target) already exists\(isDirectory ? " and is not empty" : "")",
                               hint: "name another destination, or pass --force to replace it")
            }
        }
        guard rename(temporary, target) == 0 else { throw FileSystem.error("cannot write", target) }
    }

    /// Whether `target` may be written: absent, or an empty directory, or anything when `replace`.
    public static func checkDestination(_ target: String, replace: Bool) throws(CMLError) {
        var existing = stat()
        guard !replace, lstat(target, &existing) == 0 else { return }
        let isDirectory = (existing.st_mode & S_IFMT) == S_IFDIR
        if isDirectory, FileSystem.entryNames(target)?.isEmpty == true { return }
        throw CMLError("\(target) already exists\(isDirectory ? " and is not empty" : "")",
                       hint: "name another destination, or pass --force to replace it")
    }

    /// A name beside `target` for building it.
    public static func temporaryPath(for target: String) -> String {
        "\(FileSystem.directoryName(target))/.\(FileSystem.baseName(target)).cml-\(RunID.make())"
    }
}

/// Each worker's open packs, opened once and read at many offsets.
final class PackDescriptors: @unchecked Sendable {
    final class Worker {
        private var open: [String: Int32] = [:]

        deinit {
            for fd in open.values { close(fd) }
        }

        /// A descriptor for the file holding `blob` (a blob file of its own is opened anew: the caller
        /// closes it; a pack stays open).
        func open(_ blob: String, store: SQLiteStore, refresh: Bool = false) throws(CMLError) -> (Int32, BlobLocation) {
            let location = try store.blobLocation(blob, refresh: refresh)
            if !location.isWholeFile, !refresh, let fd = open[location.path] { return (fd, location) }
            let fd = Glibc.open(location.path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                if errno == ENOENT && !refresh { return try self.open(blob, store: store, refresh: true) }
                throw FileSystem.error("cannot read blob", location.path)
            }
            if !location.isWholeFile {
                if let old = open[location.path] { close(old) }
                open[location.path] = fd
            }
            return (fd, location)
        }
    }

    private let workers: [Worker]

    init(count: Int) {
        workers = (0..<count).map { _ in Worker() }
    }

    func forWorker(_ index: Int) -> Worker { workers[index] }
}

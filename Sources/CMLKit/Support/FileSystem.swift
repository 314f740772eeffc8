import Glibc

/// Thin, error-checked wrappers over the POSIX calls the store needs.
public enum FileSystem {
    public static func error(_ what: String, _ path: String) -> CMLError {
        CMLError("\(what) \(path): \(String(cString: strerror(errno)))")
    }

    public static func makeDirectories(_ path: String) throws(CMLError) {
        if path.isEmpty { return }
        var st = stat()
        if stat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFDIR else { throw CMLError("\(path) exists and is not a directory") }
            return
        }
        if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            try makeDirectories(String(path[..<slash]))
        }
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw error("cannot create directory", path) }
    }

    /// `$TMPDIR`, else /tmp.
    public static var temporaryDirectory: String {
        if let value = getenv("TMPDIR"), value.pointee != 0 { return String(cString: value) }
        return "/tmp"
    }

    /// A new empty directory of this process's in `temporaryDirectory` (mkdtemp).
    public static func makeTemporaryDirectory(prefix: String) throws(CMLError) -> String {
        var template = Array((temporaryDirectory + "/" + prefix + "XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw error("cannot create a directory in", temporaryDirectory)
        }
        return String(cString: made)
    }

    /// Writes all of `bytes` at the descriptor's position, or at `position` when given (pwrite).
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at position: Int64? = nil,
                                path: String) throws(CMLError) {
        var offset = 0
        while offset < bytes.count {
            let n = position.map { pwrite(fd, bytes.baseAddress! + offset, bytes.count - offset, off_t($0) + off_t(offset)) }
                ?? write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw error("cannot write", path)
            }
            offset += n
        }
    }

    public static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(CMLError) {
        var failure: CMLError?
        bytes.withUnsafeBytes { raw in
            do throws(CMLError) { try writeAll(fd, raw, path: path) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    public static func readAll(_ path: String) throws(CMLError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw error("cannot read", path) }
        defer { close(fd) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw error("cannot read", path)
            }
            if n == 0 { return out }
            out.append(contentsOf: buffer[0..<n])
        }
    }

    /// Writes `bytes` to `path` whole or not at all: a temporary file beside it, renamed into place.
    public static func writeFile(_ path: String, _ bytes: [UInt8]) throws(CMLError) {
        let temporary = "\(directoryName(absolutePath(path)))/.\(baseName(path)).cml-\(RunID.make())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw error("cannot write", path) }
        do throws(CMLError) { try writeAll(fd, bytes, path: path) } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let failure = error("cannot write", path)
            unlink(temporary)
            throw failure
        }
    }

    /// `path` made absolute against the working directory (not resolving links).
    public static func absolutePath(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        var cwd = RunEnvironment.workingDirectory
        if cwd.hasSuffix("/") { cwd.removeLast() }
        // `./data` and `data/` are recorded as `CWD/data`; `..` is left for the file system to follow.
        let parts = path.split(separator: "/").filter { $0 != "." }
        return parts.isEmpty ? cwd : cwd + "/" + parts.joined(separator: "/")
    }

    /// The last part of a path, ignoring trailing slashes (`a/b/` gives `b`).
    public static func baseName(_ path: String) -> String {
        let parts = path.split(separator: "/")
        return parts.last.map(String.init) ?? "/"
    }

    /// Everything before the last part of an absolute path (`/a/b` gives `/a`, `/a` gives `/`).
    public static func directoryName(_ path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed.removeLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        return slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
    }

    /// The first executable file called `name` in the directories of `$PATH` (/usr/bin:/bin when unset).
    public static func findOnPath(_ name: String) -> String? {
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { access($0, X_OK) == 0 && !isDirectory($0) }
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Removes a file or a whole directory tree, without following links; what cannot be removed stays.
    public static func removeTree(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR, let names = entryNames(path) {
            // A read-only directory (a `cml-data get` copy) must become writable for its entries to go.
            if st.st_mode & 0o200 == 0 { chmod(path, st.st_mode & 0o7777 | 0o700) }
            for name in names { removeTree(path + "/" + name) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }

    /// Writes `bytes` to a new file at `path` (an existing one is an error), fsynced when `sync`.
    public static func writeFile(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644, sync: Bool = false) throws(CMLError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw error("cannot write", path) }
        defer { close(fd) }
        try writeAll(fd, bytes, path: path)
        if sync, fsync(fd) != 0 { throw error("cannot sync", path) }
    }

    /// Makes a rename or a new file in `directory` durable.
    public static func syncDirectory(_ directory: String) throws(CMLError) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw error("cannot open", directory) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw error("cannot sync", directory) }
    }

    /// The name of a directory entry returned by readdir(3).
    public static func entryName(_ entry: UnsafeMutablePointer<dirent>) -> String {
        withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }

    /// The names in `directory` (without `.` and `..`); nil when it cannot be read.
    public static func entryNames(_ directory: String) -> [String]? {
        guard let handle = opendir(directory) else { return nil }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = entryName(entry)
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// The bytes of the regular files under `path` (not following links).
    public static func treeSize(_ path: String) -> Int64 {
        var st = stat()
        guard lstat(path, &st) == 0 else { return 0 }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            return (entryNames(path) ?? []).reduce(0) { $0 + treeSize(path + "/" + $1) }
        }
        return (st.st_mode & S_IFMT) == S_IFREG ? Int64(st.st_size) : 0
    }

    /// `removeTree`, returning the bytes of the regular files it held.
    public static func removeTreeCounting(_ path: String) -> Int64 {
        let size = treeSize(path)
        removeTree(path)
        return size
    }

    public static func readLink(_ path: String) throws(CMLError) -> String {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = buffer.withUnsafeMutableBufferPointer { readlink(path, $0.baseAddress!, $0.count) }
        guard n >= 0 else { throw error("cannot read the link", path) }
        return String(decoding: buffer[0..<n], as: UTF8.self)
    }

    /// Reads `fd` in 1 MiB chunks, handing each to `body`: to its end, or `length` bytes from `offset`
    /// (with pread, leaving the descriptor's position alone; fewer bytes there is an error).
    public static func copyChunks(from fd: Int32, path: String, offset: Int64 = 0, length: Int64? = nil,
                                  _ body: (UnsafeRawBufferPointer) throws(CMLError) -> Void) throws(CMLError) {
        let capacity = 1 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        defer { buffer.deallocate() }
        var position = offset
        while true {
            let wanted = length.map { Int(min(Int64(capacity), offset + $0 - position)) } ?? capacity
            if wanted == 0 { return }
            let n = length == nil ? Glibc.read(fd, buffer, wanted) : pread(fd, buffer, wanted, off_t(position))
            if n < 0 {
                if errno == EINTR { continue }
                throw error("cannot read", path)
            }
            if n == 0 {
                if length != nil { throw CMLError("\(path) ends before the \(length!) bytes at offset \(offset)") }
                return
            }
            position += Int64(n)
            try body(UnsafeRawBufferPointer(start: buffer, count: n))
        }
    }

    /// Fills `buffer` from `fd` at `offset`; reaching the end first is an error.
    public static func readExactly(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64,
                                   path: String) throws(CMLError) {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + Int64(done)))
            if n < 0 {
                if errno == EINTR { continue }
                throw error("cannot read", path)
            }
            if n == 0 { throw CMLError("\(path) ends before the \(buffer.count) bytes at offset \(offset)") }
            done += n
        }
    }

    public static var homeDirectory: String {
        if let home = getenv("HOME") { return String(cString: home) }
        if let pw = getpwuid(getuid()), let dir = pw.pointee.pw_dir { return String(cString: dir) }
        return "/"
    }

    /// `$XDG_CACHE_HOME`, else ~/.cache: where cml keeps what it can make again (agents' clones, spools).
    public static var cacheDirectory: String {
        getenv("XDG_CACHE_HOME").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? homeDirectory + "/.cache"
    }
}

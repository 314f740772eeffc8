import Glibc

/// Content-addressed blobs: `objects/ab/cdef…` named by the sha256 of their bytes. A blob is written to a
/// temporary file, fsynced and renamed into place, so a reader never sees a partial blob, and identical
/// content is stored once.
public struct BlobStore: Sendable {
    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    public func path(of id: String) -> String {
        "\(directory)/\(id.prefix(2))/\(id.dropFirst(2))"
    }

    /// Stores `bytes` and returns their sha256; storing the same content twice writes nothing new.
    @discardableResult
    public func put(_ bytes: [UInt8]) throws(CMLError) -> String {
        let id = SHA256Hasher.hex(bytes)
        let final = path(of: id)
        if access(final, F_OK) == 0 { return id }
        let folder = "\(directory)/\(id.prefix(2))"
        try FileSystem.makeDirectories(folder)
        let temporary = "\(folder)/.tmp-\(getpid())-\(RunID.make())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o444)
        guard fd >= 0 else { throw FileSystem.error("cannot write blob", temporary) }
        do throws(CMLError) {
            try FileSystem.writeAll(fd, bytes, path: temporary)
            guard fsync(fd) == 0 else { throw FileSystem.error("cannot sync blob", temporary) }
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        close(fd)
        guard rename(temporary, final) == 0 else {
            let failure = FileSystem.error("cannot store blob", final)
            unlink(temporary)
            throw failure
        }
        return id
    }

    public func get(_ id: String) throws(CMLError) -> [UInt8] {
        try FileSystem.readAll(path(of: id))
    }

    /// Stores the regular file at `source`, streaming (memory stays flat however large it is), hashing as
    /// it copies. A file that changes while it is read is refused, never stored under a wrong hash.
    public func putFile(_ source: String) throws(CMLError) -> (id: String, size: Int64) {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw FileSystem.error("cannot read", source) }
        defer { close(input) }
        var before = stat()
        guard fstat(input, &before) == 0 else { throw FileSystem.error("cannot read", source) }
        guard (before.st_mode & S_IFMT) == S_IFREG else { throw CMLError("\(source) is not a regular file") }

        try FileSystem.makeDirectories(directory)
        let temporary = "\(directory)/.tmp-\(getpid())-\(RunID.make())"
        let output = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o444)
        guard output >= 0 else { throw FileSystem.error("cannot write blob", temporary) }
        var hasher = SHA256Hasher()
        var size: Int64 = 0
        do throws(CMLError) {
            try FileSystem.copyChunks(from: input, path: source) { chunk throws(CMLError) in
                hasher.update(chunk)
                size += Int64(chunk.count)
                try FileSystem.writeAll(output, chunk, path: temporary)
            }
            var after = stat()
            guard fstat(input, &after) == 0 else { throw FileSystem.error("cannot read", source) }
            guard after.st_size == before.st_size, after.st_mtim.tv_sec == before.st_mtim.tv_sec,
                  after.st_mtim.tv_nsec == before.st_mtim.tv_nsec, size == Int64(after.st_size) else {
                throw CMLError("\(source) changed while it was being stored", hint: "store it again when it is written")
            }
            guard fsync(output) == 0 else { throw FileSystem.error("cannot sync blob", temporary) }
        } catch {
            close(output)
            unlink(temporary)
            throw error
        }
        close(output)
        let id = hasher.finalizeHex()
        let final = path(of: id)
        if access(final, F_OK) == 0 {
            unlink(temporary)
            return (id, size)
        }
        do throws(CMLError) { try FileSystem.makeDirectories("\(directory)/\(id.prefix(2))") } catch {
            unlink(temporary)
            throw error
        }
        guard rename(temporary, final) == 0 else {
            let failure = FileSystem.error("cannot store blob", final)
            unlink(temporary)
            throw failure
        }
        return (id, size)
    }

    /// Streams blob `id` into `body`, checking its hash at the end: a damaged or missing blob is an error
    /// (after `body` saw the bytes, so callers write to a temporary place and keep it only on success).
    public func read(_ id: String, _ body: (UnsafeRawBufferPointer) throws(CMLError) -> Void) throws(CMLError) {
        let blobPath = path(of: id)
        let input = open(blobPath, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else {
            throw errno == ENOENT ? CMLError("blob \(id) is missing from the store \(directory)")
                                  : FileSystem.error("cannot read blob", blobPath)
        }
        defer { close(input) }
        var hasher = SHA256Hasher()
        try FileSystem.copyChunks(from: input, path: blobPath) { chunk throws(CMLError) in
            hasher.update(chunk)
            try body(chunk)
        }
        let actual = hasher.finalizeHex()
        guard actual == id else { throw CMLError("blob \(id) is damaged (its content hashes to \(actual))") }
    }
}

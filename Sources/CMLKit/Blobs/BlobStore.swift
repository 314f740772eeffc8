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
}

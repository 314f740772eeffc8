import CSupport
import Glibc

/// Why a file could not be hashed and stored.
public enum IngestFailure: Error, Sendable {
    /// It cannot be opened or read (the message says why).
    case unreadable(String)
    /// It changed, vanished or was replaced between the directory walk and the end of its reading.
    case changed
    /// The store could not take it (a full disk, say).
    case failed(CMLError)
}

/// How a large file's content reaches the store while, or after, it is hashed.
public enum LargeFileCopy: Sendable {
    /// Cloned or copied in the kernel on another thread while this one hashes: for a core that would
    /// otherwise idle, and content that is likely new.
    case alongside
    /// Cloned where the filesystem shares blocks, else written from each chunk as it is hashed, past the
    /// page cache: when every core hashes, and the content is likely new. Copying after hashing read each
    /// file twice and filled fresh pages of the page cache with it.
    case asHashed
    /// Hashed first, copied only when the store lacks it: content that is likely stored already (a moved
    /// file keeps its size and modification time).
    case ifNew
}

extension BlobBatch {
    /// Hashes the regular file at `path` and stores its content unless the store holds it already;
    /// returns its sha256 and CRC-32C. `expected` is what the directory walk saw: a file that is not that
    /// one any more, or changes while it is read (its size, times or identity move), fails with `.changed`
    /// and stores nothing, so no content is ever recorded under a wrong hash.
    ///
    /// A small file is read once into `buffer` (at least `BlobDirectory.packThreshold + 1` bytes), hashed as
    /// it is read, and appended to the worker's pack if new. A large one is hashed in chunks and reaches
    /// the store as `copy` says.
    public func ingest(path: String, expected: FileIdentity, worker: Int, buffer: UnsafeMutableRawBufferPointer,
                       copy: LargeFileCopy) throws(IngestFailure) -> ContentDigest {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            if errno == ENOENT || errno == ELOOP { throw .changed }
            throw .unreadable("\(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        guard currentIdentity(fd) == expected else { throw .changed }
        if expected.size < Int64(BlobDirectory.packThreshold) {
            return try ingestSmall(fd, path: path, expected: expected, worker: worker, buffer: buffer)
        }
        return try ingestLarge(fd, path: path, expected: expected, buffer: buffer, copy: copy)
    }

    /// Files are read and hashed this much at a time, each chunk hashed while it is in the CPU's cache.
    private static let hashChunk = 1 << 20

    private func currentIdentity(_ fd: Int32) -> FileIdentity? {
        var st = stat()
        return fstat(fd, &st) == 0 ? FileIdentity(st) : nil
    }

    private func ingestSmall(_ fd: Int32, path: String, expected: FileIdentity, worker: Int,
                             buffer: UnsafeMutableRawBufferPointer) throws(IngestFailure) -> ContentDigest {
        // Read up to the size the walk saw: a file that grew since shows in its identity afterwards.
        let size = Int(expected.size)
        var hasher = ContentHasher()
        var total = 0
        while total < size {
            let n = read(fd, buffer.baseAddress! + total, min(Self.hashChunk, size - total))
            if n < 0 {
                if errno == EINTR { continue }
                throw .unreadable("\(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            hasher.update(UnsafeRawBufferPointer(rebasing: buffer[total..<total + n]))
            total += n
        }
        guard total == size, currentIdentity(fd) == expected else { throw .changed }
        let content = UnsafeRawBufferPointer(rebasing: buffer[0..<total])
        let digest = hasher.finalize()
        do throws(CMLError) {
            if try claim(digest.sha256, size: expected.size) {
                do throws(CMLError) { try addPacked(digest.sha256, content, worker: worker) } catch {
                    release(digest.sha256)
                    throw error
                }
            }
        } catch {
            throw .failed(error)
        }
        return digest
    }

    private func ingestLarge(_ fd: Int32, path: String, expected: FileIdentity, buffer: UnsafeMutableRawBufferPointer,
                             copy: LargeFileCopy) throws(IngestFailure) -> ContentDigest {
        // The copy is a file opened here (cloned or copied in the kernel), or one a writer fills.
        var temporary: (path: String, fd: Int32)?
        var writer: DirectFileWriter?
        defer {
            if let temporary { close(temporary.fd) }
        }
        func dropTemporary() {
            if let temporary { unlink(temporary.path) }
            if let writer { unlink(writer.path) }
        }
        var copying: Background<CMLError?>?
        do throws(CMLError) {
            switch copy {
            case .alongside:
                temporary = try makeTemporaryFile()
                let (target, source, size) = (temporary!, fd, expected.size)
                copying = Background { Self.copy(from: source, path: path, size: size, into: target) }
            case .asHashed:
                temporary = try makeTemporaryFile()
                if cml_clone_file(temporary!.fd, fd) != 0 {
                    close(temporary!.fd)
                    unlink(temporary!.path)
                    temporary = nil
                    writer = try DirectFileWriter(creating: try temporaryPath(), mode: 0o444, capacity: Self.hashChunk)
                }
            case .ifNew:
                break
            }
        } catch {
            dropTemporary()
            throw .failed(error)
        }
        var hasher = ContentHasher()
        var total: Int64 = 0
        var readFailure: String?
        var writeFailure: CMLError?
        while true {
            let n = read(fd, buffer.baseAddress!, min(Self.hashChunk, buffer.count))
            if n < 0 {
                if errno == EINTR { continue }
                readFailure = "\(path): \(String(cString: strerror(errno)))"
                break
            }
            if n == 0 { break }
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
            hasher.update(chunk)
            if let writer, writeFailure == nil {
                do throws(CMLError) { try writer.append(chunk) } catch { writeFailure = error }
            }
            total += Int64(n)
        }
        if let writer, writeFailure == nil, readFailure == nil {
            do throws(CMLError) { try writer.finish() } catch { writeFailure = error }
        }
        let copyFailure = copying?.value ?? writeFailure
        if let readFailure {
            dropTemporary()
            throw .unreadable(readFailure)
        }
        guard total == expected.size, currentIdentity(fd) == expected else {
            dropTemporary()
            throw .changed
        }
        if let copyFailure {
            dropTemporary()
            throw currentIdentity(fd) == expected ? .failed(copyFailure) : .changed
        }
        let digest = hasher.finalize()
        do throws(CMLError) {
            guard try claim(digest.sha256, size: expected.size) else {
                dropTemporary()
                return digest
            }
        } catch {
            dropTemporary()
            throw .failed(error)
        }
        if let writer {
            addFile(digest.sha256, temporary: writer.path, size: expected.size)
            return digest
        }
        if temporary == nil {
            // Hashed first, copied only now that the store is known to lack it.
            do throws(CMLError) { temporary = try makeTemporaryFile() } catch {
                release(digest.sha256)
                throw .failed(error)
            }
            let failure = Self.copy(from: fd, path: path, size: expected.size, into: temporary!)
            // The copy holds the hashed bytes only if the file did not change in between.
            guard currentIdentity(fd) == expected else {
                dropTemporary()
                release(digest.sha256)
                throw .changed
            }
            if let failure {
                dropTemporary()
                release(digest.sha256)
                throw .failed(failure)
            }
        }
        guard fsync(temporary!.fd) == 0 else {
            let failure = FileSystem.error("cannot sync blob", temporary!.path)
            dropTemporary()
            release(digest.sha256)
            throw .failed(failure)
        }
        addFile(digest.sha256, temporary: temporary!.path, size: expected.size)
        return digest
    }

    private static func copy(from source: Int32, path: String, size: Int64, into target: (path: String, fd: Int32)) -> CMLError? {
        do throws(CMLError) {
            try FileCopy.copy(from: source, offset: 0, length: size, whole: true, to: target.fd,
                              sourcePath: path, destinationPath: target.path, writeBack: true)
            return nil
        } catch {
            return error
        }
    }
}

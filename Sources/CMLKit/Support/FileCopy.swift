import CSupport
import Glibc

/// Copies file contents the cheapest way the filesystem allows.
public enum FileCopy {
    public enum Method: Sendable {
        /// The destination shares the source's blocks (FICLONE: btrfs, XFS, bcachefs): instant, no space.
        case reflink
        /// copy_file_range(2): copied inside the kernel, never through our memory.
        case kernel
        /// read and write, where neither works (across some filesystems, old kernels).
        case userspace
    }

    /// Copies `length` bytes of `source` at `offset` to the start of `destination`, an empty file, or to
    /// `destinationOffset` in it when given (a range of a larger copy). A whole file (`offset` 0, `whole`)
    /// is cloned where the filesystem can share blocks. A source shorter than `length` is an error.
    /// `writeBack` starts writing each chunk to disk as soon as it is copied, for a destination that will
    /// be fsynced: the fsync then waits for the last chunk only.
    @discardableResult
    public static func copy(from source: Int32, offset: Int64, length: Int64, whole: Bool, to destination: Int32,
                            at destinationOffset: Int64? = nil, sourcePath: String, destinationPath: String,
                            writeBack: Bool = false) throws(CMLError) -> Method {
        let start = destinationOffset ?? 0
        if whole, offset == 0, destinationOffset == nil, cml_clone_file(destination, source) == 0 {
            var st = stat()
            guard fstat(destination, &st) == 0, Int64(st.st_size) == length else {
                throw CMLError("\(sourcePath) is not \(length) bytes long any more")
            }
            return .reflink
        }
        var sourceOffset = offset
        var targetOffset = start
        var copied: Int64 = 0
        while copied < length {
            let chunk = Int(min(length - copied, 64 << 20))
            let n = destinationOffset == nil ? cml_copy_file_range(source, &sourceOffset, destination, nil, chunk)
                                             : cml_copy_file_range(source, &sourceOffset, destination, &targetOffset, chunk)
            if n > 0 {
                if writeBack { _ = cml_start_writeback(destination, start + copied, n) }
                copied += n
                continue
            }
            if n == 0 { throw CMLError("\(sourcePath) ends before its \(length) bytes") }
            if errno == EINTR { continue }
            if copied == 0, [EXDEV, ENOSYS, EINVAL, EOPNOTSUPP, EPERM, EBADF].contains(errno) { break }
            throw errno == ENOSPC || errno == EDQUOT ? FileSystem.error("cannot write", destinationPath)
                                                     : FileSystem.error("cannot copy", sourcePath)
        }
        if copied == length { return .kernel }
        var written: Int64 = 0
        try FileSystem.copyChunks(from: source, path: sourcePath, offset: offset, length: length) { chunk throws(CMLError) in
            try FileSystem.writeAll(destination, chunk, at: destinationOffset.map { $0 + written }, path: destinationPath)
            if writeBack { _ = cml_start_writeback(destination, start + written, Int64(chunk.count)) }
            written += Int64(chunk.count)
        }
        return .userspace
    }
}

import CSupport
import Dispatch
import Glibc

/// Writes a new file from start to end, past the page cache where the filesystem allows it (O_DIRECT):
/// the caller fills one buffer while the other is written on a background queue.
///
/// Why not through the page cache: content a snapshot stores is written once and read rarely. Through
/// the cache, each of its pages is first allocated and copied into (on this VM, where freed memory goes
/// back to the host, a fault to the host each: a snapshot of 200 MB took half as long again after the
/// machine had idled a few seconds) and then written back anyway for the final fsync. Direct writes go
/// from the buffer to the disk. A filesystem that refuses them (tmpfs before Linux 6.6) gets ordinary
/// writes, still in the background.
final class DirectFileWriter {
    /// Direct writes move whole blocks, from memory aligned to them.
    static let blockSize = 4096

    let path: String
    private let fd: Int32
    private let capacity: Int
    private var filling: UnsafeMutableRawPointer
    private var spare: UnsafeMutableRawPointer
    private var buffered = 0
    /// Bytes handed to the background queue so far (the file's offset of `filling`'s first byte).
    private var handedOff: Int64 = 0
    private let queue = DispatchQueue(label: "cml.direct-file-writer")
    private let inFlight = DispatchGroup()
    private let state: WriteState

    /// Creates `path` (which must not exist) with `mode`; `capacity` is each buffer's size, a multiple
    /// of `blockSize`. `direct: false` writes through the page cache.
    init(creating path: String, mode: mode_t, capacity: Int, direct: Bool = true) throws(CMLError) {
        precondition(capacity > 0 && capacity % Self.blockSize == 0)
        self.path = path
        self.capacity = capacity
        var fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | (direct ? cml_direct_flag() : 0), mode)
        var direct = direct && fd >= 0
        if fd < 0 && errno == EINVAL {
            // Refused by the filesystem, after it may have created the file.
            unlink(path)
            fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
            direct = false
        }
        guard fd >= 0 else { throw FileSystem.error("cannot write", path) }
        self.fd = fd
        state = WriteState(direct: direct)
        filling = .allocate(byteCount: capacity, alignment: Self.blockSize)
        spare = .allocate(byteCount: capacity, alignment: Self.blockSize)
    }

    deinit {
        inFlight.wait()
        filling.deallocate()
        spare.deallocate()
        close(fd)
    }

    /// Bytes appended so far.
    var size: Int64 { handedOff + Int64(buffered) }

    func append(_ bytes: UnsafeRawBufferPointer) throws(CMLError) {
        var offset = 0
        while offset < bytes.count {
            if buffered == capacity { try handOff(final: false) }
            let count = min(capacity - buffered, bytes.count - offset)
            (filling + buffered).copyMemory(from: bytes.baseAddress! + offset, byteCount: count)
            buffered += count
            offset += count
        }
    }

    /// Writes what is left, waits for every write, and fsyncs the file.
    func finish() throws(CMLError) {
        try handOff(final: true)
        inFlight.wait()
        try state.check(path)
        guard fsync(fd) == 0 else { throw FileSystem.error("cannot sync", path) }
    }

    /// Hands the filled buffer to the background queue, after the previous write finished. A direct write
    /// takes whole blocks: the partial block at the end moves to the next buffer, unless this is the
    /// last write, which is padded and the file then cut to its size.
    private func handOff(final: Bool) throws(CMLError) {
        inFlight.wait()
        try state.check(path)
        let direct = state.direct
        let size = self.size
        var length = buffered
        if direct && !final { length -= length % Self.blockSize }
        if direct && final && length % Self.blockSize != 0 {
            let padded = (length + Self.blockSize - 1) / Self.blockSize * Self.blockSize
            (filling + length).initializeMemory(as: UInt8.self, repeating: 0, count: padded - length)
            length = padded
        }
        let rest = max(0, buffered - length)
        if rest > 0 { spare.copyMemory(from: filling + length, byteCount: rest) }
        let write = PendingWrite(fd: fd, bytes: UnsafeRawBufferPointer(start: filling, count: length), offset: handedOff,
                                 truncateTo: final && length > buffered ? size : nil)
        let state = self.state
        queue.async(group: inFlight) { state.perform(write) }
        handedOff += Int64(buffered - rest)
        swap(&filling, &spare)
        buffered = rest
    }

    private struct PendingWrite: @unchecked Sendable {
        let fd: Int32
        let bytes: UnsafeRawBufferPointer
        let offset: Int64
        /// The file's size, when the write was padded past it.
        let truncateTo: Int64?
    }

    /// Whether writes still go direct, and the first failure; read only after the writes are waited for.
    private final class WriteState: @unchecked Sendable {
        private(set) var direct: Bool
        private var failure: Int32 = 0

        init(direct: Bool) { self.direct = direct }

        func perform(_ write: PendingWrite) {
            guard failure == 0 else { return }
            var done = 0
            while done < write.bytes.count {
                let n = pwrite(write.fd, write.bytes.baseAddress! + done, write.bytes.count - done, off_t(write.offset) + off_t(done))
                if n < 0 {
                    if errno == EINTR { continue }
                    // The filesystem takes direct I/O, but not this alignment: go on through the page cache.
                    if errno == EINVAL && direct, fcntl(write.fd, F_SETFL, fcntl(write.fd, F_GETFL) & ~cml_direct_flag()) == 0 {
                        direct = false
                        continue
                    }
                    failure = errno
                    return
                }
                done += n
            }
            if !direct { _ = cml_start_writeback(write.fd, write.offset, Int64(write.bytes.count)) }
            if let size = write.truncateTo, ftruncate(write.fd, off_t(size)) != 0 { failure = errno }
        }

        func check(_ path: String) throws(CMLError) {
            guard failure != 0 else { return }
            errno = failure
            throw FileSystem.error("cannot write", path)
        }
    }
}

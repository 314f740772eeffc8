import CSupport
import Foundation
import Glibc

/// Stores many blobs at once, from several threads, with one sync at the end instead of one per blob:
/// small blobs go into packs (one per worker), large ones into files of their own. Nothing becomes
/// visible in the store until `finish`; `discard` (or dropping the batch unfinished) leaves the store as
/// it was. Each worker thread passes its own number, so that its pack needs no lock.
public final class BlobBatch: @unchecked Sendable {
    public let store: BlobDirectory
    private let lock = NSLock()
    private var claimed: Set<BlobDigest> = []
    private let slots: [Slot]
    private var finishedPacks: [(pack: String, index: String)] = []
    private var looseFiles: [(temporary: String, id: String)] = []
    private var blobs = 0
    private var bytes: Int64 = 0
    private var done = false

    /// One worker's open pack; only that worker touches it.
    private final class Slot {
        var writer: PackWriter?
    }

    public init(store: BlobDirectory, workers: Int) throws(CMLError) {
        self.store = store
        slots = (0..<max(workers, 1)).map { _ in Slot() }
        try store.refreshPacks()
    }

    deinit {
        if !done { discard() }
    }

    /// Blobs and bytes this batch stored (content the store did not hold).
    public var stored: (blobs: Int, bytes: Int64) {
        lock.lock()
        defer { lock.unlock() }
        return (blobs, bytes)
    }

    /// Whether the caller should store content `digest` of `size` bytes: false when the store holds it,
    /// or another worker of this batch has claimed it already. A claim must end with `addPacked`,
    /// `addFile` or `release`.
    public func claim(_ digest: BlobDigest, size: Int64) throws(CMLError) -> Bool {
        lock.lock()
        let fresh = claimed.insert(digest).inserted
        lock.unlock()
        guard fresh else { return false }
        if try store.contains(digest, lookingForFiles: size >= BlobDirectory.smallestFileBlob) {
            release(digest)
            return false
        }
        return true
    }

    public func release(_ digest: BlobDigest) {
        lock.lock()
        claimed.remove(digest)
        lock.unlock()
    }

    /// Appends a claimed small blob to `worker`'s pack.
    public func addPacked(_ digest: BlobDigest, _ content: UnsafeRawBufferPointer, worker: Int) throws(CMLError) {
        let slot = slots[worker]
        if slot.writer == nil { slot.writer = try PackWriter(directory: store.packs.directory) }
        let writer = slot.writer!
        try writer.append(digest, content)
        if writer.isFull {
            let index = try writer.finish()
            slot.writer = nil
            lock.lock()
            finishedPacks.append((writer.temporaryPath, index))
            lock.unlock()
        }
        count(content.count)
    }

    /// A new name for a temporary file in the store (for a large blob being written), its folder made.
    func temporaryPath() throws(CMLError) -> String {
        try FileSystem.makeDirectories(store.directory)
        return "\(store.directory)/.tmp-\(getpid())-\(RunID.make())"
    }

    /// A new temporary file in the store, for a large blob being written.
    public func makeTemporaryFile() throws(CMLError) -> (path: String, fd: Int32) {
        let path = try temporaryPath()
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o444)
        guard fd >= 0 else { throw FileSystem.error("cannot write blob", path) }
        return (path, fd)
    }

    /// Takes a claimed large blob, written completely to `temporary` (from `makeTemporaryFile`) and
    /// fsynced; it is renamed into place by `finish`.
    public func addFile(_ digest: BlobDigest, temporary: String, size: Int64) {
        lock.lock()
        looseFiles.append((temporary, digest.hex))
        lock.unlock()
        count(Int(size))
    }

    private func count(_ size: Int) {
        lock.lock()
        blobs += 1
        bytes += Int64(size)
        lock.unlock()
    }

    /// Stores `content` (a manifest, say) and returns its id.
    @discardableResult
    public func put(_ content: [UInt8], worker: Int = 0) throws(CMLError) -> String {
        var hasher = SHA256Hasher()
        hasher.update(content)
        let digest = hasher.finalize()
        let id = digest.hex
        guard try claim(digest, size: Int64(content.count)) else { return id }
        do throws(CMLError) {
            if content.count < BlobDirectory.packThreshold {
                var failure: CMLError?
                content.withUnsafeBytes { raw in
                    do throws(CMLError) { try addPacked(digest, raw, worker: worker) } catch { failure = error }
                }
                if let failure { throw failure }
            } else {
                let (path, fd) = try makeTemporaryFile()
                defer { close(fd) }
                do throws(CMLError) {
                    try FileSystem.writeAll(fd, content, path: path)
                    guard fsync(fd) == 0 else { throw FileSystem.error("cannot sync blob", path) }
                } catch {
                    unlink(path)
                    throw error
                }
                addFile(digest, temporary: path, size: Int64(content.count))
            }
        } catch {
            release(digest)
            throw error
        }
        return id
    }

    /// Makes everything stored visible: packs and their indexes synced and renamed into place, then
    /// large blobs, then the folders synced, so a blob is never visible before its bytes are on disk.
    public func finish() throws(CMLError) {
        do throws(CMLError) {
            for slot in slots {
                guard let writer = slot.writer else { continue }
                // Left in its slot until finished, so that a failure (a full disk) discards it too.
                let index = try writer.finish()
                slot.writer = nil
                finishedPacks.append((writer.temporaryPath, index))
            }
            var folders: Set<String> = []
            for (pack, index) in finishedPacks {
                let name = "pack-\(RunID.make())"
                guard rename(pack, store.packs.path(ofPack: name)) == 0 else { throw FileSystem.error("cannot store the pack", pack) }
                guard rename(index, store.packs.path(ofIndex: name)) == 0 else { throw FileSystem.error("cannot store the pack index", index) }
                folders.insert(store.packs.directory)
            }
            finishedPacks.removeAll()
            for (temporary, id) in looseFiles {
                try store.publish(temporary: temporary, as: id)
                folders.insert(FileSystem.directoryName(store.path(of: id)))
            }
            looseFiles.removeAll()
            for folder in folders.sorted() { try FileSystem.syncDirectory(folder) }
            done = true
            try store.refreshPacks()
        } catch {
            discard()
            throw error
        }
    }

    /// Drops everything this batch wrote that is not in place yet.
    public func discard() {
        done = true
        for slot in slots {
            if let writer = slot.writer {
                unlink(writer.temporaryPath)
                unlink(writer.indexPath)
            }
            slot.writer = nil
        }
        for (pack, index) in finishedPacks {
            unlink(pack)
            unlink(index)
        }
        for (temporary, _) in looseFiles { unlink(temporary) }
        finishedPacks.removeAll()
        looseFiles.removeAll()
    }
}

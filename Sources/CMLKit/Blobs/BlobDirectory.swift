import CSupport
import Glibc

/// Where the bytes of a blob lie: a file of its own (`objects/ab/cdef…`), or a range of a pack.
public struct BlobLocation: Sendable, Equatable {
    public var path: String
    public var offset: Int64
    public var size: Int64
    /// A file of its own, which may be hard-linked or cloned whole.
    public var isWholeFile: Bool
}

/// Content-addressed blobs named by the sha256 of their bytes: `objects/ab/cdef…`, or, for small blobs
/// stored in a batch (a dataset snapshot, an import), a range of a pack in `objects/packs/` (see
/// `PackIndex`). A blob is written to a temporary file, fsynced and renamed into place, so a reader never
/// sees a partial blob, and identical content is stored once.
public struct BlobDirectory: Sendable {
    public let directory: String
    let packs: PackSet

    /// Blobs smaller than this go into packs when stored in a batch. A blob stored as a file of its own
    /// costs a file created, copied, fsynced and renamed, and its folder fsynced: with packs only from
    /// 1 MiB, a snapshot of 100 files of 2 MiB took twice as long as hashing them.
    public static let packThreshold = 16 << 20

    /// The smallest blob a batch may have stored as a file of its own (builds before `packThreshold`
    /// was 16 MiB did so from 1 MiB): content of this size or more is looked for as a file too.
    static let smallestFileBlob: Int64 = 1 << 20

    public init(directory: String) {
        self.directory = directory
        packs = PackSet(directory: directory + "/packs")
    }

    /// Where blob `id` lies when it is a file of its own.
    public func path(of id: String) -> String {
        "\(directory)/\(id.prefix(2))/\(id.dropFirst(2))"
    }

    /// Stores `bytes` and returns their sha256; storing the same content twice writes nothing new.
    @discardableResult
    public func put(_ bytes: [UInt8]) throws(CMLError) -> String {
        let id = SHA256Hasher.hex(bytes)
        // Already stored, as a file of its own or in a pack (a dataset's small file).
        if try contains(id) { return id }
        try FileSystem.makeDirectories(directory)
        let temporary = "\(directory)/.tmp-\(getpid())-\(RunID.make())"
        do throws(CMLError) { try FileSystem.writeFile(temporary, bytes, mode: 0o444, sync: true) } catch {
            unlink(temporary)
            throw error
        }
        try publish(temporary: temporary, as: id)
        return id
    }

    public func get(_ id: String) throws(CMLError) -> [UInt8] {
        var bytes: [UInt8] = []
        try read(id) { chunk throws(CMLError) in bytes.append(contentsOf: chunk) }
        return bytes
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
            guard FileIdentity(after) == FileIdentity(before), size == Int64(after.st_size) else {
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
        try publish(temporary: temporary, as: id)
        return (id, size)
    }

    /// Renames a finished temporary file into place as blob `id` (dropping it when the blob exists, as a
    /// file of its own or in a pack).
    func publish(temporary: String, as id: String) throws(CMLError) {
        let final = path(of: id)
        if try contains(id) {
            unlink(temporary)
            return
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
    }

    /// Where blob `id` lies; an error when the store does not hold it. `refresh` rereads the packs first
    /// (after a pack named by an index read earlier turned out to be gone: a concurrent gc rewrote it).
    public func location(of id: String, refresh: Bool = false) throws(CMLError) -> BlobLocation {
        guard let digest = BlobDigest(hex: id) else { throw CMLError("\(id) is not a blob id", kind: .invalid) }
        if refresh { try packs.refresh() }
        if let (pack, entry) = try packs.find(digest) {
            return BlobLocation(path: packs.path(ofPack: pack), offset: entry.offset, size: entry.size, isWholeFile: false)
        }
        let loose = path(of: id)
        var st = stat()
        if stat(loose, &st) == 0 { return BlobLocation(path: loose, offset: 0, size: Int64(st.st_size), isWholeFile: true) }
        if !refresh { return try location(of: id, refresh: true) }
        throw CMLError("blob \(id) is missing from the store \(directory)", kind: .notFound)
    }

    /// Whether the store holds `id`, in a pack known since the last `refreshPacks` or as a file.
    public func contains(_ id: String) throws(CMLError) -> Bool {
        guard let digest = BlobDigest(hex: id) else { return false }
        return try contains(digest)
    }

    /// `lookingForFiles: false` skips the look for a file of its own (a syscall): for small content,
    /// which batches store in packs, a copy stored alone (an artifact) is rare, and storing it once more
    /// costs little.
    public func contains(_ digest: BlobDigest, lookingForFiles: Bool = true) throws(CMLError) -> Bool {
        if try packs.find(digest) != nil { return true }
        return lookingForFiles && access(path(of: digest.hex), F_OK) == 0
    }

    /// Rereads which packs exist (after another process may have added or rewritten some).
    public func refreshPacks() throws(CMLError) {
        try packs.refresh()
    }

    /// Opens the file holding `location`; when a pack was rewritten since its index was read (`cml-data gc`
    /// in another process), finds the blob anew.
    func openBlob(_ id: String) throws(CMLError) -> (fd: Int32, location: BlobLocation) {
        var location = try location(of: id)
        var fd = Glibc.open(location.path, O_RDONLY | O_CLOEXEC)
        if fd < 0 && errno == ENOENT {
            location = try self.location(of: id, refresh: true)
            fd = Glibc.open(location.path, O_RDONLY | O_CLOEXEC)
        }
        guard fd >= 0 else {
            throw errno == ENOENT ? CMLError("blob \(id) is missing from the store \(directory)", kind: .notFound)
                                  : FileSystem.error("cannot read blob", location.path)
        }
        return (fd, location)
    }

    /// Streams blob `id` into `body`, checking its hash at the end: a damaged or missing blob is an error
    /// (after `body` saw the bytes, so callers write to a temporary place and keep it only on success).
    public func read(_ id: String, _ body: (UnsafeRawBufferPointer) throws(CMLError) -> Void) throws(CMLError) {
        let (input, location) = try openBlob(id)
        defer { close(input) }
        var hasher = SHA256Hasher()
        var total: Int64 = 0
        try FileSystem.copyChunks(from: input, path: location.path, offset: location.offset,
                                  length: location.isWholeFile ? nil : location.size) { chunk throws(CMLError) in
            hasher.update(chunk)
            total += Int64(chunk.count)
            try body(chunk)
        }
        let actual = hasher.finalizeHex()
        guard actual == id, total == location.size else {
            throw CMLError("blob \(id) is damaged (its content hashes to \(actual))", kind: .damaged)
        }
    }

    /// Deletes blobs wherever they lie (files of their own, and packs, which are rewritten without them),
    /// and returns how many went and the bytes freed. The caller holds the store's write lock and has
    /// checked that nothing references them.
    func remove(_ ids: Set<String>) throws(CMLError) -> (blobs: Int, bytes: Int64) {
        var removed: Set<String> = []
        var bytes: Int64 = 0
        for id in ids {
            let path = path(of: id)
            var st = stat()
            if stat(path, &st) == 0, unlink(path) == 0 {
                removed.insert(id)
                bytes += Int64(st.st_size)
                rmdir(FileSystem.directoryName(path))  // only when that was its folder's last blob
            }
        }
        let digests = Set(ids.compactMap(BlobDigest.init(hex:)))
        try packs.refresh()
        for index in try packs.current() {
            let entries = index.entries
            let dead = entries.filter { digests.contains($0.digest) }
            if dead.isEmpty { continue }
            bytes += try rewrite(index, keeping: entries.filter { !digests.contains($0.digest) })
            for entry in dead { removed.insert(entry.digest.hex) }
        }
        return (removed.count, bytes)
    }

    /// Replaces a pack by one holding only `live` (or by nothing), and returns the bytes freed.
    func rewrite(_ index: PackIndex, keeping live: [PackIndex.Entry]) throws(CMLError) -> Int64 {
        try repack([(index, live)])
    }

    /// Writes the `live` blobs of these packs together into new packs (each closed at
    /// `PackWriter.maximumSize`), then removes the old ones, and returns the bytes freed. The new packs
    /// are in place, synced, before any old one goes, so a reader finds every blob in one or the other
    /// (a reader that loaded an old index finds the blob anew: see `openBlob`).
    func repack(_ sources: [(index: PackIndex, live: [PackIndex.Entry])]) throws(CMLError) -> Int64 {
        var oldSize: Int64 = 0
        for (index, _) in sources {
            var st = stat()
            if stat(packs.path(ofPack: index.name), &st) == 0 { oldSize += Int64(st.st_size) }
        }
        var newSize: Int64 = 0
        var writer: PackWriter?
        var written: [(pack: String, index: String)] = []
        do throws(CMLError) {
            let largest = Int(sources.flatMap(\.live).map(\.size).max() ?? 0)
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(largest, 1), alignment: 16)
            defer { buffer.deallocate() }
            for (index, live) in sources where !live.isEmpty {
                let oldPack = packs.path(ofPack: index.name)
                let input = Glibc.open(oldPack, O_RDONLY | O_CLOEXEC)
                guard input >= 0 else { throw FileSystem.error("cannot read the pack", oldPack) }
                defer { close(input) }
                for entry in live.sorted(by: { $0.offset < $1.offset }) {
                    let content = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Int(entry.size)])
                    try FileSystem.readExactly(input, into: content, at: entry.offset, path: oldPack)
                    if writer == nil { writer = try PackWriter(directory: packs.directory) }
                    try writer!.append(entry.digest, UnsafeRawBufferPointer(content))
                    if writer!.isFull {
                        written.append((writer!.temporaryPath, try writer!.finish()))
                        newSize += writer!.size
                        writer = nil
                    }
                }
            }
            if let last = writer {
                written.append((last.temporaryPath, try last.finish()))
                newSize += last.size
                writer = nil
            }
            for (pack, index) in written {
                let name = "pack-\(RunID.make())"
                guard rename(pack, packs.path(ofPack: name)) == 0, rename(index, packs.path(ofIndex: name)) == 0 else {
                    throw FileSystem.error("cannot store the pack", packs.path(ofPack: name))
                }
            }
            if !written.isEmpty { try FileSystem.syncDirectory(packs.directory) }
        } catch {
            for (pack, index) in written + (writer.map { [($0.temporaryPath, $0.indexPath)] } ?? []) {
                unlink(pack)
                unlink(index)
            }
            throw error
        }
        for (index, _) in sources {
            // The index first: a pack without one is invisible.
            unlink(packs.path(ofIndex: index.name))
            unlink(packs.path(ofPack: index.name))
        }
        try packs.refresh()
        return oldSize - newSize
    }

    /// Every blob stored, with the bytes each copy takes (a blob may lie in several places: a file of its
    /// own and a pack, or two packs written at once).
    func inventory() throws(CMLError) -> (files: [String: Int64], packs: [PackIndex]) {
        var files: [String: Int64] = [:]
        for folder in FileSystem.entryNames(directory) ?? [] where folder.utf8.count == 2 {
            for name in FileSystem.entryNames(directory + "/" + folder) ?? [] where !name.hasPrefix(".") {
                var st = stat()
                if stat("\(directory)/\(folder)/\(name)", &st) == 0 { files[folder + name] = Int64(st.st_size) }
            }
        }
        try packs.refresh()
        return (files, try packs.current())
    }

    /// Removes what writers that died left behind: temporary files, and packs that never got their index,
    /// older than `age` seconds (younger ones may belong to a writer still at work).
    func removeAbandoned(olderThan age: Double) -> (files: Int, bytes: Int64) {
        let limit = Clock.now() - age
        var count = 0
        var bytes: Int64 = 0
        func sweep(_ folder: String, _ abandoned: (String) -> Bool) {
            for name in FileSystem.entryNames(folder) ?? [] where abandoned(name) {
                var st = stat()
                let path = folder + "/" + name
                guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, Double(st.st_mtim.tv_sec) < limit,
                      unlink(path) == 0 else { continue }
                count += 1
                bytes += Int64(st.st_size)
            }
        }
        sweep(directory) { $0.hasPrefix(".tmp-") }
        for folder in FileSystem.entryNames(directory) ?? [] where folder.utf8.count == 2 {
            sweep(directory + "/" + folder) { $0.hasPrefix(".tmp-") }
        }
        sweep(packs.directory) { name in
            name.hasPrefix(".tmp-") || (name.hasSuffix(".pack") && access(packs.path(ofIndex: String(name.dropLast(5))), F_OK) != 0)
        }
        return (count, bytes)
    }

    public static func isBlobID(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }
}

/// What tells whether a file changed: device, inode, size, modification and status-change times. The
/// status-change time moves on every write, chmod or rename, and cannot be set back by `touch`.
public struct FileIdentity: Hashable, Sendable {
    public var device: UInt64
    public var inode: UInt64
    public var size: Int64
    public var modified: Int64
    public var changed: Int64

    public init(_ st: stat) {
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        size = Int64(st.st_size)
        modified = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        changed = Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec)
    }

    public init(device: UInt64, inode: UInt64, size: Int64, modified: Int64, changed: Int64) {
        self.device = device
        self.inode = inode
        self.size = size
        self.modified = modified
        self.changed = changed
    }
}

import Glibc

/// What the last snapshot of a dataset learnt: for each regular file, identified by device, inode, size,
/// modification and status-change times, its sha256 and CRC-32C. A file whose identity is unchanged is not read
/// again. Kept per dataset in `cache/stat/NAME` of the store (a cache: losing it costs only hashing).
///
/// A file changed twice within one tick of the filesystem's clock keeps its times, so an entry is trusted
/// only when the file's times are older than the moment its hashing began by more than `margin` (as git
/// treats "racy" index entries); younger files are hashed again next time.
struct StatCache {
    struct Entry {
        var identity: FileIdentity
        /// Nanoseconds since the epoch when hashing the file began.
        var hashedAt: Int64
        var digest: ContentDigest
    }

    private struct Key: Hashable {
        var device: UInt64
        var inode: UInt64
    }

    private struct SizeAndTime: Hashable {
        var size: Int64
        var modified: Int64
    }

    private static let magic = Array("CMLSTAT2".utf8)
    private static let recordSize = 84
    /// Longer than a tick of any local filesystem's clock (a jiffy, 10 ms at most).
    static let margin: Int64 = 100_000_000

    private var entries: [Key: Entry] = [:]
    /// (size, modification time) of every entry: a file moved or copied elsewhere keeps both, so a miss
    /// that matches one is likely content the store holds.
    private var sizesAndTimes: Set<SizeAndTime> = []

    init() {}

    init(_ list: [Entry]) {
        for entry in list { insert(entry) }
    }

    private mutating func insert(_ entry: Entry) {
        entries[Key(device: entry.identity.device, inode: entry.identity.inode)] = entry
        sizesAndTimes.insert(SizeAndTime(size: entry.identity.size, modified: entry.identity.modified))
    }

    /// The digests of the file with this identity, when known and trustworthy.
    func lookup(_ identity: FileIdentity) -> Entry? {
        guard let entry = entries[Key(device: identity.device, inode: identity.inode)], entry.identity == identity,
              identity.modified < entry.hashedAt - Self.margin, identity.changed < entry.hashedAt - Self.margin else {
            return nil
        }
        return entry
    }

    func likelyStored(_ identity: FileIdentity) -> Bool {
        sizesAndTimes.contains(SizeAndTime(size: identity.size, modified: identity.modified))
    }

    /// The cache at `path`; empty when there is none or it is damaged.
    static func load(_ path: String) -> StatCache {
        guard let bytes = try? FileSystem.readAll(path), bytes.count >= 48, Array(bytes[0..<8]) == magic else { return StatCache() }
        return bytes.withUnsafeBytes { raw in
            let count = Int(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
            let end = 16 + count * recordSize
            guard count >= 0, bytes.count == end + 32 else { return StatCache() }
            var hasher = SHA256Hasher()
            hasher.update(UnsafeRawBufferPointer(rebasing: raw[0..<end]))
            guard BlobDigest(hex: hasher.finalizeHex()) == BlobDigest(bytes: raw.baseAddress! + end) else { return StatCache() }
            var cache = StatCache()
            cache.entries.reserveCapacity(count)
            cache.sizesAndTimes.reserveCapacity(count)
            for index in 0..<count {
                let base = 16 + index * recordSize
                func value(_ at: Int) -> Int64 { Int64(littleEndian: raw.loadUnaligned(fromByteOffset: base + at, as: Int64.self)) }
                cache.insert(Entry(identity: FileIdentity(device: UInt64(bitPattern: value(0)), inode: UInt64(bitPattern: value(8)),
                                                          size: value(16), modified: value(24), changed: value(32)),
                                   hashedAt: value(40),
                                   digest: ContentDigest(sha256: BlobDigest(bytes: raw.baseAddress! + base + 48),
                                                         crc32c: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: base + 80, as: UInt32.self)))))
            }
            return cache
        }
    }

    /// Writes `entries` as the cache at `path` (replacing it whole; a failure leaves the old one).
    static func save(_ entries: [Entry], to path: String) {
        var out = magic
        out.reserveCapacity(16 + entries.count * recordSize + 32)
        func append(_ value: Int64) { withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) } }
        append(Int64(entries.count))
        for entry in entries {
            append(Int64(bitPattern: entry.identity.device))
            append(Int64(bitPattern: entry.identity.inode))
            append(entry.identity.size)
            append(entry.identity.modified)
            append(entry.identity.changed)
            append(entry.hashedAt)
            entry.digest.sha256.append(to: &out)
            withUnsafeBytes(of: entry.digest.crc32c.littleEndian) { out.append(contentsOf: $0) }
        }
        var hasher = SHA256Hasher()
        hasher.update(out)
        BlobDigest(hex: hasher.finalizeHex())!.append(to: &out)
        let temporary = "\(path).tmp-\(getpid())"
        do throws(CMLError) {
            try FileSystem.makeDirectories(FileSystem.directoryName(path))
            unlink(temporary)
            try FileSystem.writeFile(temporary, out)
            guard rename(temporary, path) == 0 else { throw FileSystem.error("cannot write", path) }
        } catch {
            unlink(temporary)
        }
    }
}

import CSupport
import Foundation
import Glibc

/// A sha256 as four big-endian words: compact, hashable, and ordered like its bytes (and its hex form).
public struct BlobDigest: Hashable, Comparable, Sendable {
    var words: (UInt64, UInt64, UInt64, UInt64)

    public init?(hex: String) {
        var text = hex
        guard let digest = text.withUTF8({ BlobDigest(utf8: $0) }) else { return nil }
        self = digest
    }

    /// The digest whose 64 lowercase hex digits `utf8` holds; nil for anything else.
    init?(utf8: UnsafeBufferPointer<UInt8>) {
        guard utf8.count == 64 else { return nil }
        /// The 16 digits from `start`, as one word.
        func word(_ start: Int) -> UInt64? {
            var word: UInt64 = 0
            for digit in utf8[start..<start + 16] {
                switch digit {
                case 0x30...0x39: word = word << 4 | UInt64(digit - 0x30)
                case 0x61...0x66: word = word << 4 | UInt64(digit - 0x61 + 10)
                default: return nil
                }
            }
            return word
        }
        guard let first = word(0), let second = word(16), let third = word(32), let fourth = word(48) else { return nil }
        words = (first, second, third, fourth)
    }

    /// The digest in 32 bytes at `raw`.
    init(bytes raw: UnsafeRawPointer) {
        func word(_ at: Int) -> UInt64 { UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
        words = (word(0), word(8), word(16), word(24))
    }

    func append(to bytes: inout [UInt8]) {
        for word in [words.0, words.1, words.2, words.3] {
            withUnsafeBytes(of: word.bigEndian) { bytes.append(contentsOf: $0) }
        }
    }

    public var hex: String {
        String(unsafeUninitializedCapacity: 64) { out in
            writeHex(to: out.baseAddress!)
            return 64
        }
    }

    /// The 64 lowercase hex digits, written at `out`.
    func writeHex(to out: UnsafeMutablePointer<UInt8>) {
        HexDigits.write(words.0, digits: 16, to: out)
        HexDigits.write(words.1, digits: 16, to: out + 16)
        HexDigits.write(words.2, digits: 16, to: out + 32)
        HexDigits.write(words.3, digits: 16, to: out + 48)
    }

    public static func == (a: BlobDigest, b: BlobDigest) -> Bool { a.words == b.words }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(words.0)
        hasher.combine(words.1)
    }

    public static func < (a: BlobDigest, b: BlobDigest) -> Bool {
        (a.words.0, a.words.1, a.words.2, a.words.3) < (b.words.0, b.words.1, b.words.2, b.words.3)
    }
}

/// The index of one pack (`objects/packs/pack-ID.idx`): which blobs `pack-ID.pack` holds, where. Small
/// blobs go into packs because creating a file per blob costs far more than hashing it: storing 20,000
/// files of 10 KB as files of their own takes 4 to 8 times as long as hashing them.
///
/// Format: `CMLPACK1`, the count (8 bytes little-endian), one record of 48 bytes per blob sorted by
/// digest (digest 32, offset 8 LE, size 8 LE), then the sha256 of all that. An index is written after its
/// pack is on disk and renamed into place last, so a pack without its index is an unfinished one.
struct PackIndex: Sendable {
    static let magic = Array("CMLPACK1".utf8)
    static let recordSize = 48
    static let headerSize = 16

    struct Entry: Sendable {
        var digest: BlobDigest
        var offset: Int64
        var size: Int64
    }

    /// `pack-ID`: the pack is `pack-ID.pack` beside the index.
    let name: String
    private let records: [UInt8]

    var count: Int { records.count / Self.recordSize }

    init(name: String, loading path: String) throws(CMLError) {
        let bytes = try FileSystem.readAll(path)
        guard bytes.count >= Self.headerSize + 32, Array(bytes[0..<8]) == Self.magic else {
            throw CMLError("the pack index \(path) is damaged (bad header)")
        }
        let count = bytes.withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self))) }
        let bodyEnd = Self.headerSize + count * Self.recordSize
        guard count >= 0, bytes.count == bodyEnd + 32,
              SHA256Hasher.hex(Array(bytes[0..<bodyEnd])) == Self.hexOf(bytes[bodyEnd...]) else {
            throw CMLError("the pack index \(path) is damaged (its checksum does not match)")
        }
        self.name = name
        records = Array(bytes[Self.headerSize..<bodyEnd])
    }

    private static func hexOf(_ bytes: ArraySlice<UInt8>) -> String {
        Array(bytes).withUnsafeBytes { BlobDigest(bytes: $0.baseAddress!).hex }
    }

    /// The index file's bytes for `entries` (sorted here).
    static func encode(_ entries: [Entry]) -> [UInt8] {
        var out = magic
        withUnsafeBytes(of: UInt64(entries.count).littleEndian) { out.append(contentsOf: $0) }
        out.reserveCapacity(headerSize + entries.count * recordSize + 32)
        for entry in entries.sorted(by: { $0.digest < $1.digest }) {
            entry.digest.append(to: &out)
            withUnsafeBytes(of: UInt64(entry.offset).littleEndian) { out.append(contentsOf: $0) }
            withUnsafeBytes(of: UInt64(entry.size).littleEndian) { out.append(contentsOf: $0) }
        }
        var hasher = SHA256Hasher()
        hasher.update(out)
        let digest = BlobDigest(hex: hasher.finalizeHex())!
        digest.append(to: &out)
        return out
    }

    func entry(at index: Int) -> Entry {
        records.withUnsafeBytes { raw in
            let base = index * Self.recordSize
            return Entry(digest: BlobDigest(bytes: raw.baseAddress! + base),
                         offset: Int64(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: base + 32, as: UInt64.self))),
                         size: Int64(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: base + 40, as: UInt64.self))))
        }
    }

    func find(_ digest: BlobDigest) -> Entry? {
        var low = 0
        var high = count
        while low < high {
            let middle = (low + high) / 2
            let candidate = entry(at: middle)
            if candidate.digest == digest { return candidate }
            if candidate.digest < digest { low = middle + 1 } else { high = middle }
        }
        return nil
    }

    var entries: [Entry] { (0..<count).map(entry(at:)) }
}

/// The packs of a blob store, their indexes loaded on first use and reloaded when a blob is not found
/// (another process may have added a pack since). Shared by every copy of a `BlobDirectory`.
final class PackSet: @unchecked Sendable {
    let directory: String
    private let lock = NSLock()
    private var indexes: [String: PackIndex] = [:]
    /// `indexes` by name, kept for lookups (one per blob of a snapshot).
    private var ordered: [PackIndex] = []
    private var loaded = false

    init(directory: String) {
        self.directory = directory
    }

    func path(ofPack name: String) -> String { "\(directory)/\(name).pack" }
    func path(ofIndex name: String) -> String { "\(directory)/\(name).idx" }

    /// Reads the indexes that appeared since the last look and forgets those that went away.
    func refresh() throws(CMLError) {
        var names: Set<String> = []
        if let handle = opendir(directory) {
            while let entry = readdir(handle) {
                let name = FileSystem.entryName(entry)
                if name.hasPrefix("pack-"), name.hasSuffix(".idx") { names.insert(String(name.dropLast(4))) }
            }
            closedir(handle)
        }
        lock.lock()
        let known = Set(indexes.keys)
        lock.unlock()
        var added: [String: PackIndex] = [:]
        for name in names.subtracting(known) {
            do throws(CMLError) { added[name] = try PackIndex(name: name, loading: path(ofIndex: name)) } catch {
                // Removed by a concurrent repack between the listing and the read: it is simply gone.
                if access(path(ofIndex: name), F_OK) == 0 { throw error }
            }
        }
        lock.lock()
        for name in known.subtracting(names) { indexes.removeValue(forKey: name) }
        indexes.merge(added) { old, _ in old }
        ordered = indexes.values.sorted { $0.name < $1.name }
        loaded = true
        lock.unlock()
    }

    /// The packs as last loaded (loading them the first time).
    func current() throws(CMLError) -> [PackIndex] {
        lock.lock()
        let ready = loaded
        lock.unlock()
        if !ready { try refresh() }
        lock.lock()
        defer { lock.unlock() }
        return ordered
    }

    func find(_ digest: BlobDigest) throws(CMLError) -> (pack: String, entry: PackIndex.Entry)? {
        for index in try current() {
            if let entry = index.find(digest) { return (index.name, entry) }
        }
        return nil
    }
}

/// Writes one pack: blobs appended through a `DirectFileWriter` (past the page cache, in the background),
/// the index kept in memory until `finish`.
final class PackWriter {
    /// A pack is closed once it holds this much, so that rewriting one to drop a deleted blob stays cheap.
    static let maximumSize: Int64 = 64 << 20
    private static let bufferSize = 4 << 20

    private let file: DirectFileWriter
    private(set) var entries: [PackIndex.Entry] = []

    var temporaryPath: String { file.path }

    init(directory: String) throws(CMLError) {
        try FileSystem.makeDirectories(directory)
        file = try DirectFileWriter(creating: "\(directory)/.tmp-\(getpid())-\(RunID.make()).pack", mode: 0o444,
                                    capacity: Self.bufferSize)
    }

    var size: Int64 { file.size }

    var isFull: Bool { size >= Self.maximumSize }

    func append(_ digest: BlobDigest, _ bytes: UnsafeRawBufferPointer) throws(CMLError) {
        entries.append(PackIndex.Entry(digest: digest, offset: size, size: Int64(bytes.count)))
        try file.append(bytes)
    }

    /// Where `finish` writes the index.
    var indexPath: String { String(temporaryPath.dropLast(5)) + ".idx" }

    /// Writes the rest of the pack and fsyncs it, and writes its index (fsynced) beside it; returns the
    /// index's path.
    func finish() throws(CMLError) -> String {
        try file.finish()
        try FileSystem.writeFile(indexPath, PackIndex.encode(entries), mode: 0o444, sync: true)
        return indexPath
    }
}

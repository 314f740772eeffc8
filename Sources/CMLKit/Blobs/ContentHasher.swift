/// What a file's content is known by: its sha256 names it in the store; its CRC-32C, computed in the same
/// pass for a tenth of the cost, lets checkout verify what it writes as fast as a copy (see Materializer).
public struct ContentDigest: Hashable, Sendable {
    public var sha256: BlobDigest
    public var crc32c: UInt32

    public init(sha256: BlobDigest, crc32c: UInt32) {
        self.sha256 = sha256
        self.crc32c = crc32c
    }
}

/// sha256 and CRC-32C over the same bytes, each chunk read once.
public struct ContentHasher: ~Copyable {
    private var sha256 = SHA256Hasher()
    private var crc32c: UInt32 = 0

    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        sha256.update(bytes)
        crc32c = CRC32C.update(crc32c, bytes)
    }

    public consuming func finalize() -> ContentDigest {
        ContentDigest(sha256: sha256.finalize(), crc32c: crc32c)
    }
}

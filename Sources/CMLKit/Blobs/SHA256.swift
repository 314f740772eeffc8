import CLibCrypto
import Glibc

/// SHA-256 through OpenSSL's libcrypto, which uses the CPU's SHA instructions (the `openssl dgst` floor).
/// Through its `SHA256_*` functions rather than EVP: the first EVP digest of a process reads OpenSSL's
/// configuration and activates its default provider, about 1 ms that every command hashing anything
/// paid (`cml-run --store URL` names its spool by a hash of the URL before the run starts); these run
/// the same code, as fast, without that.
public struct SHA256Hasher: ~Copyable {
    private let context: UnsafeMutablePointer<SHA256_CTX>

    public init() {
        context = .allocate(capacity: 1)
        SHA256_Init(context)
    }

    deinit { context.deallocate() }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        SHA256_Update(context, base, bytes.count)
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    public consuming func finalize() -> BlobDigest {
        var digest = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        return withUnsafeMutableBytes(of: &digest) { raw in
            SHA256_Final(raw.baseAddress!.assumingMemoryBound(to: UInt8.self), context)
            return BlobDigest(bytes: raw.baseAddress!)
        }
    }

    /// The digest as 64 lowercase hex digits.
    public consuming func finalizeHex() -> String {
        finalize().hex
    }

    public static func hex(_ bytes: [UInt8]) -> String {
        var hasher = SHA256Hasher()
        hasher.update(bytes)
        return hasher.finalizeHex()
    }
}

extension SHA256Hasher {
    /// The sha256 (hex) and size of a regular file's content, read in chunks.
    public static func hashFile(_ path: String) throws(CMLError) -> (id: String, size: Int64) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystem.error("cannot read", path) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileSystem.error("cannot read", path) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw CMLError("\(path) is not a regular file") }
        var hasher = SHA256Hasher()
        var size: Int64 = 0
        try FileSystem.copyChunks(from: fd, path: path) { chunk throws(CMLError) in
            hasher.update(chunk)
            size += Int64(chunk.count)
        }
        return (hasher.finalizeHex(), size)
    }
}

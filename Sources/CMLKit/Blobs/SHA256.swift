import CLibCrypto
import Glibc

/// SHA-256 through OpenSSL's libcrypto, which uses the CPU's SHA instructions (the `openssl dgst` floor).
public struct SHA256Hasher: ~Copyable {
    private let context: OpaquePointer

    public init() {
        context = EVP_MD_CTX_new()
        EVP_DigestInit_ex(context, EVP_sha256(), nil)
    }

    deinit { EVP_MD_CTX_free(context) }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        EVP_DigestUpdate(context, base, bytes.count)
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    public consuming func finalize() -> BlobDigest {
        var digest = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        var length: UInt32 = 0
        return withUnsafeMutableBytes(of: &digest) { raw in
            EVP_DigestFinal_ex(context, raw.baseAddress!.assumingMemoryBound(to: UInt8.self), &length)
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

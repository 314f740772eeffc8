import CMLKit
import Glibc
import Hummingbird

/// A request's body written to a new temporary file as it arrives, so that an upload of many GB never
/// sits in memory; the route then moves it on (into the blob store) from there.
enum UploadFile {
    /// Writes `body` to a new file named for `purpose`, handing each piece to `observe` on the way (a
    /// hash), and returns its path: the caller removes it. A body that fails on the way leaves no file.
    static func receive(_ body: RequestBody, purpose: String, observe: (UnsafeRawBufferPointer) -> Void = { _ in }) async throws -> String {
        let temporary = FileSystem.temporaryDirectory + "/cml-serve-\(purpose)-" + RunID.make()
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileSystem.error("cannot store an upload in", temporary) }
        defer { close(fd) }
        do {
            for try await buffer in body {
                try buffer.withUnsafeReadableBytes { bytes throws(CMLError) in
                    observe(bytes)
                    try FileSystem.writeAll(fd, bytes, path: temporary)
                }
            }
        } catch {
            unlink(temporary)
            throw error
        }
        return temporary
    }
}

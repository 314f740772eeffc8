import CMLKit
import Dispatch
import Foundation
import Hummingbird

/// The store is synchronous (SQLite, files): its calls run on Dispatch's threads, never on the threads
/// that serve connections, so a slow query or a locked database delays only its own request.
enum StoreCalls {
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws(CMLError) -> T) async throws(CMLError) -> T {
        let result: Result<T, CMLError> = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                do throws(CMLError) { continuation.resume(returning: .success(try body())) } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    /// A response body fed by a synchronous reader (a blob, a metric series, a console log) on a thread
    /// of its own, at most `ahead` chunks ahead of the client: a slow client slows the reader instead of
    /// filling memory, and one that goes away stops it at its next chunk. An error the reader throws
    /// after the first byte closes the connection (see `JSONErrorMiddleware`).
    static func stream(contentLength: Int? = nil, ahead: Int = 4,
                       _ read: @escaping @Sendable (_ send: (ByteBuffer) throws(CMLError) -> Void) throws(CMLError) -> Void) -> ResponseBody {
        ResponseBody(contentLength: contentLength) { writer in
            let room = DispatchSemaphore(value: ahead)
            let stopped = StopFlag()
            let (chunks, continuation) = AsyncThrowingStream.makeStream(of: ByteBuffer.self)
            continuation.onTermination = { _ in
                stopped.set()
                room.signal()  // a reader waiting for room wakes up and sees the stop
            }
            Thread.detachNewThread {
                do throws(CMLError) {
                    try read { chunk throws(CMLError) in
                        room.wait()
                        if stopped.isSet { throw CMLError("the client went away") }
                        continuation.yield(chunk)
                    }
                    continuation.finish()
                } catch {
                    // The client has the status and part of the body already: only the log can say why
                    // its connection closed early.
                    if !stopped.isSet { Console.error("cml-serve: error: \(error)\n") }
                    continuation.finish(throwing: error)
                }
            }
            for try await chunk in chunks {
                try await writer.write(chunk)
                room.signal()
            }
            try await writer.finish(nil)
        }
    }
}

/// Set once, read from any thread.
final class StopFlag: @unchecked Sendable {  // every access holds the lock
    private let lock = NSLock()
    private var value = false

    var isSet: Bool { lock.withLock { value } }

    func set() { lock.withLock { value = true } }
}

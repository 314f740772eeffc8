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
            let room = Room(ahead)
            let (chunks, continuation) = AsyncThrowingStream.makeStream(of: ByteBuffer.self)
            // The response ended, whole or not (the client went away): the reader stops at its next chunk.
            continuation.onTermination = { _ in room.close() }
            Thread.detachNewThread {
                do throws(CMLError) {
                    try read { chunk throws(CMLError) in
                        guard room.take() else { throw CMLError("the client went away") }
                        continuation.yield(chunk)
                    }
                    continuation.finish()
                } catch {
                    // The client has the status and part of the body already: only the log can say why
                    // its connection closed early.
                    if !room.isClosed { Console.error("cml-serve: error: \(error)\n") }
                    continuation.finish(throwing: error)
                }
            }
            for try await chunk in chunks {
                try await writer.write(chunk)
                room.give()
            }
            try await writer.finish(nil)
        }
    }
}

/// How many more chunks a stream's reader may hand over before the client has taken some. (Not a
/// DispatchSemaphore: libdispatch traps when one is freed below its initial count, as it is when a
/// client goes away mid-stream.)
final class Room: @unchecked Sendable {  // every access holds the condition's lock
    private let condition = NSCondition()
    private var free: Int
    private var closed = false

    init(_ free: Int) { self.free = free }

    /// Waits for room for one chunk; false once the stream is closed.
    func take() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while free == 0 && !closed { condition.wait() }
        if closed { return false }
        free -= 1
        return true
    }

    func give() {
        condition.lock()
        free += 1
        condition.signal()
        condition.unlock()
    }

    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    var isClosed: Bool {
        condition.lock()
        defer { condition.unlock() }
        return closed
    }
}

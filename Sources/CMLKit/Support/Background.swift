import Foundation

/// Computes a value on its own thread while the caller goes on; `value` waits for it.
final class Background<Value: Sendable>: @unchecked Sendable {
    private let done = NSCondition()
    private var result: Value?

    init(_ work: @escaping @Sendable () -> Value) {
        Thread.detachNewThread { [self] in
            let value = work()
            done.lock()
            result = value
            done.broadcast()
            done.unlock()
        }
    }

    var value: Value {
        done.lock()
        defer { done.unlock() }
        while result == nil { done.wait() }
        return result!
    }
}

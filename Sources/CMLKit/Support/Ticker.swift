import Foundation

/// A thread that calls `body` every `interval` seconds until `stop()`, the first time one interval after
/// it starts (so whatever starts it never waits). With `finalTick`, `stop()` has it call `body` once more
/// at once, with `final` set; `stop()` returns when the thread is done.
final class Ticker: @unchecked Sendable {
    private let interval: Double
    private let finalTick: Bool
    private let body: (_ final: Bool) -> Void
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var stopping = false
    private var finished = false

    init(interval: Double, finalTick: Bool, _ body: @escaping (_ final: Bool) -> Void) {
        self.interval = interval
        self.finalTick = finalTick
        self.body = body
        Thread.detachNewThread { [self] in self.loop() }
    }

    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while !finished { condition.wait() }
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            if !stopping { _ = condition.wait(until: Date(timeIntervalSinceNow: interval)) }
            let last = stopping
            condition.unlock()
            if last && !finalTick { break }
            body(last)
            if last { break }
        }
        condition.lock()
        finished = true
        condition.broadcast()
        condition.unlock()
    }
}

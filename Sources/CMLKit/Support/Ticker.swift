import Foundation

/// A thread that calls `body` every `interval` seconds until `stop()`, the first time one interval after
/// it starts (so whatever starts it never waits), or at once with `atOnce`. With `finalTick`, `stop()`
/// has it call `body` once more at once, with `final` set; `stop()` returns when the thread is done, so
/// a call under way when it is asked to stop is never cut short nor followed by another.
final class Ticker: @unchecked Sendable {
    private let interval: Double
    private let finalTick: Bool
    private let body: (_ final: Bool) -> Void
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var stopping = false
    private var finished = false

    init(interval: Double, finalTick: Bool, atOnce: Bool = false, name: String? = nil, _ body: @escaping (_ final: Bool) -> Void) {
        self.interval = interval
        self.finalTick = finalTick
        self.body = body
        let thread = Thread { [self] in self.loop(waitFirst: !atOnce) }
        if let name { thread.name = name }
        thread.start()
    }

    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while !finished { condition.wait() }
        condition.unlock()
    }

    private func loop(waitFirst: Bool) {
        var wait = waitFirst
        while true {
            condition.lock()
            if !stopping && wait { _ = condition.wait(until: Date(timeIntervalSinceNow: interval)) }
            wait = true
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

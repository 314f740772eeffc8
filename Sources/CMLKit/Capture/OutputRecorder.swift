import Foundation
import Glibc

/// Takes a run's console output from the reader threads and, on its own thread, stores it: every
/// `interval` the output is collapsed (progress redraws dropped) and appended to the run's log, and the
/// metric points parsed from it are written in one transaction. A `kill -9` therefore loses at most
/// about `interval` + the collapser's hold time of output. Readers are only slowed down (never dropped)
/// when more than `maxPending` bytes wait to be stored.
public final class OutputRecorder: @unchecked Sendable {
    private let condition = NSCondition()
    private var pending: [(OutputStream, Double, [UInt8])] = []
    private var pendingBytes = 0
    private var finishing = false
    private var done = false

    private let log: RunLogWriter
    private let metrics: (any MetricWriter)?
    private let interval: Double
    private let maxPending: Int
    private var collapser = OutputCollapser()
    private var splitters = [LineSplitter(), LineSplitter()]
    private var extractor = MetricExtractor()
    private var unsavedPoints: [MetricPoint] = []
    private var warned: Set<String> = []
    private let warn: @Sendable (String) -> Void

    /// `metrics` nil means metric parsing is off.
    public init(log: RunLogWriter, metrics: (any MetricWriter)?, interval: Double = 0.25, maxPending: Int = 64 << 20,
                warn: @escaping @Sendable (String) -> Void) {
        self.log = log
        self.metrics = metrics
        self.interval = interval
        self.maxPending = maxPending
        self.warn = warn
        Thread.detachNewThread { [self] in self.loop() }
    }

    /// Called by reader threads with each chunk as it arrives.
    public func receive(_ stream: OutputStream, _ bytes: [UInt8]) {
        let now = Clock.now()
        condition.lock()
        while pendingBytes > maxPending && !done { condition.wait() }
        pending.append((stream, now, bytes))
        pendingBytes += bytes.count
        condition.unlock()
    }

    /// Stores everything still held and stops the recorder thread; returns the log's size in bytes.
    public func finish() -> Int64 {
        condition.lock()
        finishing = true
        condition.broadcast()
        while !done { condition.wait() }
        condition.unlock()
        return log.bytesWritten
    }

    private func loop() {
        while true {
            condition.lock()
            if !finishing { _ = condition.wait(until: Date(timeIntervalSinceNow: interval)) }
            let batch = pending
            let final = finishing
            pending.removeAll(keepingCapacity: true)
            pendingBytes = 0
            condition.broadcast()
            condition.unlock()

            store(batch, final: final)
            if final {
                condition.lock()
                done = true
                condition.broadcast()
                condition.unlock()
                return
            }
        }
    }

    private func store(_ batch: [(OutputStream, Double, [UInt8])], final: Bool) {
        for (stream, time, bytes) in batch {
            collapser.feed(stream, time: time, bytes)
            if metrics != nil {
                let slot = Int(stream.rawValue) - 1
                bytes.withUnsafeBufferPointer { chunk in
                    splitters[slot].feed(chunk) { line in
                        unsavedPoints.append(contentsOf: extractor.points(in: line, time: time))
                    }
                }
            }
        }
        if final, metrics != nil {
            let now = Clock.now()
            for slot in 0..<2 {
                splitters[slot].finish { line in unsavedPoints.append(contentsOf: extractor.points(in: line, time: now)) }
            }
        }
        for segment in collapser.flush(now: Clock.now(), final: final) {
            do { try log.append(segment.stream, time: segment.time, segment.bytes) } catch {
                warnOnce("output is not being stored: \(error.message)")
            }
        }
        guard let metrics, !unsavedPoints.isEmpty else { return }
        do {
            try metrics.append(unsavedPoints)
            unsavedPoints.removeAll(keepingCapacity: true)
        } catch {
            // Kept for the next flush (the store may be locked for a while); bounded so memory stays bounded.
            warnOnce("metrics are waiting to be stored: \(error.message)")
            if unsavedPoints.count > 5_000_000 { unsavedPoints.removeFirst(unsavedPoints.count - 5_000_000) }
        }
    }

    private func warnOnce(_ message: String) {
        if warned.insert(message).inserted { warn(message) }
    }
}

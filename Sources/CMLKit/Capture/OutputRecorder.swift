import Foundation
import Glibc

/// Stores a run's console output as it arrives. Each chunk is collapsed (progress redraws dropped) and
/// appended to the run's log right away, on the reader's thread while the bytes are still in cache; a
/// line's unfinished tail is held at most the collapser's hold time, and a timer thread writes it out
/// when nothing else does, so a `kill -9` loses at most about half a second of output. Metric parsing,
/// the slow part, runs on the timer thread, whose points are written in one transaction per tick.
/// Readers are only slowed down (never dropped) when more than `maxPending` bytes wait to be parsed.
public final class OutputRecorder: @unchecked Sendable {
    private let condition = NSCondition()
    /// Guarded by `condition`: the collapser and the log (readers of both streams write through them).
    private var collapser = OutputCollapser()
    private let log: RunLogWriter
    /// Guarded by `condition`: chunks waiting to be parsed for metrics.
    private var unparsed: [(OutputStream, Double, [UInt8])] = []
    private var unparsedBytes = 0
    private var finishing = false
    private var done = false
    private var warned: Set<String> = []

    private let metrics: (any MetricWriter)?
    private let interval: Double
    private let maxPending: Int
    /// Enough waiting output to parse it now rather than at the next tick.
    private let wakeAt = 4 << 20
    // Used by the timer thread only.
    private var splitters = [MetricLineSplitter(), MetricLineSplitter()]
    private var extractor = MetricExtractor()
    private var unsavedPoints: [MetricPoint] = []
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
        defer { condition.unlock() }
        collapser.feed(stream, time: now, bytes)
        writeLog(collapser.flush(now: now, final: false))
        guard metrics != nil else { return }
        while unparsedBytes > maxPending && !done { condition.wait() }
        unparsed.append((stream, now, bytes))
        unparsedBytes += bytes.count
        if unparsedBytes >= wakeAt { condition.broadcast() }
    }

    /// Stores everything still held and stops the timer thread; returns the log's size in bytes.
    public func finish() -> Int64 {
        condition.lock()
        finishing = true
        condition.broadcast()
        while !done { condition.wait() }
        condition.unlock()
        return log.bytesWritten
    }

    /// Call with `condition` held.
    private func writeLog(_ segments: [OutputCollapser.Segment]) {
        for segment in segments {
            do { try log.append(segment.stream, time: segment.time, segment.bytes) } catch {
                warnOnce("output is not being stored: \(error.message)")
            }
        }
    }

    private func loop() {
        while true {
            condition.lock()
            if !finishing && unparsedBytes < wakeAt { _ = condition.wait(until: Date(timeIntervalSinceNow: interval)) }
            let final = finishing
            writeLog(collapser.flush(now: Clock.now(), final: final))
            let batch = unparsed
            unparsed.removeAll(keepingCapacity: true)
            unparsedBytes = 0
            condition.broadcast()
            condition.unlock()

            parseAndStore(batch, final: final)
            if final {
                condition.lock()
                done = true
                condition.broadcast()
                condition.unlock()
                return
            }
        }
    }

    private func parseAndStore(_ batch: [(OutputStream, Double, [UInt8])], final: Bool) {
        guard let metrics else { return }
        for (stream, time, bytes) in batch {
            let slot = Int(stream.rawValue) - 1
            bytes.withUnsafeBufferPointer { chunk in
                splitters[slot].feed(chunk) { line in
                    unsavedPoints.append(contentsOf: extractor.points(in: line, time: time))
                }
            }
        }
        if final {
            let now = Clock.now()
            for slot in 0..<2 {
                splitters[slot].finish { line in unsavedPoints.append(contentsOf: extractor.points(in: line, time: now)) }
            }
        }
        guard !unsavedPoints.isEmpty else { return }
        do {
            try metrics.append(unsavedPoints)
            unsavedPoints.removeAll(keepingCapacity: true)
        } catch {
            // Kept for the next tick: the store may be locked for a while.
            warnOnce("metrics are waiting to be stored: \(error.message)")
        }
    }

    private func warnOnce(_ message: String) {
        if warned.insert(message).inserted { warn(message) }
    }
}

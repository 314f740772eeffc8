import Foundation
import Glibc

/// Stores a run's console output as it arrives. Reader threads collapse each chunk (progress redraws
/// dropped) and queue it; the recorder's own thread appends the queue to the run's log at least every
/// `interval`, and sooner when `wakeAt` bytes wait, so a `kill -9` loses at most about half a second of
/// output. It compresses what it writes while it keeps up (its tick comes before `wakeAt` bytes do); when
/// output floods in, `CompressionPolicy` picks the faster way to store it.
/// Metric points are parsed from the same chunks on that thread and written in one
/// transaction per batch. Readers are only slowed down (never dropped) when more than `maxPending` bytes
/// wait.
public final class OutputRecorder: @unchecked Sendable {
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var collapser = OutputCollapser()
    private var unwritten: [OutputCollapser.Segment] = []
    private var unparsed: [(OutputStream, Double, [UInt8])] = []
    private var waitingBytes = 0
    private var finishing = false
    private var done = false

    private let log: RunLogWriter
    private let metrics: any MetricWriter
    private let parseOutput: Bool
    /// Guarded by `condition`: points from elsewhere (the log channel, event files…) waiting to be
    /// stored, by source, and how many in all.
    private var addedPoints: [MetricSource: [MetricPoint]] = [:]
    private var addedCount = 0
    private let interval: Double
    private let maxPending: Int
    private let wakeAt = 4 << 20
    // Used by the recorder thread only.
    private var console: ConsoleMetrics
    private var compression = CompressionPolicy()
    /// Parsed from the console, and from elsewhere by source, not yet stored.
    private var unsavedPoints: [MetricPoint] = []
    private var unsavedAdded: [MetricSource: [MetricPoint]] = [:]
    private var warned: Set<String> = []
    private let warn: @Sendable (String) -> Void

    /// `parseOutput` false stores the output without parsing metrics from it.
    /// `streams`: 1 when stdout and stderr are one terminal, 2 when they are pipes.
    public init(log: RunLogWriter, metrics: any MetricWriter, parseOutput: Bool, patterns: [MetricPattern] = [], streams: Int = 2,
                interval: Double = 0.25, maxPending: Int = 64 << 20, warn: @escaping @Sendable (String) -> Void) {
        console = ConsoleMetrics(patterns: patterns, streams: streams)
        self.log = log
        self.metrics = metrics
        self.parseOutput = parseOutput
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
        while waitingBytes > maxPending && !done { condition.wait() }
        collapser.feed(stream, time: now, bytes)
        for segment in collapser.flush(now: now, final: false) {
            waitingBytes += segment.bytes.count
            unwritten.append(segment)
        }
        if parseOutput {
            unparsed.append((stream, now, bytes))
            waitingBytes += bytes.count
        }
        if waitingBytes >= wakeAt { condition.broadcast() }
    }

    /// Points from elsewhere (the log channel, the resource sampler), stored with the next batch. The
    /// caller waits while 200,000 points are already waiting, so memory stays bounded.
    public func add(_ points: [MetricPoint], source: MetricSource) {
        condition.lock()
        while addedCount > Self.maxWaitingPoints && !done { condition.wait() }
        addedPoints[source, default: []] += points
        addedCount += points.count
        if addedCount >= Self.wakeAtPoints { condition.broadcast() }
        condition.unlock()
    }

    static let maxWaitingPoints = 200_000
    static let wakeAtPoints = 50_000

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
            if !finishing && waitingBytes < wakeAt && addedCount < Self.wakeAtPoints {
                _ = condition.wait(until: Date(timeIntervalSinceNow: interval))
            }
            let final = finishing
            // Held line tails whose time is up (or all of them at the end).
            unwritten += collapser.flush(now: Clock.now(), final: final)
            let segments = unwritten
            let chunks = unparsed
            unsavedAdded.merge(addedPoints) { $0 + $1 }
            addedPoints.removeAll(keepingCapacity: true)
            addedCount = 0
            unwritten.removeAll(keepingCapacity: true)
            unparsed.removeAll(keepingCapacity: true)
            waitingBytes = 0
            condition.broadcast()
            condition.unlock()

            let batchBytes = segments.reduce(0) { $0 + $1.bytes.count }
            let compress = compression.shouldCompress(keepingUp: batchBytes < wakeAt)
            let started = Clock.now()
            for segment in Self.gathered(segments) {
                do { try log.append(segment.stream, time: segment.time, segment.bytes, compress: compress) } catch {
                    warnOnce("output is not being stored: \(error.message)")
                }
            }
            compression.record(compressed: compress, bytes: batchBytes, seconds: Clock.now() - started)
            parseAndStore(chunks, final: final)
            if final {
                condition.lock()
                done = true
                condition.broadcast()
                condition.unlock()
                return
            }
        }
    }

    /// Consecutive small pieces of one stream become one record: fewer headers, and big enough to compress.
    static func gathered(_ segments: [OutputCollapser.Segment]) -> [OutputCollapser.Segment] {
        var records: [OutputCollapser.Segment] = []
        for segment in segments where !segment.bytes.isEmpty {
            if let last = records.last, last.stream == segment.stream, segment.bytes.count < 1 << 16,
               last.bytes.count + segment.bytes.count <= 1 << 20 {
                records[records.count - 1].bytes.append(contentsOf: segment.bytes)
            } else {
                records.append(segment)
            }
        }
        return records
    }

    private func parseAndStore(_ batch: [(OutputStream, Double, [UInt8])], final: Bool) {
        for (stream, time, bytes) in batch {
            bytes.withUnsafeBufferPointer { console.feed(Int(stream.rawValue) - 1, $0, time: time, into: &unsavedPoints) }
        }
        // Points held for redraws wait until their step is over or the output ends, not for a batch to
        // end: what is recorded must not depend on when bytes arrive.
        if final && parseOutput { console.finish(time: Clock.now(), into: &unsavedPoints) }
        do {
            // Each source is stored apart; which is stored first does not change what a series keeps.
            if !unsavedPoints.isEmpty {
                try metrics.append(unsavedPoints, source: .console)
                unsavedPoints.removeAll(keepingCapacity: true)
            }
            for source in MetricSource.allCases {
                guard let points = unsavedAdded[source], !points.isEmpty else { continue }
                try metrics.append(points, source: source)
                unsavedAdded[source] = nil
            }
        } catch {
            if final {
                let lost = unsavedPoints.count + unsavedAdded.values.reduce(0) { $0 + $1.count }
                warn("\(lost) metric point\(lost == 1 ? " was" : "s were") not stored: \(error.message)")
            } else {
                // Kept for the next batch: the store may be locked for a while.
                warnOnce("metrics are waiting to be stored: \(error.message)")
            }
        }
    }

    private func warnOnce(_ message: String) {
        if warned.insert(message).inserted { warn(message) }
    }
}

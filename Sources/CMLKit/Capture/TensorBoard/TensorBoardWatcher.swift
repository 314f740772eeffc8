import Foundation

/// Imports a run's TensorBoard scalars while it lives: every `interval` seconds on its own thread (the
/// first search only then, so a run's start never waits for it), and once more when stopped, so that
/// points written at the very end are not lost.
final class TensorBoardWatcher: @unchecked Sendable {
    private let interval: Double
    private let deliver: @Sendable ([MetricPoint]) -> Void
    private let warn: @Sendable (String) -> Void
    private let stopped = NSCondition()
    // Guarded by `stopped`.
    private var stopping = false
    private var finished = false
    /// Used by the watcher thread only.
    private var importer: TensorBoardImporter

    init(importer: TensorBoardImporter, interval: Double, deliver: @escaping @Sendable ([MetricPoint]) -> Void,
         warn: @escaping @Sendable (String) -> Void) {
        self.importer = importer
        self.interval = interval
        self.deliver = deliver
        self.warn = warn
        Thread.detachNewThread { [self] in self.loop() }
    }

    /// Makes the final pass and waits for it.
    func stop() {
        stopped.lock()
        stopping = true
        stopped.broadcast()
        while !finished { stopped.wait() }
        stopped.unlock()
    }

    private func loop() {
        var last = false
        while !last {
            stopped.lock()
            if !stopping { _ = stopped.wait(until: Date(timeIntervalSinceNow: interval)) }
            last = stopping
            stopped.unlock()
            let points = importer.importNew(warn: warn)
            if !points.isEmpty { deliver(points) }
        }
        for directory in importer.missingDirectories() {
            warn("no TensorBoard event files were imported from \(directory): it does not exist")
        }
        stopped.lock()
        finished = true
        stopped.broadcast()
        stopped.unlock()
    }
}

/// Log files a framework writes beside the run (TensorBoard event files, CSV logs), read as they grow.
protocol MetricLogImporter {
    /// What the files are called in a warning.
    static var kind: String { get }
    /// The points written since the last call.
    mutating func importNew(warn: (String) -> Void) -> [MetricPoint]
    /// The directories searched that do not exist (a mistyped `--tb-dir`).
    func missingDirectories() -> [String]
}

extension TensorBoardImporter: MetricLogImporter {
    static var kind: String { "TensorBoard event files" }
}

extension CSVLogImporter: MetricLogImporter {
    static var kind: String { "CSV logs" }
}

/// Imports a run's log files while it lives: every `interval` seconds on its own thread (the first search
/// only then, so a run's start never waits for it), and once more when stopped, so that points written at
/// the very end are not lost.
final class MetricLogWatcher<Importer: MetricLogImporter>: @unchecked Sendable {
    private var ticker: Ticker?
    /// Used by the ticker's thread only.
    private var importer: Importer

    init(importer: Importer, interval: Double, deliver: @escaping @Sendable ([MetricPoint]) -> Void,
         warn: @escaping @Sendable (String) -> Void) {
        self.importer = importer
        ticker = Ticker(interval: interval, finalTick: true) { [self] final in
            let points = self.importer.importNew(warn: warn)
            if !points.isEmpty { deliver(points) }
            if final {
                for directory in self.importer.missingDirectories() {
                    warn("no \(Importer.kind) were imported from \(directory): it does not exist")
                }
            }
        }
    }

    /// Makes the final pass and waits for it.
    func stop() {
        ticker?.stop()
    }
}

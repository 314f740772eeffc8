/// Imports a run's TensorBoard scalars while it lives: every `interval` seconds on its own thread (the
/// first search only then, so a run's start never waits for it), and once more when stopped, so that
/// points written at the very end are not lost.
final class TensorBoardWatcher: @unchecked Sendable {
    private var ticker: Ticker?
    /// Used by the ticker's thread only.
    private var importer: TensorBoardImporter

    init(importer: TensorBoardImporter, interval: Double, deliver: @escaping @Sendable ([MetricPoint]) -> Void,
         warn: @escaping @Sendable (String) -> Void) {
        self.importer = importer
        ticker = Ticker(interval: interval, finalTick: true) { [self] final in
            let points = self.importer.importNew(warn: warn)
            if !points.isEmpty { deliver(points) }
            if final {
                for directory in self.importer.missingDirectories() {
                    warn("no TensorBoard event files were imported from \(directory): it does not exist")
                }
            }
        }
    }

    /// Makes the final pass and waits for it.
    func stop() {
        ticker?.stop()
    }
}

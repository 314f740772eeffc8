import Glibc

/// Imports the log files a run's frameworks write beside it (TensorBoard event files, CSV logs) while it
/// lives: every `interval` seconds on its own thread (the first search only then, so a run's start never
/// waits for it), and once more when stopped, so that points written at the very end are not lost. One
/// bounded search serves both kinds: every run makes one at its end, on the path of cml-run's overhead.
final class MetricLogWatcher: @unchecked Sendable {
    private var ticker: Ticker?
    // Used by the ticker's thread only.
    private var finder: MetricLogFinder
    private var tensorBoard: TensorBoardImporter?
    private var csv: CSVLogImporter?

    static let maxEntries = 50_000

    /// `existing`: files to leave alone while they stay as they were (`existingFiles`).
    init(directories: [String], modifiedSince: Double, existing: [MetricLogFinder.FileKey: MetricLogFinder.Stamp],
         tensorBoard: Bool, csv: Bool, interval: Double,
         deliver: @escaping @Sendable ([MetricPoint], MetricSource) -> Void, warn: @escaping @Sendable (String) -> Void) {
        finder = MetricLogFinder(directories: directories, modifiedSince: modifiedSince, existing: existing, maxEntries: Self.maxEntries)
        self.tensorBoard = tensorBoard ? TensorBoardImporter(directories: directories) : nil
        self.csv = csv ? CSVLogImporter(directories: directories) : nil
        ticker = Ticker(interval: interval, finalTick: true) { [self] final in
            self.pass(deliver: deliver, warn: warn)
            if final {
                for directory in self.finder.missingDirectories() {
                    warn("no TensorBoard event files or CSV logs were imported from \(directory): it does not exist")
                }
            }
        }
    }

    private func pass(deliver: ([MetricPoint], MetricSource) -> Void, warn: (String) -> Void) {
        let (tensorBoard, csv) = (self.tensorBoard, self.csv)
        let found = finder.find(named: Self.wants(tensorBoard: tensorBoard != nil, csv: csv != nil), following: { file in
            tensorBoard?.follows(file) == true || csv?.follows(file) == true
        }, stopped: { directory, limit in
            warn("stopped looking for TensorBoard event files and CSV logs in \(directory) after \(limit) entries "
                 + "(name their directory with --tb-dir, or turn this off with --no-tensorboard and --no-csv-logs)")
        })
        func named(_ wants: (UnsafePointer<CChar>) -> Bool) -> [MetricLogFinder.Found] {
            found.filter { file in
                let name = file.path.utf8.split(separator: 0x2F).last.map { String(decoding: $0, as: UTF8.self) } ?? file.path
                return name.withCString(wants)
            }
        }
        if self.tensorBoard != nil {
            let points = self.tensorBoard!.read(named(TensorBoardImporter.wants), warn: warn)
            if !points.isEmpty { deliver(points, .tensorboard) }
        }
        if self.csv != nil {
            let points = self.csv!.read(named(CSVLogImporter.wants), warn: warn)
            if !points.isEmpty { deliver(points, .csv) }
        }
    }

    /// Whether a file of this name is a log of the kinds imported.
    static func wants(tensorBoard: Bool, csv: Bool) -> (UnsafePointer<CChar>) -> Bool {
        { name in (tensorBoard && TensorBoardImporter.wants(name)) || (csv && CSVLogImporter.wants(name)) }
    }

    /// The logs of the kinds imported under `directories` now: for a command that starts in a checkout
    /// just made (an agent's reproduction of its code), whose files are all new by their times but
    /// none of them the run's (a repository's fixtures, logs committed with it).
    static func existingFiles(in directories: [String], tensorBoard: Bool, csv: Bool) -> [MetricLogFinder.FileKey: MetricLogFinder.Stamp] {
        guard tensorBoard || csv else { return [:] }
        return MetricLogFinder.stamps(in: directories, maxEntries: maxEntries, named: wants(tensorBoard: tensorBoard, csv: csv))
    }

    /// Makes the final pass and waits for it.
    func stop() {
        ticker?.stop()
    }
}

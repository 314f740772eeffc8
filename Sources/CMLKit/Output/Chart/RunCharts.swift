/// A metric of several runs as overlaid series: what `cml-diff --plot` draws, and the web UI will.
public enum RunCharts {
    /// `--x`: `step`, `time` (wall clock) or `elapsed` (since each run started).
    public static func xUnit(_ name: String) throws(CMLError) -> ChartXUnit {
        switch name {
        case "step": return .number
        case "time": return .unixTime
        case "elapsed": return .elapsedSeconds
        default: throw CMLError.usage("--x must be step, time or elapsed")
        }
    }

    public static func xLabel(_ unit: ChartXUnit) -> String {
        switch unit {
        case .number: "step"
        case .unixTime: "time (UTC)"
        case .elapsedSeconds: "time since start"
        }
    }

    /// Fails naming the metrics the runs have when one of `keys` is not among them.
    public static func check(_ keys: [String], in runs: [Run]) throws(CMLError) {
        let known = Set(runs.flatMap { $0.metrics.map(\.key) }).sorted()
        if let missing = keys.first(where: { !known.contains($0) }) {
            throw CMLError.usage("no run given has a metric '\(missing)'",
                                 hint: known.isEmpty ? "they have no metrics" : "they have: \(known.joined(separator: ", "))")
        }
    }

    /// One series per run that has `key`, labelled by what sets the run apart (`RunComparison.labels`).
    public static func series(of key: String, runs: [Run], store: any Store, x unit: ChartXUnit) throws(CMLError) -> [ChartSeries] {
        var series: [ChartSeries] = []
        for (run, label) in zip(runs, RunComparison.labels(runs)) where run.metrics.contains(where: { $0.key == key }) {
            var xs: [Double] = []
            var ys: [Double] = []
            // A run's points come after it started; its first point stands in for a start not recorded.
            var start = run.startedAt
            try store.forEachMetric(run: run.id, key: key) { point in
                if start == nil { start = point.time }
                let x: Double = switch unit {
                case .number: Double(point.step)
                case .unixTime: point.time
                case .elapsedSeconds: point.time - start!
                }
                xs.append(x)
                ys.append(point.value)
            }
            series.append(ChartSeries(label: label, x: xs, y: ys))
        }
        return series
    }

    /// Where the SVG of `key` goes when several keys are plotted: `plots.svg` with key `val/loss` gives
    /// `plots-val_loss.svg`.
    public static func svgPath(_ path: String, key: String) -> String {
        let safe = String(key.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." ? $0 : "_" })
        if path.hasSuffix(".svg") { return String(path.dropLast(4)) + "-" + safe + ".svg" }
        return path + "-" + safe + ".svg"
    }
}

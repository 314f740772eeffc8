/// A metric of several runs as overlaid series: what `cml-diff --plot` draws, and the web UI will.
public enum RunCharts {
    /// `--x`: `step`, `time` (wall clock) or `elapsed` (since each run started).
    public static func xUnit(_ name: String) throws(CMLError) -> ChartXUnit {
        guard let unit = ChartXUnit(axis: name) else { throw CMLError.usage("--x must be step, time or elapsed") }
        return unit
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

    /// One series per run that has `key`, labelled by what sets the run apart (`RunComparison.labels`),
    /// or by `labels` where given (one per run), coloured by the run's place in `runs`.
    public static func series(
        of key: String, runs: [Run], store: any Store, x unit: ChartXUnit, labels: [String]? = nil
    ) throws(CMLError) -> [ChartSeries] {
        var series: [ChartSeries] = []
        for (index, (run, label)) in zip(runs, labels ?? RunComparison.labels(runs)).enumerated()
        where run.metrics.contains(where: { $0.key == key }) {
            var line = Self.series(try store.metricColumns(run: run.id, key: key), label: label, x: unit, start: run.startedAt)
            line.colorIndex = index
            series.append(line)
        }
        return series
    }

    /// A series from a metric's columns, its x in `unit`. Elapsed time counts from `start`; without one
    /// (a start not recorded), from the first point's time.
    public static func series(_ columns: MetricColumns, label: String, x unit: ChartXUnit, start: Double?) -> ChartSeries {
        let x: [Double]
        switch unit {
        case .number: x = columns.steps.map(Double.init)
        case .unixTime: x = columns.times
        case .elapsedSeconds:
            let start = start ?? columns.times.first ?? 0
            x = columns.times.map { $0 - start }
        }
        return ChartSeries(label: label, x: x, y: columns.values, steps: columns.steps, times: columns.times)
    }

    /// Where the SVG of `key` goes when several keys are plotted: `plots.svg` with key `val/loss` gives
    /// `plots-val_loss.svg`.
    public static func svgPath(_ path: String, key: String) -> String {
        let safe = String(key.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." ? $0 : "_" })
        if path.hasSuffix(".svg") { return String(path.dropLast(4)) + "-" + safe + ".svg" }
        return path + "-" + safe + ".svg"
    }
}

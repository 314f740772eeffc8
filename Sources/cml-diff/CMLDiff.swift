import ArgumentParser
import CMLCommandLine
import CMLKit

/// `cml-diff`: compare runs side by side.
@main
struct CMLDiff: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cml-diff",
        abstract: "Compare runs: parameters and metrics side by side, code, environment, output, and plots.",
        discussion: """
            Runs are ids or unique prefixes, or JSON lines with an "id" on stdin (what cml-run ls prints). \
            Only what differs is shown unless --all. On a terminal the comparison is a coloured table, \
            values that differ from the first run's highlighted; piped, it is JSON lines: one object per \
            key with each run's value, or with --long one per run and key. --code, --env and --log \
            compare against the first run.

            Examples:
              cml-run ls --sort -acc | head -3 | cml-diff
              cml-diff 01a21c9f 01a21d02 --long | grep lr
              cml-diff 01a21c9f 01a21d02 --code
              cml-diff 01a21c9f 01a21d02 --log | less -R
              cml-run ls --sort -acc --limit 5 | cml-diff --plot loss --smooth 20
              cml-diff 01a21c9f 01a21d02 --plot acc --x elapsed --svg acc.svg
            """
    )

    @OptionGroup var storeOption: StoreOption

    @Flag(help: "Show every key, not only those that differ.")
    var all = false

    @Flag(help: "One row per run and key.")
    var long = false

    @Option(help: ArgumentHelp("Metric summaries to compare (comma-separated: last, min, max, count, step).", valueName: "stats"))
    var stats = "last"

    @Flag(help: "Compare the code: commits and the captured patches of uncommitted changes (a binary file as one line).")
    var code = false

    @Flag(help: "Compare the environment variables.")
    var env = false

    @Flag(help: "Compare the console output.")
    var log = false

    @OptionGroup var formatOption: FormatOption

    @Option(help: ArgumentHelp("Plot this metric of every run, overlaid (repeatable: one chart each).", valueName: "key"))
    var plot: [String] = []

    @Option(name: .customLong("x"), help: ArgumentHelp("The x axis of plots: step, time (wall clock) or elapsed (since each run started).", valueName: "axis"))
    var xAxis = "step"

    @Option(help: ArgumentHelp("Smooth plots: a weight in 0..<1 is an exponential moving average as TensorBoard draws it (0.6), a whole number a trailing mean of that many points (20).", valueName: "w|n"))
    var smooth = "0"

    @Flag(help: "A logarithmic y axis for plots.")
    var logY = false

    @Option(help: ArgumentHelp("Write the plots as a standalone SVG file instead (one file per --plot key: FILE, or FILE-KEY.svg).", valueName: "file"))
    var svg: String?

    @Argument(help: ArgumentHelp("Runs to compare (ids or unique prefixes).", valueName: "id"))
    var ids: [String] = []

    static func main() {
        runAsTool()
    }

    func run() throws {
        let outputFormat = formatOption.resolve()
        let aggregates = try RunComparison.stats(parsing: stats)
        let store = try storeOption.open(for: .reading)
        let resolved = try RunInput.ids(arguments: ids, stdinLines: Console.stdinLines, store: store)
        // An empty pipe (no run matched upstream) has nothing to compare, and that is no error.
        if resolved.isEmpty { return }
        guard resolved.count >= 2 || code || log || !plot.isEmpty else {
            throw CMLError.usage("give at least two runs to compare", hint: "e.g. cml-run ls --limit 2 | cml-diff")
        }
        let runs = try resolved.map { id throws(CMLError) in try store.run(id: id) }
        var out = StyledOutput(color: Console.stdoutInColor)

        if !plot.isEmpty {
            try drawPlots(runs, store: store, into: &out)
            try out.flush()
            return
        }

        if code || log {
            for (index, run) in runs.enumerated().dropFirst() {
                if code { try compareCode(runs[0], run, store: store, into: &out) }
                if log { try compareLogs(runs[0], run, store: store, into: &out) }
                if index < runs.count - 1 { out.text("\n") }
            }
            if !env { try out.flush(); return }
        }
        let rows = env ? RunComparison.environmentRows(runs, all: all) : RunComparison.rows(runs, stats: aggregates, all: all)
        if long {
            printLong(rows, runs: runs, format: outputFormat, into: &out)
        } else {
            printWide(rows, runs: runs, format: outputFormat, into: &out)
        }
        try out.flush()
    }

    private func printWide(_ rows: [ComparisonRow], runs: [Run], format: OutputFormat, into out: inout StyledOutput) {
        switch format {
        case .jsonl, .json:
            let objects = RunComparison.wideRecords(rows, runs: runs)
            out.text(format == .json ? JSON.array(objects).serialized + "\n" : objects.map { $0.serialized + "\n" }.joined())
        case .csv, .tsv:
            out.text(TextTable(headers: ["KIND", "KEY"] + runs.map(\.id),
                                   rows: rows.map { [$0.kind.rawValue, $0.key] + $0.values.map(Self.cell) }).render(format))
        case .table:
            let headers = ["KEY"] + runs.map { run in run.name.map { "\(RunID.short(run.id)) \($0)" } ?? RunID.short(run.id) }
            let cells = rows.map { row in
                if row.kind == .field && row.key == "command" {
                    let excerpts = RunComparison.commandExcerpts(runs.map(\.command), width: Self.cellWidth)
                    return [row.key] + excerpts.map(TextTable.singleLine)
                }
                return [row.key] + row.values.map { value in
                    if row.key == "duration", let seconds = value.number { return formatDuration(seconds) }
                    if case .double(let d) = value { return formatNumber(d) }
                    return TextTable.truncate(Self.cell(value), to: Self.cellWidth)
                }
            }
            out.table(TextTable(headers: headers, rows: cells)) { rowIndex, column in
                guard column > 1 else { return column == 0 ? .dim : .plain }
                let row = rows[rowIndex]
                if row.values[column - 1] == .null { return .dim }
                return row.values[column - 1].serialized == row.values[0].serialized ? .plain : .highlight
            }
            if rows.isEmpty { out.text(all ? "(nothing to compare)\n" : "(no differences; --all shows every key)\n") }
        }
    }

    private func printLong(_ rows: [ComparisonRow], runs: [Run], format: OutputFormat, into out: inout StyledOutput) {
        let records = RunComparison.longRecords(rows, runs: runs, all: all)
        let objects: [JSON] = records.map { record in
            .object([("run", .string(record.run.id)), ("kind", .string(record.row.kind.rawValue)),
                     ("key", .string(record.row.key)), ("value", record.value)])
        }
        switch format {
        case .jsonl: out.text(objects.map { $0.serialized + "\n" }.joined())
        case .json: out.text(JSON.array(objects).serialized + "\n")
        default:
            let lines = records.map { record in
                [format == .table ? RunID.short(record.run.id) : record.run.id, record.row.kind.rawValue, record.row.key, Self.cell(record.value)]
            }
            out.text(TextTable(headers: ["RUN", "KIND", "KEY", "VALUE"], rows: lines).render(format))
        }
    }

    private func compareCode(_ base: Run, _ other: Run, store: any Store, into out: inout StyledOutput) throws(CMLError) {
        out.header("code: \(RunID.short(base.id)) → \(RunID.short(other.id))")
        if base.code["in_repository"] != .bool(true) && other.code["in_repository"] != .bool(true) {
            out.text("neither run was started in a git repository\n")
            return
        }
        for key in RunComparison.codeFields {
            let old = base.code[key] ?? .null
            let new = other.code[key] ?? .null
            let same = old.serialized == new.serialized
            out.text("\(key): \(Self.cell(old))\(same ? "" : " → \(Self.cell(new))")\n", style: same ? .plain : .highlight)
        }
        if let old = base.code["commit"]?.stringValue, let new = other.code["commit"]?.stringValue, old != new {
            let root = base.code["root"]?.stringValue ?? other.code["root"]?.stringValue ?? ""
            if let committed = GitCapture.commitDiff(root: root, from: old, to: new) {
                out.text("committed changes from \(old.prefix(12)) to \(new.prefix(12)):\n")
                out.diff(committed)
            } else {
                out.text("the commits are not both in \(root.isEmpty ? "a repository here" : root): fetch them to see what changed\n")
            }
        }
        let (diff, neither) = try RunComparison.patchDiff(base, other, store: store)
        if diff.isEmpty {
            out.text(neither ? "no uncommitted changes in either run\n" : "the same uncommitted changes\n")
        } else {
            out.text("uncommitted changes, as a diff of the two captured patches:\n")
            out.diff(diff)
        }
    }

    private func compareLogs(_ base: Run, _ other: Run, store: any Store, into out: inout StyledOutput) throws(CMLError) {
        out.header("output: \(RunID.short(base.id)) → \(RunID.short(other.id))")
        let diff = try RunComparison.logDiff(base, other, store: store)
        if diff.isEmpty { out.text("the same output\n") } else { out.diff(diff) }
    }

    private func drawPlots(_ runs: [Run], store: any Store, into out: inout StyledOutput) throws(CMLError) {
        let unit = try RunCharts.xUnit(xAxis)
        let smoothing = try ChartSmoothing(parsing: smooth, name: "--smooth")
        try RunCharts.check(plot, in: runs)
        let size = Console.terminalSize() ?? (100, 24)
        for (number, key) in plot.enumerated() {
            let series = try RunCharts.series(of: key, runs: runs, store: store, x: unit)
            var options = ChartOptions(title: key, xLabel: RunCharts.xLabel(unit), yLabel: nil, logY: logY, smoothing: smoothing, xUnit: unit)
            if let svg {
                let path = plot.count == 1 ? svg : RunCharts.svgPath(svg, key: key)
                try FileSystem.writeFile(path, Array(SVGChart.render(series, options: options).utf8))
                out.text(path + "\n")
            } else {
                options.width = size.columns
                options.height = max(12, min(size.rows - 2, 24))
                if number > 0 { out.text("\n") }
                out.text(TerminalChart.render(series, options: options, color: out.color))
            }
        }
    }

    /// The widest a value of the side-by-side table is, so that several runs fit beside each other.
    static let cellWidth = 40

    static func cell(_ value: JSON) -> String {
        switch value {
        case .null: return ""
        case .string(let s): return s
        default: return value.serialized
        }
    }
}

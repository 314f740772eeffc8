import ArgumentParser
import CMLCommandLine
import CMLKit
import Glibc

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

    @Option(help: ArgumentHelp("The store directory (default: $CML_STORE, else ~/.cml).", valueName: "path"))
    var store: String?

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

    @Option(help: ArgumentHelp("jsonl, json, table, csv or tsv (default: table on a terminal, else jsonl).", valueName: "format"))
    var format: String?

    @Option(help: ArgumentHelp("Plot this metric of every run, overlaid (repeatable: one chart each).", valueName: "key"))
    var plot: [String] = []

    @Option(name: .customLong("x"), help: ArgumentHelp("The x axis of plots: step, time (wall clock) or elapsed (since each run started).", valueName: "axis"))
    var xAxis = "step"

    @Option(help: ArgumentHelp("Smooth plots with a trailing mean of this many points.", valueName: "n"))
    var smooth = 1

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
        let terminal = isatty(STDOUT_FILENO) == 1
        let outputFormat: OutputFormat
        if let format {
            guard let parsed = OutputFormat(rawValue: format) else {
                throw CMLError.usage("unknown format '\(format)'", hint: "one of \(OutputFormat.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            outputFormat = parsed
        } else {
            outputFormat = .automatic(isTerminal: terminal)
        }
        let aggregates = try stats.split(separator: ",").map { name throws(CMLError) -> RunTerm.MetricAggregate in
            guard let aggregate = RunTerm.MetricAggregate(rawValue: String(name)) else {
                throw CMLError.usage("unknown metric summary '\(name)'", hint: "last, min, max, count or step")
            }
            return aggregate
        }
        let store = try StoreLocation.open(store)
        let resolved = try RunInput.ids(arguments: ids, stdinLines: Self.stdinLines, store: store)
        // An empty pipe (no run matched upstream) has nothing to compare, and that is no error.
        if resolved.isEmpty { return }
        guard resolved.count >= 2 || code || log || !plot.isEmpty else {
            throw CMLError.usage("give at least two runs to compare", hint: "e.g. cml-run ls --limit 2 | cml-diff")
        }
        let runs = try resolved.map { id throws(CMLError) in try store.run(id: id) }
        // NO_COLOR (no-color.org) counts only when set to something.
        var out = Output(color: terminal && (getenv("NO_COLOR").map { $0.pointee == 0 } ?? true))

        if !plot.isEmpty {
            try drawPlots(runs, store: store, color: out.color, into: &out)
            out.flush()
            return
        }

        if code || log {
            for (index, run) in runs.enumerated().dropFirst() {
                if code { try compareCode(runs[0], run, store: store, into: &out) }
                if log { try compareLogs(runs[0], run, store: store, into: &out) }
                if index < runs.count - 1 { out.text("\n") }
            }
            if !env { out.flush(); return }
        }
        let rows = env ? RunComparison.environmentRows(runs, all: all) : RunComparison.rows(runs, stats: aggregates, all: all)
        if long {
            printLong(rows, runs: runs, format: outputFormat, into: &out)
        } else {
            printWide(rows, runs: runs, format: outputFormat, into: &out)
        }
        out.flush()
    }

    private func printWide(_ rows: [ComparisonRow], runs: [Run], format: OutputFormat, into out: inout Output) {
        switch format {
        case .jsonl, .json:
            let objects: [JSON] = rows.map { row in
                .object([("kind", .string(row.kind.rawValue)), ("key", .string(row.key)),
                         ("values", .object(zip(runs, row.values).map { ($0.id, $1) }))])
            }
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
            out.table(headers: headers, rows: cells) { rowIndex, column in
                guard column > 1 else { return column == 0 ? .dim : .plain }
                let row = rows[rowIndex]
                if row.values[column - 1] == .null { return .dim }
                return row.values[column - 1].serialized == row.values[0].serialized ? .plain : .highlight
            }
            if rows.isEmpty { out.text(all ? "(nothing to compare)\n" : "(no differences; --all shows every key)\n") }
        }
    }

    private func printLong(_ rows: [ComparisonRow], runs: [Run], format: OutputFormat, into out: inout Output) {
        var lines: [[String]] = []
        var objects: [JSON] = []
        for (index, run) in runs.enumerated() {
            for row in rows where row.values[index] != .null || all {
                objects.append(.object([("run", .string(run.id)), ("kind", .string(row.kind.rawValue)),
                                        ("key", .string(row.key)), ("value", row.values[index])]))
                lines.append([format == .table ? RunID.short(run.id) : run.id, row.kind.rawValue, row.key, Self.cell(row.values[index])])
            }
        }
        switch format {
        case .jsonl: out.text(objects.map { $0.serialized + "\n" }.joined())
        case .json: out.text(JSON.array(objects).serialized + "\n")
        default: out.text(TextTable(headers: ["RUN", "KIND", "KEY", "VALUE"], rows: lines).render(format))
        }
    }

    private func compareCode(_ base: Run, _ other: Run, store: any Store, into out: inout Output) throws(CMLError) {
        out.header("code: \(RunID.short(base.id)) → \(RunID.short(other.id))")
        if base.code["in_repository"] != .bool(true) && other.code["in_repository"] != .bool(true) {
            out.text("neither run was started in a git repository\n")
            return
        }
        for key in ["remote_url", "branch", "commit", "dirty"] {
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
        // Binary files as one line each, and the files left out of the patches, so they compare too.
        let patches = try [base, other].map { run throws(CMLError) -> [UInt8] in
            var patch: [UInt8] = []
            if let blob = run.code["patch_blob"]?.stringValue { patch = try store.blob(blob) }
            return CodeSummary.text(patch: patch, code: run.code)
        }
        let diff = try TextDiff.unified(patches[0], patches[1])
        if diff.isEmpty {
            out.text(patches[0].isEmpty ? "no uncommitted changes in either run\n" : "the same uncommitted changes\n")
        } else {
            out.text("uncommitted changes, as a diff of the two captured patches:\n")
            out.diff(diff)
        }
    }

    private func compareLogs(_ base: Run, _ other: Run, store: any Store, into out: inout Output) throws(CMLError) {
        out.header("output: \(RunID.short(base.id)) → \(RunID.short(other.id))")
        let logs = try [base, other].map { run throws(CMLError) -> [UInt8] in
            let reader = try store.logReader(run: run.id)
            var renderer = ConsoleRenderer()
            var text: [UInt8] = []
            while let record = reader.next() { text += renderer.feed(record.bytes) }
            return text + renderer.finish()
        }
        let diff = try TextDiff.unified(logs[0], logs[1])
        if diff.isEmpty { out.text("the same output\n") } else { out.diff(diff) }
    }

    private func drawPlots(_ runs: [Run], store: any Store, color: Bool, into out: inout Output) throws(CMLError) {
        let unit: ChartXUnit
        switch xAxis {
        case "step": unit = .number
        case "time": unit = .unixTime
        case "elapsed": unit = .elapsedSeconds
        default: throw CMLError.usage("--x must be step, time or elapsed")
        }
        guard smooth >= 1 else { throw CMLError.usage("--smooth must be at least 1") }
        let known = Set(runs.flatMap { $0.metrics.map(\.key) }).sorted()
        if let missing = plot.first(where: { !known.contains($0) }) {
            throw CMLError.usage("no run given has a metric '\(missing)'",
                                 hint: known.isEmpty ? "they have no metrics" : "they have: \(known.joined(separator: ", "))")
        }
        let labels = RunComparison.labels(runs)
        let size = Self.terminalSize()
        for (number, key) in plot.enumerated() {
            var series: [ChartSeries] = []
            for (run, label) in zip(runs, labels) where run.metrics.contains(where: { $0.key == key }) {
                var xs: [Double] = []
                var ys: [Double] = []
                try store.forEachMetric(run: run.id, key: key) { point in
                    let x: Double = switch unit {
                    case .number: Double(point.step)
                    case .unixTime: point.time
                    case .elapsedSeconds: point.time - run.startedAt
                    }
                    xs.append(x)
                    ys.append(point.value)
                }
                series.append(ChartSeries(label: label, x: xs, y: ys))
            }
            let xLabel = switch unit {
            case .number: "step"
            case .unixTime: "time (UTC)"
            case .elapsedSeconds: "time since start"
            }
            var options = ChartOptions(title: key, xLabel: xLabel, yLabel: nil, logY: logY, smooth: smooth, xUnit: unit)
            if let svg {
                let path = plot.count == 1 ? svg : Self.svgPath(svg, key: key)
                try FileSystem.writeFile(path, Array(SVGChart.render(series, options: options).utf8))
                out.text(path + "\n")
            } else {
                options.width = size.columns
                options.height = max(12, min(size.rows - 2, 24))
                if number > 0 { out.text("\n") }
                out.text(TerminalChart.render(series, options: options, color: color))
            }
        }
    }

    /// `plots.svg` with key `val/loss` gives `plots-val_loss.svg`.
    static func svgPath(_ path: String, key: String) -> String {
        let safe = String(key.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." ? $0 : "_" })
        if path.hasSuffix(".svg") { return String(path.dropLast(4)) + "-" + safe + ".svg" }
        return path + "-" + safe + ".svg"
    }

    /// The terminal's size, or 100 by 24 when stdout is not one.
    static func terminalSize() -> (columns: Int, rows: Int) {
        var size = winsize()
        guard ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0, size.ws_row > 0 else { return (100, 24) }
        return (Int(size.ws_col), Int(size.ws_row))
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

    static func stdinLines() -> [String]? {
        guard isatty(STDIN_FILENO) == 0 else { return nil }
        var lines: [String] = []
        while let line = readLine(strippingNewline: true) { lines.append(line) }
        return lines
    }
}

/// Buffered output, with ANSI colours when writing to a terminal.
struct Output {
    enum Style { case plain, dim, highlight, added, removed, hunk, bold }

    let color: Bool
    private var buffer: [UInt8] = []

    init(color: Bool) { self.color = color }

    mutating func text(_ text: String, style: Style = .plain) {
        let code: String? = switch style {
        case .plain: nil
        case .dim: "2"
        case .highlight: "33"
        case .added: "32"
        case .removed: "31"
        case .hunk: "36"
        case .bold: "1"
        }
        if color, let code {
            buffer += Array("\u{1B}[\(code)m".utf8) + Array(text.utf8) + Array("\u{1B}[0m".utf8)
        } else {
            buffer += Array(text.utf8)
        }
        if buffer.count >= 1 << 16 { flush() }
    }

    mutating func header(_ title: String) {
        text(title + "\n", style: .bold)
    }

    mutating func diff(_ unified: String) {
        for line in unified.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            let style: Style = line.hasPrefix("+") ? .added : line.hasPrefix("-") ? .removed : line.hasPrefix("@@") ? .hunk : .plain
            text(String(line), style: style)
            text("\n")
        }
    }

    /// An aligned table; `style(row, column)` colours each cell (padding stays plain).
    mutating func table(headers: [String], rows: [[String]], style: (Int, Int) -> Style) {
        var widths = headers.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        func pad(_ cell: String, _ i: Int, last: Bool) -> String {
            last ? "" : String(repeating: " ", count: widths[i] - cell.count + 2)
        }
        for (i, header) in headers.enumerated() {
            text(header, style: .bold)
            text(pad(header, i, last: i == headers.count - 1))
        }
        text("\n")
        for (r, row) in rows.enumerated() {
            for (i, cell) in row.enumerated() {
                text(cell, style: style(r, i))
                text(pad(cell, i, last: i == row.count - 1))
            }
            text("\n")
        }
    }

    mutating func flush() {
        var offset = 0
        while offset < buffer.count {
            let n = buffer.withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                Glibc.exit(errno == EPIPE ? 0 : 1)
            }
            offset += n
        }
        buffer.removeAll(keepingCapacity: true)
    }
}

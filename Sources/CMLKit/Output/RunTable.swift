import Glibc

/// A column of a run listing: the name it goes by (as the user wrote it, for CSV headers and JSON keys)
/// and what it shows.
public struct RunColumn: Equatable, Sendable {
    public var name: String
    public var term: RunTerm

    public init(_ name: String, _ term: RunTerm) {
        self.name = name
        self.term = term
    }

    public init(_ term: RunTerm) { self.init(term.name, term) }
}

/// What `cml-run ls` shows of runs (and the web UI's run list will): the columns, and each cell.
public enum RunTable {
    /// The columns `--columns` names, in its order: keys, or globs (`lr*`, `metrics.*`, `val_*.max`)
    /// that stand for every field, parameter and metric of `runs` they match. A key that nothing has is a
    /// column of empty cells, so that one command line serves projects with different parameters.
    public static func columns(_ text: String, runs: [Run], catalog: RunTerm.Catalog) throws(CMLError) -> [RunColumn] {
        var columns: [RunColumn] = []
        for name in text.split(separator: ",").map(String.init) {
            let found = isGlob(name) ? expand(name, runs: runs) : [RunColumn(name, try RunTerm.lookup(name, in: catalog) ?? .param(name))]
            for column in found where !columns.contains(where: { $0.term == column.term }) { columns.append(column) }
        }
        return columns
    }

    private static func isGlob(_ name: String) -> Bool { name.contains { $0 == "*" || $0 == "?" || $0 == "[" } }

    /// The fields, parameters and metrics of `runs` that `glob` matches by name: parameters and metrics
    /// also as `params.KEY` and `metrics.KEY`; a glob ending in a summary (`val_*.max`) matches metrics
    /// and shows that summary, others the last value. A column is named by its key, with `params.` or
    /// `metrics.` only where a parameter and a metric share the key.
    private static func expand(_ glob: String, runs: [Run]) -> [RunColumn] {
        func matches(_ pattern: String, _ names: String...) -> Bool { names.contains { fnmatch(pattern, $0, 0) == 0 } }
        let params = Set(runs.flatMap { $0.params.map(\.key) })
        let metrics = Set(runs.flatMap { $0.metrics.map(\.key) })
        if let dot = glob.lastIndex(of: "."), let aggregate = RunTerm.MetricAggregate(rawValue: String(glob[glob.index(after: dot)...])),
           aggregate != .last {
            let pattern = String(glob[..<dot])
            return metrics.sorted().filter { matches(pattern, $0, "metrics." + $0) }.map { key in
                RunColumn((params.contains(key) ? "metrics." : "") + key + "." + aggregate.rawValue, .metric(key, aggregate))
            }
        }
        var found = RunTerm.RunField.allCases.filter { matches(glob, $0.rawValue) }.map { RunColumn(.field($0)) }
        found += params.sorted().filter { matches(glob, $0, "params." + $0) }.map { key in
            RunColumn(metrics.contains(key) ? "params." + key : key, .param(key))
        }
        found += metrics.sorted().filter { matches(glob, $0, "metrics." + $0) }.map { key in
            RunColumn(params.contains(key) ? "metrics." + key : key, .metric(key, .last))
        }
        return found
    }

    /// The table `cml-run ls` shows without `--columns`: id, name, status; the keys it was sorted and
    /// filtered by (`extra`); the parameters that differ among `runs`; the last values of the metrics
    /// every run with metrics has (resource samples, `sys/…`, left out); then when, how long, the project, the exit
    /// code and the command. Fitted to a terminal, the rightmost columns go first, the command shrinking
    /// before it goes; id and status stay.
    public static func defaultColumns(runs: [Run], extra: [RunTerm]) -> (columns: [RunColumn], required: Set<Int>, elastic: Int) {
        var terms: [RunTerm] = [.field(.id), .field(.name), .field(.status)]
        let trailing: [RunTerm] = [.field(.started), .field(.duration), .field(.project), .field(.exitCode), .field(.command)]
        func add(_ term: RunTerm) {
            if !terms.contains(term) && !trailing.contains(term) { terms.append(term) }
        }
        extra.forEach(add)
        for row in RunComparison.rows(runs) where row.kind == .param { add(.param(row.key)) }
        // Shared by the runs that recorded metrics: a queued run, or one that failed at once, has none yet.
        let metricKeys = runs.map { Set($0.metrics.filter { $0.source != .monitor }.map(\.key)) }.filter { !$0.isEmpty }
        let shared = metricKeys.dropFirst().reduce(metricKeys.first ?? []) { $0.intersection($1) }
        shared.sorted().forEach { add(.metric($0, .last)) }
        terms += trailing
        // A parameter and a metric of one key are told apart as `--where` tells them.
        let columns = terms.map { term -> RunColumn in
            switch term {
            case .param(let key) where terms.contains(where: { if case .metric(key, _) = $0 { true } else { false } }):
                return RunColumn("params." + term.name, term)
            case .metric(let key, _) where terms.contains(.param(key)):
                return RunColumn("metrics." + term.name, term)
            default:
                return RunColumn(term)
            }
        }
        return (columns, [0, 2], terms.count - 1)
    }

    /// The runs as a table (headers upper-cased) or as CSV or TSV (headers the column names as written).
    public static func table(_ runs: [Run], columns: [RunColumn], format: OutputFormat) -> TextTable {
        TextTable(headers: columns.map { format == .table ? $0.name.uppercased() : $0.name },
                  rows: runs.map { run in columns.map { cell($0.term, of: run, format: format) } })
    }

    /// One cell: on a terminal short ids, times without seconds' fractions, readable durations and numbers;
    /// exact values in CSV and TSV.
    public static func cell(_ term: RunTerm, of run: Run, format: OutputFormat) -> String {
        let terminal = format == .table
        switch term {
        case .field(.id): return terminal ? RunID.short(run.id) : run.id
        case .field(.started): return run.startedAt.map(Clock.tableTime) ?? ""
        case .field(.queued): return run.queue.map { Clock.tableTime($0.enqueuedAt) } ?? ""
        case .field(.duration): return run.duration.map { terminal ? formatDuration($0) : String($0) } ?? ""
        case .field(.exitCode): return run.end?.exitCode.map(String.init) ?? run.end?.signal.map { "sig\($0)" } ?? ""
        case .field(.command):
            let command = ShellQuoting.commandLine(run.command)
            return terminal ? TextTable.truncate(TextTable.singleLine(command), to: 60) : command
        default:
            switch term.value(of: run) {
            case .null: return ""
            case .string(let s): return terminal ? TextTable.singleLine(s) : s
            case .double(let d) where terminal: return formatNumber(d)
            case .array(let items): return items.compactMap(\.stringValue).joined(separator: ",")
            case let other: return other.serialized
            }
        }
    }
}

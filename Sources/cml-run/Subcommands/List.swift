import ArgumentParser
import CMLCommandLine
import Foundation
import CMLKit

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List runs, newest first: JSON lines when piped, a table on a terminal.",
        discussion: """
            --where compares fields (status, name, project, duration, exit_code, started, agent, …), parameters \
            and metric summaries (acc is acc.last; also acc.min, acc.max, acc.count, acc.step) with = != < \
            <= > >= and ~ (glob), joined by and, or, not and parentheses. A key that is both a parameter \
            and a metric is written params.KEY or metrics.KEY. --sort -KEY sorts descending; runs without \
            the key come last.

            Examples:
              cml-run ls --project mnist --status completed --limit 5
              cml-run ls --where 'acc > 0.9 and lr <= 0.01 and status = completed' --sort -acc
              cml-run ls --since 2d --sort -acc.max --columns id,lr,acc.max --format csv
              cml-run ls --sort -acc | head -3 | cml-diff
            """
    )

    @OptionGroup var storeOption: StoreOption

    @Option(help: "Only runs of this project.")
    var project: String?

    @Option(help: ArgumentHelp("Only runs in this state (\(RunStatus.allCases.map(\.rawValue).joined(separator: ", "))).", valueName: "status"))
    var status: String?

    @Option(help: "Only runs with this tag (repeat for runs with all of them).")
    var tag: [String] = []

    @Option(help: ArgumentHelp("Only runs started since then: 30m, 2h, 3d, 1w, or a date such as 2026-11-20.", valueName: "when"))
    var since: String?

    @Option(name: .customLong("where"), help: ArgumentHelp("Only runs for which this holds, e.g. 'acc > 0.9 and lr <= 0.01'.", valueName: "expression"))
    var filter: String?

    // Unconditional: `--sort -acc` must not read `-acc` as an option.
    @Option(parsing: .unconditionalSingleValue,
            help: ArgumentHelp("Sort by these keys (comma-separated or repeated; -KEY for descending).", valueName: "keys"))
    var sort: [String] = []

    @Option(help: "At most this many runs.")
    var limit: Int?

    @Option(help: ArgumentHelp("Only these fields, parameters and metrics, in this order (comma-separated).", valueName: "keys"))
    var columns: String?

    @Option(help: ArgumentHelp("jsonl, json, table, csv or tsv (default: table on a terminal, else jsonl).", valueName: "format"))
    var format: String?

    func run() throws {
        let outputFormat = try OutputFormat.resolve(format)
        var query = RunQuery(project: project, tags: tag, limit: limit)
        if let status {
            guard let parsed = RunStatus(rawValue: status) else {
                throw CMLError.usage("unknown status '\(status)'", hint: "one of \(RunStatus.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            query.status = parsed
        }
        if let limit, limit < 0 { throw CMLError.usage("--limit must not be negative") }
        if let since { query.since = try SinceParser.parse(since) }
        if let filter { query.filter = try RunFilter.parse(filter) }
        query.sort = sort.flatMap { $0.split(separator: ",") }.map { RunSort(String($0)) }
        if let columns, columns.split(separator: ",").isEmpty {
            throw CMLError.usage("--columns names no column", hint: "e.g. --columns id,lr,acc.max")
        }
        let store = try storeOption.open()
        let runs = try store.runs(query)
        let catalog = store.catalog()
        var selected: [RunTerm]?
        if let columns {
            selected = try columns.split(separator: ",").map { name throws(CMLError) in try RunTerm.resolve(String(name), in: catalog) }
        }
        // A table shows what the listing was sorted and filtered by, after the usual columns.
        var extra: [RunTerm] = []
        for name in query.sort.map(\.key) + (query.filter?.keys.map(\.0) ?? []) {
            if let term = try? RunTerm.resolve(name, in: catalog), !extra.contains(term), !Self.tableFields.contains(term) {
                extra.append(term)
            }
        }
        printRuns(runs, format: outputFormat, columns: selected, extraColumns: extra)
    }

    static let tableFields: [RunTerm] = [.field(.id), .field(.name), .field(.project), .field(.status), .field(.started),
                                         .field(.duration), .field(.exitCode), .field(.command)]
}

func printRuns(_ runs: [Run], format: OutputFormat, columns: [RunTerm]? = nil, extraColumns: [RunTerm] = []) {
    var out = BufferedOutput()
    switch format {
    case .jsonl, .json:
        let objects: [JSON] = runs.map { run in
            guard let columns else { return run.json(full: false) }
            return .object(columns.map { ($0.name, $0.value(of: run)) })
        }
        if format == .json {
            out.append(JSON.array(objects).serialized + "\n")
        } else {
            for object in objects { out.withBuffer { object.write(to: &$0); $0 += "\n" } }
        }
    case .table, .csv, .tsv:
        let terms = columns ?? List.tableFields + extraColumns
        let table = TextTable(
            headers: terms.map { $0.name.uppercased() },
            rows: runs.map { run in terms.map { cell($0, of: run, format: format) } })
        out.append(table.render(format))
    }
    out.flush()
}

/// One table cell: short ids, times without seconds' fractions, durations and numbers made readable on a
/// terminal; exact values in CSV and TSV.
private func cell(_ term: RunTerm, of run: Run, format: OutputFormat) -> String {
    let terminal = format == .table
    switch term {
    case .field(.id): return terminal ? RunID.short(run.id) : run.id
    case .field(.started): return Clock.tableTime(run.startedAt)
    case .field(.duration): return run.duration.map { terminal ? formatDuration($0) : String($0) } ?? ""
    case .field(.exitCode): return run.end?.exitCode.map(String.init) ?? run.end?.signal.map { "sig\($0)" } ?? ""
    case .field(.command):
        let command = ShellQuoting.commandLine(run.command)
        return terminal ? TextTable.truncate(TextTable.singleLine(command), to: 60) : command
    default:
        switch term.value(of: run) {
        case .null: return ""
        case .string(let s): return s
        case .double(let d) where terminal: return formatNumber(d)
        case .array(let items): return items.compactMap(\.stringValue).joined(separator: ",")
        case let other: return other.serialized
        }
    }
}

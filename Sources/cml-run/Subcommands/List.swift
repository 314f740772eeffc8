import ArgumentParser
import CMLCommandLine
import Foundation
import CMLKit

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List runs, newest first: JSON lines when piped, a table on a terminal.",
        discussion: """
            On a terminal the table shows, besides id, name and status, the keys sorted and filtered by, the \
            parameters that differ among the runs listed and the last values of the metrics they share; \
            columns that do not fit the terminal's width ($COLUMNS, else the terminal's) are left out from \
            the right. Piped, each run is one JSON line, whole.

            --where compares fields (status, name, project, duration, exit_code, started, queued_at, agent, …), parameters \
            and metric summaries (acc is acc.last; also acc.min, acc.max, acc.count, acc.step) with = != < \
            <= > >= and ~ (glob), joined by and, or, not and parentheses. A key that is both a parameter \
            and a metric is written params.KEY or metrics.KEY. --sort -KEY sorts descending; runs without \
            the key come last. --columns takes globs ('lr*', 'metrics.*', 'val_*.max'); a key that no run \
            has is a column of empty cells. CSV and TSV headers are the keys as written.

            Against cml-serve (--store http://…), runs still waiting in this machine's spool to upload \
            (still running, or recorded while the server could not be reached or refused them) are \
            listed too, in their place: their JSON has "upload": "pending", and the table marks their \
            status with * (explained on stderr).

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

    @Option(help: ArgumentHelp("Only runs started (queued runs: queued) since then: 30m, 2h, 3d, 1w, or a date such as 2026-11-20.", valueName: "when"))
    var since: String?

    @Option(name: .customLong("where"), help: ArgumentHelp("Only runs for which this holds, e.g. 'acc > 0.9 and lr <= 0.01'.", valueName: "expression"))
    var filter: String?

    // Unconditional: `--sort -acc` must not read `-acc` as an option.
    @Option(parsing: .unconditionalSingleValue,
            help: ArgumentHelp("Sort by these keys (comma-separated or repeated; -KEY for descending).", valueName: "keys"))
    var sort: [String] = []

    @Option(help: "At most this many runs.")
    var limit: Int?

    @Option(help: ArgumentHelp("Only these fields, parameters and metrics, in this order (comma-separated; globs such as 'lr*' stand for every key they match).", valueName: "keys"))
    var columns: String?

    @OptionGroup var formatOption: FormatOption

    func run() throws {
        let outputFormat = formatOption.resolve()
        let query = try RunQuery.parse(project: project, status: status, tags: tag, since: since, filter: filter,
                                       sort: sort, limit: limit)
        if let columns, columns.split(separator: ",").isEmpty {
            throw CMLError.usage("--columns names no column", hint: "e.g. --columns id,lr,acc.max")
        }
        let store = try storeOption.open(for: .reading)
        var runs = try store.runs(query)
        let catalog = try store.catalog()
        // A server's runs still waiting in this machine's spool are listed too, and marked.
        var spool: RunSpool?
        var waiting: Set<String> = []
        let location = StoreLocation.resolve(storeOption.store)
        if StoreLocation.isRemote(location) {
            spool = RunSpool(for: location)
            (runs, waiting) = try spool!.listing(runs, query: query, server: store, catalog: catalog)
        }
        let chosen = try columns.map { text throws(CMLError) in try RunTable.columns(text, runs: runs, catalog: catalog) }
        if outputFormat == .jsonl || outputFormat == .json {
            try Console.print(runs.map { run in
                var record = chosen.map { JSON.object($0.map { ($0.name, $0.term.value(of: run)) }) } ?? run.json(full: false)
                if waiting.contains(run.id), case .object(let members) = record { record = .object(members + [("upload", .string("pending"))]) }
                return record
            }, format: outputFormat) { TextTable(headers: []) }
            return
        }
        if let chosen {
            var table = RunTable.table(runs, columns: chosen, format: outputFormat)
            if outputFormat == .table { Self.mark(waiting, in: &table, runs: runs, columns: chosen, spool: spool) }
            try Console.out(table.render(outputFormat))
            return
        }
        // A table shows what the listing was sorted and filtered by, then what sets the runs apart.
        var extra: [RunTerm] = []
        for name in query.sort.map(\.key) + (query.filter?.keys.map(\.0) ?? []) {
            if let term = try? RunTerm.resolve(name, in: catalog), !extra.contains(term) { extra.append(term) }
        }
        let layout = RunTable.defaultColumns(runs: runs, extra: extra)
        var table = RunTable.table(runs, columns: layout.columns, format: outputFormat)
        if outputFormat == .table { Self.mark(waiting, in: &table, runs: runs, columns: layout.columns, spool: spool) }
        if outputFormat == .table, let width = Console.terminalSize()?.columns {
            table = table.fitted(to: width, required: layout.required, elastic: layout.elastic)
        }
        try Console.out(table.render(outputFormat))
    }

    /// On a terminal, a run still waiting in the spool has its status (else its id) marked `*`, and a
    /// line on stderr says what the mark means.
    static func mark(_ waiting: Set<String>, in table: inout TextTable, runs: [Run], columns: [RunColumn], spool: RunSpool?) {
        guard let spool, !waiting.isEmpty,
              let column = columns.firstIndex(where: { $0.term == .field(.status) }) ?? columns.firstIndex(where: { $0.term == .field(.id) })
        else { return }
        for (row, run) in runs.enumerated() where waiting.contains(run.id) { table.rows[row][column] += "*" }
        Console.error("* still waiting in \(spool.directory) to upload to \(spool.url)\n")
    }
}

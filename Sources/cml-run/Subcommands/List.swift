import ArgumentParser
import CMLKit

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List runs, newest first: JSON lines when piped, a table on a terminal.",
        discussion: """
            Example:
              cml-run ls --project mnist --status completed --limit 5
              cml-run ls | jq -r 'select(.metrics.loss.last < 0.3) | .id'
            """
    )

    @OptionGroup var storeOption: StoreOption

    @Option(help: "Only runs of this project.")
    var project: String?

    @Option(help: ArgumentHelp("Only runs in this state (\(RunStatus.allCases.map(\.rawValue).joined(separator: ", "))).", valueName: "status"))
    var status: String?

    @Option(help: "Only runs with this tag.")
    var tag: String?

    @Option(help: "At most this many runs.")
    var limit: Int?

    @Option(help: ArgumentHelp("jsonl, json, table, csv or tsv (default: table on a terminal, else jsonl).", valueName: "format"))
    var format: String?

    func run() throws {
        let outputFormat = try resolveFormat(format)
        var state: RunStatus?
        if let status {
            guard let parsed = RunStatus(rawValue: status) else {
                throw CMLError.usage("unknown status '\(status)'", hint: "one of \(RunStatus.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            state = parsed
        }
        if let limit, limit < 0 { throw CMLError.usage("--limit must not be negative") }
        let store = try storeOption.open()
        let runs: [Run]
        if state == .running || state == .lost {
            // A stored `running` may be observed `lost` (its cml-run is gone): filter on what is shown.
            let candidates = try store.runs(RunQuery(project: project, status: .running, tag: tag))
                + (state == .lost ? try store.runs(RunQuery(project: project, status: .lost, tag: tag)) : [])
            runs = Array(candidates.filter { $0.observedStatus == state }.prefix(limit ?? .max))
        } else {
            runs = try store.runs(RunQuery(project: project, status: state, tag: tag, limit: limit))
        }
        printRuns(runs, format: outputFormat)
    }
}

func resolveFormat(_ text: String?) throws(CMLError) -> OutputFormat {
    guard let text else { return .automatic(isTerminal: FileHandleOutput.stdoutIsTerminal) }
    guard let format = OutputFormat(rawValue: text) else {
        throw .usage("unknown format '\(text)'", hint: "one of \(OutputFormat.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return format
}

func printRuns(_ runs: [Run], format: OutputFormat) {
    var out = BufferedOutput()
    switch format {
    case .jsonl:
        for run in runs { out.withBuffer { run.json(full: false).write(to: &$0); $0 += "\n" } }
    case .json:
        out.append(JSON.array(runs.map { $0.json(full: false) }).serialized + "\n")
    case .table, .csv, .tsv:
        let table = TextTable(
            headers: ["ID", "NAME", "PROJECT", "STATUS", "STARTED", "DURATION", "EXIT", "COMMAND"],
            rows: runs.map { run in
                let command = run.command.joined(separator: " ")
                return [
                    format == .table ? RunID.short(run.id) : run.id,
                    run.name ?? "",
                    run.project,
                    run.observedStatus.rawValue,
                    String(Clock.rfc3339(run.startedAt).prefix(19)).replacingOccurrences(of: "T", with: " "),
                    run.duration.map(formatDuration) ?? "",
                    run.end?.exitCode.map(String.init) ?? run.end?.signal.map { "sig\($0)" } ?? "",
                    format == .table ? TextTable.truncate(command, to: 60) : command,
                ]
            })
        out.append(table.render(format))
    }
    out.flush()
}

import ArgumentParser
import CMLCommandLine
import CMLKit

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Read back what runs recorded (console log, code patch, artifacts) and check it is intact.",
        discussion: """
            Runs are ids or unique prefixes, or JSON lines with an "id" on stdin (an empty pipe checks \
            none); with neither, on a terminal, every run. The console log must be there when the run \
            printed anything, every record must read, and a run that ended must have all the output it \
            recorded; the patch and every artifact blob (for a directory, its manifest and each file) must \
            be there and match its sha256. Piped, prints one JSON line per run ({"id", "ok", "problems"}); \
            on a terminal, a line per run. Exits 1 when any run is damaged.

            Examples:
              cml-run verify 0192f3a4
              cml-run verify
              cml-run ls --project mnist | cml-run verify | jq 'select(.ok | not)'
            """
    )

    @OptionGroup var storeOption: StoreOption
    @Argument(help: ArgumentHelp("Run ids or unique prefixes.", valueName: "id")) var ids: [String] = []

    func run() throws {
        let store = try storeOption.open(for: .reading)
        let piped = ids.isEmpty ? Console.stdinLines() : nil
        let runs: [Run]
        if ids.isEmpty && piped == nil {
            runs = try store.runs(RunQuery())
        } else {
            runs = try RunInput.ids(arguments: ids, stdinLines: { piped }, store: store).map { id throws(CMLError) in try store.run(id: id) }
        }
        let onTerminal = Console.stdoutIsTerminal
        var damaged = 0
        for run in runs {
            let report = try RunVerification.verify(run, in: store, jobs: ParallelWork.availableCPUs)
            if !report.ok { damaged += 1 }
            guard onTerminal else {
                try Console.out(report.json.serialized + "\n")
                continue
            }
            try Console.out("\(RunID.short(run.id))  \(report.ok ? "ok" : "DAMAGED")\n")
            for problem in report.problems { try Console.out("  \(problem.summary)\n") }
        }
        if damaged > 0 {
            throw CMLError("\(damaged) of \(runs.count) run\(runs.count == 1 ? "" : "s") damaged",
                           hint: "each run's problems are listed above")
        }
    }
}

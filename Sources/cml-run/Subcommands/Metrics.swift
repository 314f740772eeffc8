import ArgumentParser
import CMLCommandLine
import CMLKit

struct Metrics: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "Print a run's metric points as JSON lines of {key, step, value, time}.",
        discussion: """
            Series are streamed from the store, never held whole in memory.

            Example:
              cml-run metrics 0192f3a4 --key loss | jq -r '[.step, .value] | @tsv'
            """
    )

    @OptionGroup var storeOption: StoreOption

    @Option(help: "Only this metric.")
    var key: String?

    @Argument(help: ArgumentHelp("The run (id or unique prefix).", valueName: "id"))
    var id: String?

    func run() throws {
        let store = try storeOption.open(for: .reading)
        // An empty pipe names no run: nothing to print.
        guard let runID = try RunInput.ids(arguments: id.map { [$0] } ?? [], stdinLines: Console.stdinLines, store: store).first else {
            return
        }
        if let key { try store.run(id: runID).requireMetric(key) }
        var out = MetricLineEncoder()
        try store.forEachMetric(run: runID, key: key) { point throws(CMLError) in
            out.append(point)
            if out.count >= 1 << 16 { try Console.out(bytes: out.take()) }
        }
        try Console.out(bytes: out.take())
    }
}

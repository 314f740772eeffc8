import ArgumentParser
import CMLCommandLine
import CMLKit

struct Log: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log",
        abstract: "Print a run's stored console output (stdout and stderr, in order).",
        discussion: """
            Progress-bar redraws are collapsed to their last state unless --raw.

            Examples:
              cml-run log 0192f3a4 | grep -i error
              cml-run log --follow 0192f3a4          # until the run ends
            """
    )

    @OptionGroup var storeOption: StoreOption

    @Flag(name: [.short, .long], help: "Keep printing new output until the run ends (a queued run whose agent died: until its next attempt ends).")
    var follow = false

    @Flag(help: "Print the stored bytes as they are, carriage returns included.")
    var raw = false

    @Option(help: ArgumentHelp("Only this stream: stdout or stderr.", valueName: "stream"))
    var stream: String?

    @Argument(help: ArgumentHelp("The run (id or unique prefix).", valueName: "id"))
    var id: String?

    func run() throws {
        var only: CMLKit.OutputStream?
        if let stream {
            switch stream {
            case "stdout": only = .stdout
            case "stderr": only = .stderr
            default: throw CMLError.usage("--stream must be stdout or stderr")
            }
        }
        let store = try storeOption.open(for: .reading)
        // An empty pipe names no run: nothing to print.
        guard let runID = try RunInput.ids(arguments: id.map { [$0] } ?? [], stdinLines: Console.stdinLines, store: store).first else {
            return
        }
        let follower = RunLogFollower(store: store, runID: runID, stream: only, raw: raw)
        try follower.read(follow: follow, awaitingRequeue: {
            Console.error("cml-run: the agent running \(RunID.short(runID)) is gone; following it into its next attempt once its lease runs out\n")
        }) { bytes throws(CMLError) in try Console.out(bytes: bytes) }
    }
}

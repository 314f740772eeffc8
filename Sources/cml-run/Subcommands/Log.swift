import ArgumentParser
import CMLCommandLine
import CMLKit
import Glibc

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
        let store = try storeOption.open()
        // An empty pipe names no run: nothing to print.
        guard let runID = try RunInput.ids(arguments: id.map { [$0] } ?? [], stdinLines: FileHandleOutput.stdinLines, store: store).first else {
            return
        }
        let reader = try store.logReader(run: runID)
        var renderer = ConsoleRenderer()
        var finished = false
        var toldOfRequeue = false
        while true {
            var wrote = false
            while let record = reader.next() {
                if let only, record.stream != only { continue }
                FileHandleOutput.standardOutput(bytes: raw ? record.bytes : renderer.feed(record.bytes))
                wrote = true
            }
            if !follow || finished { break }
            // One more pass after the run has ended picks up its last records.
            if !wrote {
                let run = try store.run(id: runID)
                let awaitsRequeue = run.awaitsRequeue
                finished = !awaitsRequeue && run.observedStatus.isFinished
                if awaitsRequeue && !toldOfRequeue {
                    toldOfRequeue = true
                    FileHandleOutput.standardError("cml-run: the agent running \(RunID.short(runID)) is gone; following it into its next attempt once its lease runs out\n")
                }
            }
            if !finished { usleep(200_000) }
        }
        if !raw { FileHandleOutput.standardOutput(bytes: renderer.finish()) }
        // Said after what could be read was printed; a torn last record of a live or lost run is no damage.
        let problems = reader.problems(of: try store.run(id: runID))
        if !problems.isEmpty {
            throw CMLError("the console log of run \(runID) \(problems[0])\(problems.count > 1 ? " (and \(problems.count - 1) more damaged records)" : "")",
                           hint: "cml-run verify \(RunID.short(runID)) checks everything the run recorded")
        }
    }
}

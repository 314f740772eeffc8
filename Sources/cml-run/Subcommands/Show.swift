import ArgumentParser
import CMLCommandLine
import CMLKit

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Print whole run records as JSON (one line each), or a run's code patch.",
        discussion: """
            Runs are ids or unique prefixes, or JSON lines with an "id" on stdin.

            Examples:
              cml-run show 0192f3a4 | jq .code
              cml-run ls --limit 1 | cml-run show
              cml-run show --patch 0192f3a4 > changes.patch   # then, at that commit: git apply changes.patch
            """
    )

    @OptionGroup var storeOption: StoreOption

    @Flag(help: "Print only the captured patch of uncommitted changes, ready for git apply.")
    var patch = false

    @Argument(help: ArgumentHelp("Run ids or unique prefixes.", valueName: "id"))
    var ids: [String] = []

    func run() throws {
        let store = try storeOption.open(for: .reading)
        let resolved = try RunInput.ids(arguments: ids, stdinLines: Console.stdinLines, store: store)
        if patch {
            guard resolved.count <= 1 else { throw CMLError.usage("--patch takes one run") }
            guard let id = resolved.first else { return }
            let run = try store.run(id: id)
            if let blob = run.code["patch_blob"]?.stringValue {
                try Console.out(bytes: try store.blob(blob))
            }
            return
        }
        var out = BufferedOutput()
        for id in resolved {
            let run = try store.run(id: id)
            try out.withBuffer { run.json(full: true).write(to: &$0); $0 += "\n" }
        }
        try out.flush()
    }
}

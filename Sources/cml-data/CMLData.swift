import ArgumentParser
import CMLCommandLine
import CMLKit
import Glibc

/// `cml-data`: versioned, deduplicated datasets with lineage.
struct CMLData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cml-data",
        abstract: "Version directories as datasets: deduplicated, verified, with lineage.",
        discussion: """
            A version records every file of a directory (path, size, mode, sha256; symbolic links as \
            links) in the store (--store, else $CML_STORE, else ~/.cml); each distinct content is stored \
            once. Versions are named NAME (the latest), NAME@3 (its number), NAME@latest, NAME@ID (an \
            id prefix), or a bare id prefix. Lists are JSON lines when piped, tables on a terminal.

            Examples:
              cml-data snapshot ./data --name mnist -m "raw download"
              cml-data ls mnist
              cml-data diff mnist@1 mnist@2
              cml-data checkout mnist@2 ./mnist-v2
              cml-run --data mnist@2 -- python train.py   # $CML_DATA_MNIST is its path
              cml-data log mnist
              cml-data export mnist@2 v2.tar.zst && cml-data --store /other import v2.tar.zst
              cml-data rm mnist@1 && cml-data gc
            """,
        subcommands: [SnapshotCommand.self, List.self, Show.self, Diff.self, Log.self, Blame.self, Checkout.self, Get.self,
                      Export.self, Import.self, Verify.self, Remove.self, CollectGarbage.self]
    )
}

struct JobsOption: ParsableArguments {
    @Option(help: ArgumentHelp("Threads to hash and copy with (default: one per available CPU).", valueName: "n"))
    var jobs: Int?

    func resolve() throws(CMLError) -> Int {
        guard let jobs else { return ParallelWork.availableCPUs }
        guard jobs >= 1 else { throw CMLError.usage("--jobs must be 1 or more") }
        return jobs
    }
}

@main
enum Main {
    static func main() {
        let names = CMLData.configuration.subcommands.compactMap { $0.configuration.commandName }
        let arguments = StoreLocation.optionsAfterSubcommand(Array(CommandLine.arguments.dropFirst()), subcommands: names)
        // Inside a run recorded against a server, $CML_STORE is the server's spool on this machine: its
        // datasets are the server's (a --store given names what it names).
        if let inherited = getenv("CML_STORE").map({ String(cString: $0) }), !inherited.isEmpty,
           !StoreLocation.isRemote(inherited), let server = RunSpool.server(of: inherited) {
            setenv("CML_STORE", server, 1)
        }
        CMLData.runAsTool(arguments)
    }
}

func warn(_ message: String) {
    Console.error("cml-data: warning: \(message)\n")
}

func printLine(_ object: JSON) throws(CMLError) {
    try Console.out(object.serialized + "\n")
}

/// `2026-11-27 10:21` for tables.
func shortTime(_ seconds: Double) -> String {
    String(Clock.rfc3339(seconds).prefix(16)).replacingOccurrences(of: "T", with: " ")
}

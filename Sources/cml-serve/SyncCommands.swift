import ArgumentParser
import CMLCommandLine
import CMLKit

/// The two stores of a push or pull: this machine's (`--store`) and the other one (a URL or directory).
struct SyncStores: ParsableArguments {
    @Option(help: ArgumentHelp("This machine's store (default: $CML_STORE, else ~/.cml).", valueName: "path"))
    var store: String?

    @Option(name: .long, help: ArgumentHelp("A file holding the token for the other store (default: $CML_TOKEN).", valueName: "path"))
    var tokenFile: String?

    func open(other: String) throws(CMLError) -> (local: any Store, other: any Store) {
        let local = try StoreLocation.openDirectory(store)
        let remote = try StoreLocation.open(other, tokenFile: tokenFile)
        guard remote.location != local.location else { throw CMLError.usage("\(other) is this store itself") }
        return (local, remote)
    }

    /// Copies each run, printing what it sent as a JSON line; a run the other side holds as another run is
    /// reported and the others go on. Ends `failed` when any was refused.
    static func copy(_ ids: [String], from source: any Store, to target: any Store) throws(CMLError) {
        let sync = RunSync(from: source, to: target)
        var refused = 0
        for id in ids {
            do throws(CMLError) {
                try Console.out(try sync.copyRun(id).json.serialized + "\n")
            } catch where error.kind == .conflict {
                Console.error("cml-serve: error: \(error.description)\n")
                refused += 1
            }
        }
        if refused > 0 {
            throw CMLError("\(refused) of \(ids.count) run\(ids.count == 1 ? " was" : "s were") not copied: another run has the id in \(target.location)")
        }
    }
}

struct Push: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy runs of this store to another (cml-serve's URL, or a store directory), sending only what it lacks.",
        discussion: """
            Asks the other store what it has of each run (the record, its series' point counts, its log's \
            size, its artifacts, each blob by hash) and sends the rest; an interrupted push resumes, and \
            pushing again sends nothing. A run the other side holds under the same id as a different run is \
            refused, naming both, and never overwritten. Prints one JSON line per run with what was sent. \
            Runs come as ids or prefixes, as JSON lines with an "id" on stdin, or --all for every run of \
            this store. Runs that waited in the server's spool (their cml-run could not reach it) go \
            up first.

            Examples:
              cml-serve push http://gpu-box:8080 --all
              cml-run ls --where 'acc > 0.9' | cml-serve push http://gpu-box:8080
              cml-serve push http://gpu-box:8080 0192f3a4 --token-file ~/.cml-token
            """
    )

    @Argument(help: ArgumentHelp("The other store: http://HOST:PORT, or a directory.", valueName: "url"))
    var destination: String

    @Argument(help: "Runs to push (ids, prefixes or names); default: stdin's JSON lines.")
    var ids: [String] = []

    @Flag(help: "Push every run of this store.") var all = false

    @OptionGroup var stores: SyncStores

    func run() throws {
        let (local, remote) = try stores.open(other: destination)
        let chosen = try SyncRuns.ids(ids, all: all, in: local)
        try SyncStores.copy(chosen, from: local, to: remote)
    }
}

struct Pull: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy runs of another store (cml-serve's URL, or a store directory) into this one, fetching only what it lacks.",
        discussion: """
            The same engine as push, the other way. Runs come as ids or prefixes, as JSON lines on stdin, \
            as the runs that --where, --project and --tag select on the other store, or --all for every \
            run there.

            Examples:
              cml-serve pull http://gpu-box:8080 --where 'acc > 0.9'
              cml-serve pull http://gpu-box:8080 0192f3a4
            """
    )

    @Argument(help: ArgumentHelp("The other store: http://HOST:PORT, or a directory.", valueName: "url"))
    var source: String

    @Argument(help: "Runs to pull (ids, prefixes or names); default: stdin's JSON lines, or those the options select.")
    var ids: [String] = []

    @Flag(help: "Pull every run of the other store.") var all = false

    @Option(name: .customLong("where"), help: ArgumentHelp("Only runs matching this expression (as cml-run ls --where).", valueName: "expr"))
    var filter: String?

    @Option(help: "Only runs of this project.") var project: String?
    @Option(help: "Only runs with this tag (repeatable: all of them).") var tag: [String] = []

    @OptionGroup var stores: SyncStores

    func run() throws {
        let (local, remote) = try stores.open(other: source)
        let chosen: [String]
        if ids.isEmpty, filter != nil || project != nil || !tag.isEmpty {
            let query = try RunQuery.parse(project: project, status: nil, tags: tag, since: nil, filter: filter, sort: [], limit: nil)
            chosen = try remote.runs(query).map(\.id)
        } else {
            chosen = try SyncRuns.ids(ids, all: all, in: remote)
        }
        try SyncStores.copy(chosen, from: remote, to: local)
    }
}

enum SyncRuns {
    /// The runs named on the command line, else every run of `store` (oldest first) with `all`, else
    /// those on stdin: an empty stdin (`ls` that matched nothing) copies nothing.
    static func ids(_ arguments: [String], all: Bool, in store: any Store) throws(CMLError) -> [String] {
        if all {
            guard arguments.isEmpty else { throw CMLError.usage("--all and run ids do not go together") }
            return try store.runs(RunQuery()).map(\.id).reversed()
        }
        return try RunInput.ids(arguments: arguments, stdinLines: Console.stdinLines, store: store)
    }
}

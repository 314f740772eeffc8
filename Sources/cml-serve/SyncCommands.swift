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

    /// Copies each dataset version (with the ancestors the other side lacks), then each run (with the
    /// versions it used or made), printing what each sent as a JSON line; a version or run the other
    /// side holds as another one is reported and the others go on. Ends `failed` when any was refused.
    static func copy(_ ids: [String], versions: [String], from source: any Store, to target: any Store) throws(CMLError) {
        let datasets = DatasetSync(from: source, to: target)
        var refusedVersions = 0
        for id in versions {
            do throws(CMLError) {
                for copy in try datasets.copyVersion(id) { try Console.out(copy.json.serialized + "\n") }
            } catch where error.kind == .conflict {
                Console.error("cml-serve: error: \(error.description)\n")
                refusedVersions += 1
            }
        }
        let sync = RunSync(from: source, to: target)
        var refused = 0
        for id in ids {
            do throws(CMLError) {
                let copy = try sync.copyRun(id)
                try Console.out(copy.json.serialized + "\n")
                for refusal in copy.refusedVersions { Console.error("cml-serve: error: \(refusal)\n") }
                refusedVersions += copy.refusedVersions.count
            } catch where error.kind == .conflict {
                Console.error("cml-serve: error: \(error.description)\n")
                refused += 1
            }
        }
        var failures: [String] = []
        if refusedVersions > 0 {
            failures.append("\(refusedVersions) dataset version\(refusedVersions == 1 ? "" : "s")")
        }
        if refused > 0 { failures.append("\(refused) of \(ids.count) run\(ids.count == 1 ? "" : "s")") }
        if !failures.isEmpty {
            throw CMLError("\(failures.joined(separator: " and ")) not copied: another has the id (or number) in \(target.location)")
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

            A run takes with it the dataset versions it used and those it made, when the other store \
            lacks them; --dataset NAME pushes every version of a dataset, NAME@VER one version, \
            and --all every version of every dataset. A version goes with its ancestors that the other \
            store lacks, parents first, and keeps its id and number there: a version whose id the other \
            store holds as another version, or whose number another version of its dataset has there, \
            is refused, naming both. Prints one JSON line per version (id, dataset, version, created, \
            blobs, blob_bytes) before those of the runs.

            Examples:
              cml-serve push http://gpu-box:8080 --all
              cml-serve push http://gpu-box:8080 --dataset mnist@3
              cml-run ls --where 'acc > 0.9' | cml-serve push http://gpu-box:8080
              cml-serve push http://gpu-box:8080 0192f3a4 --token-file ~/.cml-token
            """
    )

    @Argument(help: ArgumentHelp("The other store: http://HOST:PORT, or a directory.", valueName: "url"))
    var destination: String

    @Argument(help: "Runs to push (ids, prefixes or names); default: stdin's JSON lines.")
    var ids: [String] = []

    @Flag(help: "Push every run and every dataset version of this store.") var all = false

    @Option(name: .customLong("dataset"), help: ArgumentHelp("A dataset (every version) or one version to push (repeatable).", valueName: "name[@ver]"))
    var datasets: [String] = []

    @OptionGroup var stores: SyncStores

    func run() throws {
        let (local, remote) = try stores.open(other: destination)
        let versions = try SyncRuns.versions(datasets, all: all, in: local)
        let chosen = try SyncRuns.ids(ids, all: all, readingStdin: datasets.isEmpty, in: local)
        try SyncStores.copy(chosen, versions: versions, from: local, to: remote)
    }
}

struct Pull: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy runs of another store (cml-serve's URL, or a store directory) into this one, fetching only what it lacks.",
        discussion: """
            The same engine as push, the other way. Runs come as ids or prefixes, as JSON lines on stdin, \
            as the runs that --where, --project and --tag select on the other store, or --all for every \
            run there. Dataset versions come as with push: those the runs used or made, --dataset, and \
            with --all every version there.

            Examples:
              cml-serve pull http://gpu-box:8080 --where 'acc > 0.9'
              cml-serve pull http://gpu-box:8080 0192f3a4
            """
    )

    @Argument(help: ArgumentHelp("The other store: http://HOST:PORT, or a directory.", valueName: "url"))
    var source: String

    @Argument(help: "Runs to pull (ids, prefixes or names); default: stdin's JSON lines, or those the options select.")
    var ids: [String] = []

    @Flag(help: "Pull every run and every dataset version of the other store.") var all = false

    @Option(name: .customLong("dataset"), help: ArgumentHelp("A dataset (every version) or one version to pull (repeatable).", valueName: "name[@ver]"))
    var datasets: [String] = []

    @Option(name: .customLong("where"), help: ArgumentHelp("Only runs matching this expression (as cml-run ls --where).", valueName: "expr"))
    var filter: String?

    @Option(help: "Only runs of this project.") var project: String?
    @Option(help: "Only runs with this tag (repeatable: all of them).") var tag: [String] = []

    @OptionGroup var stores: SyncStores

    func run() throws {
        let (local, remote) = try stores.open(other: source)
        let versions = try SyncRuns.versions(datasets, all: all, in: remote)
        let chosen: [String]
        if ids.isEmpty, filter != nil || project != nil || !tag.isEmpty {
            let query = try RunQuery.parse(project: project, status: nil, tags: tag, since: nil, filter: filter, sort: [], limit: nil)
            chosen = try remote.runs(query).map(\.id)
        } else {
            chosen = try SyncRuns.ids(ids, all: all, readingStdin: datasets.isEmpty, in: remote)
        }
        try SyncStores.copy(chosen, versions: versions, from: remote, to: local)
    }
}

enum SyncRuns {
    /// The runs named on the command line, else every run of `store` (oldest first) with `all`, else
    /// those on stdin when `readingStdin`: an empty stdin (`ls` that matched nothing) copies nothing.
    static func ids(_ arguments: [String], all: Bool, readingStdin: Bool, in store: any Store) throws(CMLError) -> [String] {
        if all {
            guard arguments.isEmpty else { throw CMLError.usage("--all and run ids do not go together") }
            return try store.runs(RunQuery()).map(\.id).reversed()
        }
        if arguments.isEmpty && !readingStdin { return [] }
        return try RunInput.ids(arguments: arguments, stdinLines: Console.stdinLines, store: store)
    }

    /// The ids of the versions `--dataset` names in `store` (NAME: every version of it; NAME@VER: that
    /// one), or of every version there with `all`; oldest first.
    static func versions(_ references: [String], all: Bool, in store: any Store) throws(CMLError) -> [String] {
        if all {
            guard references.isEmpty else { throw CMLError.usage("--all and --dataset do not go together") }
            return try store.datasetVersions(dataset: nil).reversed().map(\.id)
        }
        var ids: [String] = []
        for text in references {
            let reference = try VersionReference(text)
            var named = text.contains("@") ? [] : try store.datasetVersions(dataset: reference.name).reversed()
            // One version, a bare id prefix, or an error saying what there is.
            if named.isEmpty { named = [try store.resolveDatasetVersion(reference)] }
            for version in named where !ids.contains(version.id) { ids.append(version.id) }
        }
        return ids
    }
}

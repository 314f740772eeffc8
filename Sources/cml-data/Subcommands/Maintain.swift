import ArgumentParser
import CMLCommandLine
import CMLArchive
import CMLKit

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a version to a tar archive (.tar, .tar.gz, .tar.zst, .tar.xz; - for stdout).",
        discussion: """
            The archive holds cml-dataset.json (the version record), manifest.jsonl, then data/PATH for \
            every file and link. Every blob is checked as it is read. Inside cml-run the run records that \
            it used the version.

            Examples:
              cml-data export mnist@2 mnist-v2.tar.zst
              cml-data export mnist - | ssh host cml-data import -
            """
    )

    @OptionGroup var storeOption: StoreOption
    @Argument(help: ArgumentHelp("The version.", valueName: "version")) var version: String
    @Argument(help: ArgumentHelp("The archive to write.", valueName: "file")) var file: String

    func run() throws {
        let store = try storeOption.open()
        let found = try store.resolveDatasetVersion(try VersionReference(version))
        let bytes = try DatasetArchive.export(found, from: store, to: file)
        if let run = Datasets.currentRun(in: store) { try store.recordDatasetUse(run: run, [found]) }
        guard file != "-" else { return }
        try printLine(.object([("id", .string(found.id)), ("dataset", .string(found.dataset)), ("version", .int(found.number)),
                           ("archive", .string(FileSystem.absolutePath(file))), ("bytes", .int(bytes))]))
    }
}

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Read a version from an archive written by export, storing only content the store lacks.",
        discussion: """
            The version keeps its id, parents, message, run and time, and its number, unless its \
            dataset in this store has had that number or a later one: then it gets the dataset's next \
            number, and a note on stderr says so (numbers are never reused). --name imports it into \
            another dataset. Importing it again changes nothing (with --name naming another dataset, it \
            is refused: a version belongs to one dataset). An archive with an absolute path or .. in an \
            entry, a link pointing out of the dataset (unless --allow-outside-links, as for snapshot), \
            or contents that do not match its manifest is refused before anything is stored. Prints the \
            version as JSON. Against cml-serve (--store http://…), the content is stored in this \
            machine's spool of the server, then what the server lacks is sent and the version recorded \
            there once all of it is.

            Examples:
              cml-data import mnist-v2.tar.zst
              cml-data import shared.tar.gz --name mnist-shared
            """
    )

    @OptionGroup var storeOption: StoreOption
    @Argument(help: ArgumentHelp("The archive (- for stdin).", valueName: "file")) var file: String
    @Option(help: ArgumentHelp("Import it as this dataset (default: the name it had).", valueName: "name")) var name: String?
    @Flag(help: "Keep links that lead out of the dataset as links instead of refusing the archive.")
    var allowOutsideLinks = false

    func run() throws {
        if let name { try DatasetName.check(name) }
        let (store, server) = try storeOption.openWithSpool()
        let imported = try DatasetArchive.import(from: file, into: store, server: server, name: name,
                                                 allowOutsideLinks: allowOutsideLinks)
        let version = imported.version
        guard case .object(var members) = version.json else { return }
        members.append(("already_present", .bool(imported.alreadyPresent)))
        try printLine(.object(members))
        if let exported = imported.exportedNumber, exported != version.number {
            Console.error("cml-data: \(imported.exportedDataset)@\(exported) is \(version.reference) in this store "
                + "(\(version.dataset) has had version \(exported) or a later one here)\n")
        }
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Read back every blob of a version and check its hash.",
        discussion: """
            Prints one JSON line per missing or damaged blob (sha256, problem, detail, and the paths that \
            hold it), then a summary; exits 1 when anything is wrong.

            Example:
              cml-data verify mnist@2
            """
    )

    @OptionGroup var storeOption: StoreOption
    @Argument(help: ArgumentHelp("The version.", valueName: "version")) var version: String
    @OptionGroup var jobs: JobsOption

    func run() throws {
        let store = try storeOption.open()
        let found = try store.resolveDatasetVersion(try VersionReference(version))
        let (damage, blobs, bytes) = try Datasets.verify(found, in: store, jobs: try jobs.resolve())
        for problem in damage { try printLine(problem.json) }
        let missing = damage.filter { $0.problem == "missing" }.count
        try printLine(.object([("id", .string(found.id)), ("dataset", .string(found.dataset)), ("version", .int(found.number)),
                           ("blobs_checked", .int(Int64(blobs))), ("bytes_checked", .int(bytes)),
                           ("damaged", .int(Int64(damage.count - missing))), ("missing", .int(Int64(missing)))]))
        if !damage.isEmpty {
            throw CMLError("\(found.reference) has \(damage.count - missing) damaged and \(missing) missing blob\(damage.count == 1 ? "" : "s")",
                           hint: "a copy elsewhere can be imported again: cml-data import")
        }
    }
}

struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm",
        abstract: "Remove versions, and free the content no other version or run references.",
        discussion: """
            Content still referenced by another version, or by a run (its artifacts, its code patch), \
            stays. Versions naming a removed one as parent keep it in their lineage as missing. On a \
            terminal it asks first, unless --yes. Prints the versions removed and the bytes freed.

            Examples:
              cml-data rm mnist@1
              cml-data rm mnist@1 mnist@2 --yes
            """
    )

    @OptionGroup var storeOption: StoreOption
    @Flag(name: [.short, .long], help: "Do not ask.") var yes = false
    @Argument(help: ArgumentHelp("Versions to remove.", valueName: "version")) var versions: [String] = []

    func run() throws {
        guard !versions.isEmpty else { throw CMLError.usage("no version given", hint: "cml-data rm NAME@N") }
        let store = try storeOption.open()
        var found: [DatasetVersion] = []
        for text in versions {
            let version = try store.resolveDatasetVersion(try VersionReference(text))
            if !found.contains(where: { $0.id == version.id }) { found.append(version) }
        }
        let names = found.prefix(3).map(\.reference).joined(separator: ", ") + (found.count > 3 ? ", …" : "")
        if !yes, !Console.confirm("cml-data: remove \(names)?") { throw CMLError("nothing removed") }
        let report = try store.removeDatasetVersions(found.map(\.id))
        try printLine(.object([("removed", .array(found.map { .string($0.id) })), ("blobs_removed", .int(Int64(report.blobs))),
                           ("bytes_freed", .int(report.bytesFreed))]))
    }
}

struct CollectGarbage: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Delete content that no version and no run references, and report the bytes freed.",
        discussion: """
            Also removes what interrupted writers left (older than an hour) and cml-data get copies of \
            removed versions. Packs of small blobs are rewritten without the dead ones. Run artifacts and \
            patches count as references. --dry-run only counts.

            Examples:
              cml-data gc
              cml-data gc --dry-run
            """
    )

    @OptionGroup var storeOption: StoreOption
    @Flag(help: "Count what would be freed; delete nothing.") var dryRun = false

    func run() throws {
        let report = try storeOption.open().collectGarbage(dryRun: dryRun)
        try printLine(.object([("blobs_removed", .int(Int64(report.blobs))), ("bytes_freed", .int(report.bytesFreed)),
                           ("dry_run", .bool(dryRun))]))
    }
}

import ArgumentParser
import CMLCommandLine
import CMLKit

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List versions, newest first (of one dataset when named).",
        discussion: """
            Fields: id, dataset, version (its number), parents, message, files, size, new_blobs and \
            new_bytes (what recording it added to the store), manifest, source, run, created_at.

            Examples:
              cml-data ls
              cml-data ls mnist --format table
              cml-data ls | jq -r 'select(.new_bytes > 1e9) | .id'
            """
    )

    @OptionGroup var storeOption: StoreOption
    @OptionGroup var format: FormatOption
    @Argument(help: ArgumentHelp("A dataset.", valueName: "name")) var name: String?

    func run() throws {
        let outputFormat = format.resolve()
        if let name { try DatasetName.check(name) }
        let versions = try storeOption.open(for: .reading).datasetVersions(dataset: name)
        try Console.print(versions.map(\.json), format: outputFormat) {
            TextTable(headers: ["ID", "VERSION", "FILES", "SIZE", "NEW", "CREATED", "RUN", "MESSAGE"], rows: versions.map { version in
                [RunID.short(version.id), version.reference, formatCount(version.files), formatBytes(version.size),
                 formatBytes(version.newBytes), shortTime(version.createdAt), version.run.map(RunID.short) ?? "",
                 TextTable.truncate(version.message ?? "", to: 50)]
            })
        }
    }
}

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Print a version's manifest: path, size, mode, and sha256 and crc32c or link, one file per line.",
        discussion: """
            Examples:
              cml-data show mnist@2
              cml-data show mnist | jq -r 'select(.size > 1e6) | .path'
            """
    )

    @OptionGroup var storeOption: StoreOption
    @OptionGroup var format: FormatOption
    @Argument(help: ArgumentHelp("The version (NAME, NAME@N, NAME@ID).", valueName: "version")) var version: String

    func run() throws {
        let outputFormat = format.resolve()
        let store = try storeOption.open(for: .reading)
        let manifest = try Datasets.manifest(of: try store.resolveDatasetVersion(try VersionReference(version)), in: store)
        if outputFormat == .jsonl {
            // The manifest is already JSON lines.
            try Console.out(bytes: manifest.encoded)
            return
        }
        try Console.print(manifest.entries.map(\.json), format: outputFormat) {
            TextTable(headers: ["MODE", "SIZE", "SHA256", "PATH"], rows: manifest.entries.map { entry in
                [ManifestEntry.modeText(entry.mode), String(entry.size), entry.sha256.map { String($0.prefix(16)) } ?? "link",
                 entry.linkTarget.map { "\(entry.path) -> \($0)" } ?? entry.path]
            })
        }
    }
}

struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "What changed between two versions: added, removed, modified and renamed files.",
        discussion: """
            A file gone from one path and present at another with the same content is renamed. Piped, one \
            JSON object per change (change, path, from for renames, size, mode, sha256, and old_… for \
            modifications); on a terminal, the changes and a summary.

            Examples:
              cml-data diff mnist@1 mnist@2
              cml-data diff mnist@1 mnist | jq -r 'select(.change == "added") | .path'
            """
    )

    @OptionGroup var storeOption: StoreOption
    @OptionGroup var format: FormatOption
    @Argument(help: ArgumentHelp("The older version.", valueName: "a")) var old: String
    @Argument(help: ArgumentHelp("The newer version.", valueName: "b")) var new: String

    func run() throws {
        let outputFormat = format.resolve()
        let store = try storeOption.open(for: .reading)
        let from = try store.resolveDatasetVersion(try VersionReference(old))
        let to = try store.resolveDatasetVersion(try VersionReference(new))
        let changes = ManifestDiff.changes(from: try Datasets.manifest(of: from, in: store), to: try Datasets.manifest(of: to, in: store))
        guard outputFormat == .table else {
            try Console.print(changes.map(\.json), format: outputFormat) {
                TextTable(headers: ["CHANGE", "PATH", "FROM", "SIZE"], rows: changes.map {
                    [$0.kind.rawValue, $0.path, $0.from ?? "", String($0.size)]
                })
            }
            return
        }
        let shownLimit = 50
        var text = TextTable(headers: ["CHANGE", "PATH", "SIZE"], rows: changes.prefix(shownLimit).map { change in
            [change.kind.rawValue, change.from.map { "\($0) -> \(change.path)" } ?? change.path, formatBytes(change.size)]
        }).render(.table)
        if changes.count > shownLimit { text += "… and \(changes.count - shownLimit) more (--format jsonl lists all)\n" }
        text += "\n" + TextTable(headers: ["\(from.reference) -> \(to.reference)", "FILES", "BYTES"], rows: ManifestChange.Kind.allCases.map { kind in
            let matching = changes.filter { $0.kind == kind }
            return [kind.rawValue, formatCount(Int64(matching.count)), formatBytes(matching.reduce(0) { $0 + $1.size })]
        }).render(.table)
        if changes.isEmpty { text = "\(from.reference) and \(to.reference) hold the same files\n" }
        try Console.out(text)
    }
}

struct Log: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log",
        abstract: "A version's lineage: it and all its ancestors, with the runs that made and used each.",
        discussion: """
            Newest first, following every parent; each record is a version (as ls prints it) with \
            used_by, the runs that used it, and made_by_step ({pipeline, step}) when a pipeline's step \
            made it. A parent the store does not hold (removed, or not imported) \
            is printed as {"id": …, "missing": true}.

            Examples:
              cml-data log mnist-clean
              cml-data log mnist@3 | jq -r .run
            """
    )

    @OptionGroup var storeOption: StoreOption
    @OptionGroup var format: FormatOption
    @Argument(help: ArgumentHelp("The version (default: the dataset's latest).", valueName: "version")) var version: String

    func run() throws {
        let outputFormat = format.resolve()
        let store = try storeOption.open(for: .reading)
        let entries = try Lineage.ancestors(of: try store.resolveDatasetVersion(try VersionReference(version)), in: store)
        try Console.print(entries.map(\.json), format: outputFormat) {
            TextTable(headers: ["VERSION", "ID", "CREATED", "FILES", "SIZE", "PARENTS", "MADE BY", "USED BY", "MESSAGE"],
                      rows: entries.map { entry in
                guard let version = entry.version else {
                    return ["(not in this store)", RunID.short(entry.id), "", "", "", "", "", "", ""]
                }
                return [version.reference, RunID.short(version.id), shortTime(version.createdAt), formatCount(version.files),
                        formatBytes(version.size), version.parents.map(RunID.short).joined(separator: ","),
                        (version.run.map(RunID.short) ?? "") + (entry.madeByStep.map { " (step \($0.step))" } ?? ""),
                        entry.usedBy.map(RunID.short).joined(separator: ","),
                        TextTable.truncate(version.message ?? "", to: 40)]
            })
        }
    }
}

struct Blame: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blame",
        abstract: "Which version, and which run, introduced the content a file has in a version.",
        discussion: """
            Follows the file's content back through the parents that hold it (across renames) to the \
            version where it first appeared, and prints that version's id, number, run and message, and \
            the path the content had there (introduced_as).

            Example:
              cml-data blame mnist-clean@4 train/labels.csv
            """
    )

    @OptionGroup var storeOption: StoreOption
    @Argument(help: ArgumentHelp("The version.", valueName: "version")) var version: String
    @Argument(help: ArgumentHelp("A file of it (as cml-data show prints it).", valueName: "path")) var path: String

    func run() throws {
        let store = try storeOption.open(for: .reading)
        let found = try store.resolveDatasetVersion(try VersionReference(version))
        try printLine(try Lineage.blame(path, in: found, store: store).json)
    }
}

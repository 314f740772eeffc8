import ArgumentParser
import CMLCommandLine
import CMLKit
import Glibc

struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Record a directory as a new version of a dataset, and print the version as JSON.",
        discussion: """
            Every regular file is hashed (sha256, and CRC-32C for checkout to check) on all cores, except files unchanged since the last \
            snapshot of the dataset (same device, inode, size, modification and change time); content \
            the store lacks is stored, once however many files hold it, so renaming or moving files \
            stores nothing. Symbolic links are recorded as links (their target text), never followed; a \
            link that leads out of the directory (an absolute target, or .. above it) refuses the \
            snapshot, since what it points to would not be stored, unless --allow-outside-links. Modes \
            are kept; sockets, pipes and devices are skipped with a warning. A file that changes while \
            it is read is read again, twice at most, then the snapshot is refused. Unreadable files, and \
            names that are not UTF-8, refuse the snapshot unless --skip-unreadable. Inside cml-run the \
            version records the run that made it.

            Against cml-serve (--store http://…), the files are hashed and stored in this machine's \
            spool of the server (under $XDG_CACHE_HOME, else ~/.cache, /cml/spool), whose stat cache \
            spares hashing unchanged files again, and only the content the server lacks is sent \
            (new_blobs and new_bytes count it); the version is recorded on the server once all of it is \
            there, so a failed upload leaves nothing half-made.

            A directory that holds exactly what the dataset's latest version holds (the parent the new \
            version would have) makes no new version: that version is printed, with "unchanged": true, \
            and a note on stderr.

            The new version's parent is the dataset's latest version unless --parent is given (repeat \
            it for a merge; --parent none starts a new line).

            Examples:
              cml-data snapshot ./data --name mnist -m "raw download"
              cml-data snapshot ./cleaned --name mnist-clean --parent mnist@1
              cml-run -- sh -c 'python prepare.py && cml-data snapshot out --name features'
            """
    )

    @OptionGroup var storeOption: StoreOption

    @Argument(help: ArgumentHelp("The directory to record.", valueName: "dir"))
    var directory: String

    @Option(help: ArgumentHelp("The dataset (default: the directory's name).", valueName: "name"))
    var name: String?

    @Option(name: .customLong("parent"), help: ArgumentHelp("A parent version (repeatable; default: the dataset's latest; 'none' for no parent).", valueName: "version"))
    var parents: [String] = []

    @Option(name: [.customShort("m"), .long], help: "What this version is.")
    var message: String?

    @Flag(help: "Leave out files that cannot be read, or whose names are not UTF-8 (each named in a warning), instead of refusing.")
    var skipUnreadable = false

    @Flag(help: "Record links that lead out of the directory as links instead of refusing.")
    var allowOutsideLinks = false

    @OptionGroup var jobs: JobsOption

    func run() throws {
        let (store, server) = try storeOption.openWithSpool()
        var parentReferences: [VersionReference]?
        if parents == ["none"] {
            parentReferences = []
        } else if !parents.isEmpty {
            parentReferences = try parents.map { text throws(CMLError) in try VersionReference(text) }
        }
        let request = SnapshotRequest(directory: directory, name: name, parents: parentReferences, message: message,
                                      skipUnreadable: skipUnreadable, allowOutsideLinks: allowOutsideLinks,
                                      jobs: try jobs.resolve(),
                                      run: Datasets.currentRun(in: server ?? store))
        let started = Clock.now()
        let report = try Snapshot.take(request, store: store, server: server, warn: warn)
        guard case .object(var members) = report.version.json else { return }
        members.append(("hashed_files", .int(Int64(report.hashedFiles))))
        members.append(("hashed_bytes", .int(report.hashedBytes)))
        members.append(("unchanged_files", .int(Int64(report.unchangedFiles))))
        members.append(("skipped", .array(report.skipped.map(JSON.string))))
        members.append(("unchanged", .bool(report.unchanged)))
        members.append(("seconds", .double(((Clock.now() - started) * 1000).rounded() / 1000)))
        try printLine(.object(members))
        if report.unchanged {
            Console.error("cml-data: nothing changed since \(report.version.reference): no version recorded"
                + (message == nil ? "" : " (the message was not kept)") + "\n")
        } else if isatty(STDERR_FILENO) == 1 {
            let version = report.version
            Console.error("cml-data: \(version.reference): \(formatCount(version.files)) files, "
                + "\(formatBytes(version.size)); hashed \(formatCount(Int64(report.hashedFiles))), "
                + "stored \(formatBytes(version.newBytes)) new\n")
        }
    }
}

import ArgumentParser
import CMLCommandLine
import CMLKit
import Glibc

struct Checkout: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkout",
        abstract: "Write a version's files into a directory, checking every file as it goes.",
        discussion: """
            Each file is checked by the CRC-32C its manifest keeps (sha256 for versions older than it; \
            `cml-data verify` checks every sha256). \
            The files are cloned where the filesystem can share blocks (btrfs, XFS), else copied inside \
            the kernel; with --link, blobs stored as files of their own (1 MiB and more) are hard-linked \
            and everything is made read-only (editing a linked file would damage the store). DIR must \
            not exist or be empty, unless --force, which replaces it. Everything is written beside DIR \
            first and moved into place when complete: a damaged blob or a full disk leaves nothing behind. \
            Inside cml-run the run records that it used the version. Against cml-serve (--store \
            http://…), the content this machine's spool of the server lacks is downloaded into it first \
            (each blob checked by its sha256 as it comes), then written from there as from a directory.

            Examples:
              cml-data checkout mnist@2 ./mnist
              cml-data checkout mnist ./mnist --force --link
            """
    )

    @OptionGroup var storeOption: StoreOption
    @Argument(help: ArgumentHelp("The version.", valueName: "version")) var version: String
    @Argument(help: ArgumentHelp("Where to write it.", valueName: "dir")) var directory: String
    @Flag(help: "Hard-link large blobs instead of copying them, and make everything read-only.") var link = false
    @Flag(help: "Replace DIR when it exists and is not empty.") var force = false
    @OptionGroup var jobs: JobsOption

    func run() throws {
        let (store, used) = try fetchedVersion(version, storeOption)
        let found = used.version
        let report = try Datasets.checkout(found, from: store, to: directory, replace: force,
                                           options: Materializer.Options(link: link, jobs: try jobs.resolve()))
        try used.recordUse()
        try printLine(.object([
            ("id", .string(found.id)), ("dataset", .string(found.dataset)), ("version", .int(found.number)),
            ("path", .string(FileSystem.absolutePath(directory))), ("files", .int(Int64(report.files))),
            ("bytes", .int(report.bytes)), ("reflinked", .int(Int64(report.reflinked))),
            ("hard_linked", .int(Int64(report.hardLinked))),
        ]))
    }
}

struct Get: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get",
        abstract: "Print the path of a read-only copy of a version, made on first use and shared after.",
        discussion: """
            The copy lives in the store's cache (STORE/cache/datasets/ID); later calls print the same \
            path at once. Against cml-serve (--store http://…), the version is downloaded into this \
            machine's spool of the server and the copy lives in the spool's cache. cml-data gc removes copies of removed versions. Inside cml-run the run records \
            that it used the version.

            Examples:
              python train.py --data "$(cml-data get mnist@2)"
              ls "$(cml-data get mnist)"
            """
    )

    @OptionGroup var storeOption: StoreOption
    @Argument(help: ArgumentHelp("The version.", valueName: "version")) var version: String

    func run() throws {
        let (store, used) = try fetchedVersion(version, storeOption)
        let path = try Datasets.cachedCopy(used.version, from: store)
        try used.recordUse()
        try Console.out(path + "\n")
    }
}

/// A version resolved in the store, and the store directory it can be read from on this machine: the
/// store itself, or a server's spool here, into which what it lacks of the version is fetched.
func fetchedVersion(_ text: String, _ option: StoreOption) throws(CMLError) -> (SQLiteStore, UsedVersion) {
    let (local, server) = try option.openWithSpool()
    let version = try (server ?? local).resolveDatasetVersion(try VersionReference(text))
    if let server { try Datasets.fetch(version, from: server, into: local) }
    return (local, UsedVersion(version: version, local: local, server: server))
}

struct UsedVersion {
    let version: DatasetVersion
    let local: SQLiteStore
    let server: (any Store)?

    /// Inside cml-run, records that the run used it: on the server when the run is there, else in the
    /// spool while the run waits there to upload (its upload records it on the server).
    func recordUse() throws(CMLError) {
        if let server, let run = Datasets.currentRun(in: server) {
            try server.recordDatasetUse(run: run, [version])
        } else if let run = Datasets.currentRun(in: local) {
            try local.recordDatasetUse(run: run, [version])
        }
    }
}

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
            Inside cml-run the run records that it used the version.

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
        let store = try storeOption.openDirectory()
        let found = try store.resolveDatasetVersion(try VersionReference(version))
        let report = try Datasets.checkout(found, from: store, to: directory, replace: force,
                                           options: Materializer.Options(link: link, jobs: try jobs.resolve()))
        if let run = Datasets.currentRun(in: store) { try store.recordDatasetUse(run: run, [found]) }
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
            path at once. cml-data gc removes copies of removed versions. Inside cml-run the run records \
            that it used the version.

            Examples:
              python train.py --data "$(cml-data get mnist@2)"
              ls "$(cml-data get mnist)"
            """
    )

    @OptionGroup var storeOption: StoreOption
    @Argument(help: ArgumentHelp("The version.", valueName: "version")) var version: String

    func run() throws {
        let store = try storeOption.openDirectory()
        let found = try store.resolveDatasetVersion(try VersionReference(version))
        let path = try Datasets.cachedCopy(found, from: store)
        if let run = Datasets.currentRun(in: store) { try store.recordDatasetUse(run: run, [found]) }
        try Console.out(path + "\n")
    }
}

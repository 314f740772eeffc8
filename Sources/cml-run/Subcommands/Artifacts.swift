import ArgumentParser
import CMLCommandLine
import CMLKit

struct ArtifactList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "artifacts",
        abstract: "List a run's artifacts, images and notes: JSON lines when piped, a table on a terminal.",
        discussion: """
            Examples:
              cml-run artifacts 0192f3a4
              cml-run artifacts 0192f3a4 | jq -r 'select(.kind == "image") | .name'
            """
    )

    @OptionGroup var storeOption: StoreOption

    @OptionGroup var formatOption: FormatOption

    @Argument(help: ArgumentHelp("The run (id or unique prefix).", valueName: "id"))
    var id: String?

    func run() throws {
        let outputFormat = formatOption.resolve()
        let store = try storeOption.open(for: .reading)
        // An empty pipe names no run: nothing to print.
        guard let runID = try RunInput.ids(arguments: id.map { [$0] } ?? [], stdinLines: Console.stdinLines, store: store).first else {
            return
        }
        let artifacts = try store.artifacts(run: runID)
        try Console.print(artifacts.map(\.json), format: outputFormat) {
            TextTable(
                headers: ["NAME", "VERSION", "KIND", "STEP", "TYPE", "SIZE", "SHA256", "RECORDED"],
                rows: artifacts.map { artifact in
                    [artifact.name, String(artifact.version), artifact.kind, artifact.step.map(String.init) ?? "",
                     artifact.isDirectory ? "directory (\(artifact.files) files)" : artifact.mediaType ?? "file",
                     outputFormat == .table ? formatBytes(artifact.size) : String(artifact.size),
                     outputFormat == .table ? String(artifact.sha256.prefix(12)) : artifact.sha256,
                     Clock.tableTime(artifact.time)]
                })
        }
    }
}

struct Get: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get",
        abstract: "Fetch an artifact of a run into a file or directory, and print the path written.",
        discussion: """
            The content is verified against its sha256 as it is written, and appears under its final name \
            only once it is whole. DEST defaults to the artifact's name in the current directory; an \
            existing directory receives it inside, as with cp. - writes a file artifact to stdout.

            Examples:
              cml-run get 0192f3a4 model.pt
              cml-run get 0192f3a4 checkpoints ./restored --force
              cml-run get 0192f3a4 epoch.png --step 3 /tmp/
              cml-run get 0192f3a4 text --version 1 -
              cml-run get 0192f3a4 text - | less
            """
    )

    @OptionGroup var storeOption: StoreOption

    @Option(help: "The version recorded at this step (default: the one recorded last).")
    var step: Int64?

    @Option(help: "The version with this number: 1 is the first recorded (see cml-run artifacts).")
    var version: Int?

    @Flag(help: "Replace DEST when it exists.")
    var force = false

    @Argument(help: ArgumentHelp("The run (id or unique prefix).", valueName: "id"))
    var id: String

    @Argument(help: "The artifact's name (see cml-run artifacts).")
    var name: String

    @Argument(help: ArgumentHelp("Where to write it, or - for stdout.", valueName: "dest"))
    var destination: String?

    func run() throws {
        let store = try storeOption.open(for: .reading)
        let runID = try store.resolveRunID(id)
        let artifact = try Artifacts.select(try store.artifacts(run: runID), name: name, step: step, version: version)
        if destination == "-" {
            try Artifacts.stream(artifact, from: store) { chunk throws(CMLError) in try Console.out(raw: chunk) }
            return
        }
        let written = try Artifacts.fetch(artifact, from: store, to: destination, force: force)
        try Console.out(written + "\n")
    }
}

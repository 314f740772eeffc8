import ArgumentParser
import CMLCommandLine
import CMLKit
import Glibc

/// `cml-log`: record scalars, parameters and tags into a run from shell scripts and any language.
@main
struct CMLLog: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cml-log",
        abstract: "Record scalars, parameters and tags into a run, from a shell script or any language.",
        discussion: """
            Inside a run (cml-run -- …) it finds the run through the environment and sends what it is \
            given through $CML_LOG_FD, so cml-run records it; elsewhere name the run with --run. Artifacts, \
            images and notes are stored before cml-log returns, and it prints their record. With \
            no subcommand it reads JSON lines on stdin: an object of numbers is one step of scalars, \
            {"param": {"lr": 0.01}} records parameters, {"tag": "best"} a tag.

            Examples:
              cml-log scalar loss 0.3 --step 10
              cml-log param lr 0.01
              cml-log tag best
              cml-log artifact ./model.pt --kind model
              cml-log image ./samples/epoch3.png --step 3
              cml-log text "lr dropped at epoch 5"
              printf '{"step": 3, "loss": 0.3, "acc": 0.9}\\n' | cml-log --run 01a21c9f
              cml-log tensorboard ./runs --run 01a21c9f
            """,
        subcommands: [Lines.self, Scalar.self, ParamCommand.self, Tag.self, ArtifactCommand.self, Image.self, Text.self,
                      TensorBoard.self],
        defaultSubcommand: Lines.self
    )

    static func main() {
        // `cml-log --run ID scalar loss 0.3` as well as `cml-log scalar loss 0.3 --run ID`.
        let names = configuration.subcommands.map { $0._commandName }
        runAsTool(StoreLocation.optionsAfterSubcommand(Array(CommandLine.arguments.dropFirst()), options: ["--run", "--store"],
                                                       subcommands: names))
    }
}

/// Where what is logged goes: the run's channel inside cml-run, else the store.
struct Target: ParsableArguments {
    @Option(help: ArgumentHelp("The run (id or unique prefix; default: $CML_RUN_ID, inside cml-run).", valueName: "id"))
    var run: String?

    @OptionGroup var storeOption: StoreOption

    var store: String? { storeOption.store }

    func open() throws(CMLError) -> RunLogTarget {
        try RunLogTarget(run: run, store: store, tokenFile: storeOption.tokenFile)
    }

    /// Stores an artifact (always into the store: see `RunLogTarget.storeAndRun`) and prints its record.
    func recordArtifact(_ body: (any Store, String) throws(CMLError) -> Artifact) throws(CMLError) {
        let (store, id) = try RunLogTarget.storeAndRun(run: run, store: self.store, tokenFile: storeOption.tokenFile)
        try Console.out(try body(store, id).json.serialized + "\n")
    }

    /// Records one message (a JSON line as on stdin).
    func record(_ message: JSON) throws(CMLError) {
        let destination = try open()
        try destination.send(Array(message.serialized.utf8))
        try destination.close()
    }
}

struct Lines: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lines", abstract: "Read JSON lines on stdin (the default).", shouldDisplay: false)

    @OptionGroup var target: Target

    func run() throws {
        let destination = try target.open()
        var number = 0
        while let line = readLine(strippingNewline: true) {
            number += 1
            do throws(CMLError) { try destination.send(Array(line.utf8)) } catch {
                throw CMLError("stdin line \(number): \(error.message)")
            }
        }
        try destination.close()
    }
}

struct Scalar: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Record one scalar.", discussion: "Example:\n  cml-log scalar loss 0.3 --step 10")

    @OptionGroup var target: Target
    @Argument(help: "The metric's name.") var key: String
    @Argument(help: "Its value.") var value: Double
    @Option(help: "The step (default: the metric's last step plus one).") var step: Int64?

    func run() throws {
        var members: [(String, JSON)] = [(key, .double(value))]
        if let step { members.insert(("step", .int(step)), at: 0) }
        try target.record(.object(members))
    }
}

struct ParamCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "param", abstract: "Record one parameter.", discussion: "Example:\n  cml-log param lr 0.01")

    @OptionGroup var target: Target
    @Argument(help: "The parameter's name.") var key: String
    @Argument(help: "Its value (a number, true/false, or text).") var value: String

    func run() throws {
        try target.record(.object([("param", .object([(key, Param.typedValue(value))]))]))
    }
}

struct Tag: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tag the run.", discussion: "Example:\n  cml-log tag best")

    @OptionGroup var target: Target
    @Argument(help: "The tag.") var name: String

    func run() throws {
        try target.record(.object([("tag", .string(name))]))
    }
}

struct ArtifactCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "artifact", abstract: "Store a file or a directory with the run.",
        discussion: """
            The content goes to the store's blob store under its sha256 (a directory as a manifest of its \
            files, links kept as links); storing the same content again takes no space. Each call adds a \
            record: logging model.pt every epoch keeps every version.

            Examples:
              cml-log artifact ./model.pt --kind model
              cml-log artifact ./checkpoints --name ckpt --step 1000
            """)

    @OptionGroup var target: Target
    @Argument(help: "The file or directory.") var path: String
    @Option(help: "The name to fetch it by (default: the file's name).") var name: String?
    @Option(help: "What it is: model, data, … (default: artifact).") var kind: String?
    @Option(help: "The step it belongs to.") var step: Int64?

    func run() throws {
        try target.recordArtifact { store, id throws(CMLError) in
            try Artifacts.record(path: path, name: name, kind: kind, step: step, run: id, in: store, warn: warnLine)
        }
    }
}

struct Image: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Store an image (PNG, JPEG, GIF, WebP or SVG) with the run.",
        discussion: "Example:\n  cml-log image ./samples/epoch3.png --step 3")

    @OptionGroup var target: Target
    @Argument(help: "The image file.") var path: String
    @Option(help: "The name to fetch it by (default: the file's name).") var name: String?
    @Option(help: "The step it belongs to.") var step: Int64?

    func run() throws {
        try target.recordArtifact { store, id throws(CMLError) in
            try Artifacts.record(path: path, name: name, kind: nil, step: step, image: true, run: id, in: store, warn: warnLine)
        }
    }
}

struct Text: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Store a note with the run.",
        discussion: "Examples:\n  cml-log text \"lr dropped at epoch 5\"\n  git log -1 | cml-log text - --name commit-message")

    @OptionGroup var target: Target
    @Argument(help: "The note, or - to read it from stdin.") var text: String
    @Option(help: "The name to fetch it by (default: text).") var name: String?
    @Option(help: "The step it belongs to.") var step: Int64?

    func run() throws {
        var note = text
        if text == "-" {
            var bytes: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                bytes += buffer[0..<n]
            }
            note = String(decoding: bytes, as: UTF8.self)
        }
        try target.recordArtifact { store, id throws(CMLError) in
            try Artifacts.recordText(note, name: name, step: step, run: id, in: store)
        }
    }
}

func warnLine(_ text: String) {
    Console.error("cml-log: warning: \(text)\n")
}

struct TensorBoard: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tensorboard",
        abstract: "Import the scalars of TensorBoard event files under a directory.",
        discussion: """
            Reads every event file (name holding "tfevents") under DIR and records its scalars with \
            their steps and wall times. It writes to the store itself, also inside a run (the run is \
            then $CML_RUN_ID). Points the run already has with the same key, step and wall time are \
            left out, so importing the same files again adds nothing.

            Example:
              cml-log tensorboard ./runs --run 01a21c9f
            """)

    @OptionGroup var target: Target
    @Argument(help: ArgumentHelp("The directory holding the event files.", valueName: "dir")) var directory: String

    func run() throws {
        let (store, id) = try RunLogTarget.storeAndRun(run: target.run, store: target.store, tokenFile: target.storeOption.tokenFile)
        let (added, skipped) = try TensorBoardImporter.importAll(from: directory, into: id, store: store, warn: warnLine)
        // A count for a person watching; scripts check the metrics themselves.
        if Console.stderrIsTerminal {
            Console.error("cml-log: imported \(added) points into run \(RunID.short(id))"
                              + (skipped > 0 ? " (\(skipped) already recorded)\n" : "\n"))
        }
    }
}

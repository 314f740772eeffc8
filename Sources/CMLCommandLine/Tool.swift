import ArgumentParser
import CMLKit
import Glibc

/// `--store`, taken by every command that reads or writes the store.
public struct StoreOption: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The store directory (default: $CML_STORE, else ~/.cml).", valueName: "path"))
    public var store: String?

    public init() {}

    public func open() throws(CMLError) -> any Store { try StoreLocation.open(store) }
}

/// `--format`, taken by every listing.
public struct FormatOption: ParsableArguments {
    @Option(help: ArgumentHelp("jsonl, json, table, csv or tsv (default: table on a terminal, else jsonl).", valueName: "format"))
    public var format: String?

    public init() {}

    public func resolve() throws(CMLError) -> OutputFormat { try OutputFormat.resolve(format) }
}

/// Prints records as JSON lines (or one JSON array), or as a table, CSV or TSV.
public func printRecords(_ objects: [JSON], format: OutputFormat, table: () -> TextTable) {
    var out = BufferedOutput()
    switch format {
    case .jsonl: for object in objects { out.withBuffer { object.write(to: &$0); $0 += "\n" } }
    case .json: out.append(JSON.array(objects).serialized + "\n")
    case .table, .csv, .tsv: out.append(table().render(format))
    }
    out.flush()
}

extension ParsableCommand {
    /// Parses `arguments` and runs the command, then exits: every failure becomes one line on stderr,
    /// `TOOL: error: …`, and exit status 1, or 2 for a usage error (with the usage after it).
    public static func runAsTool(_ arguments: [String] = Array(CommandLine.arguments.dropFirst())) -> Never {
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
            Glibc.exit(0)
        } catch let error as CMLError {
            failTool(error)
        } catch let exit as ExitCode {
            Glibc.exit(exit.rawValue)
        } catch {
            if exitCode(for: error) == .validationFailure {
                let full = fullMessage(for: error)
                let usage = full.range(of: "Usage:").map { String(full[$0.lowerBound...]) + "\n" } ?? ""
                FileHandleOutput.standardError("\(toolName): error: \(message(for: error))\n" + usage)
                Glibc.exit(2)
            }
            exit(withError: error)
        }
    }

    /// Ends the tool with `error` as one line on stderr.
    public static func failTool(_ error: CMLError) -> Never {
        FileHandleOutput.standardError("\(toolName): error: \(error)\n")
        Glibc.exit(error.exitCode)
    }

    static var toolName: String { configuration.commandName ?? "cml" }
}

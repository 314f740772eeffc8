import ArgumentParser
import CMLKit
import Glibc

/// `--store`, taken by every command that reads or writes the store.
public struct StoreOption: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The store: a directory, or cml-serve's URL (default: $CML_STORE, else ~/.cml).", valueName: "path|url"))
    public var store: String?

    @Option(name: .long, help: ArgumentHelp("A file holding the token for a cml-serve store (default: $CML_TOKEN).", valueName: "path"))
    public var tokenFile: String?

    public init() {}

    /// The store, for a command that only reads (`.reading`: a store it cannot write opens read-only) or
    /// one that writes.
    public func open(for access: StoreAccess = .writing) throws(CMLError) -> any Store {
        try StoreLocation.open(store, for: access, tokenFile: tokenFile)
    }

    /// The store as a directory on this machine, for what only such a store does (see
    /// `StoreLocation.openDirectory`).
    public func openDirectory(for access: StoreAccess = .writing) throws(CMLError) -> SQLiteStore {
        try StoreLocation.openDirectory(store, for: access)
    }

    /// A store directory on this machine to work in, and the server when the store is one (see
    /// `StoreLocation.openWithSpool`).
    public func openWithSpool() throws(CMLError) -> (local: SQLiteStore, server: (any Store)?) {
        try StoreLocation.openWithSpool(store, tokenFile: tokenFile)
    }
}

extension OutputFormat: ExpressibleByArgument {}

/// `--format`, taken by every listing.
public struct FormatOption: ParsableArguments {
    @Option(help: ArgumentHelp("The output format (default: table on a terminal, else jsonl).", valueName: "format"))
    public var format: OutputFormat?

    public init() {}

    public func resolve() -> OutputFormat { format ?? .automatic }
}

extension ParsableCommand {
    /// Parses `arguments` and runs the command, then exits: every failure becomes one line on stderr,
    /// `TOOL: error: …`, and exit status 1, or 2 for a usage error (with the usage after it); a reader of
    /// stdout that went away (`| head`) ends it quietly with status 0.
    public static func runAsTool(_ arguments: [String] = Array(CommandLine.arguments.dropFirst())) -> Never {
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
            Glibc.exit(0)
        } catch {
            exitFailing(error)
        }
    }

    /// Ends the tool after `error`: one line on stderr, or the usage after a usage error (see `runAsTool`).
    static func exitFailing(_ error: any Error) -> Never {
        switch error {
        case let error as CMLError:
            failTool(error)
        case let exit as ExitCode:
            Glibc.exit(exit.rawValue)
        default:
            if exitCode(for: error) == .validationFailure {
                let full = fullMessage(for: error)
                let usage = full.range(of: "Usage:").map { String(full[$0.lowerBound...]) + "\n" } ?? ""
                Console.error("\(toolName): error: \(message(for: error))\n" + usage)
                Glibc.exit(2)
            }
            exit(withError: error)
        }
    }

    /// Ends the tool with `error` as one line on stderr (nothing when stdout's reader went away).
    public static func failTool(_ error: CMLError) -> Never {
        if !error.isOutputClosed { Console.error("\(toolName): error: \(error)\n") }
        Glibc.exit(error.exitCode)
    }

    static var toolName: String { configuration.commandName ?? "cml" }
}

extension AsyncParsableCommand {
    /// `runAsTool` for a tool whose command runs async (a server).
    public static func runAsyncTool(_ arguments: [String] = Array(CommandLine.arguments.dropFirst())) async -> Never {
        do {
            var command = try parseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            Glibc.exit(0)
        } catch {
            exitFailing(error)
        }
    }
}

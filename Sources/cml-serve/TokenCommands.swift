import ArgumentParser
import CMLCommandLine
import CMLKit

/// `cml-serve token create|ls|revoke`: the tokens the server asks requests for.
struct Token: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Create, list and revoke the tokens cml-serve asks for.",
        discussion: """
            The store keeps each token's name, scope, projects and times, and the sha256 of the token: \\
            the token itself is printed once, by create, and kept nowhere. Scopes, each allowing what the \\
            ones before it allow: read (GET every route), write (also record runs), agent (also take \\
            queued runs), admin (also manage tokens). A token bound to projects (--project, repeatable) \\
            sees only their runs and the blobs those runs reference.

            Examples:
              cml-serve token create --name laptop --scope write | jq -r .token > ~/.cml-token
              cml-serve token create --name ci --scope read --project vision --project nlp
              cml-serve token ls
              cml-serve token revoke laptop
            """,
        subcommands: [Create.self, List.self, Revoke.self]
    )

    /// The store, as a keeper of tokens.
    static func tokens(_ option: StoreOption, for access: StoreAccess) throws(CMLError) -> any TokenStore {
        let store = try option.open(for: access)
        guard let tokens = store as? any TokenStore else {
            throw CMLError("the store at \(store.location) keeps no tokens", hint: "use a store directory")
        }
        return tokens
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a token; print it once, as a JSON line with its name, scope and projects."
        )

        @OptionGroup var storeOption: StoreOption

        @Option(help: "The token's name, unique in the store: 1 to 64 letters, digits, '.', '_' or '-'.")
        var name: String

        @Option(help: ArgumentHelp("What it allows: read, write, agent or admin.", valueName: "scope"))
        var scope: String

        @Option(name: .customLong("project"), help: ArgumentHelp("Bind it to a project (repeatable; default: every project).", valueName: "project"))
        var projects: [String] = []

        func run() throws {
            let scope = try TokenScope(parsing: scope)
            let issued = try Token.tokens(storeOption, for: .writing).issueToken(name: name, scope: scope, projects: projects)
            try Console.out(issued.json.serialized + "\n")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ls",
            abstract: "List tokens, revoked ones too, oldest first: never a token or its hash."
        )

        @OptionGroup var storeOption: StoreOption

        @OptionGroup var formatOption: FormatOption

        func run() throws {
            let tokens = try Token.tokens(storeOption, for: .reading).tokens()
            try Console.print(tokens.map(\.json), format: formatOption.resolve()) {
                TextTable(headers: ["NAME", "SCOPE", "PROJECTS", "CREATED", "REVOKED"], rows: tokens.map { token in
                    [token.name, token.scope.rawValue, token.projects.isEmpty ? "*" : token.projects.joined(separator: ","),
                     Clock.rfc3339(token.createdAt), token.revokedAt.map(Clock.rfc3339) ?? ""]
                })
            }
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a token: a running server refuses it from its next request on."
        )

        @OptionGroup var storeOption: StoreOption

        @Argument(help: "The token's name.")
        var name: String

        func run() throws {
            _ = try Token.tokens(storeOption, for: .writing).revokeToken(name: name)
        }
    }
}

import Glibc

/// What a command does with the store. A command that only reads can read a store it cannot write (an
/// archive, a read-only mount); one that writes is refused such a store before it starts.
public enum StoreAccess: Sendable {
    case reading, writing
}

/// Where the store is: `--store`, else `$CML_STORE`, else `~/.cml`.
public enum StoreLocation {
    /// Always absolute, so that the path handed to a run's child means the same after it changes directory.
    public static func resolve(_ option: String?) -> String {
        var path = FileSystem.homeDirectory + "/.cml"
        if let option, !option.isEmpty { path = option }
        else if let env = getenv("CML_STORE"), env.pointee != 0 { path = String(cString: env) }
        return path.contains("://") ? path : FileSystem.absolutePath(path)
    }

    /// How long a write waits for another writer: `$CML_BUSY_TIMEOUT` seconds, default 10.
    public static var busyTimeout: Double {
        if let env = getenv("CML_BUSY_TIMEOUT"), let value = Double(String(cString: env)), value >= 0 { return value }
        return 10
    }

    /// The store at `--store`, `$CML_STORE` or ~/.cml: a directory, or `cml-serve` at an http(s) URL
    /// (with the token from `tokenFile`, else `$CML_TOKEN`). Runs that waited in a server's spool (their
    /// cml-run could not reach it) are uploaded first, when the server answers.
    public static func open(_ option: String?, for access: StoreAccess = .writing, tokenFile: String? = nil) throws(CMLError) -> any Store {
        let location = resolve(option)
        guard isRemote(location) else { return try openDirectory(option, for: access) }
        let store = try HTTPStore(url: location, token: try HTTPStore.token(file: tokenFile))
        let spool = RunSpool(for: location)
        let waiting = spool.waiting()
        if !waiting.isEmpty {
            do {
                // Said in the name of the command that opened the store, as its own messages are.
                let tool = FileSystem.baseName(CommandLine.arguments.first ?? "cml")
                let copies = try spool.uploadAll(to: store) { Console.error("\(tool): warning: \($0)\n") }
                let uploaded = copies.filter(\.complete).count
                if uploaded > 0 { Console.error("\(tool): uploaded \(uploaded) run\(uploaded == 1 ? "" : "s") that waited in \(spool.directory)\n") }
            } catch where error.kind == .unavailable {
                // The command itself will say that the server cannot be reached.
            }
        }
        return store
    }

    /// The store as a directory on this machine, for what only such a store does (recording a run's
    /// console output as it comes, ingesting a directory in parallel, copying blobs without reading them).
    public static func openDirectory(_ option: String?, for access: StoreAccess = .writing,
                                     concurrentReads: Bool = false) throws(CMLError) -> SQLiteStore {
        let location = resolve(option)
        if isRemote(location) {
            throw CMLError("this needs the store on this machine, not \(location), for now", hint: "use a store directory")
        }
        return try SQLiteStore(directory: location, busyTimeout: busyTimeout, access: access, concurrentReads: concurrentReads)
    }

    /// The store as a directory on this machine to work in, and the server when the store is one: then
    /// the directory is this machine's spool of it (cml-run's, `RunSpool`), where `cml-data` stores files
    /// before they go up and fetches versions to check them out.
    public static func openWithSpool(_ option: String?, tokenFile: String? = nil) throws(CMLError) -> (local: SQLiteStore, server: (any Store)?) {
        guard isRemote(resolve(option)) else { return (try openDirectory(option), nil) }
        let server = try open(option, tokenFile: tokenFile)
        return (try RunSpool(for: server.location).open(), server)
    }

    public static func isRemote(_ location: String) -> Bool {
        location.hasPrefix("http://") || location.hasPrefix("https://")
    }

    /// `cml-run --store DIR ls …` means `cml-run ls --store DIR …`: the store (and with cml-log, the
    /// run: `options`, each taking a value) may be named before the subcommand, as users of
    /// `git -C DIR log` expect.
    /// `subcommands` is asked for only when such an option comes first: computing the names costs about a
    /// millisecond of reflection, which `cml-run -- CMD` must not pay.
    public static func optionsAfterSubcommand(_ arguments: [String], options: [String] = ["--store"],
                                              subcommands: @autoclosure () -> [String]) -> [String] {
        var index = 0
        while index < arguments.count {
            if options.contains(arguments[index]), index + 1 < arguments.count { index += 2 }
            else if options.contains(where: { arguments[index].hasPrefix($0 + "=") }) { index += 1 }
            else { break }
        }
        guard index > 0, index < arguments.count, subcommands().contains(arguments[index]) else { return arguments }
        return [arguments[index]] + arguments[..<index] + arguments[(index + 1)...]
    }
}

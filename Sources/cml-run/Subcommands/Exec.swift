import ArgumentParser
import CMLCommandLine
import CMLKit
import Glibc

struct Exec: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run a command and record it (the default: cml-run [options] -- CMD [ARGS…]).",
        discussion: """
            The command's output passes through live; its exit status becomes cml-run's (128+N when \
            signal N killed it, 127 when it does not exist). SIGINT, SIGTERM and SIGHUP go to its whole \
            process group and the run ends `aborted`; a signal cml-run's launcher ignores (`cml-run … &` \
            in a script ignores SIGINT, nohup SIGHUP) stays ignored. Ctrl-Z stops the command and \
            cml-run, `fg` resumes both. When the store cannot record how the command ended (a full \
            disk), cml-run says so on stderr and the store records it when it is next opened.

            While the command runs, cml-run renews the run's heartbeat in the store every 5 s \
            ($CML_HEARTBEAT_INTERVAL): a run with six missed beats shows as lost on any host, and \
            `cml-run abort` from another host reaches it through the store within a second.

            Scalars the command writes to TensorBoard event files (SummaryWriter of PyTorch or \
            tensorboardX, TensorFlow) under the working directory or a --tb-dir are imported as metrics \
            with their steps and times, every --tb-interval seconds and once more at the end.

            Secrets are not recorded: values of variables and options named like a key, token or \
            password are <redacted>, and files such as .env, *.pem and id_rsa stay out of the code patch \
            (named in code.left_out). Outputs stay out too: .cmlignore in the repository's root takes \
            gitignore rules, and untracked files over --max-untracked-size are recorded by name, size \
            and sha256 only.

            --data NAME@VER gives the command a read-only copy of a dataset version (cml-data get), \
            its path in $CML_DATA_NAME (the name in capitals, other characters as _), and records that \
            the run used it.

            Examples:
              cml-run --name baseline --tag sweep --param seed=1 -- python train.py --lr 0.01
              cml-run --data mnist@2 -- sh -c 'python train.py --data "$CML_DATA_MNIST"'
            """
    )

    @OptionGroup var storeOption: StoreOption

    @OptionGroup var record: RecordOptions

    @Flag(inversion: .prefixedNo, help: "Run the command under a pseudo-terminal (default: when stdout is a terminal).")
    var tty: Bool?

    @Argument(parsing: .postTerminator, help: ArgumentHelp("The command to run, after --.", valueName: "command"))
    var command: [String] = []

    func run() throws {
        var options = try record.runOptions()
        options.terminal = tty
        try Self.execute(command, options: options, store: storeOption.store, tokenFile: storeOption.tokenFile)
    }

    /// Runs and records `command`, then exits with its status. `cml-run -- CMD` (no options) comes here
    /// straight from main: parsing nothing with ArgumentParser still costs about 2 ms of start-up.
    static func execute(_ command: [String], options: RunOptions, store location: String?, tokenFile: String? = nil) throws(CMLError) -> Never {
        // Main has called RunCapture.prepare() already when it saw a run; if not, this is still first.
        let signals = SignalForwarder.shared
        let warn: @Sendable (String) -> Void = { Console.error("cml-run: warning: \($0)\n") }
        let resolved = StoreLocation.resolve(location)
        guard StoreLocation.isRemote(resolved) else {
            let (status, _, store) = try RunCapture.run(command, options: options, storeDirectory: resolved,
                                                     openStore: { () throws(CMLError) in try StoreLocation.openDirectory(location) },
                                                     supervisor: signals, warn: warn)
            // Exit here, with the store still open: closing the last connection would checkpoint the WAL
            // with two fsyncs, milliseconds that every run would pay; the next writer's commits do it instead.
            withExtendedLifetime(store) { Glibc.exit(status) }
        }
        // A server's runs are recorded into its spool here and uploaded as they go (see `RunSpool`).
        let token = try HTTPStore.token(file: tokenFile)
        let spool = RunSpool(for: resolved)
        // Made first, so that libcurl loads while the run is prepared.
        let uploader = SpoolUploader(spool: spool, token: token, warn: warn)
        var spoolStore: SQLiteStore?
        // Versions given with --data are found on the server (the one thing a run waits on it for).
        let datasetServer: HTTPStore? = options.datasets.isEmpty ? nil : try HTTPStore(url: resolved, token: token)
        let (status, _, store) = try RunCapture.run(command, options: options, storeDirectory: spool.directory,
                                                 datasetServer: datasetServer,
                                                 openStore: { () throws(CMLError) in
                                                     let store = try spool.open()
                                                     spoolStore = store
                                                     return store
                                                 },
                                                 recorded: { id in
                                                     guard let spoolStore else { return }
                                                     uploader.start(store: spoolStore, run: id)
                                                 },
                                                 supervisor: signals, warn: warn)
        if !uploader.finish(deadline: uploadDeadline) {
            warn("\(resolved) has not all of the run yet: it waits in \(spool.directory), and goes up with the next cml command that reaches the server, or with cml-serve push \(resolved)")
        }
        withExtendedLifetime(store) { Glibc.exit(status) }
    }

    /// Seconds cml-run keeps trying to upload the end of a run to an unreachable server:
    /// `$CML_UPLOAD_WAIT`, default 10.
    static var uploadDeadline: Double {
        getenv("CML_UPLOAD_WAIT").flatMap { Double(String(cString: $0)) }.map { max(0, $0) } ?? 10
    }

    /// The project when `--project` is not given: `$CML_PROJECT`, else `default`.
    static var defaultProject: String {
        getenv("CML_PROJECT").map { String(cString: $0) } ?? "default"
    }
}

/// `10M` → 10485760; nil when it is not a size.
func parseSize(_ text: String) -> Int? {
    let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
    var digits = text.uppercased()
    var scale = 1
    if digits.hasSuffix("B") { digits.removeLast() }
    if digits.hasSuffix("I") { digits.removeLast() }
    if let last = digits.last, let unit = units[last] { scale = unit; digits.removeLast() }
    guard let value = Double(digits), value >= 0 else { return nil }
    return Int(value * Double(scale))
}

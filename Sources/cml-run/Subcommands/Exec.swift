import ArgumentParser
import CMLKit
import Glibc

struct Exec: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run a command and record it (the default: cml-run [options] -- CMD [ARGS…]).",
        discussion: """
            The command's output passes through live; its exit status becomes cml-run's (128+N when \
            signal N killed it, 127 when it does not exist). SIGINT, SIGTERM and SIGHUP go to its whole \
            process group and the run ends `aborted`.

            Scalars the command writes to TensorBoard event files (SummaryWriter of PyTorch or \
            tensorboardX, TensorFlow) under the working directory or a --tb-dir are imported as metrics \
            with their steps and times, every --tb-interval seconds and once more at the end.

            --data NAME@VER gives the command a read-only copy of a dataset version (cml-data get), \
            its path in $CML_DATA_NAME (the name in capitals, other characters as _), and records that \
            the run used it.

            Examples:
              cml-run --name baseline --tag sweep --param seed=1 -- python train.py --lr 0.01
              cml-run --data mnist@2 -- sh -c 'python train.py --data "$CML_DATA_MNIST"'
            """
    )

    @OptionGroup var storeOption: StoreOption

    @Option(help: "A name for the run.")
    var name: String?

    @Option(help: ArgumentHelp("The project the run belongs to (default: $CML_PROJECT, else 'default')."))
    var project: String?

    @Option(name: .customLong("tag"), help: ArgumentHelp("A tag for the run (repeatable).", valueName: "tag"))
    var tags: [String] = []

    @Option(name: .customLong("param"), help: ArgumentHelp("A parameter key=value (repeatable); overrides the command line's.", valueName: "key=value"))
    var params: [String] = []

    @Option(help: ArgumentHelp("Files that would make the code patch larger than this are left out, and named in the record (bytes, or with K, M, G).", valueName: "size"))
    var maxPatchSize: String = "10M"

    @Flag(inversion: .prefixedNo, help: "Run the command under a pseudo-terminal (default: when stdout is a terminal).")
    var tty: Bool?

    @Flag(name: .customLong("no-metrics"), help: "Do not parse metrics from the output.")
    var noMetrics = false

    @Option(name: .customLong("metric-pattern"), help: ArgumentHelp("A regular expression with named groups key, value and optionally step, for metrics the default rules miss (repeatable).", valueName: "regex"))
    var metricPatterns: [String] = []

    @Option(help: ArgumentHelp("Seconds between samples of CPU, memory and GPU use (sys/… metrics); 0 turns them off.", valueName: "seconds"))
    var monitorInterval: Double = 10

    @Option(name: .customLong("tb-dir"), help: ArgumentHelp("Also import TensorBoard scalars from event files under this directory (repeatable; relative to the working directory, which is always searched).", valueName: "dir"))
    var tensorBoardDirectories: [String] = []

    @Flag(name: .customLong("no-tensorboard"), help: "Do not import scalars from TensorBoard event files.")
    var noTensorBoard = false

    @Option(name: .customLong("tb-interval"), help: ArgumentHelp("Seconds between searches for new TensorBoard scalars while the command runs (one more follows its end).", valueName: "seconds"))
    var tensorBoardInterval: Double = 5

    @Option(name: .customLong("data"), help: ArgumentHelp("A dataset version the command uses (repeatable): its read-only copy's path is in $CML_DATA_NAME.", valueName: "name@version"))
    var datasets: [String] = []

    @Argument(parsing: .postTerminator, help: ArgumentHelp("The command to run, after --.", valueName: "command"))
    var command: [String] = []

    func run() throws {
        try Self.execute(command, options: try makeOptions(), store: storeOption.store)
    }

    /// Runs and records `command`, then exits with its status. `cml-run -- CMD` (no options) comes here
    /// straight from main: parsing nothing with ArgumentParser still costs about 2 ms of start-up.
    static func execute(_ command: [String], options: RunOptions, store location: String?) throws(CMLError) -> Never {
        // Main has called RunCapture.prepare() already when it saw a run; if not, this is still first.
        let signals = SignalForwarder.shared
        let (status, store) = try RunCapture.run(command, options: options, openStore: { () throws(CMLError) in try StoreLocation.open(location) },
                                                 signals: signals) { warning in
            FileHandleOutput.standardError("cml-run: warning: \(warning)\n")
        }
        // Exit here, with the store still open: closing the last connection would checkpoint the WAL
        // with two fsyncs, milliseconds that every run would pay; the next writer's commits do it instead.
        withExtendedLifetime(store) { Glibc.exit(status) }
    }

    /// The project when `--project` is not given: `$CML_PROJECT`, else `default`.
    static var defaultProject: String {
        getenv("CML_PROJECT").map { String(cString: $0) } ?? "default"
    }

    private func makeOptions() throws(CMLError) -> RunOptions {
        var parsed: [Param] = []
        for text in params {
            guard let param = ParamParser.parseAssignment(text) else {
                throw .usage("--param \(text) is not key=value", hint: "e.g. --param lr=0.01")
            }
            parsed.append(param)
        }
        guard let limit = parseSize(maxPatchSize) else {
            throw .usage("--max-patch-size \(maxPatchSize) is not a size", hint: "e.g. 10M, 512K, 1G or a number of bytes")
        }
        if let name, name.isEmpty { throw .usage("--name must not be empty") }
        guard monitorInterval >= 0, monitorInterval.isFinite else { throw .usage("--monitor-interval must be 0 or more seconds") }
        guard tensorBoardInterval > 0, tensorBoardInterval.isFinite else { throw .usage("--tb-interval must be more than 0 seconds") }
        if noTensorBoard && !tensorBoardDirectories.isEmpty { throw .usage("--tb-dir and --no-tensorboard contradict each other") }
        let project = self.project ?? Self.defaultProject
        guard !project.isEmpty else { throw .usage("--project must not be empty") }
        var options = RunOptions(name: name, project: project, tags: tags, params: parsed, maxPatchBytes: limit,
                                 terminal: tty, parseMetrics: !noMetrics, monitorInterval: monitorInterval,
                                 metricPatterns: try metricPatterns.map { (text) throws(CMLError) in try MetricPattern(text) },
                                 importTensorBoard: !noTensorBoard, tensorBoardDirectories: tensorBoardDirectories,
                                 tensorBoardInterval: tensorBoardInterval)
        options.datasets = try datasets.map { (text) throws(CMLError) in try VersionReference(text) }
        return options
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

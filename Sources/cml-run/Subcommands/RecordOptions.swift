import ArgumentParser
import CMLKit

/// What a run is recorded as and how its output is read: shared by `cml-run -- CMD`, which runs it now,
/// and `cml-run spec`, which writes it into a spec for an agent.
struct RecordOptions: ParsableArguments {
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

    @Option(help: ArgumentHelp("Untracked files larger than this are recorded by name, size and sha256 instead of their content (bytes, or with K, M, G; .cmlignore leaves files out altogether).", valueName: "size"))
    var maxUntrackedSize: String = "1M"

    @Flag(name: .customLong("no-metrics"), help: "Do not parse metrics from the output.")
    var noMetrics = false

    @Option(name: .customLong("metric-pattern"), help: ArgumentHelp("A regular expression with named groups key, value and optionally step, for metrics the default rules miss (repeatable).", valueName: "regex"))
    var metricPatterns: [String] = []

    @Option(help: ArgumentHelp("Seconds between samples of CPU, memory and GPU use (sys/… metrics); 0 turns them off.", valueName: "seconds"))
    var monitorInterval: Double = 10

    @Option(name: .customLong("tb-dir"), help: ArgumentHelp("Also import TensorBoard scalars and CSV logs from under this directory (repeatable; relative to the working directory, which is always searched).", valueName: "dir"))
    var tensorBoardDirectories: [String] = []

    @Flag(name: .customLong("no-tensorboard"), help: "Do not import scalars from TensorBoard event files.")
    var noTensorBoard = false

    @Flag(name: .customLong("no-csv-logs"), help: "Do not import the CSV logs of Lightning's and Keras's CSVLogger.")
    var noCSVLogs = false

    @Option(name: .customLong("tb-interval"), help: ArgumentHelp("Seconds between searches for new TensorBoard scalars while the command runs (one more follows its end).", valueName: "seconds"))
    var tensorBoardInterval: Double = 5

    @Option(name: .customLong("data"), help: ArgumentHelp("A dataset version the command uses (repeatable): its read-only copy's path is in $CML_DATA_NAME.", valueName: "name@version"))
    var datasets: [String] = []

    func runOptions() throws(CMLError) -> RunOptions {
        var parsed: [Param] = []
        for text in params {
            guard let param = ParamParser.parseAssignment(text) else {
                throw .usage("--param \(text) is not key=value", hint: "e.g. --param lr=0.01")
            }
            try NameLimits.check(param)
            parsed.append(param)
        }
        guard let limit = parseSize(maxPatchSize) else {
            throw .usage("--max-patch-size \(maxPatchSize) is not a size", hint: "e.g. 10M, 512K, 1G or a number of bytes")
        }
        guard let untrackedLimit = parseSize(maxUntrackedSize) else {
            throw .usage("--max-untracked-size \(maxUntrackedSize) is not a size", hint: "e.g. 1M, 512K, 1G or a number of bytes")
        }
        if let name {
            if name.isEmpty { throw .usage("--name must not be empty") }
            try NameLimits.check(name, "--name")
        }
        for tag in tags { try NameLimits.check(tag, "--tag") }
        guard monitorInterval >= 0, monitorInterval.isFinite else { throw .usage("--monitor-interval must be 0 or more seconds") }
        guard tensorBoardInterval > 0, tensorBoardInterval.isFinite else { throw .usage("--tb-interval must be more than 0 seconds") }
        if noTensorBoard && !tensorBoardDirectories.isEmpty { throw .usage("--tb-dir and --no-tensorboard contradict each other") }
        let project = self.project ?? Exec.defaultProject
        guard !project.isEmpty else { throw .usage("--project must not be empty") }
        try NameLimits.check(project, "project")
        var options = RunOptions(name: name, project: project, tags: tags, params: parsed, maxPatchBytes: limit,
                                 parseMetrics: !noMetrics, monitorInterval: monitorInterval,
                                 metricPatterns: try metricPatterns.map { (text) throws(CMLError) in try MetricPattern(text) },
                                 importTensorBoard: !noTensorBoard, tensorBoardDirectories: tensorBoardDirectories,
                                 tensorBoardInterval: tensorBoardInterval, importCSVLogs: !noCSVLogs)
        options.datasets = try datasets.map { (text) throws(CMLError) in try VersionReference(text) }
        options.maxUntrackedBytes = untrackedLimit
        return options
    }

    /// The same settings, for a spec.
    func apply(to spec: inout RunSpec) throws(CMLError) {
        let options = try runOptions()
        spec.name = options.name
        spec.project = options.project
        spec.tags = options.tags
        spec.params = options.params
        spec.capture.parseMetrics = options.parseMetrics
        spec.capture.metricPatterns = options.metricPatterns.map(\.source)
        spec.capture.monitorInterval = options.monitorInterval
        spec.capture.importTensorBoard = options.importTensorBoard
        spec.capture.tensorBoardDirectories = options.tensorBoardDirectories
        spec.capture.tensorBoardInterval = options.tensorBoardInterval
        spec.datasets = options.datasets.map(\.description)
    }
}

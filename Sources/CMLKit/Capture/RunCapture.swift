import Foundation
import Glibc

/// What `cml-run` was asked to record besides the command.
public struct RunOptions: Sendable {
    public var name: String?
    public var project: String
    public var tags: [String]
    /// Given with `--param`; they override the same keys read from the command line.
    public var params: [Param]
    public var maxPatchBytes: Int
    /// Untracked files larger than this are recorded by name, size and sha256 instead of their content.
    public var maxUntrackedBytes = GitCapture.defaultMaxUntrackedBytes
    /// nil: a pseudo-terminal when stdout is a terminal.
    public var terminal: Bool?
    public var parseMetrics: Bool
    /// Seconds between samples of the process tree's resources (`sys/…` metrics); 0 turns sampling off.
    public var monitorInterval: Double
    /// The user's metric patterns, besides the default rules.
    public var metricPatterns: [MetricPattern]
    /// Whether scalars written to TensorBoard event files are imported (see `TensorBoardImporter`).
    public var importTensorBoard: Bool
    /// Whether the CSV logs of Lightning's and Keras's `CSVLogger` are imported (see `CSVLogImporter`).
    public var importCSVLogs: Bool
    /// Where to look for event files besides the working directory (`--tb-dir`); relative paths are
    /// taken from the working directory.
    public var tensorBoardDirectories: [String]
    /// Seconds between searches for new TensorBoard scalars while the command runs.
    public var tensorBoardInterval: Double
    /// Dataset versions the command uses: each is materialised (`cml-data get`), its path exported as
    /// `CML_DATA_NAME`, and the run records that it used it.
    public var datasets: [VersionReference] = []
    /// A pipeline step's inputs (`SpecInput`): each path is exported as `CML_INPUT_NAME`.
    public var inputs: [SpecInput] = []
    /// A pipeline step's outputs, recorded when its command succeeds.
    public var outputs = RunOutputs()

    public init(name: String? = nil, project: String = "default", tags: [String] = [], params: [Param] = [],
                maxPatchBytes: Int = 10 << 20, terminal: Bool? = nil, parseMetrics: Bool = true,
                monitorInterval: Double = 10, metricPatterns: [MetricPattern] = [], importTensorBoard: Bool = true,
                tensorBoardDirectories: [String] = [], tensorBoardInterval: Double = 5, importCSVLogs: Bool = true) {
        self.name = name
        self.project = project
        self.tags = tags
        self.params = params
        self.maxPatchBytes = maxPatchBytes
        self.terminal = terminal
        self.parseMetrics = parseMetrics
        self.monitorInterval = monitorInterval
        self.metricPatterns = metricPatterns
        self.importTensorBoard = importTensorBoard
        self.importCSVLogs = importCSVLogs
        self.tensorBoardDirectories = tensorBoardDirectories
        self.tensorBoardInterval = tensorBoardInterval
    }
}

/// Where a run is started from and recorded as. `cml-run` records a new run of a command started in its
/// own directory and environment, its output passed through; an agent takes over a queued run it has
/// leased, in the directory it reproduced the code in, with the spec's environment on top of its own.
public struct RunLaunch: Sendable {
    public enum Record: Sendable {
        /// A new run; the code state is captured from the working directory.
        case new
        /// The queued run of this lease; its code state was recorded when it was queued.
        case leased(QueueLease)
    }

    public var record: Record
    /// Where the command starts; nil: our own working directory.
    public var workingDirectory: String?
    /// Set in the command's environment on top of ours (before cml's own variables).
    public var environment: [(String, String)]
    /// Whether the command's output also goes to our stdout and stderr.
    public var passThrough: Bool
    /// stdin from /dev/null and always a process group of its own (see `ChildProcess`).
    public var detached: Bool

    public init(record: Record = .new, workingDirectory: String? = nil, environment: [(String, String)] = [],
                passThrough: Bool = true, detached: Bool = false) {
        self.record = record
        self.workingDirectory = workingDirectory
        self.environment = environment
        self.passThrough = passThrough
        self.detached = detached
    }
}

/// Why a run's command was stopped from outside, which decides how the run ends whatever the command's
/// exit status: a program that exits 0 on SIGTERM was still interrupted.
public enum RunStop: Sendable, Equatable {
    case aborted(reason: String?)
    /// Put back on its queue (only for a leased run).
    case requeue(reason: String)
}

/// Who may stop a run's command besides the command itself: cml-run's signal forwarder, or an agent.
public protocol RunSupervisor: Sendable {
    /// The command has started; stops go to it from now on (one asked for earlier is sent at once).
    func supervise(_ child: ChildProcess)
    /// The command has ended and was reaped: its process id may be reused, so nothing goes to it any more.
    func reaped()
    /// Why the command was stopped, if it was.
    var stop: RunStop? { get }
    /// Stops the command because `cml-run abort` asked, the way that this supervisor aborts.
    func abort()
}

extension SignalForwarder: RunSupervisor {
    public func supervise(_ child: ChildProcess) { forward(to: child) }
    public var stop: RunStop? { receivedSignal.map { _ in .aborted(reason: nil) } }
}

/// Runs a command and records it completely: see the README's "What a run records".
public enum RunCapture {
    /// Call first thing in main when the command will be a run, before parsing options: blocks the
    /// forwarded signals (before any thread exists) and starts initialising libgit2 meanwhile.
    public static func prepare() {
        _ = SignalForwarder.shared
        GitCapture.warmUp(directory: RunEnvironment.workingDirectory)
    }

    /// Runs `command`, passing its output through live, and returns the status cml-run should exit with
    /// (the child's, or 128+N when signal N killed it; 127 when the command does not exist), the signal
    /// that killed it if one did, and the store,
    /// which `openStore` opens while the code state is captured on another thread.
    /// `storeDirectory` is where `openStore` opens the store, left out of the code state when it lies in
    /// the work tree. `recorded` is called with the run's id once the run is in the store.
    /// `queueStore`: where a leased run's lease is, when not in the opened store (a remote agent's
    /// server): the run starts there, and its end is recorded only in the opened store (see `RunRecord`).
    /// `datasetServer`: where `--data` versions are found and fetched from into the opened store, when
    /// that is a server's spool and the run was not leased (a leased run's are on `queueStore`).
    public static func run(_ command: [String], options: RunOptions, launch: RunLaunch = RunLaunch(),
                           storeDirectory: String? = nil, queueStore: (any Store)? = nil, datasetServer: (any Store)? = nil,
                           openStore: () throws(CMLError) -> SQLiteStore, recorded: (String) -> Void = { _ in },
                           supervisor: any RunSupervisor,
                           warn: @escaping @Sendable (String) -> Void) throws(CMLError) -> (status: Int32, signal: Int32?, store: SQLiteStore) {
        guard !command.isEmpty else { throw .usage("no command given after --", hint: "cml-run [options] -- CMD [ARGS…]") }
        let startedAt = Clock.now()
        let lease: QueueLease? = if case .leased(let lease) = launch.record { lease } else { nil }
        let id = lease?.runID ?? RunID.make(at: startedAt)
        // A new run keeps a heartbeat; a leased one has its agent's lease.
        let heartbeatInterval = lease == nil ? try RunHeartbeat.configuredInterval() : nil
        let cwd = launch.workingDirectory ?? RunEnvironment.workingDirectory

        let codeCapture = lease == nil ? Background {
            captureCode(directory: cwd, maxPatchBytes: options.maxPatchBytes, maxUntrackedBytes: options.maxUntrackedBytes,
                        excluding: storeDirectory, warn: warn)
        } : nil
        let store = try openStore()
        let (code, patch) = codeCapture?.value ?? (.null, [])

        let channel = try LogChannel()
        var environment = ChildEnvironment(run: id, lease: lease, launch: launch, store: store, channel: channel)
        // Before the run is recorded: a version that does not exist leaves nothing behind.
        let inputs = try useDatasets(options.datasets, from: store, server: queueStore ?? datasetServer, in: &environment)
        let inputDirectory = try useInputs(options.inputs, versions: inputs, from: store, server: queueStore ?? datasetServer,
                                           in: &environment)
        defer { if let inputDirectory { FileSystem.removeTree(inputDirectory) } }
        let record = RunRecord(store: store, id: id, lease: lease, queue: queueStore, warn: warn)
        // The command as recorded: secret values never reach the store (an agent's command has them filled).
        let recordedCommand = SecretParameters.redact(command)
        var newRun = Run(id: id, name: options.name, project: options.project, status: .running, command: recordedCommand,
                         cwd: cwd, host: ProcessPlace.here.host, user: RunEnvironment.userName, pid: getpid(),
                         startedAt: startedAt, environment: RunEnvironment.redact(environment.variables), code: code,
                         tags: options.tags, params: parameters(recordedCommand, given: options.params, warn: warn))
        let recordedAt = Clock.now()
        if let heartbeatInterval {
            newRun.heartbeat = Heartbeat(at: recordedAt, interval: heartbeatInterval)
            newRun.pidScope = ProcessPlace.here.scope
        }
        let (log, metrics) = try record.begin(newRun, patch: patch, inputs: inputs, channel: channel)
        recorded(id)

        // A leased run starts in the checkout its agent just made: the logs in it are the repository's.
        let existingLogs = lease == nil ? [:] : MetricLogWatcher.existingFiles(
            in: RunRecording.logDirectories(cwd, options), tensorBoard: options.importTensorBoard, csv: options.importCSVLogs)
        let child = try start(command, environment: environment, terminal: options.terminal ?? (isatty(STDOUT_FILENO) == 1),
                              launch: launch, channel: channel, record: record)
        supervisor.supervise(child)
        channel.closeChildEnd()
        let heartbeat = heartbeatInterval.map { interval in
            RunHeartbeat(writer: store.heartbeatWriter(run: id), interval: interval, startedAt: recordedAt,
                         onAbort: { supervisor.abort() })
        }
        let recording = RunRecording(of: child, run: id, store: store, log: log, metrics: metrics, channel: channel,
                                     options: options, launch: launch, directory: cwd, startedAt: startedAt,
                                     existingLogs: existingLogs, warn: warn)
        let exit = child.wait()
        // What stopped the command, if anything did: a signal that comes later, while the output drains,
        // did not.
        let stop = supervisor.stop
        supervisor.reaped()
        let logBytes = recording.finish()
        // The run lives until its end is recorded: output left behind may take a while to drain.
        var end = runEnd(exit, stop: stop, leased: lease != nil)
        if case .finished(let finished) = end, finished.status == .completed, !options.outputs.isEmpty {
            do {
                try recordOutputs(options.outputs, run: id, directory: cwd, store: store, server: queueStore ?? datasetServer, warn: warn)
            } catch {
                var failed = finished
                failed.status = .failed
                failed.error = "its outputs were not recorded: \(error.message)"
                warn(failed.error!)
                end = .finished(failed)
            }
        }
        heartbeat?.stop()
        record.end(end, logBytes: logBytes)
        return (exit.shellStatus, exit.signal, store)
    }

    /// The parameters on the command line, those given with `--param` taking the place of the same keys.
    static func parameters(_ command: [String], given: [Param], warn: (String) -> Void) -> [Param] {
        for problem in ParamParser.leftOut(command) { warn(problem) }
        var params = ParamParser.parse(command)
        for param in given {
            params.removeAll { $0.key == param.key }
            params.append(param)
        }
        return params
    }

    /// Materialises each dataset version the command uses and names its copy in the environment. A
    /// remote agent's versions are the `server`'s, fetched into `store` (its spool) to be checked out.
    static func useDatasets(_ references: [VersionReference], from store: SQLiteStore, server: (any Store)?,
                            in environment: inout ChildEnvironment) throws(CMLError) -> [DatasetVersion] {
        var inputs: [DatasetVersion] = []
        for reference in references {
            let version = try (server ?? store).resolveDatasetVersion(reference)
            let variable = Datasets.environmentVariable(for: version.dataset)
            if let other = inputs.first(where: { Datasets.environmentVariable(for: $0.dataset) == variable }) {
                throw .usage("--data \(reference) and --data \(other.reference) would both set \(variable)")
            }
            if let server { try Datasets.fetch(version, from: server, into: store) }
            environment.set(variable, try Datasets.cachedCopy(version, from: store))
            inputs.append(version)
        }
        return inputs
    }

    /// Names each input of a pipeline's step in the environment: a dataset version by its copy (already
    /// materialised with the datasets), an artifact fetched into a directory of its own, which is
    /// returned to be removed when the run ends.
    static func useInputs(_ specInputs: [SpecInput], versions: [DatasetVersion], from store: SQLiteStore, server: (any Store)?,
                          in environment: inout ChildEnvironment) throws(CMLError) -> String? {
        var directory: String?
        for input in specInputs {
            let variable = PipelineInput.variable(for: input.name)
            if let dataset = input.dataset {
                let reference = try VersionReference(dataset)
                guard case .idPrefix(let prefix) = reference.selector,
                      let version = versions.first(where: { $0.dataset == reference.name && $0.id.hasPrefix(prefix) }) else {
                    throw CMLError("input \(input.name): dataset version \(dataset) was not materialised")
                }
                environment.set(variable, try Datasets.cachedCopy(version, from: store))
            } else if let run = input.run, let name = input.artifact {
                let source = server ?? store
                let artifact = try Artifacts.select(try source.artifacts(run: run), name: name, step: nil)
                if directory == nil {
                    directory = try FileSystem.makeTemporaryDirectory(prefix: "cml-inputs-")
                }
                let target = directory! + "/" + input.name
                try FileSystem.makeDirectories(target)
                environment.set(variable, try Artifacts.fetch(artifact, from: source, to: target + "/", force: false))
            }
        }
        return directory
    }

    /// Records what a pipeline's step declared it leaves: datasets as versions the run made, files and
    /// directories as its artifacts. All are checked to exist before any is recorded.
    static func recordOutputs(_ outputs: RunOutputs, run: String, directory: String, store: SQLiteStore, server: (any Store)?,
                              warn: @escaping @Sendable (String) -> Void) throws(CMLError) {
        for path in outputs.datasets.map(\.path) + outputs.artifacts where access(directory + "/" + path, F_OK) != 0 {
            throw CMLError("\(path) does not exist")
        }
        for dataset in outputs.datasets {
            _ = try Snapshot.take(SnapshotRequest(directory: directory + "/" + dataset.path, name: dataset.name, run: run),
                                  store: store, server: server, warn: warn)
        }
        for path in outputs.artifacts {
            _ = try Artifacts.record(path: directory + "/" + path, name: nil, kind: nil, step: nil, run: run, in: store, warn: warn)
        }
    }

    /// Starts the command; one that cannot start is recorded `failed` (127 when it does not exist).
    static func start(_ command: [String], environment: ChildEnvironment, terminal: Bool, launch: RunLaunch,
                      channel: LogChannel, record: RunRecord) throws(CMLError) -> ChildProcess {
        do {
            return try ChildProcess(argv: command, environment: environment.variables.map { "\($0.0)=\($0.1)" },
                                    terminal: terminal, workingDirectory: launch.workingDirectory,
                                    detached: launch.detached, inherited: [channel.childDescriptor])
        } catch {
            let (status, message): (Int32, String) = switch error {
            case .notFound(let name): (127, "command not found: \(name)")
            case .notExecutable(let name, let why): (126, "cannot execute \(name): \(why)")
            case .failed(let why): (126, why)
            }
            channel.closeChildEnd()
            record.end(.finished(RunEnd(status: .failed, endedAt: Clock.now(), exitCode: status, error: message)), logBytes: 0)
            throw CMLError(message, exitCode: status)
        }
    }

    /// How the run ended: why it was stopped decides, if it was (a program that exits 0 on SIGTERM was
    /// still interrupted), else its exit status.
    static func runEnd(_ exit: ChildExit, stop: RunStop?, leased: Bool) -> LeasedRunEnd {
        switch stop {
        case .requeue(let reason)?:
            return leased ? .requeued(reason: reason)
                : .finished(RunEnd(status: .aborted, endedAt: Clock.now(), exitCode: exit.code, signal: exit.signal, error: reason))
        case let stop:
            var reason: String?
            if case .aborted(let why)? = stop { reason = why }
            let status: RunStatus = stop != nil ? .aborted : (exit.code == 0 ? .completed : .failed)
            return .finished(RunEnd(status: status, endedAt: Clock.now(), exitCode: exit.code, signal: exit.signal,
                                    cpuUser: exit.cpuUser, cpuSystem: exit.cpuSystem, maxRSS: exit.maxRSS, error: reason))
        }
    }

    /// The code state as JSON, and the patch. A failure of libgit2 is recorded, not fatal. Secret files
    /// left out are named on stderr: the user may want them in .gitignore or .cmlignore.
    static func captureCode(directory: String, maxPatchBytes: Int, maxUntrackedBytes: Int, excluding: String?,
                            warn: (String) -> Void) -> (JSON, [UInt8]) {
        do {
            let (state, patch) = try GitCapture.capture(directory: directory, maxPatchBytes: maxPatchBytes,
                                                        maxUntrackedBytes: maxUntrackedBytes, excluding: excluding)
            let secrets = state.leftOut.filter { $0.reason == .secret }.map(\.path)
            if !secrets.isEmpty {
                warn("left out of the code patch as secret files: \(secrets.joined(separator: ", "))")
            }
            return (state.json, patch)
        } catch {
            warn("the code state was not captured: \(error.description)")
            return (.object([("in_repository", .null), ("error", .string(error.description))]), [])
        }
    }
}

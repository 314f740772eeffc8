import Foundation

/// Everything recorded while a run's command runs, each on threads of its own: the output, passed through
/// live and stored with the metrics printed in it; the points, parameters and tags of the log channel;
/// resource samples; scalars from TensorBoard event files and CSV logs.
final class RunRecording {
    private let recorder: OutputRecorder
    private let channel: LogChannel
    private let pump: OutputPump
    private let sampler: ResourceSampler?
    private let logFiles: MetricLogWatcher?

    init(of child: ChildProcess, run id: String, store: SQLiteStore, log: RunLogWriter, metrics: any MetricWriter,
         channel: LogChannel, options: RunOptions, launch: RunLaunch, directory: String, startedAt: Double,
         existingLogs: [MetricLogFinder.FileKey: MetricLogFinder.Stamp], warn: @escaping @Sendable (String) -> Void) {
        recorder = OutputRecorder(log: log, metrics: metrics, parseOutput: options.parseMetrics,
                                  patterns: options.metricPatterns, streams: child.outputs.count, warn: warn)
        let sink = ChannelSink(run: id, store: store, recorder: recorder, warn: warn)
        self.channel = channel
        channel.start { lines, first in sink.handle(lines, firstNumber: first) }
        pump = OutputPump(child: child, recorder: recorder, passThrough: launch.passThrough)
        let recorder = recorder
        sampler = options.monitorInterval > 0
            ? ResourceSampler(root: child.pid, interval: options.monitorInterval) { recorder.add($0, source: .monitor) } : nil
        logFiles = options.importTensorBoard || options.importCSVLogs
            ? MetricLogWatcher(directories: Self.logDirectories(directory, options), modifiedSince: startedAt - 1, existing: existingLogs,
                               tensorBoard: options.importTensorBoard,
                               csv: options.importCSVLogs, interval: options.tensorBoardInterval,
                               deliver: { recorder.add($0, source: $1) }, warn: warn)
            : nil
    }

    /// Where the command's TensorBoard event files and CSV logs are looked for.
    static func logDirectories(_ directory: String, _ options: RunOptions) -> [String] {
        [directory] + options.tensorBoardDirectories.map { $0.hasPrefix("/") ? $0 : directory + "/" + $0 }
    }

    /// Once the command has exited: records what is still to come (output of processes it left behind,
    /// until they fall quiet) and returns the size of the stored output in bytes.
    func finish() -> Int64 {
        sampler?.stop()
        channel.finish()
        pump.childExited()
        pump.waitUntilDrained()
        // After the output has drained, so that what processes the command left behind wrote is read too.
        logFiles?.stop()
        return recorder.finish()
    }
}

/// Takes the log channel's lines on its reader thread: points go to the recorder (stored with its next
/// batch), parameters and tags straight to the store. A line it cannot read is reported once.
private final class ChannelSink: @unchecked Sendable {
    private var interpreter = ChannelInterpreter()
    private var warned = false
    private let run: String
    private let store: SQLiteStore
    private let recorder: OutputRecorder
    private let warn: @Sendable (String) -> Void

    init(run: String, store: SQLiteStore, recorder: OutputRecorder, warn: @escaping @Sendable (String) -> Void) {
        self.run = run
        self.store = store
        self.recorder = recorder
        self.warn = warn
    }

    func handle(_ lines: [ArraySlice<UInt8>], firstNumber: Int) {
        let now = Clock.now()
        var points: [MetricPoint] = []
        for (offset, line) in lines.enumerated() {
            do throws(CMLError) {
                switch try interpreter.interpret(line, time: now) {
                case .points(let new)?: points += new
                case .params(let params)?: try store.addParams(run: run, params)
                case .tag(let tag)?: try store.addTags(run: run, [tag])
                case nil: break
                }
            } catch {
                if !warned {
                    warned = true
                    warn("line \(firstNumber + offset) of $CML_LOG_FD was not recorded: \(error.message)")
                }
            }
        }
        if !points.isEmpty { recorder.add(points, source: .log) }
    }
}

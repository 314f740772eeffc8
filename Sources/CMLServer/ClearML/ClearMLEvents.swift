import CMLKit
import Synchronization

/// ClearML's events on a run's metrics and console: a scalar (`training_stats_scalar`) is the point
/// `title/series` at step `iter`; a console event (`log`) is output in the run's console log; the
/// SDK's resource monitor's scalars (`:monitor:machine/…`, `:monitor:gpu/…`) are metrics of source
/// `monitor`. Events of other types (plots, debug samples) are kept in the task's document.
struct ClearMLEvents {
    let tasks: ClearMLTasks
    var store: any ServedStore { tasks.store }

    /// Console appends, one at a time: each goes where the log ends.
    static let consoleAppends = Mutex(())

    private struct Batch {
        var run: Run
        var points: [MetricPoint] = []
        var monitor: [MetricPoint] = []
        var console: [UInt8] = []
        var other: [JSON] = []
    }

    /// `events.add_batch`: JSON lines, of any tasks the request may write to; all are checked before
    /// anything is written.
    func add(_ events: [JSON]) throws(CMLError) -> JSON {
        var batches: [String: Batch] = [:]
        var order: [String] = []
        for event in events {
            guard let id = event["task"]?.stringValue else { throw CMLError.usage("an event names no task") }
            if batches[id] == nil {
                batches[id] = Batch(run: try tasks.writableRun(id))
                order.append(id)
            }
            let time = (event["timestamp"]?.number).map { $0 / 1000 } ?? Clock.now()
            switch event["type"]?.stringValue {
            case "training_stats_scalar":
                let key = "\(event["metric"]?.text ?? "")/\(event["variant"]?.text ?? "")"
                try NameLimits.check(key, "metric name")
                let point = MetricPoint(key: key, step: Int64(event["iter"]?.number ?? 0), value: event["value"]?.number ?? .nan, time: time)
                if key.hasPrefix(":monitor:") { batches[id]!.monitor.append(point) } else { batches[id]!.points.append(point) }
            case "log":
                var message = event["msg"]?.text ?? ""
                if !message.hasSuffix("\n") { message += "\n" }
                let stream: OutputStream = ["error", "critical", "fatal"].contains(event["level"]?.stringValue ?? "") ? .stderr : .stdout
                batches[id]!.console += LogRecord(stream: stream, time: time, bytes: Array(message.utf8)).encoded
            default:
                batches[id]!.other.append(event)
            }
        }
        for id in order {
            let batch = batches[id]!
            if !batch.points.isEmpty { try store.appendMetrics(run: id, batch.points, source: .log) }
            if !batch.monitor.isEmpty { try store.appendMetrics(run: id, batch.monitor, source: .monitor) }
            if !batch.console.isEmpty {
                try Self.consoleAppends.withLock { _ throws(CMLError) in
                    try store.appendLog(run: id, at: try store.logSize(run: id), batch.console)
                    // The SDK sends the last of the console (a traceback) after it ended the task: the
                    // output size the run's end records grows with it.
                    let current = try store.run(id: id)
                    if let end = current.end { try store.finishRun(id: id, end: end, logBytes: try tasks.outputBytes(id)) }
                }
            }
            if !batch.other.isEmpty {
                try ClearMLTasks.documentEdits.withLock { _ throws(CMLError) in
                    let document = try tasks.document(id)
                    let kept = (document["events"]?.items ?? []) + batch.other
                    try store.saveRunDocument(run: id, client: ClearMLTasks.client, document.setting("events", .array(kept)))
                }
            }
            if batch.run.status == .running { _ = try? store.heartbeatWriter(run: id).beat() }
        }
        return .object([("added", .int(Int64(events.count))), ("errors", .int(0)), ("errors_info", .object([]))])
    }

    /// `events.scalar_metrics_iter_histogram`: every series of the run as `{title: {series: {name, x, y}}}`,
    /// x by iteration, or by time (`key` `timestamp`: milliseconds; `iso_time`).
    func scalars(_ body: JSON) throws(CMLError) -> JSON {
        let run = try tasks.seenRun(body["task"]?.stringValue)
        let axis = body["key"]?.stringValue ?? "iter"
        var titles: [(String, [(String, JSON)])] = []
        for summary in run.metrics {
            let parts = summary.key.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            let (title, series) = parts.count == 2 ? (parts[0], parts[1]) : (summary.key, summary.key)
            let columns = try store.metricColumns(run: run.id, key: summary.key)
            let x: [JSON] = switch axis {
            case "timestamp": columns.times.map { .int(Int64(($0 * 1000).rounded())) }
            case "iso_time": columns.times.map { .string(Clock.rfc3339($0)) }
            default: columns.steps.map(JSON.int)
            }
            let entry = JSON.object([("name", .string(series)), ("x", .array(x)), ("y", .array(columns.values.map(JSON.double)))])
            if let index = titles.firstIndex(where: { $0.0 == title }) {
                titles[index].1.append((series, entry))
            } else {
                titles.append((title, [(series, entry)]))
            }
        }
        return .object(titles.map { ($0.0, .object($0.1)) })
    }

    /// `events.get_task_log`: the run's console output as ClearML's log events, one per line, oldest first.
    func consoleLog(_ body: JSON) throws(CMLError) -> JSON {
        let run = try tasks.seenRun(body["task"]?.stringValue)
        let reader = RunLogReader(store: store, run: run.id)
        var lines: [JSON] = []
        while let record = reader.next() {
            let text = String(decoding: record.bytes, as: UTF8.self)
            for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast(text.hasSuffix("\n") ? 1 : 0) {
                lines.append(.object([("type", .string("log")), ("task", .string(run.id)), ("timestamp", .int(Int64(record.time * 1000))),
                                      ("level", .string(record.stream == .stderr ? "error" : "info")), ("msg", .string(String(line)))]))
            }
        }
        if let error = reader.readError { throw error }
        let total = Int64(lines.count)
        if let size = body["batch_size"]?.number.map(Int.init), size > 0, lines.count > size { lines = Array(lines.suffix(size)) }
        return .object([("events", .array(lines)), ("returned", .int(Int64(lines.count))), ("total", .int(total))])
    }
}

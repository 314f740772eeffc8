import CSupport
import Foundation
import Glibc

/// What one JSON line on the log channel (or on `cml-log`'s stdin) says.
public enum ChannelMessage: Equatable, Sendable {
    case points([MetricPoint])
    case params([Param])
    case tag(String)
}

/// Reads the JSON lines a program writes to `$CML_LOG_FD`: an object of numbers is one step of scalars
/// (`{"step": 3, "loss": 0.3}`; step keys as in printed output), `{"param": {"lr": 0.01}}` records
/// parameters, `{"tag": "best"}` a tag.
public struct ChannelInterpreter: Sendable {
    private var extractor = MetricExtractor()
    /// Non-finite values written as strings, the way cml's own output prints them.
    private static let nonFinite: [String: Double] = [
        "nan": .nan, "inf": .infinity, "-inf": -.infinity, "infinity": .infinity, "-infinity": -.infinity,
    ]

    public init() {}

    public mutating func interpret(_ line: [UInt8], time: Double) throws(CMLError) -> ChannelMessage? {
        try interpret(line[...], time: time)
    }

    public mutating func interpret(_ line: ArraySlice<UInt8>, time: Double) throws(CMLError) -> ChannelMessage? {
        var bytes = Array(line)
        while let last = bytes.last, last == 0x0A || last == 0x0D || last == 0x20 { bytes.removeLast() }
        if bytes.isEmpty { return nil }
        guard case .object(let members) = try JSON.parse(bytes: &bytes) else {
            throw CMLError("not a JSON object")
        }
        if members.count == 1, members[0].0 == "param" {
            guard case .object(let params) = members[0].1, !params.isEmpty else {
                throw CMLError("\"param\" must be an object of parameters")
            }
            let logged = params.map { Param(key: $0.0, value: $0.1, source: "log") }
            for param in logged { try NameLimits.check(param) }
            return .params(logged)
        }
        if members.count == 1, members[0].0 == "tag" {
            guard let tag = members[0].1.stringValue else { throw CMLError("\"tag\" must be a string") }
            if tag.isEmpty { throw CMLError("\"tag\" must not be empty") }
            try NameLimits.check(tag, "tag")
            return .tag(tag)
        }
        var pairs: [MetricLineParser.Pair] = []
        for (key, value) in members {
            try Self.checkMetricName(key)
            if key == "step" {
                // The extractor would record a step that is no integer as a metric named "step".
                let integral = switch value {
                case .int: true
                case .double(let d): MetricLineParser.Pair(key: key, value: d).integral
                default: false
                }
                if !integral { throw CMLError("\"step\" must be an integer, not \(value.serialized)") }
            }
            switch value {
            case .int(let i): pairs.append(MetricLineParser.Pair(key: key, value: Double(i)))
            case .double(let d): pairs.append(MetricLineParser.Pair(key: key, value: d))
            case .string(let text) where Self.nonFinite[text.lowercased()] != nil:
                pairs.append(MetricLineParser.Pair(key: key, value: Self.nonFinite[text.lowercased()]!))
            default: throw CMLError("the value of \"\(key)\" is not a number")
            }
        }
        return .points(extractor.points(from: pairs, time: time))
    }

    static func checkMetricName(_ key: String) throws(CMLError) {
        if key.isEmpty { throw CMLError("a metric name is empty") }
        try NameLimits.check(key, "metric name")
        if key.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            throw CMLError("the metric name \(JSON.string(key).serialized) holds a control character")
        }
    }
}

/// The descriptor a run's program inherits as `$CML_LOG_FD`, and the thread that reads it. No process is
/// started per point: a write of one JSON line is all it costs the program.
final class LogChannel: @unchecked Sendable {
    /// The write end, inherited by the child under this number (close-on-exec here: see `ChildProcess`).
    let childDescriptor: Int32
    private let readEnd: Int32
    private let done = NSCondition()
    private var finished = false
    private var childExitedAt: Double?

    init() throws(CMLError) {
        var ends: [Int32] = [-1, -1]
        guard cml_pipe_cloexec(&ends) == 0 else { throw FileSystem.error("cannot create the log channel", "pipe") }
        readEnd = ends[0]
        childDescriptor = ends[1]
    }

    /// After the spawn: only the child (and what it starts) holds the write end now.
    func closeChildEnd() {
        close(childDescriptor)
    }

    /// Reads lines until every writer has closed the channel, handing each chunk's complete lines (with
    /// the number of the first) to `handle`.
    func start(_ handle: @escaping @Sendable (_ lines: [ArraySlice<UInt8>], _ firstNumber: Int) -> Void) {
        Thread.detachNewThread { [self] in
            var pending: [UInt8] = []
            var lineNumber = 0
            var lastData = Clock.now()
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                var request = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&request, 1, 100)
                done.lock()
                let exited = childExitedAt
                done.unlock()
                if let exited {
                    // Descendants may keep the channel open after the child exits: the same limits as
                    // for their output (OutputPump).
                    let now = Clock.now()
                    if now - exited >= OutputPump.maxDrainAfterExit { break }
                    if ready == 0 && now - max(lastData, exited) >= OutputPump.quietAfterExit { break }
                }
                if ready == 0 { continue }
                let n = buffer.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                lastData = Clock.now()
                pending.append(contentsOf: buffer[0..<n])
                var lines: [ArraySlice<UInt8>] = []
                var start = pending.startIndex
                while let newline = pending[start...].firstIndex(of: 0x0A) {
                    lines.append(pending[start..<newline])
                    start = newline + 1
                }
                if !lines.isEmpty {
                    handle(lines, lineNumber + 1)
                    lineNumber += lines.count
                    pending.removeSubrange(..<start)
                }
            }
            if !pending.isEmpty { handle([pending[...]], lineNumber + 1) }
            close(readEnd)
            done.lock()
            finished = true
            done.broadcast()
            done.unlock()
        }
    }

    /// Waits until the channel has been read to its end (shortly after the child exits).
    func finish() {
        done.lock()
        if childExitedAt == nil { childExitedAt = Clock.now() }
        while !finished { done.wait() }
        done.unlock()
    }
}

extension Run {
    /// The status to show: a run still marked `running` whose cml-run stopped beating, or whose process
    /// is gone from this machine, is `lost` (see `RunLiveness`).
    public var observedStatus: RunStatus {
        liveness.observedStatus(now: Clock.now())
    }

    /// Observed `lost` (its agent is gone) while its queue still holds it: once the lease runs out an agent
    /// starts it again, or records it lost for good when it has no attempts left.
    public var awaitsRequeue: Bool {
        status == .running && queue != nil && observedStatus == .lost
    }

    public var duration: Double? {
        guard let end, let startedAt else { return nil }
        return end.endedAt - startedAt
    }

    /// The record as one JSON object. `full` adds the environment and the code state (`cml-run show`).
    /// `status`: the status to show, when the caller has worked it out already (else `observedStatus`).
    public func json(full: Bool, status shown: RunStatus? = nil) -> JSON {
        var members: [(String, JSON)] = [
            ("id", .string(id)),
            ("name", name.map(JSON.string) ?? .null),
            ("project", .string(project)),
            ("status", .string((shown ?? observedStatus).rawValue)),
            ("command", .array(command.map(JSON.string))),
            ("started_at", startedAt.map { .string(Clock.rfc3339($0)) } ?? .null),
            ("ended_at", end.map { .string(Clock.rfc3339($0.endedAt)) } ?? .null),
            ("duration", duration.map(JSON.double) ?? .null),
            ("exit_code", end?.exitCode.map { .int(Int64($0)) } ?? .null),
            ("signal", end?.signal.map { .int(Int64($0)) } ?? .null),
            ("tags", .array(tags.map(JSON.string))),
            ("params", .object(params.map { ($0.key, $0.value) })),
            ("metrics", .object(metrics.map { summary in
                (summary.key, .object([
                    ("last", .double(summary.last)), ("min", .double(summary.min)), ("max", .double(summary.max)),
                    ("count", .int(summary.count)), ("last_step", .int(summary.lastStep)),
                    ("source", summary.source.map { .string($0.rawValue) } ?? .null),
                ]))
            })),
        ]
        if let queue {
            // Only runs that went through a queue have these.
            members += [
                ("queue", .string(queue.queue)),
                ("queued_at", .string(Clock.rfc3339(queue.enqueuedAt))),
                ("priority", .int(Int64(queue.priority))),
                ("agent", queue.agent.map(JSON.string) ?? .null),
                ("attempt", .int(Int64(queue.history.count))),
            ]
        }
        if full {
            members += [
                ("cwd", .string(cwd)),
                ("host", .string(host)),
                ("user", .string(user)),
                ("pid", pid.map { .int(Int64($0)) } ?? .null),
                ("cpu_user", end?.cpuUser.map(JSON.double) ?? .null),
                ("cpu_system", end?.cpuSystem.map(JSON.double) ?? .null),
                ("max_rss", end?.maxRSS.map(JSON.int) ?? .null),
                ("error", end?.error.map(JSON.string) ?? .null),
                ("param_sources", .object(params.map { ($0.key, .string($0.source)) })),
                ("log_bytes", .int(logBytes)),
                ("datasets", .array(datasets.map(\.json))),
                ("code", code),
                ("env", .object(environment.map { ($0.0, .string($0.1)) })),
            ]
            // What another client's protocol sent that no field above holds (MLflow's tags, inputs and models;
            // ClearML's task document).
            if let extra { members.append(("extra", extra)) }
            if let heartbeat {
                members += [
                    ("heartbeat_at", .string(Clock.rfc3339(heartbeat.at))),
                    ("abort_requested", .bool(heartbeat.abortRequested)),
                ]
            }
            if let queue {
                members += [
                    ("max_attempts", .int(Int64(queue.maxAttempts))),
                    ("attempts_counted", .int(Int64(queue.attempts))),
                    ("abort_requested", .bool(queue.abortRequested)),
                    ("attempts", .array(queue.history.map { attempt in
                        .object([
                            ("attempt", .int(Int64(attempt.number))), ("agent", .string(attempt.agent)), ("host", .string(attempt.host)),
                            ("started_at", .string(Clock.rfc3339(attempt.startedAt))),
                            ("ended_at", attempt.endedAt.map { .string(Clock.rfc3339($0)) } ?? .null),
                            ("outcome", attempt.outcome.map(JSON.string) ?? .null), ("reason", attempt.reason.map(JSON.string) ?? .null),
                        ])
                    })),
                ]
            }
        }
        return .object(members)
    }
}

/// Writes metric points as JSON lines (`{"key":…,"step":…,"value":…,"time":…}`) into a byte buffer,
/// without building JSON trees or strings per point: series can hold millions of points.
public struct MetricLineEncoder {
    public private(set) var bytes: [UInt8] = []
    private var lastKey = ""
    private var lastKeyJSON: [UInt8] = []
    private var lastSecond = Int64.min
    private var lastSecondText: [UInt8] = []

    public init() {
        bytes.reserveCapacity(1 << 17)
    }

    public mutating func append(_ point: MetricPoint) {
        if point.key != lastKey {
            lastKey = point.key
            var quoted = ""
            JSON.writeString(point.key, to: &quoted)
            lastKeyJSON = Array(quoted.utf8)
        }
        bytes.append(contentsOf: #"{"key":"#.utf8)
        bytes.append(contentsOf: lastKeyJSON)
        bytes.append(contentsOf: #","step":"#.utf8)
        appendInteger(point.step)
        bytes.append(contentsOf: #","value":"#.utf8)
        var number = ""
        JSON.writeNumber(point.value, to: &number)
        bytes.append(contentsOf: number.utf8)
        bytes.append(contentsOf: #","time":""#.utf8)
        let second = Int64(point.time.rounded(.down))
        var millis = Int64((point.time - Double(second)) * 1000 + 0.5)
        var whole = second
        if millis >= 1000 { whole += 1; millis -= 1000 }
        if whole != lastSecond {
            lastSecond = whole
            lastSecondText = Array(Clock.rfc3339(Double(whole)).utf8.dropLast(5))  // without ".000Z"
        }
        bytes.append(contentsOf: lastSecondText)
        bytes.append(UInt8(ascii: "."))
        bytes.append(UInt8(48 + millis / 100))
        bytes.append(UInt8(48 + millis / 10 % 10))
        bytes.append(UInt8(48 + millis % 10))
        bytes.append(contentsOf: "Z\"}\n".utf8)
    }

    private mutating func appendInteger(_ value: Int64) {
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[count] = UInt8(48 + magnitude % 10)
                magnitude /= 10
                count += 1
            } while magnitude > 0
            for i in stride(from: count - 1, through: 0, by: -1) { bytes.append(buffer[i]) }
        }
    }

    /// Hands out what was written and starts over.
    public mutating func take() -> [UInt8] {
        defer { bytes.removeAll(keepingCapacity: true) }
        return bytes
    }

    public var count: Int { bytes.count }
}

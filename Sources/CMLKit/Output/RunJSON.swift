import Glibc

extension Run {
    /// The status to show: a run still marked `running` whose cml-run process on this host is gone
    /// (killed with -9, machine rebooted) is `lost`.
    public var observedStatus: RunStatus {
        guard status == .running, let pid, host == RunEnvironment.hostName else { return status }
        if kill(pid, 0) != 0 && errno == ESRCH { return .lost }
        return status
    }

    public var duration: Double? {
        end.map { $0.endedAt - startedAt }
    }

    /// The record as one JSON object. `full` adds the environment and the code state (`cml-run show`).
    public func json(full: Bool) -> JSON {
        var members: [(String, JSON)] = [
            ("id", .string(id)),
            ("name", name.map(JSON.string) ?? .null),
            ("project", .string(project)),
            ("status", .string(observedStatus.rawValue)),
            ("command", .array(command.map(JSON.string))),
            ("started_at", .string(Clock.rfc3339(startedAt))),
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
                ]))
            })),
        ]
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
                ("code", code),
                ("env", .object(environment.map { ($0.0, .string($0.1)) })),
            ]
        }
        return .object(members)
    }
}

extension MetricPoint {
    /// `{"key":…,"step":…,"value":…,"time":…}`, written without building a JSON tree (series can be long).
    public func writeJSONLine(to out: inout String) {
        out += "{\"key\":"
        JSON.writeString(key, to: &out)
        out += ",\"step\":"
        out += String(step)
        out += ",\"value\":"
        JSON.writeNumber(value, to: &out)
        out += ",\"time\":\""
        out += Clock.rfc3339(time)
        out += "\"}\n"
    }
}

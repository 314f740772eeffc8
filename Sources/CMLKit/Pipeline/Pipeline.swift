import Glibc

public enum PipelineStatus: String, Sendable, CaseIterable {
    /// Its controller runs (or was killed: see `Pipeline.isAbandoned`).
    case running
    /// Every step completed or was cached.
    case completed
    /// A step failed; its descendants were not run (`pipeline resume` reruns from the failures).
    case failed
    /// Stopped by Ctrl-C or a signal before every step ran; `pipeline resume` goes on.
    case stopped
}

public enum StepState: String, Sendable, CaseIterable {
    /// Its inputs are not there yet.
    case waiting
    /// Written before its run is queued, so that a controller killed in between finds the run on resume.
    case planned, queued, running, completed
    /// A completed run with the same key was reused.
    case cached
    case failed
    /// Not run: a step it depends on failed.
    case blocked

    public var isActive: Bool { [.planned, .queued, .running].contains(self) }
    public var succeeded: Bool { self == .completed || self == .cached }
}

/// One step of a pipeline's run: its state, its run, the key its run is cached by.
public struct PipelineStepRecord: Sendable, Equatable {
    public var name: String
    /// The steps it waits for.
    public var after: [String]
    public var state: StepState
    /// Its run: the last attempt's, or the cached run.
    public var run: String?
    /// Every run queued for it, one per attempt.
    public var attempts: [String]
    /// What its run is cached by (`PipelineController.key`).
    public var key: String?
    /// Why it failed, was blocked, or is being stopped.
    public var reason: String?
    public var startedAt: Double?
    public var endedAt: Double?

    public init(name: String, after: [String]) {
        self.name = name
        self.after = after
        state = .waiting
        attempts = []
    }
}

/// A pipeline's run (`cml-queue pipeline show`), kept in the store as a `ControllerRecord` of kind
/// "pipeline" and rewritten whole as its steps start and end. It keeps the file's text and the options
/// it was run with, so that `pipeline resume` goes on alike without the file.
public struct Pipeline: Sendable {
    public static let kind = "pipeline"

    public var id: String
    public var name: String
    public var project: String
    public var createdAt: Double
    public var updatedAt: Double
    public var status: PipelineStatus
    public var reason: String?
    /// The file it was read from, as given, and its text then.
    public var file: String
    public var source: String
    /// `--set STEP.KEY=VALUE`, as given.
    public var overrides: [String]
    /// The code command steps run with: the spec of the file's directory as it was captured when the
    /// pipeline started (its command is a placeholder).
    public var code: RunSpec
    /// `--queue` (nil: the file's, else default), or the pipeline's own queue with `--local`.
    public var queue: String?
    public var localSlots: Int?
    /// Steps recomputed even when a cached run exists (`--force`; every step with `--force-all`).
    public var force: [String]
    public var forceAll: Bool
    public var steps: [PipelineStepRecord]
    public var host: String
    public var pid: Int32
    public var pidScope: String?
    public var heartbeatAt: Double

    public init(id: String, name: String, project: String, file: String, source: String, overrides: [String], code: RunSpec,
                queue: String?, localSlots: Int?, force: [String], forceAll: Bool, steps: [PipelineStepRecord], now: Double) {
        self.id = id
        self.name = name
        self.project = project
        createdAt = now
        updatedAt = now
        status = .running
        self.file = file
        self.source = source
        self.overrides = overrides
        self.code = code
        self.queue = queue
        self.localSlots = localSlots
        self.force = force
        self.forceAll = forceAll
        self.steps = steps
        host = ProcessPlace.here.host
        pid = getpid()
        pidScope = ProcessPlace.here.scope
        heartbeatAt = now
    }

    public func step(_ name: String) -> PipelineStepRecord? { steps.first { $0.name == name } }

    /// Whether the step is recomputed even when a cached run exists.
    public func isForced(_ step: String) -> Bool { forceAll || force.contains(step) }

    /// Running by its record, but its controller is gone.
    public func isAbandoned(now: Double) -> Bool {
        status == .running && ControllerLiveness.isAbandoned(host: host, pid: pid, pidScope: pidScope, heartbeatAt: heartbeatAt, now: now)
    }

    /// The status to show: `lost` for an abandoned pipeline.
    public func observedStatus(now: Double) -> String { isAbandoned(now: now) ? "lost" : status.rawValue }

    /// Seconds the step's run took (so far, while it runs).
    public func duration(of step: PipelineStepRecord, now: Double) -> Double? {
        guard let startedAt = step.startedAt else { return nil }
        return (step.endedAt ?? now) - startedAt
    }
}

// MARK: JSON

extension Pipeline {
    public var json: JSON {
        .object([
            ("id", .string(id)),
            ("kind", .string(Self.kind)),
            ("name", .string(name)),
            ("project", .string(project)),
            ("status", .string(status.rawValue)),
            ("reason", reason.map(JSON.string) ?? .null),
            ("created_at", .string(Clock.rfc3339(createdAt))),
            ("updated_at", .string(Clock.rfc3339(updatedAt))),
            ("file", .string(file)),
            ("overrides", .array(overrides.map(JSON.string))),
            ("queue", queue.map(JSON.string) ?? .null),
            ("local_slots", localSlots.map { .int(Int64($0)) } ?? .null),
            ("force", .array(force.map(JSON.string))),
            ("force_all", .bool(forceAll)),
            ("host", .string(host)),
            ("pid", .int(Int64(pid))),
            ("pid_scope", pidScope.map(JSON.string) ?? .null),
            ("heartbeat_at", .double(heartbeatAt)),
            ("steps", .array(steps.map(\.json))),
            ("code", code.json),
            ("source", .string(source)),
        ])
    }

    /// The record to save.
    public var record: ControllerRecord {
        ControllerRecord(kind: Self.kind, id: id, project: project, createdAt: createdAt, updatedAt: updatedAt, document: json.serialized)
    }

    /// Reads a record's document back; an error naming what is wrong when it is not a pipeline.
    public init(record: ControllerRecord) throws(CMLError) {
        let json = try JSON.parse(record.document)
        func fail(_ what: String) -> CMLError {
            CMLError("pipeline \(record.id)'s record is damaged: \(what)", hint: "was it written by a newer cml?", kind: .damaged)
        }
        func string(_ key: String) throws(CMLError) -> String {
            guard let text = json[key]?.stringValue else { throw fail("no \(key)") }
            return text
        }
        func strings(_ key: String) throws(CMLError) -> [String] {
            guard case .array(let items)? = json[key] else { throw fail("no \(key)") }
            let texts = items.compactMap(\.stringValue)
            guard texts.count == items.count else { throw fail("\(key) holds a value that is not a string") }
            return texts
        }
        guard let codeJSON = json["code"] else { throw fail("no code") }
        let code: RunSpec
        do { code = try RunSpec(json: codeJSON) } catch { throw fail("its code: \(error.message)") }
        var steps: [PipelineStepRecord] = []
        guard case .array(let items)? = json["steps"] else { throw fail("no steps") }
        for item in items {
            guard let step = PipelineStepRecord(json: item) else { throw fail("step \(steps.count) is not one") }
            steps.append(step)
        }
        let localSlots: Int? = if case .int(let slots)? = json["local_slots"] { Int(slots) } else { nil }
        self.init(id: record.id, name: try string("name"), project: record.project, file: try string("file"),
                  source: try string("source"), overrides: try strings("overrides"), code: code, queue: json["queue"]?.stringValue,
                  localSlots: localSlots, force: try strings("force"), forceAll: json["force_all"] == .bool(true), steps: steps,
                  now: record.createdAt)
        updatedAt = record.updatedAt
        guard let status = PipelineStatus(rawValue: try string("status")) else { throw fail("an unknown status") }
        self.status = status
        reason = json["reason"]?.stringValue
        host = try string("host")
        guard case .int(let pid)? = json["pid"] else { throw fail("no pid") }
        self.pid = Int32(truncatingIfNeeded: pid)
        pidScope = json["pid_scope"]?.stringValue
        heartbeatAt = json["heartbeat_at"]?.number ?? record.updatedAt
    }
}

extension PipelineStepRecord {
    public var json: JSON {
        func time(_ value: Double?) -> JSON { value.map { .string(Clock.rfc3339($0)) } ?? .null }
        var duration = JSON.null
        if let startedAt, let endedAt { duration = .double(((endedAt - startedAt) * 1000).rounded() / 1000) }
        return .object([
            ("step", .string(name)),
            ("status", .string(state.rawValue)),
            ("id", run.map(JSON.string) ?? .null),
            ("cached", .bool(state == .cached)),
            ("after", .array(after.map(JSON.string))),
            ("attempts", .array(attempts.map(JSON.string))),
            ("key", key.map(JSON.string) ?? .null),
            ("reason", reason.map(JSON.string) ?? .null),
            ("started_at", time(startedAt)),
            ("ended_at", time(endedAt)),
            ("duration", duration),
        ])
    }

    init?(json: JSON) {
        guard let name = json["step"]?.stringValue, let stateText = json["status"]?.stringValue,
              let state = StepState(rawValue: stateText), case .array(let after)? = json["after"],
              case .array(let attempts)? = json["attempts"] else { return nil }
        self.init(name: name, after: after.compactMap(\.stringValue))
        self.state = state
        self.attempts = attempts.compactMap(\.stringValue)
        run = json["id"]?.stringValue
        key = json["key"]?.stringValue
        reason = json["reason"]?.stringValue
        startedAt = json["started_at"]?.stringValue.flatMap(Clock.parseTime)
        endedAt = json["ended_at"]?.stringValue.flatMap(Clock.parseTime)
    }
}

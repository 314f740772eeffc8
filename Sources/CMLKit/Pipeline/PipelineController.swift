import Glibc
import Synchronization

/// What a pipeline tells whoever runs it, as it happens.
public enum PipelineEvent: Sendable {
    case queued(PipelineStepRecord)
    /// A step ended: completed, cached, failed or blocked.
    case ended(PipelineStepRecord)
    /// Something the user should know that changes nothing (a retry, a run adopted on resume).
    case note(String)
}

/// Runs a pipeline: queues each step as soon as the steps it depends on have succeeded, unless a
/// completed run with the same key (`key(of:inputs:)`) can be reused; retries a failed step as its file
/// allows, aborts one that runs past its timeout, and does not start the descendants of a failed
/// step. The record in the store is its memory: a step is written `planned` before its run is
/// queued, so that a controller killed at any point is resumed without a step run twice.
public final class PipelineController: @unchecked Sendable {  // one thread runs it; `requestStop` comes from another, behind a mutex
    public static let pipelineParameter = "pipeline"
    public static let stepParameter = "step"
    public static let keyParameter = "step_key"

    let store: any Store
    public private(set) var pipeline: Pipeline
    let definition: PipelineDefinition
    let report: (PipelineEvent) -> Void
    let watcher: any QueueWatcher
    private let stopRequest = Mutex(StopRequest.none)
    let pollInterval: Double

    enum StopRequest: Comparable { case none, finishRunning, leaveRunning }

    /// Starts a new pipeline's run (recorded at once), or takes one up (`resuming`).
    public init(store: any Store, pipeline: Pipeline, definition: PipelineDefinition, pollInterval: Double = 1,
                report: @escaping (PipelineEvent) -> Void) throws(CMLError) {
        self.store = store
        self.pipeline = pipeline
        self.definition = definition
        self.report = report
        self.pollInterval = pollInterval
        watcher = try store.queueWatcher()
        try save()
    }

    /// The steps' records of a new run of `definition`, in its file's order.
    public static func stepRecords(of definition: PipelineDefinition) -> [PipelineStepRecord] {
        definition.steps.map { PipelineStepRecord(name: $0.name, after: definition.dependencies(of: $0)) }
    }

    /// Stops queueing steps; the controller ends once those queued or running have. From any thread.
    public func requestStop() {
        stopRequest.withLock { $0 = max($0, .finishRunning) }
        watcher.interrupt()
    }

    /// Ends at once, leaving the steps queued or running to a resume.
    public func requestLeave() {
        stopRequest.withLock { $0 = .leaveRunning }
        watcher.interrupt()
    }

    /// Runs the pipeline until no step can start and none is active. Returns it as recorded last. An
    /// error (the store gone, say) ends it `failed` with the error as its reason, where it can be saved.
    public func run() throws(CMLError) -> Pipeline {
        do {
            return try follow()
        } catch {
            pipeline.status = .failed
            pipeline.reason = error.message
            try? save()
            throw error
        }
    }

    private func follow() throws(CMLError) -> Pipeline {
        try adoptPlannedSteps()
        var lastBeat = Clock.now()
        while true {
            try refreshActiveSteps()
            try abortStepsPastTheirTimeout()
            let request = stopRequest.withLock { $0 }
            if request == .none { try startReadySteps() }
            let active = pipeline.steps.contains { $0.state.isActive }
            if !active || request == .leaveRunning { break }
            if Clock.now() - lastBeat >= ControllerLiveness.heartbeatInterval {
                lastBeat = Clock.now()
                try save()
            }
            watcher.wait(timeout: pollInterval)
        }
        if let failed = pipeline.steps.first(where: { $0.state == .failed }) {
            pipeline.status = .failed
            pipeline.reason = "step \(failed.name) failed: \(failed.reason ?? "")"
        } else if pipeline.steps.allSatisfy(\.state.succeeded) {
            pipeline.status = .completed
        } else {
            pipeline.status = .stopped
            let left = pipeline.steps.filter(\.state.isActive).count
            pipeline.reason = left > 0 ? "stopped, leaving \(left) steps queued or running" : "stopped before every step ran"
        }
        try save()
        return pipeline
    }

    // MARK: Starting steps

    private func index(of name: String) -> Int { pipeline.steps.firstIndex { $0.name == name }! }

    /// Starts every waiting step whose dependencies succeeded; blocks those with a failed one.
    private func startReadySteps() throws(CMLError) {
        var changed = true
        while changed {
            changed = false
            for record in pipeline.steps where record.state == .waiting {
                let dependencies = record.after.map { pipeline.steps[index(of: $0)] }
                if let failed = dependencies.first(where: { $0.state == .failed || $0.state == .blocked }) {
                    end(record.name, .blocked, reason: "not run: \(failed.name) \(failed.state == .failed ? "failed" : "was not run")")
                    changed = true
                } else if dependencies.allSatisfy(\.state.succeeded) {
                    try start(record.name)
                    changed = true
                }
            }
        }
    }

    /// Makes the step's spec, reuses a cached run or queues a new one. A spec that cannot be made (a
    /// missing input, an unknown base run) fails the step.
    private func start(_ name: String, retry: Bool = false) throws(CMLError) {
        let step = definition.step(name)!
        let made: (spec: RunSpec, key: String)
        do {
            made = try spec(of: step)
        } catch {
            end(name, .failed, reason: error.message)
            try save()
            return
        }
        let i = index(of: name)
        pipeline.steps[i].key = made.key
        if !retry && !pipeline.isForced(name), let cached = try cachedRun(key: made.key) {
            pipeline.steps[i].run = cached.id
            pipeline.steps[i].startedAt = cached.startedAt
            end(name, .cached, reason: nil, at: cached.end?.endedAt)
            try save()
            return
        }
        pipeline.steps[i].state = .planned
        pipeline.steps[i].reason = nil
        try save()
        try enqueue(name, made.spec)
    }

    private func enqueue(_ name: String, _ spec: RunSpec) throws(CMLError) {
        let step = definition.step(name)!
        let queue = pipeline.localSlots != nil ? pipeline.queue! : (step.queue ?? pipeline.queue ?? definition.queue ?? "default")
        let (runs, _) = try store.enqueue([spec], queue: queue, priority: 0, maxAttempts: 3)
        let i = index(of: name)
        pipeline.steps[i].run = runs[0].id
        pipeline.steps[i].attempts.append(runs[0].id)
        pipeline.steps[i].state = .queued
        pipeline.steps[i].startedAt = nil
        pipeline.steps[i].endedAt = nil
        try save()
        report(.queued(pipeline.steps[i]))
    }

    /// The newest completed run with this key, if one is still in the store.
    private func cachedRun(key: String) throws(CMLError) -> Run? {
        try store.runs(parameter: Self.keyParameter, is: key, status: .completed, sort: [RunSort("-started")], limit: 1).first
    }

    /// The step's spec, its references filled in from the steps before it, its inputs resolved to
    /// what they are now; and its key.
    func spec(of step: PipelineStep) throws(CMLError) -> (spec: RunSpec, key: String) {
        // Each earlier step's run is read once, however many references name it.
        var recorded: [String: [Param]] = [:]
        func upstream(_ reference: PipelineTemplate.Reference) throws(CMLError) -> String {
            guard case .step(let producer, let key) = reference else { return "" }
            guard let id = pipeline.step(producer)?.run else { throw CMLError("\(reference): step \(producer) has no run") }
            if recorded[producer] == nil { recorded[producer] = try store.run(id: id).params }
            guard let param = recorded[producer]!.first(where: { $0.key == key }) else {
                throw CMLError("\(reference): the run of \(producer) (\(RunID.short(id))) recorded no parameter \(key)")
            }
            return param.value.stringValue ?? param.value.serialized
        }
        var params: [(key: String, value: String)] = []
        for param in step.params {
            params.append((param.key, try PipelineTemplate.substitute(param.value, upstream)))
        }
        func fill(_ text: String) throws(CMLError) -> String {
            try PipelineTemplate.substitute(text) { (reference) throws(CMLError) -> String in
                if case .own(let key) = reference { return params.first { $0.key == key }!.value }
                return try upstream(reference)
            }
        }
        var spec: RunSpec
        if let command = step.command {
            spec = pipeline.code
            spec.command = SecretParameters.redact(try command.map(fill))
        } else {
            var settings: [(key: String, value: String)] = []
            for setting in step.settings { settings.append((setting.key, try fill(setting.value))) }
            let base = try store.run(id: try store.resolveRunID(step.base!))
            spec = try RunSpec.clone(base, queuedSpec: try store.spec(run: base.id), settings: settings) { _ in }
        }
        spec.params.removeAll { param in params.contains { $0.key == param.key } }
        spec.params += params.map { Param(key: $0.key, value: Param.typedValue($0.value), source: "option") }
        for variable in step.environment {
            guard EnvironmentVariable.isName(variable.key) else { throw CMLError.usage("step \(step.name): env \(variable.key) is not a variable name") }
            spec.environment.removeAll { $0.name == variable.key }
            spec.environment.append(EnvironmentVariable(name: variable.key, value: try fill(variable.value)))
        }
        var contents: [(String, String)] = []
        spec.inputs = []
        for input in step.inputs {
            let (specInput, content) = try resolve(input)
            spec.inputs.append(specInput)
            contents.append((input.name, content))
        }
        spec.outputs = step.outputs
        spec.name = "\(pipeline.name)-\(step.name)"
        spec.project = pipeline.project
        let key = Self.key(of: spec, inputs: contents)
        spec.params += [
            Param(key: Self.pipelineParameter, value: .string(pipeline.id), source: "option"),
            Param(key: Self.stepParameter, value: .string(step.name), source: "option"),
            Param(key: Self.keyParameter, value: .string(key), source: "option"),
        ]
        return (spec, key)
    }

    /// An input as the spec names it (a version by id, an artifact by run), and its content's hash.
    private func resolve(_ input: PipelineInput) throws(CMLError) -> (SpecInput, String) {
        switch input.source {
        case .dataset(let text):
            let version = try store.resolveDatasetVersion(try VersionReference(text))
            return (SpecInput(name: input.name, dataset: "\(version.dataset)@\(version.id)"), version.manifest)
        case .stepOutput(let producer, let output):
            guard let run = pipeline.step(producer)?.run else { throw CMLError("input \(input.name): step \(producer) has no run") }
            if let version = try store.datasetVersions(dataset: output).first(where: { $0.run == run }) {
                return (SpecInput(name: input.name, dataset: "\(version.dataset)@\(version.id)"), version.manifest)
            }
            let artifacts = try store.artifacts(run: run).filter { $0.name == output }
            guard let artifact = artifacts.max(by: { $0.version < $1.version }) else {
                throw CMLError("input \(input.name): the run of \(producer) (\(RunID.short(run))) made no dataset or artifact named \(output)")
            }
            return (SpecInput(name: input.name, run: run, artifact: output), artifact.sha256)
        }
    }

    /// What a step's run is cached by: a hash of everything that decides what it computes: its command,
    /// its code (commit, patch, directory, files left out), its parameters and environment overrides,
    /// the outputs it records, and the content of its inputs (not which version or run holds them).
    public static func key(of spec: RunSpec, inputs: [(name: String, content: String)]) -> String {
        let document: JSON = .object([
            ("command", .array(spec.command.map(JSON.string))),
            ("commit", spec.commit.map(JSON.string) ?? .null),
            ("patch", spec.patchBlob.map(JSON.string) ?? .null),
            ("directory", .string(spec.directory)),
            ("left_out", .array(spec.leftOut.map(\.json))),
            ("params", .array(spec.params.sorted { $0.key < $1.key }.map { .array([.string($0.key), $0.value]) })),
            ("env", .array(spec.environment.map { .array([.string($0.name), .string($0.value)]) })),
            ("outputs", spec.outputs.json),
            ("inputs", .array(inputs.sorted { $0.name < $1.name }.map { .array([.string($0.name), .string($0.content)]) })),
        ])
        return SHA256Hasher.hex(Array(document.serialized.utf8))
    }

    // MARK: Following steps

    /// Reads the runs of the active steps, and records those that ended; a failed one is retried while
    /// its retries last.
    private func refreshActiveSteps() throws(CMLError) {
        for record in pipeline.steps where record.state == .queued || record.state == .running {
            guard let id = record.run else { continue }
            let run = try store.run(id: id)
            let i = index(of: record.name)
            switch run.observedStatus {
            case .queued: continue
            case .running:
                if record.state != .running {
                    pipeline.steps[i].state = .running
                    pipeline.steps[i].startedAt = run.startedAt
                    try save()
                }
            case .completed:
                pipeline.steps[i].startedAt = run.startedAt
                end(record.name, .completed, reason: nil, at: run.end?.endedAt)
                try save()
            case .failed, .lost, .aborted:
                pipeline.steps[i].startedAt = run.startedAt
                // A reason already there is the controller's own (a timeout).
                let reason = record.reason ?? run.end?.error ?? run.end?.exitCode.map { "exit status \($0)" }
                    ?? (run.observedStatus == .lost ? "its agent stopped answering" : run.observedStatus.rawValue)
                let retries = definition.step(record.name)!.retries
                if record.attempts.count <= retries && stopRequest.withLock({ $0 }) == .none {
                    report(.note("step \(record.name) (run \(RunID.short(id))) failed: \(reason); attempt \(record.attempts.count + 1) of \(retries + 1)"))
                    pipeline.steps[i].reason = nil
                    try start(record.name, retry: true)
                } else {
                    end(record.name, .failed, reason: reason, at: run.end?.endedAt)
                    try save()
                }
            }
        }
    }

    private func abortStepsPastTheirTimeout() throws(CMLError) {
        let now = Clock.now()
        for record in pipeline.steps where record.state == .running && record.reason == nil {
            guard let timeout = definition.step(record.name)!.timeout, let startedAt = record.startedAt, let id = record.run,
                  now - startedAt > timeout else { continue }
            let limit = timeout == timeout.rounded() ? String(Int(timeout)) : String(timeout)
            pipeline.steps[index(of: record.name)].reason = "timed out after \(limit) s"
            try save()
            report(.note("step \(record.name) (run \(RunID.short(id))) timed out after \(limit) s: aborting it"))
            do {
                _ = try RunAbort.abort(id, store: store)
            } catch {
                // It ended meanwhile: it is read as it ended.
                guard try store.run(id: id).observedStatus.isFinished else { throw error }
                pipeline.steps[index(of: record.name)].reason = nil
            }
        }
    }

    private func end(_ name: String, _ state: StepState, reason: String?, at time: Double? = nil) {
        let i = index(of: name)
        pipeline.steps[i].state = state
        pipeline.steps[i].reason = reason
        pipeline.steps[i].endedAt = state == .blocked ? nil : (time ?? Clock.now())
        report(.ended(pipeline.steps[i]))
    }

    /// A step left `planned` by a controller killed before it recorded the step's run: its run, when it
    /// was queued, is found by its parameters; otherwise the step is started again.
    private func adoptPlannedSteps() throws(CMLError) {
        let planned = pipeline.steps.filter { $0.state == .planned }
        guard !planned.isEmpty else { return }
        let members = try store.runs(parameter: Self.pipelineParameter, is: pipeline.id)
        for record in planned {
            let found = members.filter { run in
                !record.attempts.contains(run.id)
                    && run.params.contains { $0.key == Self.stepParameter && $0.value == .string(record.name) }
            }.max { $0.id < $1.id }
            let i = index(of: record.name)
            if let found {
                pipeline.steps[i].run = found.id
                pipeline.steps[i].attempts.append(found.id)
                pipeline.steps[i].state = .queued
                report(.note("step \(record.name) was queued before the controller stopped: run \(RunID.short(found.id))"))
                try save()
            } else {
                pipeline.steps[i].state = .waiting
            }
        }
    }

    // MARK: The record

    private func save() throws(CMLError) {
        let now = Clock.now()
        pipeline.updatedAt = now
        pipeline.heartbeatAt = now
        try store.saveController(pipeline.record)
    }
}

extension PipelineController {
    /// Takes up a pipeline whose controller stopped or was killed: its failed and blocked steps wait
    /// again, what completed stays; refused while its controller still runs.
    public convenience init(resuming pipeline: Pipeline, store: any Store, definition: PipelineDefinition, pollInterval: Double = 1,
                            report: @escaping (PipelineEvent) -> Void) throws(CMLError) {
        let now = Clock.now()
        if pipeline.status == .completed {
            throw CMLError("pipeline \(RunID.short(pipeline.id)) has completed: every step ran", hint: "run its file again to rerun it",
                           kind: .conflict)
        }
        if pipeline.status == .running && !pipeline.isAbandoned(now: now) {
            throw ControllerLiveness.stillRunning("pipeline", pipeline.id, pid: pipeline.pid, host: pipeline.host,
                                                  heardAgo: now - pipeline.heartbeatAt)
        }
        var resumed = pipeline
        resumed.status = .running
        resumed.reason = nil
        resumed.host = ProcessPlace.here.host
        resumed.pid = getpid()
        resumed.pidScope = ProcessPlace.here.scope
        for i in resumed.steps.indices where resumed.steps[i].state == .failed || resumed.steps[i].state == .blocked {
            resumed.steps[i].state = .waiting
            resumed.steps[i].reason = nil
            // Its retries count again.
            resumed.steps[i].attempts = []
        }
        try self.init(store: store, pipeline: resumed, definition: definition, pollInterval: pollInterval, report: report)
    }
}

/// A sweep as JSON: the document its `ControllerRecord` keeps, and what `cml-queue sweep show` prints.
extension Sweep {
    public var json: JSON {
        let config = configuration
        var configuration: [(String, JSON)] = [
            ("base", .string(config.base)),
            ("objective", .string(config.objective.name)),
            ("direction", .string(config.objective.maximize ? "maximize" : "minimize")),
            ("space", .array(config.space.parameters.map { .string($0.description) })),
            ("strategy", .string(config.strategy)),
            ("trials", .int(Int64(config.trials))),
            ("parallel", .int(Int64(config.parallel))),
            ("queue", .string(config.queue)),
            ("priority", .int(Int64(config.priority))),
            ("seed", .string(String(config.seed))),
            ("max_failures", config.maxFailures.map { .int(Int64($0)) } ?? .null),
            ("local_slots", config.localSlots.map { .int(Int64($0)) } ?? .null),
        ]
        if let budgetParameter = config.budgetParameter { configuration.append(("budget_param", .string(budgetParameter))) }
        if let minBudget = config.minBudget { configuration.append(("min_budget", .int(minBudget))) }
        if let maxBudget = config.maxBudget { configuration.append(("max_budget", .int(maxBudget))) }
        if let reductionFactor = config.reductionFactor { configuration.append(("eta", .int(Int64(reductionFactor)))) }
        if let sampler = config.sampler { configuration.append(("sampler", .string(sampler))) }
        let best = self.best
        return .object([
            ("id", .string(id)),
            ("kind", .string(Self.kind)),
            ("project", .string(project)),
            ("status", .string(status.rawValue)),
            ("reason", reason.map(JSON.string) ?? .null),
            ("created_at", .string(Clock.rfc3339(createdAt))),
            ("updated_at", .string(Clock.rfc3339(updatedAt))),
            ("host", .string(host)),
            ("pid", .int(Int64(pid))),
            ("pid_scope", pidScope.map(JSON.string) ?? .null),
            ("heartbeat_at", .double(heartbeatAt)),
            ("configuration", .object(configuration)),
            ("best", best.map { .object([("trial", .int(Int64($0.index))), ("id", $0.run.map(JSON.string) ?? .null),
                                         ("objective", Self.number($0.objective))]) } ?? .null),
            ("trials", .array(trials.map(\.json))),
        ])
    }

    public static func number(_ value: Double?) -> JSON {
        guard let value else { return .null }
        return value.isFinite ? .double(value) : .string(value.isNaN ? "NaN" : value > 0 ? "Infinity" : "-Infinity")
    }

    /// Reads a record's document back; an error naming what is wrong when it is not a sweep.
    public init(record: ControllerRecord) throws(CMLError) {
        let json = try JSON.parse(record.document)
        func fail(_ what: String) -> CMLError {
            CMLError("sweep \(record.id)'s record is damaged: \(what)", hint: "was it written by a newer cml?", kind: .damaged)
        }
        func string(_ value: JSON?, _ name: String) throws(CMLError) -> String {
            guard let text = value?.stringValue else { throw fail("no \(name)") }
            return text
        }
        func integer(_ value: JSON?, _ name: String) throws(CMLError) -> Int64 {
            guard case .int(let number)? = value else { throw fail("no \(name)") }
            return number
        }
        func optionalInteger(_ value: JSON?) -> Int64? {
            if case .int(let number)? = value { return number }
            return nil
        }
        guard let config = json["configuration"] else { throw fail("no configuration") }
        var parameters: [SweepParameter] = []
        if case .array(let items)? = config["space"] {
            for item in items {
                guard let text = item.stringValue, let parameter = try? SearchSpace.parse(text) else { throw fail("a parameter is not one") }
                parameters.append(parameter)
            }
        }
        let objectiveText = try string(config["objective"], "objective")
        let objective = try SweepObjective(parsing: objectiveText, maximize: config["direction"]?.stringValue == "maximize", metrics: [])
        guard let seed = UInt64(try string(config["seed"], "seed")) else { throw fail("no seed") }
        var configuration = SweepConfiguration(
            base: try string(config["base"], "base"), objective: objective, space: SearchSpace(parameters: parameters),
            strategy: try string(config["strategy"], "strategy"), trials: Int(try integer(config["trials"], "trials")),
            parallel: Int(try integer(config["parallel"], "parallel")), queue: try string(config["queue"], "queue"),
            priority: Int(optionalInteger(config["priority"]) ?? 0), seed: seed,
            maxFailures: optionalInteger(config["max_failures"]).map(Int.init), localSlots: optionalInteger(config["local_slots"]).map(Int.init))
        configuration.budgetParameter = config["budget_param"]?.stringValue
        configuration.minBudget = optionalInteger(config["min_budget"])
        configuration.maxBudget = optionalInteger(config["max_budget"])
        configuration.reductionFactor = optionalInteger(config["eta"]).map(Int.init)
        configuration.sampler = config["sampler"]?.stringValue
        self.init(id: record.id, project: record.project, configuration: configuration, now: record.createdAt)
        updatedAt = record.updatedAt
        guard let status = SweepStatus(rawValue: try string(json["status"], "status")) else { throw fail("an unknown status") }
        self.status = status
        reason = json["reason"]?.stringValue
        host = try string(json["host"], "host")
        pid = Int32(truncatingIfNeeded: try integer(json["pid"], "pid"))
        pidScope = json["pid_scope"]?.stringValue
        heartbeatAt = json["heartbeat_at"]?.number ?? record.updatedAt
        trials = []
        if case .array(let items)? = json["trials"] {
            for item in items {
                guard let trial = SweepTrial(json: item) else { throw fail("trial \(trials.count) is not one") }
                trials.append(trial)
            }
        }
    }

    /// The record to save.
    public var record: ControllerRecord {
        ControllerRecord(kind: Self.kind, id: id, project: project, createdAt: createdAt, updatedAt: updatedAt, document: json.serialized)
    }
}

extension SweepTrial {
    public var json: JSON {
        .object([
            ("trial", .int(Int64(index))),
            ("id", run.map(JSON.string) ?? .null),
            ("status", .string(state.rawValue)),
            ("objective", Sweep.number(objective)),
            ("params", .object(assignment.map { ($0.key, Param.typedValue($0.value)) })),
            ("values", .object(assignment.map { ($0.key, .string($0.value)) })),
            ("steps", steps.map(JSON.int) ?? .null),
            ("reason", reason.map(JSON.string) ?? .null),
            ("ended_at", endedAt.map { .string(Clock.rfc3339($0)) } ?? .null),
            ("info", info),
        ])
    }

    init?(json: JSON) {
        guard case .int(let index)? = json["trial"], let stateText = json["status"]?.stringValue,
              let state = TrialState(rawValue: stateText), case .object(let values)? = json["values"] else { return nil }
        var assignment: [(key: String, value: String)] = []
        for (key, value) in values {
            guard let text = value.stringValue else { return nil }
            assignment.append((key, text))
        }
        self.init(index: Int(index), run: json["id"]?.stringValue, assignment: assignment, info: json["info"] ?? .null, state: state)
        switch json["objective"] {
        case .string(let text)?: objective = Double(text == "Infinity" ? "inf" : text == "-Infinity" ? "-inf" : text)
        case let value?: objective = value.number
        case nil: objective = nil
        }
        reason = json["reason"]?.stringValue
        if case .int(let steps)? = json["steps"] { self.steps = steps }
        endedAt = json["ended_at"]?.stringValue.flatMap(Clock.parseTime)
    }
}

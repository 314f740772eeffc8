/// Everything an agent needs to reproduce a run: the code (repository, commit, the captured patch by
/// blob id, the directory inside the repository the command starts in), the command with its
/// parameters, environment overrides, and what the run is recorded as. `cml-run clone` and `cml-run spec`
/// print it as a JSON line; `cml-queue add` reads it. Its command never holds a secret value
/// (`SecretParameters`): the agent fills them in from its environment.
public struct RunSpec: Sendable, Codable, Equatable {
    /// A URL or a local path git can clone; nil when the command was not in a repository (it then starts
    /// in an empty directory).
    public var repository: String?
    public var commit: String?
    /// The sha256 of the patch (in the store's blobs) that turns a clean checkout of `commit` into the
    /// work tree the command ran in; nil when the tree was clean.
    public var patchBlob: String?
    /// Where the command starts, relative to the repository root ("" for the root).
    public var directory: String
    /// Files the patch leaves out (secret files, large untracked files): missing where the code is reproduced.
    public var leftOut: [LeftOutFile] = []
    /// With secret values redacted (see `SecretParameters`).
    public var command: [String]
    /// Set in the command's environment on top of the agent's, in this order.
    public var environment: [EnvironmentVariable]
    /// Parameters recorded with `--param` (not on the command line).
    public var params: [Param]
    public var name: String?
    public var project: String
    public var tags: [String]
    /// The run this one was cloned from.
    public var clonedFrom: String?
    /// Dataset versions the command uses (`NAME@VER`), materialised on the agent as `cml-run --data` does.
    public var datasets: [String] = []
    /// What a pipeline's step reads (`PipelineInput`), resolved when it was queued: each reaches the
    /// command as a path in `$CML_INPUT_NAME`.
    public var inputs: [SpecInput] = []
    /// What a pipeline's step leaves behind, recorded by the run when its command succeeds.
    public var outputs = RunOutputs()
    public var capture: CaptureSettings

    public init(repository: String?, commit: String?, patchBlob: String?, directory: String = "", command: [String],
                environment: [EnvironmentVariable] = [], params: [Param] = [], name: String? = nil,
                project: String = "default", tags: [String] = [], clonedFrom: String? = nil,
                capture: CaptureSettings = CaptureSettings()) {
        self.repository = repository
        self.commit = commit
        self.patchBlob = patchBlob
        self.directory = directory
        self.command = SecretParameters.redact(command)
        self.environment = environment
        self.params = params
        self.name = name
        self.project = project
        self.tags = tags
        self.clonedFrom = clonedFrom
        self.capture = capture
    }
}

/// An input of a pipeline's step, by what it is exactly: a dataset version by id, or an artifact of a run.
public struct SpecInput: Sendable, Codable, Equatable {
    public var name: String
    /// `NAME@VERSION-ID`; also among the spec's datasets, so that the run records that it used it.
    public var dataset: String?
    /// The run whose artifact `artifact` is.
    public var run: String?
    public var artifact: String?

    public init(name: String, dataset: String) {
        self.name = name
        self.dataset = dataset
    }

    public init(name: String, run: String, artifact: String) {
        self.name = name
        self.run = run
        self.artifact = artifact
    }

    var json: JSON {
        if let dataset { return .object([("data", .string(dataset))]) }
        return .object([("run", .string(run ?? "")), ("artifact", .string(artifact ?? ""))])
    }

    init(name: String, json: JSON) throws(CMLError) {
        self.name = name
        guard PipelineStep.isName(name) else { throw CMLError("\"inputs\": '\(name)' is not an input name") }
        switch json {
        case .object(let members) where members.count == 1 && members[0].0 == "data":
            guard let text = members[0].1.stringValue else { throw CMLError("\"inputs\": \(name)'s data must be a string") }
            _ = try VersionReference(text)
            dataset = text
        case .object(let members) where Set(members.map(\.0)) == ["run", "artifact"] && members.count == 2:
            run = json["run"]?.stringValue
            artifact = json["artifact"]?.stringValue
            guard let run, RunID.isPrefix(run), artifact?.isEmpty == false else {
                throw CMLError("\"inputs\": \(name) needs a run id and an artifact name")
            }
        default:
            throw CMLError("\"inputs\": \(name) must be {\"data\": \"NAME@VERSION\"} or {\"run\": ID, \"artifact\": NAME}")
        }
    }
}

/// Paths (relative to where the command starts) a run records once its command has succeeded: each
/// directory of `datasets` as a version of that dataset made by the run, each of `artifacts` as an
/// artifact named after its last part. One that is missing fails the run.
public struct RunOutputs: Sendable, Codable, Equatable {
    public var datasets: [DatasetOutput] = []
    public var artifacts: [String] = []

    public init(datasets: [DatasetOutput] = [], artifacts: [String] = []) {
        self.datasets = datasets
        self.artifacts = artifacts
    }

    public var isEmpty: Bool { datasets.isEmpty && artifacts.isEmpty }

    var json: JSON {
        .object([("datasets", .object(datasets.map { ($0.name, .string($0.path)) })), ("artifacts", .array(artifacts.map(JSON.string)))])
    }

    init(json: JSON) throws(CMLError) {
        guard case .object(let members) = json, members.allSatisfy({ ["datasets", "artifacts"].contains($0.0) }) else {
            throw CMLError("\"outputs\" must be {\"datasets\": {NAME: PATH}, \"artifacts\": [PATH]}")
        }
        if case .object(let entries)? = json["datasets"] {
            for (name, value) in entries {
                guard let path = value.stringValue else { throw CMLError("\"outputs\": the path of dataset \(name) must be a string") }
                try DatasetName.check(name)
                datasets.append(DatasetOutput(name: name, path: try Self.checkedPath(path)))
            }
        }
        if case .array(let items)? = json["artifacts"] {
            for item in items {
                guard let path = item.stringValue else { throw CMLError("\"outputs\": artifacts must be paths") }
                artifacts.append(try Self.checkedPath(path))
            }
        }
    }

    /// A path inside the directory the command starts in.
    public static func checkedPath(_ path: String) throws(CMLError) -> String {
        guard !path.isEmpty, !path.hasPrefix("/"), !path.split(separator: "/").contains("..") else {
            throw CMLError.usage("output '\(path)' must be a path inside the directory the command starts in")
        }
        return path
    }
}

public struct DatasetOutput: Sendable, Codable, Equatable {
    public var name: String
    public var path: String

    public init(name: String, path: String) {
        self.name = name
        self.path = path
    }
}

public struct EnvironmentVariable: Sendable, Codable, Equatable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }

    /// `NAME=value`, as `--env` takes it; nil when it is not that.
    public init?(assignment text: String) {
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex else { return nil }
        let name = String(text[..<eq])
        guard Self.isName(name) else { return nil }
        self.init(name: name, value: String(text[text.index(after: eq)...]))
    }

    /// Letters, digits and underscores, not starting with a digit: what a shell exports.
    public static func isName(_ text: String) -> Bool {
        guard let first = text.utf8.first, !(0x30...0x39).contains(first) else { return false }
        return text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F }
    }

    /// `PREFIX` and `name` in capitals, every other character as `_`: `CML_DATA_MNIST_SMALL` for `mnist-small`.
    public static func name(prefix: String, for name: String) -> String {
        prefix + String(name.uppercased().unicodeScalars.map { scalar in
            (scalar >= "A" && scalar <= "Z") || (scalar >= "0" && scalar <= "9") ? Character(scalar) : "_"
        })
    }
}

/// How `cml-run` records what the command prints: the options of `cml-run` that the agent applies too.
public struct CaptureSettings: Sendable, Codable, Equatable {
    public var parseMetrics = true
    public var metricPatterns: [String] = []
    public var monitorInterval = 10.0
    public var importTensorBoard = true
    public var tensorBoardDirectories: [String] = []
    public var tensorBoardInterval = 5.0

    public init() {}
}

extension RunSpec {
    /// The spec as one JSON object (a line of `cml-run clone`).
    public var json: JSON {
        var members: [(String, JSON)] = [
            ("repository", repository.map(JSON.string) ?? .null),
            ("commit", commit.map(JSON.string) ?? .null),
            ("patch_blob", patchBlob.map(JSON.string) ?? .null),
            ("directory", .string(directory)),
        ]
        if !leftOut.isEmpty { members.append(("left_out", .array(leftOut.map(\.json)))) }
        return .object(members + [
            ("command", .array(command.map(JSON.string))),
            ("env", .object(environment.map { ($0.name, .string($0.value)) })),
            ("params", .object(params.map { ($0.key, $0.value) })),
            ("name", name.map(JSON.string) ?? .null),
            ("project", .string(project)),
            ("tags", .array(tags.map(JSON.string))),
            ("cloned_from", clonedFrom.map(JSON.string) ?? .null),
            ("data", .array(datasets.map(JSON.string))),
        ] + (inputs.isEmpty ? [] : [("inputs", .object(inputs.map { ($0.name, $0.json) }))])
            + (outputs.isEmpty ? [] : [("outputs", outputs.json)]) + [
            ("capture", .object([
                ("metrics", .bool(capture.parseMetrics)),
                ("metric_patterns", .array(capture.metricPatterns.map(JSON.string))),
                ("monitor_interval", .double(capture.monitorInterval)),
                ("tensorboard", .bool(capture.importTensorBoard)),
                ("tb_dirs", .array(capture.tensorBoardDirectories.map(JSON.string))),
                ("tb_interval", .double(capture.tensorBoardInterval)),
            ])),
        ])
    }

    /// Reads a spec, strictly: an unknown field, a value of the wrong kind or a path that leaves the
    /// repository is an error naming it, so that a typo never queues a run that does something else.
    public init(json: JSON) throws(CMLError) {
        guard case .object(let members) = json else { throw CMLError("a run spec is a JSON object") }
        if members.contains(where: { $0.0 == "id" }) {
            throw CMLError("this is a run record, not a run spec", hint: "make a spec with cml-run clone ID")
        }
        let known: Set<String> = ["repository", "commit", "patch_blob", "directory", "left_out", "command", "env", "params",
                                  "name", "project", "tags", "cloned_from", "data", "inputs", "outputs", "capture"]
        if let unknown = members.first(where: { !known.contains($0.0) }) {
            throw CMLError("unknown field \"\(unknown.0)\"", hint: "a spec has \(known.sorted().joined(separator: ", "))")
        }
        func field(_ key: String) -> JSON? {
            guard let value = members.first(where: { $0.0 == key })?.1, value != .null else { return nil }
            return value
        }
        func text(_ key: String) throws(CMLError) -> String? {
            guard let value = field(key) else { return nil }
            guard let string = value.stringValue else { throw CMLError("\"\(key)\" must be a string") }
            return string
        }
        func strings(_ key: String, in value: JSON?) throws(CMLError) -> [String] {
            guard let value else { return [] }
            guard case .array(let items) = value else { throw CMLError("\"\(key)\" must be an array of strings") }
            var out: [String] = []
            for item in items {
                guard let string = item.stringValue else { throw CMLError("\"\(key)\" must be an array of strings") }
                out.append(string)
            }
            return out
        }

        // A secret value written into a spec by hand is not stored either: the agent takes it from its environment.
        command = SecretParameters.redact(try strings("command", in: field("command")))
        guard !command.isEmpty, !command[0].isEmpty else { throw CMLError("\"command\" must name a program") }
        repository = try text("repository")
        if repository?.isEmpty == true { throw CMLError("\"repository\" must not be empty") }
        commit = try text("commit")
        if let commit, !Self.isHex(commit, lengths: [40, 64]) {
            throw CMLError("\"commit\" must be a full commit id (40 hex digits), not '\(commit)'")
        }
        if repository != nil && commit == nil { throw CMLError("a spec with a \"repository\" needs its \"commit\"") }
        if repository == nil && commit != nil { throw CMLError("a spec with a \"commit\" needs its \"repository\"") }
        patchBlob = try text("patch_blob")
        if let patchBlob {
            guard Self.isHex(patchBlob, lengths: [64]) else { throw CMLError("\"patch_blob\" must be a sha256 (64 hex digits)") }
            guard commit != nil else { throw CMLError("a \"patch_blob\" applies to a \"commit\", and the spec has none") }
        }
        directory = try text("directory") ?? ""
        if directory.hasPrefix("/") || directory.split(separator: "/").contains("..") {
            throw CMLError("\"directory\" must be a path inside the repository, not '\(directory)'")
        }
        leftOut = []
        if let given = field("left_out") {
            guard case .array(let entries) = given else { throw CMLError("\"left_out\" must be an array") }
            for entry in entries {
                guard let file = LeftOutFile(json: entry) else {
                    throw CMLError("\"left_out\": \(entry.serialized) is not a file left out",
                                   hint: "each is {\"path\", \"reason\": \"secret\" or \"size\", \"size\", \"sha256\"}")
                }
                leftOut.append(file)
            }
        }
        environment = []
        if let env = field("env") {
            guard case .object(let variables) = env else { throw CMLError("\"env\" must be an object of strings") }
            for (variable, value) in variables {
                guard EnvironmentVariable.isName(variable) else { throw CMLError("\"env\": '\(variable)' is not a variable name") }
                guard let string = value.stringValue else { throw CMLError("\"env\": the value of \(variable) must be a string") }
                environment.append(EnvironmentVariable(name: variable, value: string))
            }
        }
        params = []
        if let given = field("params") {
            guard case .object(let pairs) = given else { throw CMLError("\"params\" must be an object") }
            for (key, value) in pairs {
                let param = Param(key: key, value: value, source: "option")
                try NameLimits.check(param)
                guard ParamParser.isKey(key) else { throw CMLError("\"params\": '\(key)' is not a parameter name") }
                params.append(param)
            }
        }
        name = try text("name")
        if let name { try NameLimits.check(name, "run name") }
        project = try text("project") ?? "default"
        if project.isEmpty { throw CMLError("\"project\" must not be empty") }
        try NameLimits.check(project, "project")
        tags = try strings("tags", in: field("tags"))
        for tag in tags { try NameLimits.check(tag, "tag") }
        clonedFrom = try text("cloned_from")
        if let clonedFrom, !RunID.isPrefix(clonedFrom) { throw CMLError("\"cloned_from\" must be a run id") }
        datasets = try strings("data", in: field("data"))
        for reference in datasets { _ = try VersionReference(reference) }
        inputs = []
        if let given = field("inputs") {
            guard case .object(let entries) = given else { throw CMLError("\"inputs\" must be an object") }
            for (name, value) in entries { inputs.append(try SpecInput(name: name, json: value)) }
        }
        outputs = try field("outputs").map { (value) throws(CMLError) in try RunOutputs(json: value) } ?? RunOutputs()
        capture = CaptureSettings()
        if let settings = field("capture") {
            guard case .object(let entries) = settings else { throw CMLError("\"capture\" must be an object") }
            for (key, value) in entries {
                switch (key, value) {
                case ("metrics", .bool(let b)): capture.parseMetrics = b
                case ("metric_patterns", _): capture.metricPatterns = try strings("capture.metric_patterns", in: value)
                case ("monitor_interval", _) where (value.number ?? -1) >= 0: capture.monitorInterval = value.number!
                case ("tensorboard", .bool(let b)): capture.importTensorBoard = b
                case ("tb_dirs", _): capture.tensorBoardDirectories = try strings("capture.tb_dirs", in: value)
                case ("tb_interval", _) where (value.number ?? 0) > 0: capture.tensorBoardInterval = value.number!
                default: throw CMLError("\"capture\": bad or unknown setting \"\(key)\"",
                                        hint: "metrics, metric_patterns, monitor_interval, tensorboard, tb_dirs, tb_interval")
                }
            }
            for pattern in capture.metricPatterns { _ = try MetricPattern(pattern) }
        }
    }

    static func isHex(_ text: String, lengths: Set<Int>) -> Bool {
        lengths.contains(text.utf8.count) && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// The record a queued run starts as: the command and its parameters, what the code will be, the
    /// environment overrides; host and user are the submitter's until an agent takes it.
    public func queuedRun(id: String) -> Run {
        var params = ParamParser.parse(command)
        for given in self.params {
            params.removeAll { $0.key == given.key }
            params.append(given)
        }
        var code: [(String, JSON)] = [("in_repository", .bool(repository != nil))]
        if let repository {
            code += [("remote_url", .string(repository)), ("commit", commit.map(JSON.string) ?? .null),
                     ("dirty", .bool(patchBlob != nil || !leftOut.isEmpty))]
            if let patchBlob { code.append(("patch_blob", .string(patchBlob))) }
            if !directory.isEmpty { code.append(("directory", .string(directory))) }
            if !leftOut.isEmpty { code.append(("left_out", .array(leftOut.map(\.json)))) }
        }
        return Run(id: id, name: name, project: project, status: .queued, command: command, cwd: directory,
                   host: RunEnvironment.hostName, user: RunEnvironment.userName, pid: nil, startedAt: nil,
                   environment: RunEnvironment.redact(environment.map { ($0.name, $0.value) }), code: .object(code),
                   tags: tags, params: params)
    }

    /// The options the agent records the run with: the spec's, as `cml-run` would have had them.
    public func runOptions() throws(CMLError) -> RunOptions {
        var options = RunOptions(name: name, project: project, tags: tags, params: params, terminal: false,
                                 parseMetrics: capture.parseMetrics, monitorInterval: capture.monitorInterval,
                                 metricPatterns: try capture.metricPatterns.map { (source) throws(CMLError) in try MetricPattern(source) },
                                 importTensorBoard: capture.importTensorBoard, tensorBoardDirectories: capture.tensorBoardDirectories,
                                 tensorBoardInterval: capture.tensorBoardInterval)
        options.datasets = try datasets.map { (reference) throws(CMLError) in try VersionReference(reference) }
        for input in inputs {
            if let dataset = input.dataset, !datasets.contains(dataset) { options.datasets.append(try VersionReference(dataset)) }
        }
        options.inputs = inputs
        options.outputs = outputs
        return options
    }
}

import CMLKit
import Yams

/// Reads a pipeline file (YAML) into a `PipelineDefinition`, strictly: an unknown key or a value of the
/// wrong kind is an error naming the file, its line and what was expected, so that a typo never runs
/// a pipeline that does something else.
///
///     name: mnist                 # default: the file's name
///     queue: gpu                  # the steps' queue (default: default)
///     steps:
///       prepare:
///         command: python prepare.py --rows ${params.rows}   # a string runs with sh -c; a list is argv
///         params: {rows: 1000}
///       train:
///         base: 0192f3a4          # or a clone of a recorded run, with `set`
///         set: {lr: 0.1}
///         inputs: {data: prepare.mnist, labels: labels@3}
///         outputs: {datasets: {features: out/}, artifacts: [model.pt]}
///         needs: [prepare]
///         env: {SEED: "1"}
///         queue: gpu
///         retries: 2
///         timeout: 30m            # seconds, or with s, m, h
public enum PipelineFile {
    static let topKeys = ["name", "queue", "steps"]
    static let stepKeys = ["command", "base", "set", "params", "inputs", "outputs", "needs", "env", "queue", "retries", "timeout"]

    /// Reads and checks the file at `path` (its text is returned too, for the pipeline's record).
    public static func load(_ path: String) throws(CMLError) -> (definition: PipelineDefinition, source: String) {
        let bytes = try FileSystem.readAll(path)
        guard let source = String(validating: bytes, as: UTF8.self) else { throw CMLError.usage("\(path) is not UTF-8 text") }
        let name = FileSystem.baseName(path).split(separator: ".").first.map(String.init) ?? "pipeline"
        return (try parse(source, file: path, defaultName: name), source)
    }

    public static func parse(_ source: String, file: String, defaultName: String) throws(CMLError) -> PipelineDefinition {
        let root: Node?
        do {
            root = try Yams.compose(yaml: source)
        } catch {
            throw CMLError.usage("\(file): not valid YAML: \(error)")
        }
        let reader = Reader(file: file)
        guard let root, let top = root.mapping else {
            throw reader.error(root, "a pipeline file is a mapping with steps", hint: "see cml-queue pipeline run --help")
        }
        try reader.checkKeys(top, topKeys, what: "the pipeline")
        var definition = PipelineDefinition(name: defaultName, steps: [])
        if let name = top["name"] {
            definition.name = try reader.string(name, "name")
            guard PipelineStep.isName(definition.name) else {
                throw reader.error(name, "name: '\(definition.name)' must be letters, digits, _ and - (at most 64)")
            }
        }
        if let queue = top["queue"] {
            definition.queue = try reader.string(queue, "queue")
            try reader.checked(queue) { () throws(CMLError) in try QueueName.check(definition.queue!) }
        }
        guard let steps = top["steps"] else { throw reader.error(root, "no steps: a pipeline needs at least one") }
        guard let stepMapping = steps.mapping else {
            throw reader.error(steps, "steps must be a mapping of step names to steps", hint: "steps:\n  prepare:\n    command: python prepare.py")
        }
        for (keyNode, body) in stepMapping {
            definition.steps.append(try reader.step(keyNode, body))
        }
        do {
            try definition.validate()
        } catch {
            throw CMLError.usage("\(file): \(error.message)", hint: error.hint)
        }
        return definition
    }

    /// Turns nodes into values, each error naming the file and the node's line.
    struct Reader {
        let file: String

        func error(_ node: Node?, _ message: String, hint: String? = nil) -> CMLError {
            let place = node?.mark.map { "\(file):\($0.line)" } ?? file
            return CMLError.usage("\(place): \(message)", hint: hint)
        }

        /// Runs a check of CMLKit's, its error placed at `node`.
        func checked(_ node: Node, _ check: () throws(CMLError) -> Void) throws(CMLError) {
            do { try check() } catch { throw self.error(node, error.message, hint: error.hint) }
        }

        func checkKeys(_ mapping: Node.Mapping, _ known: [String], what: String) throws(CMLError) {
            for (key, _) in mapping {
                guard let name = key.scalar?.string, known.contains(name) else {
                    throw error(key, "\(what) has no setting '\(key.scalar?.string ?? "?")'", hint: "its settings: \(known.joined(separator: ", "))")
                }
            }
        }

        func string(_ node: Node, _ what: String) throws(CMLError) -> String {
            guard let scalar = node.scalar, !scalar.string.isEmpty else { throw error(node, "\(what) must be a string") }
            return scalar.string
        }

        func strings(_ node: Node, _ what: String) throws(CMLError) -> [String] {
            guard let sequence = node.sequence else { throw error(node, "\(what) must be a list") }
            var values: [String] = []
            for item in sequence { values.append(try string(item, what)) }
            return values
        }

        /// A mapping of names to scalar values, in its order.
        func settings(_ node: Node, _ what: String, checkKey: (String) -> Bool) throws(CMLError) -> [PipelineSetting] {
            guard let mapping = node.mapping else { throw error(node, "\(what) must be a mapping of names to values") }
            var settings: [PipelineSetting] = []
            for (key, value) in mapping {
                let name = try string(key, "a key of \(what)")
                guard checkKey(name) else { throw error(key, "\(what): '\(name)' is not a valid name") }
                guard let scalar = value.scalar else { throw error(value, "\(what): the value of \(name) must be a number or a string") }
                settings.append(PipelineSetting(key: name, value: scalar.string))
            }
            return settings
        }

        func step(_ keyNode: Node, _ body: Node) throws(CMLError) -> PipelineStep {
            let name = try string(keyNode, "a step's name")
            guard PipelineStep.isName(name) else {
                throw error(keyNode, "step '\(name)': a step's name is letters, digits, _ and - (no dots, at most 64)")
            }
            guard let mapping = body.mapping else { throw error(body, "step \(name) must be a mapping with a command or a base") }
            try checkKeys(mapping, PipelineFile.stepKeys, what: "step \(name)")
            var step = PipelineStep(name: name)
            switch (mapping["command"], mapping["base"]) {
            case (let command?, nil):
                if let sequence = command.sequence {
                    step.command = try strings(.sequence(sequence), "step \(name)'s command")
                    guard !step.command!.isEmpty else { throw error(command, "step \(name)'s command is empty") }
                } else {
                    step.command = ["sh", "-c", try string(command, "step \(name)'s command")]
                }
                if mapping["set"] != nil { throw error(mapping["set"], "step \(name): set applies to a base run; give params to a command") }
            case (nil, let base?):
                step.base = try string(base, "step \(name)'s base")
                if let set = mapping["set"] { step.settings = try settings(set, "step \(name)'s set", checkKey: ParamParser.isKey) }
            case (nil, nil): throw error(keyNode, "step \(name) has neither a command nor a base run")
            case (_?, _?): throw error(keyNode, "step \(name) has both a command and a base run: give one")
            }
            if let params = mapping["params"] { step.params = try settings(params, "step \(name)'s params", checkKey: ParamParser.isKey) }
            if let env = mapping["env"] { step.environment = try settings(env, "step \(name)'s env", checkKey: EnvironmentVariable.isName) }
            if let inputs = mapping["inputs"] {
                for input in try settings(inputs, "step \(name)'s inputs", checkKey: PipelineStep.isName) {
                    try checked(inputs) { () throws(CMLError) in
                        step.inputs.append(try PipelineInput(name: input.key, parsing: input.value))
                    }
                }
            }
            if let outputs = mapping["outputs"] { step.outputs = try self.outputs(outputs, step: name) }
            if let needs = mapping["needs"] {
                step.needs = needs.scalar != nil ? [try string(needs, "needs")] : try strings(needs, "step \(name)'s needs")
            }
            if let queue = mapping["queue"] {
                step.queue = try string(queue, "step \(name)'s queue")
                try checked(queue) { () throws(CMLError) in try QueueName.check(step.queue!) }
            }
            if let retries = mapping["retries"] {
                guard let count = Int(try string(retries, "retries")), count >= 0, count <= 100 else {
                    throw error(retries, "step \(name): retries must be a whole number from 0 to 100")
                }
                step.retries = count
            }
            if let timeout = mapping["timeout"] {
                guard let seconds = Self.seconds(try string(timeout, "timeout")), seconds > 0 else {
                    throw error(timeout, "step \(name): timeout must be seconds, or a number with s, m or h (30m)")
                }
                step.timeout = seconds
            }
            return step
        }

        func outputs(_ node: Node, step name: String) throws(CMLError) -> RunOutputs {
            guard let mapping = node.mapping else {
                throw error(node, "step \(name)'s outputs must be a mapping", hint: "outputs: {datasets: {NAME: DIR}, artifacts: [PATH]}")
            }
            try checkKeys(mapping, ["datasets", "artifacts"], what: "step \(name)'s outputs")
            var outputs = RunOutputs()
            if let datasets = mapping["datasets"] {
                for dataset in try settings(datasets, "step \(name)'s output datasets", checkKey: { (try? DatasetName.check($0)) != nil }) {
                    try checked(datasets) { () throws(CMLError) in
                        outputs.datasets.append(DatasetOutput(name: dataset.key, path: try RunOutputs.checkedPath(dataset.value)))
                    }
                }
            }
            if let artifacts = mapping["artifacts"] {
                for path in try strings(artifacts, "step \(name)'s output artifacts") {
                    try checked(artifacts) { () throws(CMLError) in outputs.artifacts.append(try RunOutputs.checkedPath(path)) }
                }
            }
            return outputs
        }

        static func seconds(_ text: String) -> Double? {
            let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600]
            if let last = text.last, let unit = units[last] { return Double(text.dropLast()).map { $0 * unit } }
            return Double(text)
        }
    }
}

/// A pipeline as its file describes it (`cml-queue pipeline run FILE`): named steps, each an ordinary
/// run (a command, or a clone of a recorded run), with what it takes from datasets and from the steps
/// before it. `CMLPipelineFile` reads it from YAML; `validate()` checks it whole before anything runs.
public struct PipelineDefinition: Sendable, Equatable {
    public var name: String
    /// The queue of the steps that name none (default: `default`, or the pipeline's own with `--local`).
    public var queue: String?
    /// In the file's order.
    public var steps: [PipelineStep]

    public init(name: String, queue: String? = nil, steps: [PipelineStep]) {
        self.name = name
        self.queue = queue
        self.steps = steps
    }

    public func step(_ name: String) -> PipelineStep? { steps.first { $0.name == name } }

    /// The steps `step` waits for: those it `needs`, those whose outputs are its inputs, and those whose
    /// recorded parameters its templates read, in that order, each once.
    public func dependencies(of step: PipelineStep) -> [String] {
        var names = step.needs
        for input in step.inputs {
            if case .stepOutput(let producer, _) = input.source { names.append(producer) }
        }
        for template in step.templates {
            for reference in (try? PipelineTemplate.references(in: template)) ?? [] {
                if case .step(let producer, _) = reference { names.append(producer) }
            }
        }
        var seen: Set<String> = []
        return names.filter { seen.insert($0).inserted }
    }

    /// Checks what a file cannot say by its shape alone: unique step names, references to steps and
    /// parameters that exist, no cycle.
    public func validate() throws(CMLError) {
        guard !steps.isEmpty else { throw CMLError.usage("pipeline \(name) has no steps") }
        var names: Set<String> = []
        for step in steps {
            guard names.insert(step.name).inserted else { throw CMLError.usage("step \(step.name) is defined twice") }
        }
        for step in steps {
            for needed in step.needs where self.step(needed) == nil {
                throw CMLError.usage("step \(step.name) needs \(needed), which is not a step of the pipeline")
            }
            var inputNames: Set<String> = []
            for input in step.inputs {
                guard inputNames.insert(PipelineInput.variable(for: input.name)).inserted else {
                    throw CMLError.usage("step \(step.name): two inputs would both set \(PipelineInput.variable(for: input.name))")
                }
                if case .stepOutput(let producer, _) = input.source, self.step(producer) == nil {
                    throw CMLError.usage("step \(step.name): input \(input.name) comes from \(producer), which is not a step of the pipeline")
                }
            }
            for template in step.templates {
                for reference in try PipelineTemplate.references(in: template) {
                    switch reference {
                    case .own(let key) where !step.params.contains(where: { $0.key == key }):
                        throw CMLError.usage("step \(step.name): ${params.\(key)} names no parameter of the step",
                                             hint: "its params: \(step.params.map(\.key).joined(separator: ", "))")
                    case .step(let producer, _) where self.step(producer) == nil:
                        throw CMLError.usage("step \(step.name): \(reference) names \(producer), which is not a step of the pipeline")
                    case .step(let producer, _) where producer == step.name:
                        throw CMLError.usage("step \(step.name): \(reference) refers to the step itself", hint: "use ${params.KEY}")
                    default: break
                    }
                }
            }
        }
        _ = try order()
    }

    /// The steps in an order where each comes after those it depends on (the file's order where it is
    /// free); an error naming a cycle when there is one.
    public func order() throws(CMLError) -> [String] {
        var placed: [String] = []
        var remaining = steps
        while !remaining.isEmpty {
            guard let ready = remaining.firstIndex(where: { step in dependencies(of: step).allSatisfy(placed.contains) }) else {
                throw CMLError.usage("the steps \(remaining.map(\.name).joined(separator: ", ")) depend on each other in a cycle")
            }
            placed.append(remaining.remove(at: ready).name)
        }
        return placed
    }

    /// Applies `--set STEP.KEY=VALUE`: the step's parameter (or its base run's `--set`) takes the value.
    public mutating func apply(_ overrides: [PipelineOverride]) throws(CMLError) {
        for override in overrides {
            guard let index = steps.firstIndex(where: { $0.name == override.step }) else {
                throw CMLError.usage("--set \(override): the pipeline has no step \(override.step)",
                                     hint: "its steps: \(steps.map(\.name).joined(separator: ", "))")
            }
            if let at = steps[index].params.firstIndex(where: { $0.key == override.key }) {
                steps[index].params[at].value = override.value
            } else if steps[index].base != nil {
                steps[index].settings.removeAll { $0.key == override.key }
                steps[index].settings.append(PipelineSetting(key: override.key, value: override.value))
            } else {
                throw CMLError.usage("--set \(override): step \(override.step) has no parameter \(override.key)",
                                     hint: "its params: \(steps[index].params.map(\.key).joined(separator: ", "))")
            }
        }
    }
}

/// `--set STEP.KEY=VALUE` of `cml-queue pipeline run`.
public struct PipelineOverride: Sendable, Equatable, CustomStringConvertible {
    public var step: String
    public var key: String
    public var value: String

    public init(parsing text: String) throws(CMLError) {
        guard let equals = text.firstIndex(of: "="), let dot = text[..<equals].firstIndex(of: ".") else {
            throw CMLError.usage("--set \(text): expected STEP.PARAM=VALUE", hint: "e.g. --set train.lr=0.01")
        }
        step = String(text[..<dot])
        key = String(text[text.index(after: dot)..<equals])
        value = String(text[text.index(after: equals)...])
        guard PipelineStep.isName(step), ParamParser.isKey(key) else {
            throw CMLError.usage("--set \(text): expected STEP.PARAM=VALUE", hint: "e.g. --set train.lr=0.01")
        }
    }

    public var description: String { "\(step).\(key)=\(value)" }
}

/// A key and a value that may hold `${…}` references (`PipelineTemplate`).
public struct PipelineSetting: Sendable, Equatable {
    public var key: String
    public var value: String

    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }
}

public struct PipelineStep: Sendable, Equatable {
    public var name: String
    /// The program and its arguments; nil for a step that clones `base`.
    public var command: [String]?
    /// A recorded run (id, prefix or name) whose clone the step is, with `settings` set on its command line.
    public var base: String?
    public var settings: [PipelineSetting] = []
    /// Recorded with the run (as `--param`) and readable in the step's templates as `${params.KEY}`.
    public var params: [PipelineSetting] = []
    public var inputs: [PipelineInput] = []
    /// Datasets and artifacts its run records when its command succeeds; later steps read them as `STEP.NAME`.
    public var outputs = RunOutputs()
    /// Steps it runs after, besides those its inputs and templates name.
    public var needs: [String] = []
    public var environment: [PipelineSetting] = []
    public var queue: String?
    /// Runs again this many times when it fails or is lost.
    public var retries = 0
    /// Seconds it may run before it is aborted and fails.
    public var timeout: Double?

    public init(name: String, command: [String]? = nil, base: String? = nil) {
        self.name = name
        self.command = command
        self.base = base
    }

    /// Step names go into `STEP.OUTPUT` and `${STEP.params.KEY}`: no dots.
    public static func isName(_ text: String) -> Bool {
        guard let first = text.utf8.first, text.utf8.count <= 64, first != UInt8(ascii: "-") else { return false }
        return text.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
    }

    /// The strings that may hold `${…}` references.
    var templates: [String] {
        (command ?? []) + settings.map(\.value) + params.map(\.value) + environment.map(\.value)
    }
}

/// What a step reads, reaching it as a file or directory whose path is in `$CML_INPUT_NAME`.
public struct PipelineInput: Sendable, Equatable {
    public enum Source: Sendable, Equatable, CustomStringConvertible {
        /// `NAME@VERSION` (a number, an id prefix or `latest`, resolved when the step starts).
        case dataset(String)
        /// `STEP.OUTPUT`: a dataset of that name the step's run made, else its artifact of that name.
        case stepOutput(step: String, output: String)

        public var description: String {
            switch self {
            case .dataset(let reference): reference
            case .stepOutput(let step, let output): "\(step).\(output)"
            }
        }
    }

    public var name: String
    public var source: Source

    public init(name: String, source: Source) {
        self.name = name
        self.source = source
    }

    /// `NAME@VER` or `STEP.OUTPUT`.
    public init(name: String, parsing text: String) throws(CMLError) {
        self.name = name
        if text.contains("@") {
            _ = try VersionReference(text)
            source = .dataset(text)
        } else if let dot = text.firstIndex(of: "."), PipelineStep.isName(String(text[..<dot])), !text[text.index(after: dot)...].isEmpty {
            source = .stepOutput(step: String(text[..<dot]), output: String(text[text.index(after: dot)...]))
        } else {
            throw CMLError.usage("input \(name): '\(text)' is neither a dataset version (NAME@VERSION) nor a step's output (STEP.OUTPUT)")
        }
    }

    /// `CML_INPUT_TRAIN_DATA` for `train-data`.
    public static func variable(for name: String) -> String {
        EnvironmentVariable.name(prefix: "CML_INPUT_", for: name)
    }
}

/// `${params.KEY}` (the step's own parameter) and `${STEP.params.KEY}` (a parameter the run of an earlier
/// step recorded, whether given or read from its command line) in a step's command, parameters and
/// environment. Other `${…}` are left for the shell.
public enum PipelineTemplate {
    public enum Reference: Sendable, Equatable, CustomStringConvertible {
        case own(String)
        case step(String, String)

        public var description: String {
            switch self {
            case .own(let key): "${params.\(key)}"
            case .step(let step, let key): "${\(step).params.\(key)}"
            }
        }
    }

    public static func references(in text: String) throws(CMLError) -> [Reference] {
        var found: [Reference] = []
        _ = try substitute(text) { reference in
            found.append(reference)
            return ""
        }
        return found
    }

    /// `text` with each reference replaced by what `value` gives for it.
    public static func substitute(_ text: String, _ value: (Reference) throws(CMLError) -> String) throws(CMLError) -> String {
        var result = ""
        var rest = Substring(text)
        while let start = rest.range(of: "${") {
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else { break }
            let inner = rest[start.upperBound..<end]
            let parts = inner.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            let reference: Reference? = if parts.count >= 2 && parts[0] == "params" {
                .own(parts[1...].joined(separator: "."))
            } else if parts.count >= 3 && parts[1] == "params" && PipelineStep.isName(parts[0]) {
                .step(parts[0], parts[2...].joined(separator: "."))
            } else {
                nil
            }
            result += rest[..<start.lowerBound]
            if let reference {
                let key = switch reference { case .own(let key), .step(_, let key): key }
                guard ParamParser.isKey(key) else { throw CMLError.usage("${\(inner)}: '\(key)' is not a parameter name") }
                result += try value(reference)
            } else {
                result += rest[start.lowerBound...end]
            }
            rest = rest[rest.index(after: end)...]
        }
        return result + rest
    }
}

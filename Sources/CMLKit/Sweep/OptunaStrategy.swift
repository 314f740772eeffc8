import Glibc

/// `--strategy optuna`: Optuna's own samplers, driven through Optuna's command line. The study lives in
/// `study.db` (SQLite) in the sweep's directory, named after the sweep: each trial is an `optuna ask`
/// with the sweep's space, and each ended trial an `optuna tell` (completed with its objective, failed
/// or lost as failed, stopped or aborted as pruned). Nothing of Optuna is rewritten: the study is
/// Optuna's, and its own tools (`optuna trials`, `optuna.load_study`, optuna-dashboard) open it.
///
/// Every call starts Optuna's command line afresh (a Python start and Optuna's import), so a trial costs
/// two of them; resuming a sweep reads the study once to tell only what it has not been told.
public final class OptunaStrategy: SweepStrategy {
    /// The samplers `optuna ask --sampler` makes from a seed alone, for any space this sweep writes.
    /// GPSampler needs torch and scipy, QMCSampler scipy, installed beside optuna.
    public static let samplers = ["TPESampler", "RandomSampler", "CmaEsSampler", "GPSampler", "QMCSampler", "NSGAIISampler", "NSGAIIISampler"]
    public static let defaultSampler = "TPESampler"
    /// The study's file in the sweep's directory.
    public static let studyFile = "study.db"
    /// Where a trial's `info` keeps its Optuna trial number.
    public static let trialNumberKey = "optuna_trial"

    let executable: String
    /// The study's storage URL, as Optuna's tools take it (`optuna trials --storage URL --study-name ID`).
    public let storage: String
    let studyName: String
    let sampler: String
    let space: SearchSpace
    let seed: UInt64
    /// With trials in parallel, TPE counts those still running as bad ones (`constant_liar`), so that the
    /// trials asked for together spread out, as Optuna advises for parallel trials.
    let constantLiar: Bool
    /// The search space as `optuna ask --search-space` takes it.
    let searchSpace: String
    /// The state of each of the study's trials by its number: read from the study the first time it is
    /// needed (empty for a study just made), then kept as trials are asked for and told. The sweep's
    /// controller is the study's only writer.
    private var studyTrials: [Int64: String]?
    /// Whether the study was searched for trials asked for but never recorded in the sweep.
    private var checkedUnrecorded = false

    /// Makes the study (or finds it, on resume). `executable` is Optuna's command line (`executable()`).
    public init(context: SweepContext, executable: String) throws(CMLError) {
        let configuration = context.configuration
        try Self.check(configuration)
        self.executable = executable
        let studyPath = FileSystem.absolutePath(context.stateDirectory + "/" + Self.studyFile)
        storage = "sqlite:///" + studyPath
        studyName = context.sweepID
        sampler = configuration.sampler ?? Self.defaultSampler
        space = configuration.space
        seed = configuration.seed
        constantLiar = configuration.parallel > 1 && sampler == "TPESampler"
        searchSpace = JSON.object(space.parameters.map { ($0.key, Self.distribution($0.domain)) }).serialized
        let isNew = access(studyPath, F_OK) != 0
        _ = try optuna(["create-study", "--study-name", studyName,
                        "--direction", configuration.objective.maximize ? "maximize" : "minimize", "--skip-if-exists"])
        if isNew { studyTrials = [:] }
    }

    /// What `--strategy optuna` needs of a configuration: a sampler the command line can make, and a
    /// space with no condition.
    public static func check(_ configuration: SweepConfiguration) throws(CMLError) {
        if let conditional = configuration.space.parameters.first(where: { $0.condition != nil }) {
            throw CMLError.usage("--param \(conditional.description): --strategy optuna takes no condition, as optuna ask suggests "
                                 + "one fixed space for every trial", hint: "drop the condition, or sweep it with --strategy random or grid")
        }
        let sampler = configuration.sampler ?? defaultSampler
        guard samplers.contains(sampler) else {
            let why = ["GridSampler", "BruteForceSampler"].contains(sampler)
                ? "it walks a finite grid, which --strategy grid does" : "not a sampler optuna ask makes from a seed alone"
            throw CMLError.usage("--sampler \(sampler): \(why)", hint: "samplers: \(samplers.joined(separator: ", "))")
        }
    }

    /// `$CML_OPTUNA` when set, else `optuna` on PATH.
    public static func executable() throws(CMLError) -> String {
        let hint = "pip install optuna, e.g. python3 -m venv ~/optuna && ~/optuna/bin/pip install optuna cmaes, "
            + "then set CML_OPTUNA=~/optuna/bin/optuna or put that directory on PATH"
        if let value = getenv("CML_OPTUNA").map({ String(cString: $0) }), !value.isEmpty {
            guard let path = value.contains("/") ? value : FileSystem.findOnPath(value),
                  access(path, X_OK) == 0, !FileSystem.isDirectory(path) else {
                throw CMLError("CML_OPTUNA=\(value) is not an executable file", hint: hint)
            }
            return FileSystem.absolutePath(path)
        }
        guard let path = FileSystem.findOnPath("optuna") else {
            throw CMLError("--strategy optuna runs Optuna's command line, but CML_OPTUNA is not set and there is no optuna on PATH", hint: hint)
        }
        return path
    }

    public func suggest(index: Int, trials: [SweepTrial]) throws(CMLError) -> TrialSuggestion? {
        try failUnrecordedTrials(trials)
        // A seed of each trial's own (numpy takes 32 bits): the same sweep asks alike, but no two asks
        // start from the same random state.
        var generator = SeededGenerator(seed: seed, stream: UInt64(index))
        var kwargs: [(String, JSON)] = [("seed", .int(Int64(generator.next() >> 32)))]
        if constantLiar { kwargs.append(("constant_liar", .bool(true))) }
        let output = try optuna(["ask", "--study-name", studyName, "--sampler", sampler, "--sampler-kwargs", JSON.object(kwargs).serialized,
                                 "--search-space", searchSpace, "--format", "json"])
        let asked = try JSON.parse(output)
        guard case .int(let number)? = asked["number"] else { throw CMLError("optuna ask printed no trial number: \(output)") }
        studyTrials?[number] = "RUNNING"
        var assignment: [(key: String, value: String)] = []
        for parameter in space.parameters {
            guard let value = asked["params"]?[parameter.key], let text = Self.text(of: value, in: parameter.domain) else {
                throw CMLError("optuna ask gave trial \(number) no value of \(parameter.key) in \(parameter.domain.description): \(output)")
            }
            assignment.append((parameter.key, text))
        }
        return TrialSuggestion(assignment: assignment, info: .object([(Self.trialNumberKey, .int(number))]))
    }

    public func ended(_ trial: SweepTrial) throws(CMLError) {
        guard case .int(let number)? = trial.info[Self.trialNumberKey] else {
            throw CMLError("trial \(trial.index) of the sweep has no Optuna trial number in its record", kind: .damaged)
        }
        if let state = try readStudyTrials()[number], state != "RUNNING" { return }
        switch trial.state {
        case .completed where trial.objective != nil: try tell(number, "complete", value: trial.objective)
        // Optuna takes no value with a pruned trial: it would read one from the trial's intermediate
        // values, which its command line cannot report.
        case .stopped, .aborted: try tell(number, "pruned")
        case .completed, .failed, .lost: try tell(number, "fail")
        case .planned, .queued, .running: return
        }
    }

    // MARK: The study

    /// A controller killed between an ask and recording its trial leaves that trial running in the
    /// study forever: such trials (running in the study, in no trial of the sweep) are told failed.
    private func failUnrecordedTrials(_ trials: [SweepTrial]) throws(CMLError) {
        guard !checkedUnrecorded else { return }
        checkedUnrecorded = true
        let recorded = Set(trials.compactMap { trial -> Int64? in
            if case .int(let number)? = trial.info[Self.trialNumberKey] { return number }
            return nil
        })
        for (number, state) in try readStudyTrials().sorted(by: { $0.key < $1.key }) where state == "RUNNING" && !recorded.contains(number) {
            try tell(number, "fail")
        }
    }

    /// Tells the study a trial ended; nothing when it was told before.
    private func tell(_ number: Int64, _ state: String, value: Double? = nil) throws(CMLError) {
        _ = try optuna(["tell", "--study-name", studyName, "--trial-number", String(number), "--state", state, "--skip-if-finished"]
                       + (value.map { ["--values", String($0)] } ?? []))
        studyTrials?[number] = state.uppercased()
    }

    private func readStudyTrials() throws(CMLError) -> [Int64: String] {
        if let studyTrials { return studyTrials }
        let output = try optuna(["trials", "--study-name", studyName, "--format", "json"])
        guard case .array(let items) = try JSON.parse(output) else { throw CMLError("optuna trials printed no list: \(output)") }
        var states: [Int64: String] = [:]
        for item in items {
            guard case .int(let number)? = item["number"], let state = item["state"]?.stringValue else {
                throw CMLError("optuna trials printed a trial with no number or state: \(item.serialized)")
            }
            states[number] = state
        }
        studyTrials = states
        return states
    }

    /// Runs Optuna's command line on the study and returns what it printed; an error with the last line
    /// it printed on stderr (Python's exception) when it fails.
    private func optuna(_ arguments: [String]) throws(CMLError) -> String {
        let argv = [executable] + Array(arguments.prefix(1)) + ["--quiet", "--storage", storage] + arguments.dropFirst()
        let ran: CapturedOutput
        do {
            ran = try ChildProcess.capture(argv, environment: RunEnvironment.current().map { "\($0.0)=\($0.1)" })
        } catch {
            let why = switch error {
            case .notFound: "no such file"
            case .notExecutable(_, let why), .failed(let why): why
            }
            throw CMLError("cannot run \(executable): \(why)", hint: "set CML_OPTUNA to Optuna's command line")
        }
        guard ran.exit.code == 0 else {
            let how = ran.exit.code.map { "exit status \($0)" } ?? "signal \(ran.exit.signal ?? 0)"
            let last = ran.stderr.split(separator: "\n").last { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
            throw CMLError("optuna \(arguments[0]) failed (\(how)): \(last.map(String.init) ?? "it printed nothing")",
                           hint: "the study is \(storage), named \(studyName)")
        }
        return ran.stdout
    }

    /// A parameter's domain as `optuna.distributions.distribution_to_json` writes it. Choices are
    /// categories, kept as written.
    static func distribution(_ domain: ParameterDomain) -> JSON {
        let (name, attributes): (String, [(String, JSON)]) = switch domain {
        case .uniform(let low, let high): ("FloatDistribution", [("low", .double(low)), ("high", .double(high)), ("log", .bool(false))])
        case .logUniform(let low, let high): ("FloatDistribution", [("low", .double(low)), ("high", .double(high)), ("log", .bool(true))])
        case .integer(let low, let high): ("IntDistribution", [("low", .int(low)), ("high", .int(high))])
        case .choice(let values): ("CategoricalDistribution", [("choices", .array(values.map(JSON.string)))])
        }
        return .object([("name", .string(name)), ("attributes", .object(attributes))])
    }

    /// The value Optuna suggested, as the sweep writes values of its domain; nil when it is not one.
    static func text(of value: JSON, in domain: ParameterDomain) -> String? {
        switch (domain, value) {
        case (.uniform, _), (.logUniform, _): return value.number.map(SearchSpace.format)
        case (.integer, .int(let number)): return String(number)
        case (.choice(let values), .string(let text)) where values.contains(text): return text
        default: return nil
        }
    }
}

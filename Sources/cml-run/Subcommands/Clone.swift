import ArgumentParser
import CMLCommandLine
import CMLKit

/// Options both spec makers take.
struct SpecEnvironment: ParsableArguments {
    @Option(name: .customLong("env"), help: ArgumentHelp("Set this variable in the run's environment (repeatable).", valueName: "name=value"))
    var variables: [String] = []

    func parsed() throws(CMLError) -> [EnvironmentVariable] {
        try variables.map { (text) throws(CMLError) in
            guard let variable = EnvironmentVariable(assignment: text) else {
                throw CMLError.usage("--env \(text) is not NAME=value", hint: "e.g. --env OMP_NUM_THREADS=4")
            }
            return variable
        }
    }
}

struct Clone: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clone",
        abstract: "Print a run spec that runs a recorded run again, with parameters changed.",
        discussion: """
            The spec (one JSON line per run) names the repository, the commit and the captured patch of \
            uncommitted changes, the command, environment overrides, project, tags and the run it was \
            cloned from; cml-queue add queues it for an agent. --set changes a parameter where the \
            command line has it (--lr 0.01 becomes --lr 0.1, lr=0.01 becomes lr=0.1); a parameter not \
            on the command line is appended the way the command writes its others, else as --key value. \
            The repository is the remote when the commit was pushed, else the local repository. Runs \
            are ids or unique prefixes, or JSON lines with an "id" on stdin.

            A secret parameter (a name like api-key, token, password) is <redacted> in the spec, as in \
            the record: the agent takes its value from $CML_SECRET_NAME (--api-key: CML_SECRET_API_KEY), \
            and --set cannot give one.

            --grid and --sample make many specs from one run, for a search by hand: --grid KEY=V1,V2,… \
            (repeatable) prints one spec per combination of the values; --sample KEY=DISTRIBUTION \
            (uniform(A,B), loguniform(A,B), int(A,B), choice(V,…)) prints -n specs with values drawn \
            from --seed (the same seed draws the same values). Given both, each combination is printed \
            with -n draws. cml-queue sweep runs such a search for you, and judges the trials.

            Examples:
              cml-run clone 0192f3a4 --set lr=0.1 | cml-queue add gpu
              for lr in 0.1 0.03 0.01; do cml-run clone 0192f3a4 --set lr=$lr --name lr-$lr; done | cml-queue add gpu
              cml-run clone 0192f3a4 --env OMP_NUM_THREADS=4 > spec.json
              cml-run clone 0192f3a4 --grid lr=0.1,0.01 --grid bs=32,64 | cml-queue add gpu
              cml-run clone 0192f3a4 --sample 'lr=loguniform(1e-4,1e-1)' --sample 'bs=choice(32,64,128)' -n 20 --seed 1 | cml-queue add gpu
            """
    )

    @OptionGroup var storeOption: StoreOption

    @Option(name: .customLong("set"), help: ArgumentHelp("Give a parameter this value (repeatable).", valueName: "key=value"))
    var settings: [String] = []

    @Option(help: "A name for the new run (default: the cloned run's).")
    var name: String?

    @OptionGroup var environment: SpecEnvironment

    @Option(name: .customLong("grid"), help: ArgumentHelp("A parameter's values, one spec per combination (repeatable).", valueName: "key=v1,v2,…"))
    var grid: [String] = []

    @Option(name: .customLong("sample"), help: ArgumentHelp("A parameter's distribution to draw -n values from (repeatable).", valueName: "key=distribution"))
    var sample: [String] = []

    @Option(name: .short, help: ArgumentHelp("Draws with --sample (default: 1).", valueName: "count"))
    var n: Int?

    @Option(help: "The seed of --sample's draws (default: a random one, said on stderr).")
    var seed: UInt64?

    @Argument(help: ArgumentHelp("Runs to clone (ids or unique prefixes).", valueName: "id"))
    var ids: [String] = []

    /// The settings of each spec to print: --set's, then a combination of --grid's, then a draw of --sample's.
    private func variations(_ parsedSettings: [(key: String, value: String)]) throws(CMLError) -> [[(key: String, value: String)]] {
        if let n, sample.isEmpty { throw CMLError.usage("-n \(n) counts --sample's draws, and no --sample is given") }
        if seed != nil && sample.isEmpty { throw CMLError.usage("--seed seeds --sample's draws, and no --sample is given") }
        let count = n ?? 1
        guard count >= 1 else { throw CMLError.usage("-n must be at least 1") }
        let gridSpace = try SearchSpace(parsing: grid, option: "--grid")
        let sampleSpace = try SearchSpace(parsing: sample, option: "--sample")
        let keys = gridSpace.parameters.map(\.key) + sampleSpace.parameters.map(\.key) + parsedSettings.map(\.key)
        if let twice = keys.first(where: { key in keys.filter { $0 == key }.count > 1 }) {
            throw CMLError.usage("\(twice) is given more than once among --set, --grid and --sample")
        }
        let combinations = gridSpace.parameters.isEmpty ? [[]] : try gridSpace.grid()
        guard !sampleSpace.parameters.isEmpty else { return combinations.map { parsedSettings + $0 } }
        let seed = self.seed ?? UInt64.random(in: 0...UInt64(Int64.max))
        if self.seed == nil { Console.error("cml-run: --sample drew with --seed \(seed)\n") }
        var variations: [[(key: String, value: String)]] = []
        for combination in combinations {
            for _ in 0..<count {
                variations.append(parsedSettings + combination + sampleSpace.sample(seed: seed, index: variations.count))
            }
        }
        return variations
    }

    func run() throws {
        let parsedSettings = try settings.map { (text) throws(CMLError) -> (key: String, value: String) in
            guard let eq = text.firstIndex(of: "="), eq != text.startIndex else {
                throw CMLError.usage("--set \(text) is not key=value", hint: "e.g. --set lr=0.1")
            }
            return (String(text[..<eq]), String(text[text.index(after: eq)...]))
        }
        if let name {
            if name.isEmpty { throw CMLError.usage("--name must not be empty") }
            try NameLimits.check(name, "--name")
        }
        let variables = try environment.parsed()
        let variations = try variations(parsedSettings)
        let store = try storeOption.open(for: .reading)
        let resolved = try RunInput.ids(arguments: ids, stdinLines: Console.stdinLines, store: store)
        var out = BufferedOutput()
        for id in resolved {
            let run = try store.run(id: id)
            let queuedSpec = try store.spec(run: id)
            // Warnings about the run itself are said once, not once per variation.
            var warned = false
            for settings in variations {
                var spec = try RunSpec.clone(run, queuedSpec: queuedSpec, settings: settings) { warning in
                    if !warned { Console.error("cml-run: warning: \(warning)\n") }
                }
                warned = true
                if let name { spec.name = name }
                for variable in variables {
                    spec.environment.removeAll { $0.name == variable.name }
                    spec.environment.append(variable)
                }
                try out.withBuffer { spec.json.write(to: &$0); $0 += "\n" }
            }
        }
        try out.flush()
    }
}

struct Spec: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spec",
        abstract: "Print a run spec for a command in the current directory, without running it.",
        discussion: """
            The code state is captured as cml-run captures it (commit, and a patch of every uncommitted \
            change, untracked and binary files included, stored in the store for the agent); the \
            options are those of cml-run -- CMD, and go into the spec.

            Examples:
              cml-run spec --name baseline -- python train.py --lr 0.01 | cml-queue add gpu
              cml-run spec --env CUDA_LAUNCH_BLOCKING=1 -- python train.py > spec.json
            """
    )

    @OptionGroup var storeOption: StoreOption

    @OptionGroup var record: RecordOptions

    @OptionGroup var environment: SpecEnvironment

    @Argument(parsing: .postTerminator, help: ArgumentHelp("The command, after --.", valueName: "command"))
    var command: [String] = []

    func run() throws {
        guard !command.isEmpty else { throw CMLError.usage("no command given after --", hint: "cml-run spec [options] -- CMD [ARGS…]") }
        let options = try record.runOptions()
        let variables = try environment.parsed()
        let store = try storeOption.open()
        var spec = try RunSpec.capture(command, directory: RunEnvironment.workingDirectory, store: store,
                                       maxPatchBytes: options.maxPatchBytes, maxUntrackedBytes: options.maxUntrackedBytes) { warning in
            Console.error("cml-run: warning: \(warning)\n")
        }
        try record.apply(to: &spec)
        spec.environment = variables
        try Console.out(spec.json.serialized + "\n")
    }
}

struct Abort: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "abort",
        abstract: "Stop runs: queued ones leave their queue, running ones are stopped and end aborted.",
        discussion: """
            A waiting run ends aborted without running. A run on an agent is stopped at the agent's next \
            heartbeat at the latest (the store wakes it at once): SIGTERM to its process group, SIGKILL \
            after the agent's --kill-grace. A run of cml-run on this machine gets SIGTERM through its \
            cml-run; one on another machine is asked through the store, and its cml-run stops it within \
            a second as SIGTERM would. A lost run's processes left on this machine are stopped. Runs are \
            ids or unique prefixes, or JSON lines with an "id" on stdin. Prints one line per run: \
            {"id", "abort": dequeued|requested|signalled|stopped, and "agent", "host", "pid" or \
            "processes"}.

            Examples:
              cml-run abort 0192f3a4
              cml-queue ls gpu | cml-run abort
            """
    )

    @OptionGroup var storeOption: StoreOption

    @Argument(help: ArgumentHelp("Runs to stop (ids or unique prefixes).", valueName: "id"))
    var ids: [String] = []

    func run() throws {
        let store = try storeOption.open()
        let resolved = try RunInput.ids(arguments: ids, stdinLines: Console.stdinLines, store: store)
        for id in resolved {
            let outcome = try RunAbort.abort(id, store: store)
            let fields: [(String, JSON)] = switch outcome {
            case .dequeued: [("abort", .string("dequeued"))]
            case .requested(let agent): [("abort", .string("requested")), ("agent", .string(agent))]
            case .signalled(let pid): [("abort", .string("signalled")), ("pid", .int(Int64(pid)))]
            case .requestedOfCMLRun(let host): [("abort", .string("requested")), ("host", .string(host))]
            case .stoppedLeftovers(let processes): [("abort", .string("stopped")), ("processes", .int(Int64(processes)))]
            }
            try Console.out(JSON.object([("id", .string(id))] + fields).serialized + "\n")
        }
    }
}

import ArgumentParser
import CMLCommandLine
import CMLKit
import Glibc

/// `cml-queue sweep`: hyperparameter search as clones of a run, queued and judged by a metric summary.
struct SweepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Search hyperparameters: queue clones of a run with new values, keep --parallel of them going, judge each by a metric.",
        discussion: """
            The options are listed by cml-queue sweep start --help.

            Examples:
              cml-queue sweep 0192f3a4 --objective val_loss.min --param 'lr=loguniform(1e-4,1e-1)' --param 'bs=choice(32,64)' \\
                  --trials 50 --parallel 4 --queue gpu
              cml-queue sweep 0192f3a4 --objective acc --maximize --param lr=0.1,0.01,0.001 --strategy grid --local 2
              cml-queue sweep ls
              cml-queue sweep show 0193a1
              cml-queue sweep resume 0193a1
              cml-run ls --where 'sweep = 0193a1c2…' --sort val_loss.min | head -5 | cml-diff
            """,
        subcommands: [SweepStart.self, SweepList.self, SweepShow.self, SweepResume.self],
        defaultSubcommand: SweepStart.self
    )
}

/// What the options of a new sweep say, checked before anything is recorded.
struct SweepOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The metric summary each trial is judged by, as --where names it: KEY (its last value), KEY.min, KEY.max.", valueName: "metric"))
    var objective: String

    @Flag(help: "Make the objective as large as it can be (default: as small).")
    var maximize = false

    @Flag(help: "Make the objective as small as it can be (the default).")
    var minimize = false

    @Option(name: .customLong("param"), help: ArgumentHelp(
        "A parameter and its values (repeatable): KEY=uniform(A,B), loguniform(A,B), int(A,B), choice(V,…) or V1,V2,…; "
            + "'… if KEY=V[,V…]' sets it only when an earlier parameter has that value.", valueName: "space"))
    var parameters: [String] = []

    @Option(help: ArgumentHelp("grid, random, " + "asha, hyperband or optuna.", valueName: "name"))
    var strategy = "random"

    @Option(help: "Trials in all (default: every combination of a grid; required otherwise).")
    var trials: Int?

    @Option(help: "Trials queued or running at once (default: --local's slots, else 2).")
    var parallel: Int?

    @Option(help: "The queue of the trials (default: a queue of the sweep's own with --local, else default).")
    var queue: String?

    @Option(help: "The trials' priority on their queue.")
    var priority = 0

    @Option(help: "The seed of the random draws (default: a random one, recorded).")
    var seed: UInt64?

    @Option(help: "Stop queueing once this many trials failed or were lost (default: never).")
    var maxFailures: Int?

    @Option(help: ArgumentHelp("Run the trials on this machine with N slots (an agent inside this command), not through agents elsewhere.", valueName: "N"))
    var local: Int?

    @Option(help: ArgumentHelp("The parameter that tells a trial its budget in steps; it is set to --max-budget.", valueName: "key"))
    var budgetParam: String?

    @Option(help: ArgumentHelp("Early stopping: the step of the first rung (default: 1).", valueName: "steps"))
    var minBudget: Int64?

    @Option(help: ArgumentHelp("Early stopping: the steps of a whole trial.", valueName: "steps"))
    var maxBudget: Int64?

    @Option(help: ArgumentHelp("Early stopping: one in this many trials goes on at each rung (default: 3).", valueName: "N"))
    var eta: Int?

    @Option(help: ArgumentHelp("Optuna's sampler, by its class name (default: TPESampler).", valueName: "name"))
    var sampler: String?

    func configuration(base: Run, sweepID: String) throws(CMLError) -> SweepConfiguration {
        if maximize && minimize { throw CMLError.usage("--maximize and --minimize cannot be given together") }
        guard !parameters.isEmpty else {
            throw CMLError.usage("no --param given: a sweep needs at least one parameter", hint: "e.g. --param 'lr=loguniform(1e-4,1e-1)'")
        }
        let space = try SearchSpace(parsing: parameters)
        let objective = try SweepObjective(parsing: objective, maximize: maximize, metrics: base.metrics.map(\.key))
        if !base.metrics.contains(where: { $0.key == objective.key }) {
            Console.error("cml-queue: warning: the base run has no metric \(objective.key); trials that record none fail\n")
        }
        if let local, local < 1 { throw CMLError.usage("--local must be at least 1") }
        let parallel = self.parallel ?? local ?? 2
        guard parallel >= 1 else { throw CMLError.usage("--parallel must be at least 1") }
        if let maxFailures, maxFailures < 1 { throw CMLError.usage("--max-failures must be at least 1") }
        let queue = self.queue ?? (local != nil ? "sweep-" + RunID.short(sweepID) : "default")
        try QueueName.check(queue)
        let trialCount: Int
        if let trials {
            guard trials >= 1 else { throw CMLError.usage("--trials must be at least 1") }
            trialCount = trials
        } else if strategy == "grid" {
            trialCount = try space.grid().count
        } else {
            throw CMLError.usage("--trials is needed with --strategy \(strategy)", hint: "e.g. --trials 50")
        }
        var configuration = SweepConfiguration(
            base: base.id, objective: objective, space: space, strategy: strategy, trials: trialCount, parallel: parallel,
            queue: queue, priority: priority, seed: seed ?? UInt64.random(in: 0...UInt64(Int64.max)), maxFailures: maxFailures,
            localSlots: local)
        if let budgetParam {
            guard ParamParser.isKey(budgetParam) else { throw CMLError.usage("--budget-param \(budgetParam) is not a parameter name") }
            guard maxBudget != nil else { throw CMLError.usage("--budget-param needs --max-budget, the value it is set to") }
            if space.parameters.contains(where: { $0.key == budgetParam }) {
                throw CMLError.usage("--budget-param \(budgetParam) is also swept with --param")
            }
        }
        configuration.budgetParameter = budgetParam
        configuration.minBudget = minBudget
        configuration.maxBudget = maxBudget
        configuration.reductionFactor = eta
        // Recorded, so that a resume asks with the sampler the sweep began with.
        configuration.sampler = sampler ?? (strategy == "optuna" ? OptunaStrategy.defaultSampler : nil)
        try SweepStrategies.check(configuration)
        return configuration
    }
}

struct SweepStart: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start",
        abstract: "Run a new sweep (the default: cml-queue sweep BASE [options]).",
        discussion: """
            Each trial is a clone of the base run (as cml-run clone makes it) with the strategy's values \
            set, queued on --queue for agents (or run here with --local N) with the parameters sweep (the \
            sweep's id) and trial (its number), so cml-run ls --where 'sweep = ID' lists them. The \
            sweep keeps --parallel trials queued or running, and judges each ended trial by its \
            --objective summary. A trial that fails, is lost, or records no objective is recorded with \
            its reason and the sweep goes on (--max-failures stops it).

            Prints one line per ended trial: a JSON object (trial, id, status, objective, params, reason, \
            best) when stdout is not a terminal, so the output pipes into jq or cml-diff; then a \
            leaderboard of the best trials (on stderr when stdout is not a terminal).

            Strategies: grid walks every combination (lists, choice, int); random draws each trial's \
            values from --seed and its number, so a resumed sweep draws what it would have.

            Early stopping: asha draws as random does, with rungs at --min-budget (1) times the powers \
            of --eta (3) below --max-budget (required: a whole trial's steps of the objective's metric). \
            A trial that is not among the best 1/eta of those that reached its rung (once eta have) is \
            aborted and recorded stopped; hyperband runs brackets whose first rungs are later, each \
            trial judged within its own. --budget-param tells each trial its budget (--max-budget).

            --strategy optuna asks Optuna's own samplers (--sampler TPESampler, the default; \
            RandomSampler, CmaEsSampler, GPSampler, QMCSampler, NSGAIISampler, NSGAIIISampler) through \
            Optuna's command line: $CML_OPTUNA, else optuna on PATH (pip install optuna). Its study is \
            a SQLite file in the store's directory, sweeps/ID/study.db, named after the sweep: optuna \
            trials, optuna.load_study and optuna-dashboard open it. A completed trial is told complete \
            with its objective, a failed or lost one fail, a stopped or aborted one pruned. It takes no \
            condition.

            Ctrl-C stops queueing: the trials queued or running finish and are recorded (with \
            --abort-on-exit they are aborted); a second Ctrl-C leaves them and exits (with --local, \
            they are requeued). cml-queue sweep resume ID goes on from there, also after a kill -9, \
            with no trial run twice.

            Examples:
              cml-queue sweep 0192f3a4 --objective val_loss.min --param 'lr=loguniform(1e-4,1e-1)' \\
                  --param 'bs=choice(32,64,128)' --trials 50 --parallel 4 --queue gpu
              cml-queue sweep baseline --objective acc --maximize --param lr=0.1,0.01 --param bs=32,64 --strategy grid --local 2
              cml-queue sweep 0192f3a4 --objective loss --param 'lr=loguniform(1e-4,1)' --trials 20 --local 4 | jq -r .id | cml-diff
              cml-queue sweep 0192f3a4 --objective val_loss --param 'lr=loguniform(1e-4,1e-1)' --strategy asha \\
                  --budget-param epochs --max-budget 27 --trials 60 --parallel 8 --queue gpu
              cml-queue sweep 0192f3a4 --objective val_loss.min --param 'lr=loguniform(1e-5,1e-1)' --param 'layers=int(1,4)' \\
                  --strategy optuna --sampler TPESampler --trials 40 --parallel 4 --queue gpu
            """
    )

    @OptionGroup var storeOption: StoreOption
    @OptionGroup var formatOption: FormatOption

    @Argument(help: ArgumentHelp("The run the trials are clones of (id, unique prefix or name).", valueName: "base"))
    var base: String

    @OptionGroup var options: SweepOptions

    @Flag(help: "On Ctrl-C, abort the trials queued or running instead of letting them finish.")
    var abortOnExit = false

    func run() throws {
        let store = try storeOption.open()
        let baseRun = try store.run(id: try store.resolveRunID(base))
        let id = RunID.make()
        let configuration = try options.configuration(base: baseRun, sweepID: id)
        let baseSpec = try SweepController.baseSpec(of: baseRun, in: store) { Console.error("cml-queue: warning: \($0)\n") }
        let sweep = Sweep(id: id, project: baseSpec.project, configuration: configuration, now: Clock.now())
        let strategy = try SweepStrategies.make(SweepContext(configuration: configuration, sweepID: id,
                                                             stateDirectory: try SweepRunner.stateDirectory(of: id, in: store)))
        let runner = SweepRunner(format: formatOption.resolve(), abortOnExit: abortOnExit)
        let controller = try SweepController(store: store, sweep: sweep, strategy: strategy, baseSpec: baseSpec, report: runner.report)
        Console.error("cml-queue: sweep \(id): \(configuration.trials) trial\(configuration.trials == 1 ? "" : "s") by \(configuration.strategy), "
            + "\(configuration.parallel) at a time on queue \(configuration.queue) (seed \(configuration.seed)); "
            + "cml-queue sweep resume \(RunID.short(id)) goes on after an interruption\n")
        if let optuna = strategy as? OptunaStrategy {
            Console.error("cml-queue: its Optuna study: optuna trials --storage \(optuna.storage) --study-name \(id)\n")
        }
        try runner.run(controller, store: store)
    }
}

/// Runs a controller for `start` and `resume`: signals, the local agent, the lines it prints.
final class SweepRunner: @unchecked Sendable {  // `format` and `abortOnExit` are set once; the rest is used by one thread at a time
    let format: OutputFormat
    let abortOnExit: Bool
    private let lines: Bool

    init(format: OutputFormat, abortOnExit: Bool) {
        self.format = format
        self.abortOnExit = abortOnExit
        lines = format != .table
    }

    /// The sweep's own directory on this machine: beside the store's database, or in this machine's
    /// spool of a server.
    static func stateDirectory(of id: String, in store: any Store) throws(CMLError) -> String {
        let root = StoreLocation.isRemote(store.location) ? RunSpool(for: store.location).directory : store.location
        let directory = root + "/sweeps/" + id
        try FileSystem.makeDirectories(directory)
        return directory
    }

    func run(_ controller: SweepController, store: any Store) throws(CMLError) {
        let configuration = controller.sweep.configuration
        let abortOnExit = self.abortOnExit
        listenForInterrupts(first: {
            Console.error(abortOnExit ? "cml-queue: stopping: aborting the trials queued or running\n"
                : "cml-queue: stopping: no new trials; waiting for those queued or running (Ctrl-C again to leave them and exit)\n")
            controller.requestStop(abortRunning: abortOnExit)
        }, again: {
            Console.error("cml-queue: leaving the trials queued or running; cml-queue sweep resume takes them up\n")
            controller.requestStop(leaveRunning: true)
        })
        let ended = try LocalAgent.serving(configuration.localSlots, store: store, queue: configuration.queue,
                                           name: RunEnvironment.hostName + "-sweep-" + RunID.short(controller.sweep.id)) { () throws(CMLError) in
            try controller.run()
        }
        try printLeaderboard(ended)
        if ended.status == .failed { throw CMLError("sweep \(RunID.short(ended.id)) failed: \(ended.reason ?? "")") }
    }

    func report(_ event: SweepEvent) {
        switch event {
        case .queued(let trial):
            if format == .table { Console.error("trial \(trial.index) queued: \(Self.values(trial))\n") }
        case .ended(let trial, let best):
            if lines {
                var json = trial.json
                if case .object(var members) = json {
                    members.removeAll { $0.0 == "values" || $0.0 == "info" }
                    members.append(("best", Sweep.number(best?.objective)))
                    json = .object(members)
                }
                try? Console.out(json.serialized + "\n")
            } else {
                let objective = trial.objective.map(SearchSpace.format) ?? "–"
                try? Console.out("trial \(trial.index) \(trial.state.rawValue) \(trial.run.map(RunID.short) ?? "") objective \(objective)"
                    + " \(Self.values(trial))\(trial.reason.map { " (\($0))" } ?? "")"
                    + " best \(best?.objective.map(SearchSpace.format) ?? "–")\n")
            }
        case .stopping(let trial, let reason):
            Console.error("cml-queue: stopping trial \(trial.index) (\(trial.run.map(RunID.short) ?? "")): \(reason)\n")
        case .note(let text):
            Console.error("cml-queue: \(text)\n")
        }
    }

    static func values(_ trial: SweepTrial) -> String {
        trial.assignment.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }

    /// The best completed trials, best first: on stdout at a terminal, else on stderr (stdout holds the
    /// trials' lines).
    func printLeaderboard(_ sweep: Sweep) throws(CMLError) {
        let table = SweepTables.leaderboard(sweep, limit: 10)
        let text = "sweep \(sweep.id) \(sweep.status.rawValue)\(sweep.reason.map { ": \($0)" } ?? ""); "
            + "\(sweep.trials.filter { $0.state == .completed }.count) of \(sweep.trials.count) trials completed\n"
            + (table.rows.isEmpty ? "" : table.render(.table))
        if lines { Console.error(text) } else { try Console.out(text) }
    }
}

/// Tables of sweeps for `ls`, `show` and the end of a sweep.
enum SweepTables {
    static func leaderboard(_ sweep: Sweep, limit: Int?) -> TextTable {
        let objective = sweep.configuration.objective
        var completed = sweep.trials.filter { $0.state == .completed && $0.objective != nil }
        completed.sort { objective.isBetter($0.objective!, than: $1.objective!) }
        if let limit { completed = Array(completed.prefix(limit)) }
        let keys = sweep.configuration.space.parameters.map(\.key)
        return TextTable(headers: ["RANK", "TRIAL", "ID", objective.name.uppercased()] + keys.map { $0.uppercased() } + ["STEPS"],
                         rows: completed.enumerated().map { rank, trial in
            [String(rank + 1), String(trial.index), trial.run.map(RunID.short) ?? "", SearchSpace.format(trial.objective!)]
                + keys.map { key in trial.assignment.first { $0.key == key }?.value ?? "" }
                + [trial.steps.map { String($0) } ?? ""]
        })
    }
}

struct SweepList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List sweeps, newest first: status, strategy, objective, trials ended of all, best so far.",
        discussion: """
            The status is running, finished, stopped, failed, or lost (its controller has not been heard \
            of for 15 seconds: killed; cml-queue sweep resume takes it up).

            Examples:
              cml-queue sweep ls
              cml-queue sweep ls | jq -r 'select(.status == "lost") | .id'
            """
    )

    @OptionGroup var storeOption: StoreOption
    @OptionGroup var formatOption: FormatOption

    func run() throws {
        let outputFormat = formatOption.resolve()
        let store = try storeOption.open(for: .reading)
        var sweeps: [Sweep] = []
        for record in try store.controllers(kind: Sweep.kind) { sweeps.append(try Sweep(record: record)) }
        let now = Clock.now()
        try Console.print(sweeps.map { sweep in
            let best = sweep.best
            return .object([
                ("id", .string(sweep.id)), ("status", .string(sweep.observedStatus(now: now))), ("project", .string(sweep.project)),
                ("base", .string(sweep.configuration.base)), ("strategy", .string(sweep.configuration.strategy)),
                ("objective", .string(sweep.configuration.objective.name)),
                ("direction", .string(sweep.configuration.objective.maximize ? "maximize" : "minimize")),
                ("trials", .int(Int64(sweep.configuration.trials))), ("ended", .int(Int64(sweep.trials.filter(\.state.isFinished).count))),
                ("failed", .int(Int64(sweep.failures))), ("best", Sweep.number(best?.objective)),
                ("best_id", best?.run.map(JSON.string) ?? .null), ("queue", .string(sweep.configuration.queue)),
                ("created_at", .string(Clock.rfc3339(sweep.createdAt))),
            ])
        }, format: outputFormat) {
            TextTable(headers: ["ID", "STATUS", "STRATEGY", "OBJECTIVE", "TRIALS", "FAILED", "BEST", "QUEUE", "CREATED"], rows: sweeps.map { sweep in
                [RunID.short(sweep.id), sweep.observedStatus(now: now), sweep.configuration.strategy,
                 (sweep.configuration.objective.maximize ? "max " : "min ") + sweep.configuration.objective.name,
                 "\(sweep.trials.filter(\.state.isFinished).count)/\(sweep.configuration.trials)", String(sweep.failures),
                 sweep.best?.objective.map(SearchSpace.format) ?? "", sweep.configuration.queue, Clock.tableTime(sweep.createdAt)]
            })
        }
    }
}

struct SweepShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show a sweep: its space, strategy, objective, every trial and the best so far.",
        discussion: """
            As JSON when stdout is not a terminal (the sweep's record: configuration, best, and each \
            trial's number, run id, status, objective, params, steps and reason).

            Examples:
              cml-queue sweep show 0193a1
              cml-queue sweep show 0193a1 | jq -r '.trials[] | select(.status == "failed") | .reason'
            """
    )

    @OptionGroup var storeOption: StoreOption
    @OptionGroup var formatOption: FormatOption

    @Argument(help: ArgumentHelp("The sweep (id or unique prefix).", valueName: "id"))
    var id: String

    func run() throws {
        let store = try storeOption.open(for: .reading)
        let sweep = try Sweep(record: try store.controller(kind: Sweep.kind, id: id))
        guard formatOption.resolve() == .table else {
            try Console.out(sweep.json.serialized + "\n")
            return
        }
        let config = sweep.configuration
        var text = """
            sweep      \(sweep.id)
            status     \(sweep.observedStatus(now: Clock.now()))\(sweep.reason.map { " (\($0))" } ?? "")
            base       \(config.base)
            objective  \(config.objective.maximize ? "maximize" : "minimize") \(config.objective.name)
            strategy   \(config.strategy), seed \(config.seed)
            space      \(config.space.parameters.map(\.description).joined(separator: "  "))
            trials     \(sweep.trials.filter(\.state.isFinished).count) ended of \(config.trials), \(config.parallel) at a time on queue \(config.queue)
            best       \(sweep.best.map { "trial \($0.index) (\($0.run.map(RunID.short) ?? "")): \(SearchSpace.format($0.objective!))" } ?? "none yet")

            """
        let keys = config.space.parameters.map(\.key)
        text += TextTable(headers: ["TRIAL", "ID", "STATUS", config.objective.name.uppercased()] + keys.map { $0.uppercased() } + ["STEPS", "REASON"],
                          rows: sweep.trials.map { trial in
            [String(trial.index), trial.run.map(RunID.short) ?? "", trial.state.rawValue, trial.objective.map(SearchSpace.format) ?? ""]
                + keys.map { key in trial.assignment.first { $0.key == key }?.value ?? "" }
                + [trial.steps.map { String($0) } ?? "", trial.reason ?? ""]
        }).render(.table)
        try Console.out(text)
    }
}

struct SweepResume: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume",
        abstract: "Go on with a sweep that was stopped, or whose controller was killed.",
        discussion: """
            Trials queued or running when it stopped are taken up as they are; trials it had decided \
            on but not yet queued are found by their parameters, or queued now; none runs twice. The \
            sweep goes on with its own options (its --local slots too). Refused while its controller \
            still runs.

            Examples:
              cml-queue sweep resume 0193a1
            """
    )

    @OptionGroup var storeOption: StoreOption
    @OptionGroup var formatOption: FormatOption

    @Argument(help: ArgumentHelp("The sweep (id or unique prefix).", valueName: "id"))
    var id: String

    @Flag(help: "On Ctrl-C, abort the trials queued or running instead of letting them finish.")
    var abortOnExit = false

    func run() throws {
        let store = try storeOption.open()
        let sweep = try Sweep(record: try store.controller(kind: Sweep.kind, id: id))
        let baseRun = try store.run(id: sweep.configuration.base)
        let baseSpec = try SweepController.baseSpec(of: baseRun, in: store) { Console.error("cml-queue: warning: \($0)\n") }
        let strategy = try SweepStrategies.make(SweepContext(configuration: sweep.configuration, sweepID: sweep.id,
                                                             stateDirectory: try SweepRunner.stateDirectory(of: sweep.id, in: store)))
        let runner = SweepRunner(format: formatOption.resolve(), abortOnExit: abortOnExit)
        let controller = try SweepController(resuming: sweep, store: store, strategy: strategy, baseSpec: baseSpec, report: runner.report)
        Console.error("cml-queue: sweep \(sweep.id) resumed: \(sweep.trials.filter(\.state.isFinished).count) of "
            + "\(sweep.configuration.trials) trials ended, \(sweep.active.count) queued or running\n")
        try runner.run(controller, store: store)
    }
}

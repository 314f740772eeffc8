import ArgumentParser
import CMLCommandLine
import CMLKit
import CMLPipelineFile
import Glibc

/// `cml-queue pipeline`: a DAG of runs from a YAML file, each step cached by its content.
struct PipelineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "Run a pipeline file: steps as runs, each started once its inputs exist, reused when nothing it depends on changed.",
        discussion: """
            Examples:
              cml-queue pipeline run pipeline.yaml --local 2
              cml-queue pipeline run pipeline.yaml --queue gpu --set train.lr=0.01
              cml-queue pipeline ls
              cml-queue pipeline show 0193b2
              cml-queue pipeline graph 0193b2
              cml-queue pipeline resume 0193b2
              cml-queue pipeline runs 0193b2 | cml-diff
            """,
        subcommands: [PipelineRun.self, PipelineResume.self, PipelineList.self, PipelineShow.self, PipelineRuns.self, PipelineGraph.self]
    )
}

struct PipelineRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the steps of a pipeline file.",
        discussion: """
            The file (YAML) names its steps; each is a command (a string runs with sh -c, a list is the \
            program and its arguments) started in the file's directory with the code as it is now \
            (commit and uncommitted changes, as cml-queue add captures them), or a clone of a recorded \
            run (base, with set). A step has params (recorded with its run, and written ${params.KEY} in \
            its command), inputs (NAME: DATASET@VERSION, or NAME: STEP.OUTPUT for a dataset or an \
            artifact the run of an earlier step made; each path is in $CML_INPUT_NAME), outputs \
            (datasets: {NAME: DIR} and artifacts: [PATH] its run records when it succeeds), needs (steps it \
            runs after), env, queue, retries and timeout (30m). ${STEP.params.KEY} reads a parameter \
            the run of an earlier step recorded.

              name: demo
              steps:
                prepare:
                  command: python prepare.py --rows ${params.rows} --out rows/
                  params: {rows: 1000}
                  outputs: {datasets: {rows: rows}}
                train:
                  command: python train.py --data "$CML_INPUT_DATA" --lr ${params.lr}
                  params: {lr: 0.1}
                  inputs: {data: prepare.rows}
                  outputs: {artifacts: [model.pt]}
                  retries: 1

            A step starts as soon as the steps it depends on succeeded, in parallel with any other that \
            can. Its key is a hash of its command, code, parameters, environment and the content of its \
            inputs: a completed run with the same key is reused (the step shows cached), so a rerun \
            runs only the steps whose key changed (--force STEP or --force-all recompute). A failed \
            step stops its descendants, not the other steps.

            Prints one line per step as it ends: a JSON object (step, status, id, cached, key, reason, \
            duration) when stdout is not a terminal; then the steps' table (on stderr when piped). \
            Exits 1 when a step failed. Ctrl-C stops starting steps and waits for those running (again: \
            leaves them), and exits 130; cml-queue pipeline resume ID goes on, also after a kill -9.

            Examples:
              cml-queue pipeline run pipeline.yaml --local 2
              cml-queue pipeline run pipeline.yaml --queue gpu --set train.lr=0.01
              cml-queue pipeline run pipeline.yaml --local 2 --force evaluate
            """
    )

    @OptionGroup var storeOption: StoreOption
    @OptionGroup var formatOption: FormatOption

    @Argument(help: ArgumentHelp("The pipeline file (YAML).", valueName: "file"))
    var file: String

    @Option(name: .customLong("set"), help: ArgumentHelp("A step's parameter (repeatable); for a base run's step, a --set of its clone.", valueName: "step.param=value"))
    var overrides: [String] = []

    @Option(help: "The queue of steps whose file names none (default: the file's, else default).")
    var queue: String?

    @Option(help: ArgumentHelp("Run the steps on this machine with N slots (an agent inside this command), not through agents elsewhere.", valueName: "N"))
    var local: Int?

    @Option(help: ArgumentHelp("Recompute this step even when a cached run exists (repeatable).", valueName: "step"))
    var force: [String] = []

    @Flag(help: "Recompute every step.")
    var forceAll = false

    @Option(help: "The project of the steps' runs.")
    var project = "default"

    func run() throws {
        var (definition, source) = try PipelineFile.load(file)
        let overrides = try self.overrides.map { (text) throws(CMLError) in try PipelineOverride(parsing: text) }
        try definition.apply(overrides)
        for name in force where definition.step(name) == nil {
            throw CMLError.usage("--force \(name): the pipeline has no step \(name)", hint: "its steps: \(definition.steps.map(\.name).joined(separator: ", "))")
        }
        if queue != nil && local != nil { throw CMLError.usage("--queue and --local cannot be given together") }
        if let queue { try QueueName.check(queue) }
        try NameLimits.check(project, "--project")
        if let local, local < 1 { throw CMLError.usage("--local must be at least 1") }
        let store = try storeOption.open()
        for step in definition.steps {
            if let base = step.base { _ = try store.resolveRunID(base) }
        }
        let directory = FileSystem.directoryName(FileSystem.absolutePath(file))
        let warn = { (message: String) in Console.error("cml-queue: warning: \(message)\n") }
        let code = definition.steps.contains { $0.command != nil }
            ? try RunSpec.capture(["true"], directory: directory, store: store, maxPatchBytes: 10 << 20, warn: warn)
            : RunSpec(repository: nil, commit: nil, patchBlob: nil, command: ["true"])
        let id = RunID.make()
        let pipeline = Pipeline(id: id, name: definition.name, project: project, file: file, source: source,
                                overrides: overrides.map(\.description), code: code,
                                queue: local != nil ? "pipeline-" + RunID.short(id) : queue, localSlots: local,
                                force: force, forceAll: forceAll, steps: PipelineController.stepRecords(of: definition), now: Clock.now())
        let runner = PipelineRunner(format: formatOption.resolve())
        let controller = try PipelineController(store: store, pipeline: pipeline, definition: definition, report: runner.report)
        Console.error("cml-queue: pipeline \(id) (\(definition.name)): \(definition.steps.count) steps; "
            + "cml-queue pipeline resume \(RunID.short(id)) goes on after an interruption\n")
        try runner.run(controller, store: store)
    }
}

/// Runs a controller for `run` and `resume`: signals, the local agent, the lines it prints.
final class PipelineRunner: @unchecked Sendable {  // set once, then used by the controller's thread
    let format: OutputFormat

    init(format: OutputFormat) {
        self.format = format
    }

    func run(_ controller: PipelineController, store: any Store) throws(CMLError) {
        let pipeline = controller.pipeline
        listenForInterrupts(first: {
            Console.error("cml-queue: stopping: no new steps; waiting for those queued or running (Ctrl-C again to leave them and exit)\n")
            controller.requestStop()
        }, again: {
            Console.error("cml-queue: leaving the steps queued or running; cml-queue pipeline resume takes them up\n")
            controller.requestLeave()
        })
        let ended = try LocalAgent.serving(pipeline.localSlots, store: store, queue: pipeline.queue ?? "",
                                           name: RunEnvironment.hostName + "-pipeline-" + RunID.short(pipeline.id)) { () throws(CMLError) in
            try controller.run()
        }
        let text = "pipeline \(ended.id) \(ended.status.rawValue)\(ended.reason.map { ": \($0)" } ?? "")\n"
            + PipelineTables.steps(ended, now: Clock.now()).render(.table)
        if format == .table { try Console.out(text) } else { Console.error(text) }
        switch ended.status {
        case .failed: throw CMLError("pipeline \(RunID.short(ended.id)) failed: \(ended.reason ?? "")")
        // As a command interrupted by Ctrl-C exits: a script that goes on only after the pipeline completed stops too.
        case .stopped: throw CMLError("pipeline \(RunID.short(ended.id)) \(ended.reason ?? "stopped")",
                                      hint: "cml-queue pipeline resume \(RunID.short(ended.id)) goes on", exitCode: 130)
        default: break
        }
    }

    func report(_ event: PipelineEvent) {
        switch event {
        case .queued(let step):
            if format == .table { Console.error("step \(step.name) queued: run \(step.run.map(RunID.short) ?? "")\n") }
        case .ended(let step):
            if format == .table {
                let duration = step.startedAt.flatMap { start in step.endedAt.map { formatDuration($0 - start) } }
                try? Console.out("step \(step.name) \(step.state.rawValue) \(step.run.map(RunID.short) ?? "")"
                    + (duration.map { " \($0)" } ?? "") + (step.reason.map { " (\($0))" } ?? "") + "\n")
            } else {
                var json = step.json
                if case .object(let members) = json { json = .object(members.filter { !["after", "attempts"].contains($0.0) }) }
                try? Console.out(json.serialized + "\n")
            }
        case .note(let text):
            Console.error("cml-queue: \(text)\n")
        }
    }
}

/// Tables and graphs of pipelines for `show`, `graph` and the end of a run.
enum PipelineTables {
    static func steps(_ pipeline: Pipeline, now: Double) -> TextTable {
        TextTable(headers: ["STEP", "STATUS", "ID", "ATTEMPTS", "DURATION", "AFTER", "REASON"], rows: pipeline.steps.map { step in
            [step.name, step.state.rawValue, step.run.map(RunID.short) ?? "", String(step.attempts.count),
             pipeline.duration(of: step, now: now).map(formatDuration) ?? "", step.after.joined(separator: ","), step.reason ?? ""]
        })
    }

    /// Each step's depth: one more than its deepest dependency's.
    static func depths(_ steps: [PipelineStepRecord]) -> [String: Int] {
        var depths: [String: Int] = [:]
        func depth(_ name: String) -> Int {
            if let known = depths[name] { return known }
            let after = steps.first { $0.name == name }?.after ?? []
            let value = after.isEmpty ? 0 : 1 + after.map(depth).max()!
            depths[name] = value
            return value
        }
        for step in steps { _ = depth(step.name) }
        return depths
    }

    /// The DAG for a terminal: one line per step, indented by its depth, with the steps it waits for.
    static func text(_ steps: [PipelineStepRecord], states: Bool) -> String {
        let depths = depths(steps)
        let ordered = steps.enumerated().sorted { (depths[$0.element.name]!, $0.offset) < (depths[$1.element.name]!, $1.offset) }.map(\.element)
        return ordered.map { step in
            String(repeating: "  ", count: depths[step.name]!) + (depths[step.name]! == 0 ? "● " : "└─ ") + step.name
                + (states ? " [\(step.state.rawValue)\(step.run.map { " " + RunID.short($0) } ?? "")]" : "")
                + (step.after.isEmpty ? "" : "  ← " + step.after.joined(separator: ", "))
        }.joined(separator: "\n") + "\n"
    }

    /// The DAG as SVG: a column per depth, a box per step (coloured by its state), an arrow per dependency.
    static func svg(_ steps: [PipelineStepRecord], states: Bool) -> String {
        let depths = depths(steps)
        var rows: [Int: Int] = [:]
        var place: [String: (x: Int, y: Int)] = [:]
        for step in steps {
            let column = depths[step.name]!
            let row = rows[column, default: 0]
            rows[column] = row + 1
            place[step.name] = (20 + column * 200, 20 + row * 70)
        }
        let width = 20 + ((depths.values.max() ?? 0) + 1) * 200
        let height = 20 + (rows.values.max() ?? 1) * 70
        let colours: [StepState: String] = [.completed: "#c8e6c9", .cached: "#e0e0e0", .failed: "#ffcdd2", .blocked: "#ffe0b2",
                                            .running: "#bbdefb", .queued: "#fff9c4", .planned: "#fff9c4"]
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" font-family=\"sans-serif\" font-size=\"13\">\n"
        svg += "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto\">"
            + "<path d=\"M0,0 L10,5 L0,10 z\"/></marker></defs>\n"
        for step in steps {
            let to = place[step.name]!
            for dependency in step.after {
                let from = place[dependency]!
                svg += "<line x1=\"\(from.x + 150)\" y1=\"\(from.y + 22)\" x2=\"\(to.x)\" y2=\"\(to.y + 22)\" stroke=\"#555\" marker-end=\"url(#arrow)\"/>\n"
            }
        }
        for step in steps {
            let at = place[step.name]!
            let fill = states ? colours[step.state] ?? "#ffffff" : "#ffffff"
            svg += "<g><title>\(markupEscaped(step.name))\(states ? ": " + step.state.rawValue : "")</title>"
                + "<rect x=\"\(at.x)\" y=\"\(at.y)\" width=\"150\" height=\"44\" rx=\"6\" fill=\"\(fill)\" stroke=\"#333\"/>"
                + "<text x=\"\(at.x + 8)\" y=\"\(at.y + 18)\">\(markupEscaped(step.name))</text>"
                + (states ? "<text x=\"\(at.x + 8)\" y=\"\(at.y + 36)\" fill=\"#444\">\(step.state.rawValue)</text>" : "") + "</g>\n"
        }
        return svg + "</svg>\n"
    }
}

/// The pipeline's run a command is about, in its store.
struct PipelineReference: ParsableArguments {
    @OptionGroup var storeOption: StoreOption

    @Argument(help: ArgumentHelp("The pipeline's run (id or unique prefix).", valueName: "id"))
    var id: String

    func load(for access: StoreAccess) throws(CMLError) -> (store: any Store, pipeline: Pipeline) {
        let store = try storeOption.open(for: access)
        return (store, try Pipeline(record: try store.controller(kind: Pipeline.kind, id: id)))
    }
}

struct PipelineResume: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume",
        abstract: "Go on with a pipeline that failed, was stopped, or whose controller was killed.",
        discussion: """
            Steps that completed or were cached stay as they are; failed steps and those they blocked \
            start again (their retries count anew); steps queued or running when it stopped are taken \
            up as they are, and a step decided on but not yet queued is found by its parameters or \
            queued now: none runs twice. It goes on with the file's text and the options it was run \
            with (its --local slots too), not the file as it is now. Refused while its controller runs.

            Examples:
              cml-queue pipeline resume 0193b2
            """
    )

    @OptionGroup var target: PipelineReference
    @OptionGroup var formatOption: FormatOption

    func run() throws {
        let (store, pipeline) = try target.load(for: .writing)
        var definition = try PipelineFile.parse(pipeline.source, file: pipeline.file, defaultName: pipeline.name)
        try definition.apply(try pipeline.overrides.map { (text) throws(CMLError) in try PipelineOverride(parsing: text) })
        let runner = PipelineRunner(format: formatOption.resolve())
        let controller = try PipelineController(resuming: pipeline, store: store, definition: definition, report: runner.report)
        Console.error("cml-queue: pipeline \(pipeline.id) resumed: \(pipeline.steps.filter(\.state.succeeded).count) of "
            + "\(pipeline.steps.count) steps done\n")
        try runner.run(controller, store: store)
    }
}

struct PipelineList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List pipelines' runs, newest first: status, steps done, cached and failed.",
        discussion: """
            The status is running, completed, failed, stopped, or lost (its controller has not been \
            heard of for 15 seconds: killed; cml-queue pipeline resume takes it up).

            Examples:
              cml-queue pipeline ls
              cml-queue pipeline ls | jq -r 'select(.status == "failed") | .id'
            """
    )

    @OptionGroup var storeOption: StoreOption
    @OptionGroup var formatOption: FormatOption

    func run() throws {
        let store = try storeOption.open(for: .reading)
        var pipelines: [Pipeline] = []
        for record in try store.controllers(kind: Pipeline.kind) { pipelines.append(try Pipeline(record: record)) }
        let now = Clock.now()
        func count(_ pipeline: Pipeline, _ state: StepState) -> Int { pipeline.steps.filter { $0.state == state }.count }
        try Console.print(pipelines.map { pipeline in
            .object([
                ("id", .string(pipeline.id)), ("name", .string(pipeline.name)), ("status", .string(pipeline.observedStatus(now: now))),
                ("project", .string(pipeline.project)), ("file", .string(pipeline.file)), ("steps", .int(Int64(pipeline.steps.count))),
                ("completed", .int(Int64(count(pipeline, .completed)))), ("cached", .int(Int64(count(pipeline, .cached)))),
                ("failed", .int(Int64(count(pipeline, .failed)))), ("created_at", .string(Clock.rfc3339(pipeline.createdAt))),
            ])
        }, format: formatOption.resolve()) {
            TextTable(headers: ["ID", "NAME", "STATUS", "STEPS", "COMPLETED", "CACHED", "FAILED", "CREATED"], rows: pipelines.map { pipeline in
                [RunID.short(pipeline.id), pipeline.name, pipeline.observedStatus(now: now), String(pipeline.steps.count),
                 String(count(pipeline, .completed)), String(count(pipeline, .cached)), String(count(pipeline, .failed)),
                 Clock.tableTime(pipeline.createdAt)]
            })
        }
    }
}

struct PipelineShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show a pipeline's run: each step's state, run, attempts, duration, and why it failed.",
        discussion: """
            As JSON when stdout is not a terminal (the pipeline's record: its steps with their run ids, \
            keys, attempts and reasons, the file's text and the options it ran with).

            Examples:
              cml-queue pipeline show 0193b2
              cml-queue pipeline show 0193b2 | jq -r '.steps[] | select(.cached) | .step'
            """
    )

    @OptionGroup var target: PipelineReference
    @OptionGroup var formatOption: FormatOption

    func run() throws {
        let (store, pipeline) = try target.load(for: .reading)
        guard formatOption.resolve() == .table else {
            try Console.out(pipeline.json.serialized + "\n")
            return
        }
        let now = Clock.now()
        try Console.out("""
            pipeline   \(pipeline.id) (\(pipeline.name))
            status     \(pipeline.observedStatus(now: now))\(pipeline.reason.map { " (\($0))" } ?? "")
            file       \(pipeline.file)\(pipeline.overrides.isEmpty ? "" : " --set " + pipeline.overrides.joined(separator: " --set "))
            queue      \(pipeline.localSlots.map { "on this machine, \($0) slots" } ?? pipeline.queue ?? "the file's")

            """ + PipelineTables.steps(pipeline, now: now).render(.table))
    }
}

struct PipelineRuns: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runs",
        abstract: "The runs of a pipeline's steps, cached ones included, as cml-run ls prints runs.",
        discussion: """
            In the file's order of steps; a step not run yet has none. cml-run ls --where 'pipeline = ID' \
            lists the runs the pipeline started; this also lists the runs its cached steps reused.

            Examples:
              cml-queue pipeline runs 0193b2 | cml-diff
              cml-queue pipeline runs 0193b2 | jq -r '[.name, .metrics.loss.last] | @tsv'
            """
    )

    @OptionGroup var target: PipelineReference
    @OptionGroup var formatOption: FormatOption

    func run() throws {
        let (store, pipeline) = try target.load(for: .reading)
        var rows: [(step: PipelineStepRecord, run: Run)] = []
        for step in pipeline.steps {
            if let id = step.run { rows.append((step, try store.run(id: id))) }
        }
        try Console.print(rows.map { $0.run.json(full: false) }, format: formatOption.resolve()) {
            TextTable(headers: ["STEP", "ID", "STATUS", "CACHED", "NAME"], rows: rows.map { row in
                [row.step.name, RunID.short(row.run.id), row.run.observedStatus.rawValue, row.step.state == .cached ? "yes" : "",
                 row.run.name ?? ""]
            })
        }
    }
}

struct PipelineGraph: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "graph",
        abstract: "Draw a pipeline's steps and what each waits for: as text, or SVG.",
        discussion: """
            Of a pipeline's run (with each step's state), or of a pipeline file.

            Examples:
              cml-queue pipeline graph 0193b2
              cml-queue pipeline graph pipeline.yaml --svg > pipeline.svg
            """
    )

    @OptionGroup var storeOption: StoreOption

    @Argument(help: ArgumentHelp("A pipeline's run (id or unique prefix), or a pipeline file.", valueName: "id|file"))
    var target: String

    @Flag(help: "SVG instead of text.")
    var svg = false

    func run() throws {
        let steps: [PipelineStepRecord]
        let states: Bool
        if access(target, F_OK) == 0 && !FileSystem.isDirectory(target) {
            steps = PipelineController.stepRecords(of: try PipelineFile.load(target).definition)
            states = false
        } else {
            let store = try storeOption.open(for: .reading)
            steps = try Pipeline(record: try store.controller(kind: Pipeline.kind, id: target)).steps
            states = true
        }
        try Console.out(svg ? PipelineTables.svg(steps, states: states) : PipelineTables.text(steps, states: states))
    }
}

import ArgumentParser
import CMLCommandLine
import CMLKit
import Glibc
import Synchronization

/// `cml-queue`: queue runs for agents, and see and rearrange what waits.
@main
struct CMLQueue: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cml-queue",
        abstract: "Queue runs for agents (cml-agent), and list, move, remove and count what waits.",
        discussion: """
            A queued run is a run in state queued with the spec that reproduces it (repository, commit, \
            patch, command, environment). Agents take runs by the order of their --queue options, then \
            by priority (higher first), then by age. Listings are JSON lines of runs when piped (so \
            cml-queue ls | cml-diff works), a table on a terminal.

            Examples:
              cml-run clone 0192f3a4 --set lr=0.1 | cml-queue add gpu
              cml-queue add gpu --priority 10 -- python train.py --lr 0.01
              cml-queue ls gpu
              cml-queue ls | cml-diff
              cml-queue mv 0192f3b7 cpu
              cml-queue rm 0192f3b7
              cml-queue stats
              cml-queue sweep 0192f3a4 --objective val_loss.min --param 'lr=loguniform(1e-4,1e-1)' --trials 20 --queue gpu
              cml-queue pipeline run pipeline.yaml --local 2
            """,
        subcommands: [Add.self, List.self, Remove.self, Move.self, Stats.self, SweepCommand.self, PipelineCommand.self]
    )

    static func main() {
        // A sweep's or pipeline's controller handles these signals itself (Ctrl-C stops it queueing); blocked before
        // any thread exists, so that every thread inherits the mask.
        let arguments = Array(CommandLine.arguments.dropFirst())
        let controls = arguments.count > 1 && !arguments.contains("--help") && !arguments.contains("-h")
            && ((arguments[0] == "sweep" && !["ls", "show", "help"].contains(arguments[1]))
                || (arguments[0] == "pipeline" && ["run", "resume"].contains(arguments[1])))
        if controls { ShutdownSignals.block() }
        runAsTool(arguments)
    }
}

/// Queued runs as runs (JSON) or a table of their place in the queue.
func printQueued(_ runs: [Run], format: OutputFormat) throws(CMLError) {
    let now = Clock.now()
    try Console.print(runs.map { $0.json(full: false) }, format: format) { TextTable(
        headers: ["ID", "QUEUE", "PRIORITY", "STATUS", "AGENT", "ATTEMPT", "WAITING", "NAME", "COMMAND"],
        rows: runs.map { run in
            let queue = run.queue
            let waiting = run.status == .queued ? queue.map { formatDuration(now - $0.enqueuedAt) } ?? "" : ""
            return [format == .table ? RunID.short(run.id) : run.id, queue?.queue ?? "", String(queue?.priority ?? 0),
                    run.observedStatus.rawValue, queue?.agent ?? "", String(queue?.history.count ?? 0), waiting,
                    run.name ?? "", format == .table ? TextTable.truncate(TextTable.singleLine(ShellQuoting.commandLine(run.command)), to: 50)
                        : ShellQuoting.commandLine(run.command)]
        }) }
}

struct Add: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Queue runs: specs as JSON lines on stdin, or -- CMD for the current directory.",
        discussion: """
            Every line must be a valid spec (cml-run clone and cml-run spec print them) or nothing is \
            queued. The queue is created when it is new. Prints the queued runs. The options apply to \
            every run queued.

            Examples:
              cml-run clone 0192f3a4 --set lr=0.1 | cml-queue add gpu
              cml-queue add gpu --priority 10 --name quick -- python train.py --epochs 1
            """
    )

    @OptionGroup var storeOption: StoreOption
    @OptionGroup var formatOption: FormatOption

    @Argument(help: "The queue.") var queue: String

    @Option(help: "Higher runs first; equal priorities run oldest first.") var priority = 0

    @Option(help: "Starts of a run whose agents are lost, before the run ends lost.") var maxAttempts = 3

    @Option(help: "A name for the runs.") var name: String?

    @Option(help: "The project of the runs.") var project: String?

    @Option(name: .customLong("tag"), help: ArgumentHelp("Add a tag to the runs (repeatable).", valueName: "tag"))
    var tags: [String] = []

    @Option(name: .customLong("env"), help: ArgumentHelp("Set this variable in the runs' environment (repeatable).", valueName: "name=value"))
    var variables: [String] = []

    @Argument(parsing: .postTerminator, help: ArgumentHelp("A command to queue, after --, from the current directory.", valueName: "command"))
    var command: [String] = []

    func run() throws {
        let outputFormat = formatOption.resolve()
        // Checked before the code state is captured, which stores its patch.
        try QueueName.check(queue)
        guard maxAttempts >= 1 else { throw CMLError.usage("--max-attempts must be at least 1") }
        if let name {
            if name.isEmpty { throw CMLError.usage("--name must not be empty") }
            try NameLimits.check(name, "--name")
        }
        if let project {
            if project.isEmpty { throw CMLError.usage("--project must not be empty") }
            try NameLimits.check(project, "--project")
        }
        for tag in tags { try NameLimits.check(tag, "--tag") }
        let environment = try variables.map { (text) throws(CMLError) in
            guard let variable = EnvironmentVariable(assignment: text) else { throw CMLError.usage("--env \(text) is not NAME=value") }
            return variable
        }
        let store = try storeOption.open()
        var specs: [RunSpec]
        if !command.isEmpty {
            specs = [try RunSpec.capture(command, directory: RunEnvironment.workingDirectory, store: store, maxPatchBytes: 10 << 20) { warning in
                Console.error("cml-queue: warning: \(warning)\n")
            }]
        } else {
            guard let lines = Console.stdinLines() else {
                throw CMLError.usage("no runs to queue", hint: "pipe specs (cml-run clone ID | cml-queue add \(queue)) or give -- CMD")
            }
            specs = try Self.parse(lines)
            // An empty pipe (`cml-run clone` given no runs) queues nothing, and creates no queue.
            if specs.isEmpty {
                try printQueued([], format: outputFormat)
                return
            }
        }
        for index in specs.indices {
            if let name { specs[index].name = name }
            if let project { specs[index].project = project }
            specs[index].tags += tags.filter { !specs[index].tags.contains($0) }
            for variable in environment {
                specs[index].environment.removeAll { $0.name == variable.name }
                specs[index].environment.append(variable)
            }
        }
        let (runs, created) = try store.enqueue(specs, queue: queue, priority: priority, maxAttempts: maxAttempts)
        if created { Console.error("cml-queue: created queue \(queue)\n") }
        try printQueued(runs, format: outputFormat)
    }

    /// Every line a spec (blank lines aside), or an error naming the first line that is not.
    static func parse(_ lines: [String]) throws(CMLError) -> [RunSpec] {
        var specs: [RunSpec] = []
        for (number, line) in lines.enumerated() where !line.allSatisfy(\.isWhitespace) {
            do throws(CMLError) {
                specs.append(try RunSpec(json: JSON.parse(line)))
            } catch {
                throw CMLError("stdin line \(number + 1) is not a run spec: \(error.message)",
                               hint: error.hint ?? "nothing was queued")
            }
        }
        return specs
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List waiting and running queued runs: per queue, running first, then in the order agents take them.",
        discussion: """
            Each line is the run's record (as cml-run ls prints it) with queue, priority, agent and \
            attempt.

            Examples:
              cml-queue ls gpu
              cml-queue ls | cml-diff
              cml-queue ls gpu | jq -r 'select(.status == "queued") | .id' | cml-queue mv cpu
            """
    )

    @OptionGroup var storeOption: StoreOption
    @OptionGroup var formatOption: FormatOption

    @Argument(help: "Only this queue.") var queue: String?

    func run() throws {
        let outputFormat = formatOption.resolve()
        let store = try storeOption.open(for: .reading)
        if let queue { try QueueName.requireExisting(queue, in: store) }
        try printQueued(try store.queuedRuns(queue: queue), format: outputFormat)
    }
}

struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm",
        abstract: "Remove waiting runs from their queue, with their records.",
        discussion: """
            Only runs that wait can be removed (all given, or none); stop a running one with cml-run \
            abort. Runs are ids or unique prefixes, or JSON lines with an "id" on stdin.

            Examples:
              cml-queue rm 0192f3b7
              cml-queue ls gpu | cml-queue rm
            """
    )

    @OptionGroup var storeOption: StoreOption

    @Argument(help: ArgumentHelp("Queued runs (ids or unique prefixes).", valueName: "id")) var ids: [String] = []

    func run() throws {
        let store = try storeOption.open()
        let resolved = Array(Set(try RunInput.ids(arguments: ids, stdinLines: Console.stdinLines, store: store))).sorted()
        try store.removeQueued(resolved)
        try Console.out(JSON.object([("removed", .array(resolved.map(JSON.string)))]).serialized + "\n")
    }
}

struct Move: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mv",
        abstract: "Move waiting runs to another queue (created when new); they keep their age and priority.",
        discussion: """
            The last argument is the queue; the runs are the ids before it, or JSON lines with an "id" \
            on stdin.

            Examples:
              cml-queue mv 0192f3b7 cpu
              cml-queue ls gpu | cml-queue mv cpu
            """
    )

    @OptionGroup var storeOption: StoreOption
    @OptionGroup var formatOption: FormatOption

    @Argument(help: ArgumentHelp("Queued runs, then the queue to move them to.", valueName: "id… queue"))
    var arguments: [String] = []

    func run() throws {
        let outputFormat = formatOption.resolve()
        guard let queue = arguments.last else { throw CMLError.usage("no queue given", hint: "cml-queue mv ID… QUEUE") }
        let store = try storeOption.open()
        let resolved = Array(Set(try RunInput.ids(arguments: Array(arguments.dropLast()), stdinLines: Console.stdinLines, store: store))).sorted()
        // An empty pipe moves nothing, and creates no queue.
        if resolved.isEmpty {
            try QueueName.check(queue)
            try printQueued([], format: outputFormat)
            return
        }
        if try store.moveQueued(resolved, to: queue) { Console.error("cml-queue: created queue \(queue)\n") }
        try printQueued(try store.queuedRuns(queue: queue).filter { resolved.contains($0.id) }, format: outputFormat)
    }
}

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Per queue: runs waiting (depth), running, the longest wait, and live agents taking from it.",
        discussion: "Examples:\n  cml-queue stats\n  cml-queue stats | jq 'select(.depth > 0)'"
    )

    @OptionGroup var storeOption: StoreOption
    @OptionGroup var formatOption: FormatOption

    func run() throws {
        let outputFormat = formatOption.resolve()
        let stats = try storeOption.open(for: .reading).queueStats()
        let now = Clock.now()
        try Console.print(stats.map { queue in
            .object([
                ("queue", .string(queue.queue)), ("depth", .int(Int64(queue.depth))), ("running", .int(Int64(queue.running))),
                ("oldest_wait", queue.oldestQueuedAt.map { .double(((now - $0) * 1000).rounded() / 1000) } ?? .null),
                ("oldest_queued_at", queue.oldestQueuedAt.map { .string(Clock.rfc3339($0)) } ?? .null),
                ("agents", .int(Int64(queue.agents))),
            ])
        }, format: outputFormat) {
            TextTable(headers: ["QUEUE", "DEPTH", "RUNNING", "OLDEST WAIT", "AGENTS"], rows: stats.map { queue in
                [queue.queue, String(queue.depth), String(queue.running), queue.oldestQueuedAt.map { formatDuration(now - $0) } ?? "",
                 String(queue.agents)]
            })
        }
    }
}

/// Ctrl-C (or SIGTERM) once runs `first`, again runs `again`: a controller stops queueing, then leaves
/// what it queued. Call after `ShutdownSignals.block()` in main.
func listenForInterrupts(first: @escaping @Sendable () -> Void, again: @escaping @Sendable () -> Void) {
    let signals = Mutex(0)
    ShutdownSignals.listen { _ in
        if signals.withLock({ $0 += 1; return $0 }) == 1 { first() } else { again() }
    }
}

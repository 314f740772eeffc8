import ArgumentParser
import CMLCommandLine
import CMLKit
import Glibc

/// `cml-agent`: turn this machine into a worker that takes queued runs, reproduces their code and runs them.
struct CMLAgent: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cml-agent",
        abstract: "Take queued runs, reproduce their code, and run and record each as cml-run does.",
        discussion: """
            The agent leases a run (by the order of --queue, then priority, then age), renews its leases \
            with a heartbeat every --heartbeat seconds, and starts new work within milliseconds of it \
            being queued (it watches the store instead of polling). A run whose agent stops renewing its \
            lease (killed, machine gone) is lost and queued again, up to the --max-attempts it was queued with, by any \
            other agent within --lease plus --heartbeat seconds. Code is cloned into a cache under \
            --workdir, checked out at the run's commit in a fresh directory, and the captured patch \
            applied; a run whose code cannot be reproduced fails with the reason. A secret parameter's \
            value, recorded as <redacted>, comes from $CML_SECRET_NAME (--api-key: CML_SECRET_API_KEY) in \
            the agent's environment; without it the run fails naming the variable.

            With --store URL (cml-serve) the agent works on another machine than the store: it leases \
            and heartbeats through the server, records each run into a spool under $XDG_CACHE_HOME (else \
            ~/.cache)/cml/agent-spool, uploads it as it runs, and ends the run on the server once all of it \
            is there. While the server does not answer, a run that ended waits in the spool and its slot \
            stays taken; should its lease run out meanwhile, the server requeues the run.

            SIGTERM (or SIGINT, SIGHUP) drains the agent: it takes nothing new, lets its runs finish \
            within --grace, then stops and requeues what still runs; a second signal ends the grace. \
            Under systemd (Type=notify) it reports READY, WATCHDOG and STATUS through $NOTIFY_SOCKET; its \
            log goes to stderr, with syslog priorities when stderr is the journal.

            The options are listed by cml-agent run --help.

            Examples:
              cml-agent --queue gpu --gpus 0,1
              cml-agent --queue urgent --queue default --slots 4 --name cpu-box
              cml-agent --queue nightly --create --until-empty
              cml-agent --store http://tracker:8080 --queue gpu
              cml-agent ls
            """,
        subcommands: [Work.self, AgentList.self],
        defaultSubcommand: Work.self
    )
}

@main
enum Main {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        // The agent handles these signals itself (it drains); block them before any thread exists.
        if arguments.first != "ls" && !arguments.contains("--help") && !arguments.contains("-h") { ShutdownSignals.block() }
        CMLAgent.runAsTool(arguments)
    }
}

struct Work: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Work on queued runs until stopped (the default: cml-agent [options])."
    )

    @OptionGroup var storeOption: StoreOption

    @Option(name: .customLong("queue"), help: ArgumentHelp("A queue to take runs from (repeatable; earlier queues first; default: default).", valueName: "queue"))
    var queues: [String] = []

    @Flag(help: "Create queues that do not exist yet (otherwise an unknown queue is an error).")
    var create = false

    @Option(help: "The agent's name (default: the host name); no two live agents share one.")
    var name: String?

    @Option(help: "Runs at once (default: 1, or one per GPU with --gpus).")
    var slots: Int?

    @Option(help: ArgumentHelp("GPU ids shared out among the slots: each run sees its share in CUDA_VISIBLE_DEVICES.", valueName: "ids"))
    var gpus: String?

    @Flag(help: "Take what fills the slots once, run it, and exit.")
    var once = false

    @Flag(help: "Keep taking runs as slots free up; exit once nothing waits on the queues and nothing runs.")
    var untilEmpty = false

    @Option(name: .customLong("workdir"), help: ArgumentHelp("Where the clone cache and the runs' directories go (default: $XDG_CACHE_HOME/cml/agent, else ~/.cache/cml/agent).", valueName: "dir"))
    var workDirectory: String?

    @Option(help: ArgumentHelp("Seconds between heartbeats.", valueName: "seconds"))
    var heartbeat: Double = 5

    @Option(help: ArgumentHelp("Seconds a lease lasts without a heartbeat; then the run is lost and requeued. At least twice --heartbeat.", valueName: "seconds"))
    var lease: Double = 30

    @Option(help: ArgumentHelp("When draining, seconds runs have to finish before they are stopped and requeued.", valueName: "seconds"))
    var grace: Double = 60

    @Option(help: ArgumentHelp("Seconds between SIGTERM and SIGKILL when a run is stopped (abort, drain).", valueName: "seconds"))
    var killGrace: Double = 10

    func run() throws {
        let configuration = try makeConfiguration()
        let location = StoreLocation.resolve(storeOption.store)
        let remote = StoreLocation.isRemote(location)
        // A server's queue is worked from here; the runs record into this machine's spool of it and go up from there.
        let store: any Store = remote ? try storeOption.open() : try storeOption.openDirectory()
        let known = try store.queueNames()
        for queue in configuration.queues where !known.contains(queue) {
            guard create else {
                throw CMLError("unknown queue '\(queue)'",
                               hint: (known.isEmpty ? "there are no queues yet" : "queues: \(known.joined(separator: ", "))") + "; pass --create to create it")
            }
            try store.createQueue(queue)
        }
        let environment = RunEnvironment.current().reduce(into: [String: String]()) { $0[$1.0] = $1.1 }
        let notifier = SystemdNotifier(environment: environment)
        // What systemd gave the agent is not for its runs.
        for variable in SystemdNotifier.serviceVariables { unsetenv(variable) }
        let log = AgentLog(name: configuration.name, environment: environment)
        let agent = if remote {
            try Agent(configuration: configuration, server: store, spool: RunSpool(for: location, agent: true), log: log, notifier: notifier)
        } else {
            try Agent(configuration: configuration, store: store as! SQLiteStore, log: log, notifier: notifier)
        }
        ShutdownSignals.listen { signal in agent.drain(signal: signal) }
        let status = try agent.run()
        withExtendedLifetime(store) { Glibc.exit(status) }
    }

    private func makeConfiguration() throws(CMLError) -> AgentConfiguration {
        if once && untilEmpty { throw .usage("--once and --until-empty cannot be given together") }
        let queues = self.queues.isEmpty ? ["default"] : self.queues
        if let duplicate = queues.first(where: { queue in queues.filter { $0 == queue }.count > 1 }) {
            throw .usage("--queue \(duplicate) is given twice")
        }
        var gpuList: [String] = []
        if let gpus {
            gpuList = gpus.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard !gpuList.isEmpty, gpuList.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" } }) else {
                throw .usage("--gpus \(gpus) is not a list of GPU ids", hint: "e.g. --gpus 0,1")
            }
        }
        let slotCount = slots ?? max(1, gpuList.count)
        guard slotCount >= 1 else { throw .usage("--slots must be at least 1") }
        if !gpuList.isEmpty, gpuList.count % slotCount != 0 {
            throw .usage("--gpus \(gpus!) cannot be shared out equally among \(slotCount) slots", hint: "give a multiple of --slots GPUs")
        }
        guard heartbeat > 0, heartbeat.isFinite else { throw .usage("--heartbeat must be more than 0 seconds") }
        guard lease >= 2 * heartbeat, lease.isFinite else { throw .usage("--lease must be at least twice --heartbeat (\(heartbeat) s)") }
        guard grace >= 0, grace.isFinite, killGrace >= 0, killGrace.isFinite else { throw .usage("--grace and --kill-grace must be 0 or more seconds") }
        let agentName = name ?? RunEnvironment.hostName
        guard !agentName.isEmpty, !agentName.contains(where: { $0.isNewline }) else { throw .usage("--name must be a non-empty line") }
        let cache = FileSystem.cacheDirectory
        return AgentConfiguration(name: agentName, queues: queues, slots: slotCount, gpus: gpuList, once: once, untilEmpty: untilEmpty,
                                  workDirectory: FileSystem.absolutePath(workDirectory ?? cache + "/cml/agent"),
                                  heartbeatInterval: heartbeat, leaseSeconds: lease, drainGrace: grace, killGrace: killGrace)
    }
}

struct AgentList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List agents: state, queues, current runs and last heartbeat; newest first.",
        discussion: """
            The state is idle, busy, draining, stopped, or lost (its heartbeat is older than its lease \
            and it never said it stopped). Without --all, agents that stopped or were lost more than a \
            day ago are left out.

            Examples:
              cml-agent ls
              cml-agent ls | jq -r 'select(.state == "lost") | .name'
            """
    )

    @OptionGroup var storeOption: StoreOption

    @Flag(help: "Also agents that stopped or were lost more than a day ago.")
    var all = false

    @OptionGroup var formatOption: FormatOption

    func run() throws {
        let outputFormat = formatOption.resolve()
        let now = Clock.now()
        let agents = try storeOption.open(for: .reading).agents().filter { all || $0.isRecent(now: now) }
        try Console.print(agents.map { agent in
            .object([
                ("name", .string(agent.name)), ("state", .string(agent.observedState(now: now).rawValue)),
                ("host", .string(agent.host)), ("pid", .int(Int64(agent.pid))), ("queues", .array(agent.queues.map(JSON.string))),
                ("slots", .int(Int64(agent.slots))), ("gpus", .array(agent.gpus.map(JSON.string))),
                ("runs", .array(agent.runs.map(JSON.string))), ("heartbeat_at", .string(Clock.rfc3339(agent.heartbeatAt))),
                ("started_at", .string(Clock.rfc3339(agent.startedAt))), ("agent_id", .string(agent.id)),
            ])
        }, format: outputFormat) {
            TextTable(headers: ["NAME", "STATE", "HOST", "PID", "QUEUES", "SLOTS", "RUNS", "HEARTBEAT"], rows: agents.map { agent in
                [agent.name, agent.observedState(now: now).rawValue, agent.host, String(agent.pid), agent.queues.joined(separator: ","),
                 String(agent.slots), agent.runs.map(RunID.short).joined(separator: ","), formatDuration(max(0, now - agent.heartbeatAt)) + " ago"]
            })
        }
    }
}

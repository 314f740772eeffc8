import CMLKit
import Hummingbird

/// The queues page (`/queues`): each queue's load as `cml-queue stats` prints it, the runs waiting and
/// running on it as `cml-queue ls` lists them, the queued runs that ended lately, and the agents as
/// `cml-agent ls` lists them, with their heartbeats. With scope `write`, buttons move a waiting run,
/// abort a waiting or running one, and queue an ended one again (`POST /queues/actions`).
enum QueuePages {
    /// Ended queued runs listed for requeueing.
    static let endedShown = 20

    struct Listing: Sendable {
        var stats: [QueueStats]
        var entries: [Run]
        var ended: [Run]
        var agents: [AgentRecord]
        var now: Double
    }

    static func handle(_ web: WebRequest) async throws -> Response {
        let store = web.store, access = web.access
        let listing = try await StoreCalls.run { () throws(CMLError) -> Listing in
            let now = Clock.now()
            var ended = try RunQuery.parse(project: nil, status: nil, tags: [], since: nil,
                                           filter: "queue ~ '*' and status != queued and status != running",
                                           sort: ["-ended"], limit: endedShown)
            ended.projects = access.projects
            return Listing(stats: try store.queueStats(),
                           entries: try store.queuedRuns(queue: nil).filter { access.sees(project: $0.project) },
                           ended: try store.runs(ended), agents: try store.agents().filter { $0.isRecent(now: now) }, now: now)
        }
        return web.page(render(listing, chrome: web.chrome, canWrite: web.access.scope.allows(.write)))
    }

    /// A queue's numbers as the page shows them, by column: `cml-queue stats`'s depth, running,
    /// oldest wait and agents.
    static func cells(_ queue: QueueStats, now: Double) -> [(key: String, text: String)] {
        [("depth", String(queue.depth)), ("running", String(queue.running)),
         ("oldest_wait", queue.oldestQueuedAt.map { formatDuration(max(0, now - $0)) } ?? ""), ("agents", String(queue.agents))]
    }

    /// `GET /queues/live`: every queue's numbers, for the page's script:
    /// `{"queues": [{"queue", "cells": {"depth", "running", "oldest_wait", "agents"}}]}`, as text.
    static func live(_ web: WebRequest) async throws -> Response {
        let store = web.store
        let stats = try await StoreCalls.run { () throws(CMLError) in try store.queueStats() }
        let now = Clock.now()
        let queues = stats.map { queue in
            JSON.object([("queue", .string(queue.queue)), ("cells", .object(cells(queue, now: now).map { ($0.key, .string($0.text)) }))])
        }
        return Response(status: .ok, headers: [.contentType: Media.json, .cacheControl: "no-store"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: JSON.object([("queues", .array(queues))]).serialized + "\n")))
    }

    static func render(_ listing: Listing, chrome: WebLayout.Chrome, canWrite: Bool) -> HTML {
        let names = listing.stats.map(\.queue)
        let statRows = listing.stats.map { queue -> HTML in
            let cells = cells(queue, now: listing.now).map { (key: String, text: String) -> HTML in "<td class=\"num\" data-col=\"\(key)\">\(text)</td>" }
            return "<tr data-queue=\"\(queue.queue)\"><th scope=\"row\"><a href=\"#\(anchor(queue.queue))\">\(queue.queue)</a></th>\(cells)</tr>"
        }
        let queues: HTML = listing.stats.isEmpty
            ? "<p class=\"muted\">No queues yet: <code>cml-queue add QUEUE -- CMD</code> makes one.</p>"
            : """
                <div class="table-wrap"><table class="runs queues" data-live="/queues/live"><caption class="visually-hidden">Queues, as cml-queue stats shows them</caption>
                <thead><tr><th scope="col">Queue</th><th scope="col" class="num">Waiting</th><th scope="col" class="num">Running</th>\
                <th scope="col" class="num">Longest wait</th><th scope="col" class="num">Live agents</th></tr></thead>
                <tbody>\(statRows)</tbody></table></div>
                """
        let perQueue = names.map { name -> HTML in
            let entries = listing.entries.filter { $0.queue?.queue == name }
            let body: HTML = entries.isEmpty ? "<p class=\"muted\">Nothing waits or runs.</p>" : """
                <div class="table-wrap"><table class="runs entries" data-queue="\(name)"><caption class="visually-hidden">Runs on queue \(name)</caption>
                <thead><tr><th scope="col">Run</th><th scope="col">Name</th><th scope="col">Status</th><th scope="col" class="num">Priority</th>\
                <th scope="col">Queued</th><th scope="col" class="num">Waiting</th><th scope="col" class="num">Attempt</th><th scope="col">Agent</th>\
                \(canWrite ? "<th scope=\"col\">Actions</th>" as HTML : .empty)</tr></thead>
                <tbody>\(entries.map { entryRow($0, listing: listing, queues: names, chrome: chrome, canWrite: canWrite) })</tbody></table></div>
                """
            return "<section class=\"queue\" aria-labelledby=\"\(anchor(name))\"><h3 id=\"\(anchor(name))\">\(name)</h3>\(body)</section>"
        }
        return WebLayout.page(title: "Queues", section: .queues, chrome: chrome, scripts: [StaticAssets.queueScript], main: """
            <h1>Queues</h1>
            \(queues)
            \(listing.stats.isEmpty ? .empty : "<h2 id=\"entries\">Waiting and running</h2>" as HTML)
            \(perQueue)
            \(endedRuns(listing, queues: names, chrome: chrome, canWrite: canWrite))
            <h2 id="agents">Agents</h2>
            \(agents(listing))
            """)
    }

    static func entryRow(_ run: Run, listing: Listing, queues: [String], chrome: WebLayout.Chrome, canWrite: Bool) -> HTML {
        guard let queue = run.queue else { return .empty }
        let status = run.observedStatus
        let waiting = status == .queued
        var actions = HTML.empty
        if canWrite {
            let others = queues.filter { $0 != queue.queue }
            let move: HTML = waiting && !others.isEmpty ? """
                <label class="visually-hidden" for="move-\(run.id)">Move run \(RunID.short(run.id)) to</label>\
                <select id="move-\(run.id)" name="queue">\(others.map { (name: String) -> HTML in "<option>\(name)</option>" })</select>\
                <button type="submit" name="action" value="move">Move</button>
                """ : .empty
            actions = """
                <td><form class="inline" method="post" action="/queues/actions">\(hidden(chrome, run.id))\(move)\
                <button type="submit" name="action" value="abort" class="danger" aria-label="Abort run \(RunID.short(run.id))">Abort</button></form></td>
                """
        }
        return """
            <tr data-run="\(run.id)"><td class="mono"><a href="\(Href("runs", run.id))">\(RunID.short(run.id))</a></td>\
            <td>\(run.name ?? "")</td><td><span class="status status-\(status.rawValue)">\(status.rawValue)</span></td>\
            <td class="num">\(queue.priority)</td><td>\(DatasetPages.time(queue.enqueuedAt))</td>\
            <td class="num">\(waiting ? formatDuration(listing.now - queue.enqueuedAt) : "")</td>\
            <td class="num">\(queue.history.count)</td><td>\(queue.agent ?? "")</td>\(actions)</tr>
            """
    }

    static func endedRuns(_ listing: Listing, queues: [String], chrome: WebLayout.Chrome, canWrite: Bool) -> HTML {
        guard !listing.ended.isEmpty else { return .empty }
        let rows = listing.ended.map { run -> HTML in
            let queue = run.queue
            var action = HTML.empty
            if canWrite {
                let options = queues.map { (name: String) -> HTML in "<option\(attribute: "selected", on: name == queue?.queue)>\(name)</option>" }
                action = """
                    <td><form class="inline" method="post" action="/queues/actions">\(hidden(chrome, run.id))\
                    <label class="visually-hidden" for="requeue-\(run.id)">Queue run \(RunID.short(run.id)) again on</label>\
                    <select id="requeue-\(run.id)" name="queue">\(options)</select>\
                    <button type="submit" name="action" value="requeue">Requeue</button></form></td>
                    """
            }
            return """
                <tr data-run="\(run.id)"><td class="mono"><a href="\(Href("runs", run.id))">\(RunID.short(run.id))</a></td>\
                <td>\(run.name ?? "")</td><td><span class="status status-\(run.observedStatus.rawValue)">\(run.observedStatus.rawValue)</span></td>\
                <td>\(queue?.queue ?? "")</td><td>\(run.end.map { DatasetPages.time($0.endedAt) } ?? .empty)</td>\
                <td class="num">\(queue?.history.count ?? 0)</td><td>\(queue?.agent ?? "")</td>\(action)</tr>
                """
        }
        return """
            <h2 id="ended">Ended lately</h2>
            <p class="muted">Queued runs that ended, newest first. Requeueing queues a copy, as <code>cml-run clone ID | cml-queue add QUEUE</code> does.</p>
            <div class="table-wrap"><table class="runs ended"><caption class="visually-hidden">Queued runs that ended lately</caption>
            <thead><tr><th scope="col">Run</th><th scope="col">Name</th><th scope="col">Status</th><th scope="col">Queue</th><th scope="col">Ended</th>\
            <th scope="col" class="num">Attempts</th><th scope="col">Agent</th>\(canWrite ? "<th scope=\"col\">Requeue</th>" as HTML : .empty)</tr></thead>
            <tbody>\(rows)</tbody></table></div>
            """
    }

    /// As `cml-agent ls` lists them: live ones, and those that stopped or were lost in the last day;
    /// `lost` when the heartbeat is older than the agent's lease, the rule the CLI and the server go by.
    static func agents(_ listing: Listing) -> HTML {
        guard !listing.agents.isEmpty else { return "<p class=\"muted\">No agents lately: <code>cml-agent --queue QUEUE</code> starts one.</p>" }
        let rows = listing.agents.map { agent -> HTML in
            let state = agent.observedState(now: listing.now)
            let alive = [.idle, .busy, .draining].contains(state)
            return """
                <tr data-agent="\(agent.id)"><th scope="row">\(agent.name)</th>\
                <td><span class="agent-state \(alive ? "alive" : "stale")">\(state.rawValue)</span></td>\
                <td>\(agent.host)</td><td class="num">\(String(agent.pid))</td><td>\(agent.queues.joined(separator: ", "))</td>\
                <td class="num">\(agent.slots)</td>\
                <td>\(agent.runs.map { (id: String) -> HTML in "<a class=\"mono\" href=\"\(Href("runs", id))\">\(RunID.short(id))</a>" }.joined(separator: ", "))</td>\
                <td><time datetime="\(Clock.rfc3339(agent.heartbeatAt))" title="\(Clock.tableTime(agent.heartbeatAt))">\(formatDuration(max(0, listing.now - agent.heartbeatAt))) ago</time></td>\
                <td>\(DatasetPages.time(agent.startedAt))</td></tr>
                """
        }
        return """
            <div class="table-wrap"><table class="runs agents"><caption class="visually-hidden">Agents, as cml-agent ls shows them</caption>
            <thead><tr><th scope="col">Name</th><th scope="col">State</th><th scope="col">Host</th><th scope="col" class="num">PID</th>\
            <th scope="col">Queues</th><th scope="col" class="num">Slots</th><th scope="col">Runs</th><th scope="col">Last heartbeat</th>\
            <th scope="col">Started</th></tr></thead>
            <tbody>\(rows)</tbody></table></div>
            """
    }

    static func hidden(_ chrome: WebLayout.Chrome, _ id: String) -> HTML {
        "<input type=\"hidden\" name=\"csrf\" value=\"\(chrome.csrf)\"><input type=\"hidden\" name=\"id\" value=\"\(id)\">"
    }

    /// A fragment id for a queue's section (queue names hold `:` and `@`, which fragments allow).
    static func anchor(_ queue: String) -> String { "queue-" + queue }
}

/// `POST /queues/actions`: the queues page's buttons, with the CMLKit and store calls the commands
/// use: `move` (`cml-queue mv`) a waiting run to another existing queue, `abort` (`cml-run abort`) a
/// waiting or running one, `requeue` (`cml-run clone ID | cml-queue add QUEUE`) an ended one, on its
/// own queue unless `queue` names another. Each needs scope `write` and, for a project-bound token, a
/// run of its projects. What was done, or why nothing was (a refused token, a run that already ended,
/// an unknown queue), is the notice of the page it goes back to.
enum QueueActions {
    static let fields = ["id", "action", "queue", "return"]

    static func handle(_ web: WebRequest) async throws -> Response {
        let back = LoginPage.localPath(web.query.string("return") ?? "/queues")
        let notice: String
        do {
            notice = try await act(web)
        } catch {
            notice = "Nothing was done: \(error.message)\(error.hint.map { " (\($0))" } ?? "")."
        }
        if let session = web.session { web.sessions.leave(notice, for: session) }
        return Response(status: .seeOther, headers: [.location: back, .cacheControl: "no-store"])
    }

    static func act(_ web: WebRequest) async throws(CMLError) -> String {
        let action = web.query.string("action") ?? ""
        guard ["move", "abort", "requeue"].contains(action) else {
            throw CMLError.usage("unknown action '\(action.prefix(40))'", hint: "one of move, abort, requeue")
        }
        guard let reference = web.query.string("id"), !reference.isEmpty else { throw CMLError.usage("no run given") }
        let run = try await web.reads.run(reference)
        try web.requireWriteScope()
        try web.access.requireWrite(project: run.project)
        let store = web.store, queue = web.query.string("queue").flatMap { $0.isEmpty ? nil : $0 }
        let short = RunID.short(run.id)
        return try await StoreCalls.run { () throws(CMLError) -> String in
            switch action {
            case "move":
                guard let queue else { throw CMLError.usage("no queue to move run \(short) to") }
                try QueueName.requireExisting(queue, in: store)
                _ = try store.moveQueued([run.id], to: queue)
                return "Moved run \(short) to \(queue)."
            case "abort":
                switch try RunAbort.abort(run.id, store: store) {
                case .dequeued: return "Aborted run \(short): it was waiting, and will not run."
                case .requested(let agent): return "Asked agent \(agent) to stop run \(short)."
                default: return "Stopping run \(short)."
                }
            default:
                guard run.observedStatus.isFinished else {
                    throw CMLError("run \(short) has not ended (\(run.observedStatus.rawValue))",
                                   hint: "abort it first, or move it while it waits", kind: .conflict)
                }
                guard let target = queue ?? run.queue?.queue else {
                    throw CMLError.usage("run \(short) did not come from a queue", hint: "choose the queue to put it on")
                }
                try QueueName.requireExisting(target, in: store)
                var warnings: [String] = []
                let spec = try RunSpec.clone(run, queuedSpec: try store.spec(run: run.id), settings: []) { warnings.append($0) }
                let (queued, _) = try store.enqueue([spec], queue: target, priority: run.queue?.priority ?? 0,
                                                    maxAttempts: run.queue?.maxAttempts ?? 3)
                let added = queued.first.map { RunID.short($0.id) } ?? "?"
                return "Queued run \(short) again on \(target) as run \(added)." + warnings.map { " Warning: \($0)." }.joined()
            }
        }
    }
}

import CMLKit
import Hummingbird

extension StoreAPI {
    /// The routes of the queue concern (`QueueStore`): queues and the runs on them, agents, their leases,
    /// and the long poll that wakes idle agents. Agents and leases belong to no project: a project-bound
    /// token is refused the routes that need scope `agent`.
    static let queueRoutes: [ServerRoute] = [
        ServerRoute(method: .get, path: "/api/v1/store/queues", parameters: []) { route in
            let store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in try store.queueNames() })
        },
        ServerRoute(method: .put, path: "/api/v1/store/queues/{queue}", parameters: [], scope: .write) { route in
            let queue = try route.parameter("queue"), store = route.store
            try await StoreCalls.run { () throws(CMLError) in try store.createQueue(queue) }
            return .done
        },
        ServerRoute(method: .post, path: "/api/v1/store/queues/{queue}/runs", parameters: [], scope: .write) { route in
            let queue = try route.parameter("queue")
            let request = try await route.body(RemoteRecords.Enqueue.self, what: "the runs to queue")
            // Checked as `cml-queue add` checks a spec it reads, so that what is stored reads back when
            // an agent leases it; the whole batch, before anything is written.
            var specs: [RunSpec] = []
            for (index, spec) in request.specs.enumerated() {
                do throws(CMLError) {
                    specs.append(try RunSpec(json: spec.json))
                } catch {
                    throw CMLError.usage("spec \(index + 1): \(error.message)", hint: error.hint)
                }
                try route.access.requireWrite(project: specs[index].project)
            }
            let store = route.store, checked = specs
            return try .wire(try await StoreCalls.run { () throws(CMLError) in
                let (runs, created) = try store.enqueue(checked, queue: queue, priority: request.priority, maxAttempts: request.maxAttempts)
                return RemoteRecords.Enqueued(runs: runs, createdQueue: created)
            })
        },
        ServerRoute(method: .get, path: "/api/v1/store/queued", parameters: ["queue"]) { route in
            let queue = route.query.string("queue"), store = route.store, access = route.access
            return try .wire(try await StoreCalls.run { () throws(CMLError) in
                try store.queuedRuns(queue: queue).filter { access.sees(project: $0.project) }
            })
        },
        ServerRoute(method: .post, path: "/api/v1/store/queued/remove", parameters: [], scope: .write) { route in
            let ids = try await route.body([String].self, what: "the run ids")
            let store = route.store, access = route.access
            try await StoreCalls.run { () throws(CMLError) in
                try access.requireWrite(runs: ids, in: store)
                try store.removeQueued(ids)
            }
            return .done
        },
        ServerRoute(method: .post, path: "/api/v1/store/queued/move", parameters: [], scope: .write) { route in
            let move = try await route.body(RemoteRecords.QueuedMove.self, what: "the move")
            let store = route.store, access = route.access
            return try .wire(try await StoreCalls.run { () throws(CMLError) in
                try access.requireWrite(runs: move.ids, in: store)
                return RemoteRecords.QueueCreation(createdQueue: try store.moveQueued(move.ids, to: move.queue))
            })
        },
        ServerRoute(method: .get, path: "/api/v1/store/queue-stats", parameters: []) { route in
            let store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in try store.queueStats() })
        },
        ServerRoute(method: .get, path: "/api/v1/store/queue-changes", parameters: ["after", "wait"]) { route in
            let after = try route.query.integer("after")
            let wait = try route.query.integer("wait") ?? 30
            guard (0...QueueChanges.longestWait).contains(wait) else {
                throw CMLError.usage("wait must be 0 to \(QueueChanges.longestWait) seconds, not \(wait)")
            }
            let changes = try QueueChanges.of(route.store)
            return try .wire(RemoteRecords.QueueChanges(count: await changes.next(after: after, waiting: wait)))
        },
        ServerRoute(method: .get, path: "/api/v1/store/runs/{id}/spec", parameters: []) { route in
            let run = try await RunReads(route).run(try route.parameter("id"))
            let store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in try store.spec(run: run.id) })
        },
        ServerRoute(method: .post, path: "/api/v1/store/queued/{id}/abort", parameters: [], scope: .write) { route in
            let id = try route.parameter("id"), store = route.store, access = route.access
            return try .wire(try await StoreCalls.run { () throws(CMLError) in
                try access.requireWrite(runs: [id], in: store)
                return try store.requestAbort(run: id)
            })
        },

        // Agents and leases.
        ServerRoute(method: .get, path: "/api/v1/store/agents", parameters: []) { route in
            let store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in try store.agents() })
        },
        ServerRoute(method: .post, path: "/api/v1/store/agents", parameters: [], scope: .agent) { route in
            try route.access.requireUnbound(to: "run an agent")
            let agent = try await route.body(AgentRecord.self, what: "the agent")
            guard !agent.id.isEmpty, !agent.name.isEmpty else { throw CMLError.usage("an agent needs an id and a name") }
            _ = try StoreAPI.seconds(agent.leaseSeconds, "the agent's leaseSeconds")
            let store = route.store
            try await StoreCalls.run { () throws(CMLError) in try store.registerAgent(agent) }
            return .done
        },
        ServerRoute(method: .post, path: "/api/v1/store/agents/{id}/retire", parameters: [], scope: .agent) { route in
            try route.access.requireUnbound(to: "retire an agent")
            let id = try route.parameter("id"), store = route.store
            try await StoreCalls.run { () throws(CMLError) in try store.retireAgent(id: id) }
            return .done
        },
        ServerRoute(method: .post, path: "/api/v1/store/agents/{id}/lease", parameters: [], scope: .agent) { route in
            try route.access.requireUnbound(to: "take runs")
            let id = try route.parameter("id")
            let request = try await route.body(RemoteRecords.LeaseRequest.self, what: "the lease request")
            let seconds = try StoreAPI.seconds(request.seconds, "seconds")
            let store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in
                try store.lease(agent: id, queues: request.queues, seconds: seconds)
            })
        },
        ServerRoute(method: .post, path: "/api/v1/store/agents/{id}/heartbeat", parameters: [], scope: .agent) { route in
            try route.access.requireUnbound(to: "renew leases")
            let id = try route.parameter("id")
            let beat = try await route.body(RemoteRecords.Heartbeat.self, what: "the heartbeat")
            let seconds = try StoreAPI.seconds(beat.leaseSeconds, "leaseSeconds")
            let store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in
                try store.heartbeat(agent: id, state: beat.state, holding: beat.holding, leaseSeconds: seconds)
            })
        },
        ServerRoute(method: .get, path: "/api/v1/store/leases/expired", parameters: []) { route in
            let store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in try store.expiredLeases() })
        },
        ServerRoute(method: .post, path: "/api/v1/store/leases/reclaim", parameters: [], scope: .agent) { route in
            try route.access.requireUnbound(to: "reclaim leases")
            let leases = try await route.body([ExpiredLease].self, what: "the expired leases")
            let store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in try store.reclaim(leases) })
        },
        ServerRoute(method: .post, path: "/api/v1/store/leases/start", parameters: [], scope: .agent) { route in
            try route.access.requireUnbound(to: "start leased runs")
            let start = try await route.body(RemoteRecords.LeasedStart.self, what: "the start")
            guard start.run.id == start.lease.runID else {
                throw CMLError.usage("the run is \(start.run.id), the lease's run \(start.lease.runID)")
            }
            let store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in try store.startLeasedRun(start.run, lease: start.lease) })
        },
        ServerRoute(method: .post, path: "/api/v1/store/leases/end", parameters: [], scope: .agent) { route in
            try route.access.requireUnbound(to: "end leased runs")
            let end = try await route.body(RemoteRecords.LeasedEnd.self, what: "the end")
            guard end.logBytes >= 0 else { throw CMLError.usage("logBytes must not be negative") }
            let store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in
                try store.endLeasedRun(end.lease, end.end, logBytes: end.logBytes)
            })
        },
    ]

    /// A duration from a body: a positive, finite number of seconds.
    static func seconds(_ value: Double, _ what: String) throws(CMLError) -> Double {
        guard value.isFinite, value > 0 else { throw CMLError.usage("\(what) must be a positive number of seconds, not \(value)") }
        return value
    }
}

extension RequestAccess {
    /// Agents, leases and datasets belong to no project: a token bound to projects reads them but does
    /// not change them (403), whatever its scope.
    func requireUnbound(to what: String) throws(CMLError) {
        guard let projects else { return }
        throw CMLError("a token bound to projects (\(projects.joined(separator: ", "))) may not \(what)",
                       hint: "use a token bound to no project", kind: .refused)
    }

    /// A write to runs of projects the token is not bound to is refused before any is written; one to a
    /// run that does not exist is answered 404. Called on a store thread (it reads the runs).
    func requireWrite(runs ids: [String], in store: any Store) throws(CMLError) {
        guard projects != nil else { return }
        for id in ids { try requireWrite(project: try store.run(id: id).project) }
    }
}

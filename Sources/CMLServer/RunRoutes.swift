import CMLKit
import Hummingbird

/// `/api/v1/runs…` and `/api/v1/projects`: the records `cml-run ls`, `show`, `metrics`, `log`,
/// `artifacts` and `projects` print, byte for byte.
enum RunRoutes {
    static func list(_ route: RouteRequest) async throws -> Response {
        let parameters = route.query
        let query = try RunQuery.parse(project: parameters.string("project"), status: parameters.string("status"),
                                       tags: parameters.strings("tag"), since: parameters.string("since"),
                                       filter: parameters.string("where"), sort: parameters.strings("sort"),
                                       limit: try parameters.integer("limit"))
        let runs = try await RunReads(route).runs(query)
        return .whole(lines(runs.map { $0.json(full: false) }), type: Media.jsonLines)
    }

    static func show(_ route: RouteRequest) async throws -> Response {
        let run = try await RunReads(route).run(try route.parameter("id"))
        return .whole(lines([run.json(full: true)]), type: Media.json)
    }

    static func metrics(_ route: RouteRequest) async throws -> Response {
        let reads = RunReads(route)
        let key = route.query.string("key")
        let id = try await reads.metricsRun(try route.parameter("id"), key: key)
        let body = StoreCalls.stream { send throws(CMLError) in try reads.metrics(run: id, key: key, send) }
        return Response(status: .ok, headers: [.contentType: Media.jsonLines], body: body)
    }

    static func log(_ route: RouteRequest) async throws -> Response {
        var stream: CMLKit.OutputStream?
        switch route.query.string("stream") {
        case nil: break
        case "stdout": stream = .stdout
        case "stderr": stream = .stderr
        default: throw CMLError.usage("stream must be stdout or stderr")
        }
        let raw = try route.query.flag("raw")
        let follow = try route.query.flag("follow")
        let reads = RunReads(route)
        let id = try await reads.id(try route.parameter("id"))
        let only = stream
        let body = StoreCalls.stream { send throws(CMLError) in
            try reads.log(run: id, stream: only, raw: raw, follow: follow, send)
        }
        return Response(status: .ok, headers: [.contentType: Media.text], body: body)
    }

    static func artifacts(_ route: RouteRequest) async throws -> Response {
        let artifacts = try await RunReads(route).artifacts(try route.parameter("id"))
        return .whole(lines(artifacts.map(\.json)), type: Media.jsonLines)
    }

    static func projects(_ route: RouteRequest) async throws -> Response {
        let projects = try await RunReads(route).projects()
        return .whole(lines(projects.map(\.json)), type: Media.jsonLines)
    }

    private static func lines(_ objects: [JSON]) -> String {
        var text = ""
        for object in objects {
            object.write(to: &text)
            text += "\n"
        }
        return text
    }
}

/// Everything the run routes ask of the store, in one place: when `Store` splits by concern, only this
/// changes. Runs are named as the commands name them: an id, a unique prefix, or a name. A run of a
/// project the request's token may not see is answered as one that does not exist.
struct RunReads: Sendable {
    let store: any Store
    let access: RequestAccess

    init(_ route: RouteRequest) {
        store = route.store
        access = route.access
    }

    init(store: any Store, access: RequestAccess) {
        self.store = store
        self.access = access
    }

    func id(_ reference: String) async throws(CMLError) -> String {
        try await run(reference).id
    }

    func run(_ reference: String) async throws(CMLError) -> Run {
        let store = store, access = access
        return try await StoreCalls.run { () throws(CMLError) in try Self.visibleRun(reference, store: store, access: access) }
    }

    private static func visibleRun(_ reference: String, store: any Store, access: RequestAccess) throws(CMLError) -> Run {
        // A whole id (as links and clients give it) is read at once, without resolving it first.
        if reference.utf8.count == 32, RunID.isPrefix(reference), let run = try? store.run(id: reference) {
            guard access.sees(project: run.project) else { throw RunID.noRun(reference) }
            return run
        }
        let id: String
        do {
            id = try store.resolveRunID(reference)
        } catch where error.kind == .ambiguous && access.projects != nil {
            // The candidates may be runs the token may not see: say only that the reference is ambiguous.
            throw CMLError(error.message, hint: "give more of the id", kind: .ambiguous)
        }
        let run = try store.run(id: id)
        guard access.sees(project: run.project) else { throw RunID.noRun(reference) }
        return run
    }

    func runs(_ query: RunQuery) async throws(CMLError) -> [Run] {
        let store = store
        var query = query
        query.projects = access.projects
        let only = query
        return try await StoreCalls.run { () throws(CMLError) in try store.runs(only) }
    }

    /// The run's id, once it is known to have the metric `key` (when one is asked for).
    func metricsRun(_ reference: String, key: String?) async throws(CMLError) -> String {
        let run = try await run(reference)
        if let key { try run.requireMetric(key) }
        return run.id
    }

    /// Streams the points as `cml-run metrics` prints them.
    func metrics(run id: String, key: String?, _ send: (ByteBuffer) throws(CMLError) -> Void) throws(CMLError) {
        var lines = MetricLineEncoder()
        try store.forEachMetric(run: id, key: key) { point throws(CMLError) in
            lines.append(point)
            if lines.count >= 1 << 16 { try send(ByteBuffer(bytes: lines.take())) }
        }
        if lines.count > 0 { try send(ByteBuffer(bytes: lines.take())) }
    }

    /// Streams the console output as `cml-run log` prints it; with `follow`, until the run ends (or,
    /// when the client went away, until the run next prints).
    func log(run id: String, stream: CMLKit.OutputStream?, raw: Bool, follow: Bool,
             _ send: (ByteBuffer) throws(CMLError) -> Void) throws(CMLError) {
        let follower = RunLogFollower(store: store, runID: id, stream: stream, raw: raw)
        try follower.read(follow: follow) { bytes throws(CMLError) in
            if !bytes.isEmpty { try send(ByteBuffer(bytes: bytes)) }
        }
    }

    func artifacts(_ reference: String) async throws(CMLError) -> [Artifact] {
        let store = store
        let id = try await run(reference).id
        return try await StoreCalls.run { () throws(CMLError) in try store.artifacts(run: id) }
    }

    func projects() async throws(CMLError) -> [ProjectSummary] {
        let store = store, access = access
        return try await StoreCalls.run { () throws(CMLError) in try store.projects().filter { access.sees(project: $0.name) } }
    }
}

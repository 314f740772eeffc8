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
        let runs = try await RunReads(route.store).runs(query)
        return .whole(lines(runs.map { $0.json(full: false) }), type: Media.jsonLines)
    }

    static func show(_ route: RouteRequest) async throws -> Response {
        let run = try await RunReads(route.store).run(try route.parameter("id"))
        return .whole(lines([run.json(full: true)]), type: Media.json)
    }

    static func metrics(_ route: RouteRequest) async throws -> Response {
        let reads = RunReads(route.store)
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
        let reads = RunReads(route.store)
        let id = try await reads.id(try route.parameter("id"))
        let only = stream
        let body = StoreCalls.stream { send throws(CMLError) in
            try reads.log(run: id, stream: only, raw: raw, follow: follow, send)
        }
        return Response(status: .ok, headers: [.contentType: Media.text], body: body)
    }

    static func artifacts(_ route: RouteRequest) async throws -> Response {
        let artifacts = try await RunReads(route.store).artifacts(try route.parameter("id"))
        return .whole(lines(artifacts.map(\.json)), type: Media.jsonLines)
    }

    static func projects(_ route: RouteRequest) async throws -> Response {
        let projects = try await RunReads(route.store).projects()
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
/// changes. Runs are named as the commands name them: an id, a unique prefix, or a name.
struct RunReads: Sendable {
    let store: any Store

    init(_ store: any Store) { self.store = store }

    func id(_ reference: String) async throws(CMLError) -> String {
        let store = store
        return try await StoreCalls.run { () throws(CMLError) in try store.resolveRunID(reference) }
    }

    func run(_ reference: String) async throws(CMLError) -> Run {
        let store = store
        return try await StoreCalls.run { () throws(CMLError) in try store.run(id: try store.resolveRunID(reference)) }
    }

    func runs(_ query: RunQuery) async throws(CMLError) -> [Run] {
        let store = store
        return try await StoreCalls.run { () throws(CMLError) in try store.runs(query) }
    }

    /// The run's id, once it is known to have the metric `key` (when one is asked for).
    func metricsRun(_ reference: String, key: String?) async throws(CMLError) -> String {
        let store = store
        return try await StoreCalls.run { () throws(CMLError) in
            let id = try store.resolveRunID(reference)
            if let key { try store.run(id: id).requireMetric(key) }
            return id
        }
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
        return try await StoreCalls.run { () throws(CMLError) in try store.artifacts(run: try store.resolveRunID(reference)) }
    }

    func projects() async throws(CMLError) -> [ProjectSummary] {
        let store = store
        return try await StoreCalls.run { () throws(CMLError) in try store.projects() }
    }
}

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

    static func show(_ record: RunRecordCache.Entry) -> Response {
        Response(status: .ok, headers: [.contentType: Media.json], body: ResponseBody(byteBuffer: record.json))
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
/// project the request's token may not see is answered as one that does not exist. Runs are read
/// through the server's `RunRecordCache`: one lookup of a run's revision while its record is kept.
struct RunReads: Sendable {
    let store: any ServedStore
    let access: RequestAccess
    let runs: RunRecordCache

    init(_ route: RouteRequest) {
        store = route.store
        access = route.access
        runs = route.runs
    }

    init(store: any ServedStore, access: RequestAccess = .everything, runs: RunRecordCache) {
        self.store = store
        self.access = access
        self.runs = runs
    }

    func id(_ reference: String) async throws(CMLError) -> String {
        try await run(reference).id
    }

    func run(_ reference: String) async throws(CMLError) -> Run {
        let store = store, runs = runs
        let (_, record) = try await StoreCalls.run { () throws(CMLError) in Self.record(reference, presented: nil, store: store, runs: runs) }
        return try Self.visible(record, reference: reference, access: access).run
    }

    /// The run `reference` names, for a request that needs `scope`: its token is looked up in the same
    /// store call (`ServedStore.readRun`), and checked before anything about the run is answered.
    /// `validate` checks the rest of the request (its query) once the token is known to be good.
    func checkedRecord(_ reference: String, request: Request, needing scope: TokenScope, authorizer: Authorizer,
                       validate: () throws(CMLError) -> Void) async throws(CMLError) -> RunRecordCache.Entry {
        let presented = try authorizer.presented(request)
        let store = store, runs = runs
        let (lookup, record) = try await StoreCalls.run { () throws(CMLError) in
            Self.record(reference, presented: presented, store: store, runs: runs)
        }
        guard let lookup else { return try record.get() }  // the store failed before it could say
        let access = try authorizer.access(request, needing: scope, presented: presented, lookup: lookup)
        try validate()
        return try Self.visible(record, reference: reference, access: access)
    }

    /// The token lookup (when `presented` is asked about) and the record, or why there is none: the
    /// caller checks the token before it answers anything about the run.
    private static func record(_ reference: String, presented: PresentedToken?, store: any ServedStore,
                               runs: RunRecordCache) -> (TokenLookup?, Result<RunRecordCache.Entry, CMLError>) {
        var lookup: TokenLookup?
        do throws(CMLError) {
            // A whole id (as links and clients give it) is read at once, without resolving it first.
            if RunID.isFull(reference) {
                let (token, record) = try read(reference, presented: presented, store: store, runs: runs)
                lookup = token
                if let record { return (lookup, .success(record)) }
            }
            if lookup == nil, let presented { lookup = try store.lookUp(presented) }
            let id = try store.resolveRunID(reference)
            guard let record = try read(id, presented: nil, store: store, runs: runs).record else { throw RunID.noRun(reference) }
            return (lookup, .success(record))
        } catch {
            return (lookup, .failure(error))
        }
    }

    /// Run `id` (a whole id) as `store.run(id:)` reads it, through the server's kept records: what a
    /// write to it checks the token's projects against.
    static func kept(_ id: String, store: any ServedStore, runs: RunRecordCache) throws(CMLError) -> Run {
        guard let record = try read(id, presented: nil, store: store, runs: runs).record else {
            throw CMLError("no run with id \(id)", hint: "see cml-run ls", kind: .notFound)
        }
        return record.run
    }

    /// Run `id` as kept, when its revision is still the one kept, else as read now; nil: no such run.
    private static func read(_ id: String, presented: PresentedToken?, store: any ServedStore,
                             runs: RunRecordCache) throws(CMLError) -> (token: TokenLookup?, record: RunRecordCache.Entry?) {
        let known = runs.entry(id: id)
        let read = try store.readRun(id: id, unlessRevision: known?.revision, presented: presented)
        guard let revision = read.revision else { return (read.token, nil) }
        return (read.token, read.run.map { runs.keep($0, revision: revision) } ?? known)
    }

    private static func visible(_ record: Result<RunRecordCache.Entry, CMLError>, reference: String,
                                access: RequestAccess) throws(CMLError) -> RunRecordCache.Entry {
        let entry: RunRecordCache.Entry
        do {
            entry = try record.get()
        } catch where error.kind == .ambiguous && access.projects != nil {
            // The candidates may be runs the token may not see: say only that the reference is ambiguous.
            throw CMLError(error.message, hint: "give more of the id", kind: .ambiguous)
        }
        guard access.sees(project: entry.run.project) else { throw RunID.noRun(reference) }
        return entry
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

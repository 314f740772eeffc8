import CMLKit
import Foundation
import Hummingbird

/// The store API: `Store`'s methods for cml's own clients (`HTTPStore`, which every command uses with
/// `--store http://…`), records in `WireCodec`'s lossless form. The routes people and `jq` read
/// (`/api/v1/runs…`) print what the commands print instead.
enum StoreAPI {
    /// The largest JSON body a store call takes (a batch of points, a run's record): bigger ones are
    /// answered 413 before they are read whole.
    static let maxRecordBytes = 64 << 20

    /// The routes of the runs concern (`RunStore`) and the blob upload.
    static let runRoutes: [ServerRoute] = [
        ServerRoute(method: .get, path: "/api/v1/store/runs/{id}") { record in try .wire(record.run) },
        ServerRoute(method: .get, path: "/api/v1/store/resolve", parameters: ["run"]) { route in
            guard let reference = route.query.string("run") else { throw CMLError.usage("resolve needs ?run=PREFIX") }
            return try .wire(try await RunReads(route).id(reference))
        },
        ServerRoute(method: .post, path: "/api/v1/store/runs/query", parameters: []) { route in
            var query = try await route.body(RunQuery.self, what: "the query")
            query.projects = route.access.projects
            let only = query, store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in try store.runs(only) })
        },
        ServerRoute(method: .get, path: "/api/v1/store/catalog", parameters: []) { route in
            let store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in RemoteRecords.CatalogKeys(keys: try store.catalog().allKeys()) })
        },
        ServerRoute(method: .get, path: "/api/v1/store/projects", parameters: []) { route in
            try .wire(try await RunReads(route).projects())
        },
        ServerRoute(method: .post, path: "/api/v1/store/runs", parameters: [], scope: .write) { route in
            let created = try await route.body(RemoteRecords.CreatedRun.self, what: "the run")
            try route.access.requireWrite(project: created.run.project)
            let store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in
                try store.createRun(created.run, patch: Array(created.patch))
            })
        },
        ServerRoute(method: .post, path: "/api/v1/store/runs/{id}/finish", parameters: [], scope: .write) { route in
            let finish = try await route.body(RemoteRecords.FinishedRun.self, what: "the run's end")
            return try await route.writeRun { store, id throws(CMLError) in try store.finishRun(id: id, end: finish.end, logBytes: finish.logBytes) }
        },
        ServerRoute(method: .post, path: "/api/v1/store/runs/{id}/batch", parameters: [], scope: .write) { route in
            let batch = try await route.body(RunBatch.self, what: "the run")
            let id = try route.parameter("id")
            guard batch.run.id == id else { throw CMLError.usage("the batch is run \(batch.run.id), the path's run \(id)") }
            try route.access.requireWrite(project: batch.run.project)
            let store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in try store.recordEndedRun(batch) })
        },
        ServerRoute(method: .post, path: "/api/v1/store/runs/{id}/params", parameters: [], scope: .write) { route in
            let params = try await route.body([Param].self, what: "the parameters")
            return try await route.writeRun { store, id throws(CMLError) in try store.addParams(run: id, params) }
        },
        ServerRoute(method: .post, path: "/api/v1/store/runs/{id}/tags", parameters: [], scope: .write) { route in
            let change = try await route.body(RemoteRecords.TagChange.self, what: "the tags")
            return try await route.writeRun { store, id throws(CMLError) in
                if !change.add.isEmpty { try store.addTags(run: id, change.add) }
                if !change.remove.isEmpty { try store.removeTags(run: id, change.remove) }
            }
        },
        ServerRoute(method: .post, path: "/api/v1/store/runs/{id}/name", parameters: [], scope: .write) { route in
            let name = try await route.body(RemoteRecords.RunName.self, what: "the name")
            return try await route.writeRun { store, id throws(CMLError) in try store.rename(run: id, to: name.name) }
        },
        ServerRoute(method: .post, path: "/api/v1/store/runs/remove", parameters: [], scope: .write) { route in
            let ids = try await route.body([String].self, what: "the run ids")
            let store = route.store, access = route.access
            return try .wire(try await StoreCalls.run { () throws(CMLError) in
                for id in ids { try access.requireWrite(project: try store.run(id: id).project) }
                return try store.removeRuns(ids)
            })
        },
        ServerRoute(method: .post, path: "/api/v1/store/runs/{id}/metrics", parameters: ["source", "from"], scope: .write) { route in
            guard let name = route.query.string("source"), let source = MetricSource(rawValue: name) else {
                throw CMLError.usage("metrics need ?source= one of \(MetricSource.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            var positions: [String: Int64]?
            for text in route.query.strings("from") {
                guard let colon = text.lastIndex(of: ":"), let at = Int64(text[text.index(after: colon)...]), at >= 0 else {
                    throw CMLError.usage("from=\(text) is not KEY:POSITION")
                }
                positions = (positions ?? [:]).merging([String(text[..<colon]): at]) { $1 }
            }
            let points = try WireCodec.decodePoints(try await route.bodyBytes(limit: StoreAPI.maxRecordBytes), what: "the points")
            let from = positions
            return try await route.writeRun { store, id throws(CMLError) in
                try store.appendMetrics(run: id, points, source: source, continuing: from)
            }
        },
        ServerRoute(method: .get, path: "/api/v1/store/runs/{id}/metrics", parameters: ["key"]) { route in
            let reads = RunReads(route)
            let id = try await reads.id(try route.parameter("id"))
            let key = route.query.string("key"), store = route.store
            // One point per line, so a series of millions streams in pieces.
            let body = StoreCalls.stream { send throws(CMLError) in
                var lines = ""
                try store.forEachMetric(run: id, key: key) { point throws(CMLError) in
                    WireCodec.appendPoint(point, to: &lines)
                    lines += "\n"
                    if lines.utf8.count >= 1 << 16 {
                        try send(ByteBuffer(string: lines))
                        lines.removeAll(keepingCapacity: true)
                    }
                }
                if !lines.isEmpty { try send(ByteBuffer(string: lines)) }
            }
            return Response(status: .ok, headers: [.contentType: Media.jsonLines], body: body)
        },
        ServerRoute(method: .get, path: "/api/v1/store/runs/{id}/log", parameters: ["offset", "limit"]) { route in
            let id = try await RunReads(route).id(try route.parameter("id"))
            let offset = Int64(try route.query.integer("offset") ?? 0)
            let limit = min(try route.query.integer("limit") ?? (1 << 20), 16 << 20)
            guard offset >= 0, limit >= 0 else { throw CMLError.usage("offset and limit must not be negative") }
            let store = route.store
            let bytes = try await StoreCalls.run { () throws(CMLError) in try store.readLog(run: id, from: offset, limit: limit) }
            // 204: the run never wrote output; 200 with what there is from `offset`, maybe nothing yet.
            guard let bytes else { return Response(status: .noContent) }
            return Response(status: .ok, headers: [.contentType: Media.bytes], body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
        },
        ServerRoute(method: .get, path: "/api/v1/store/runs/{id}/log/size", parameters: []) { route in
            let id = try await RunReads(route).id(try route.parameter("id")), store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in try store.logSize(run: id) })
        },
        ServerRoute(method: .post, path: "/api/v1/store/runs/{id}/log", parameters: ["offset"], scope: .write) { route in
            guard let offset = try route.query.integer("offset") else { throw CMLError.usage("a log upload needs ?offset=N") }
            let bytes = try await route.bodyBytes(limit: StoreAPI.maxRecordBytes)
            let id = try route.parameter("id"), store = route.store, access = route.access
            return try .wire(try await StoreCalls.run { () throws(CMLError) in
                if access.projects != nil { try access.requireWrite(project: try store.run(id: id).project) }
                return try store.appendLog(run: id, at: Int64(offset), bytes)
            })
        },
        ServerRoute(method: .post, path: "/api/v1/store/runs/{id}/heartbeat", parameters: [], scope: .write) { route in
            let id = try route.parameter("id"), store = route.store, access = route.access
            return try .wire(try await StoreCalls.run { () throws(CMLError) in
                if access.projects != nil { try access.requireWrite(project: try store.run(id: id).project) }
                return try store.heartbeatWriter(run: id).beat()
            })
        },
        ServerRoute(method: .get, path: "/api/v1/store/runs/{id}/abort", parameters: []) { route in
            let id = try await RunReads(route).id(try route.parameter("id")), store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in try store.heartbeatWriter(run: id).abortRequested() })
        },
        ServerRoute(method: .post, path: "/api/v1/store/runs/{id}/abort", parameters: [], scope: .write) { route in
            try await route.writeRun { store, id throws(CMLError) in try store.requestAbort(directRun: id) }
        },
        ServerRoute(method: .post, path: "/api/v1/store/runs/{id}/artifacts", parameters: [], scope: .write) { route in
            let artifact = try await route.body(Artifact.self, what: "the artifact")
            let id = try route.parameter("id")
            guard artifact.run == id else { throw CMLError.usage("the artifact names run \(artifact.run), the path \(id)") }
            let store = route.store, access = route.access
            return try .wire(try await StoreCalls.run { () throws(CMLError) in
                try access.requireWrite(project: try store.run(id: id).project)
                return try store.addArtifact(artifact)
            })
        },
        ServerRoute(method: .get, path: "/api/v1/store/runs/{id}/artifacts", parameters: []) { route in
            try .wire(try await RunReads(route).artifacts(try route.parameter("id")))
        },
        ServerRoute(method: .get, path: "/api/v1/store/blobs/{sha256}/projects", parameters: []) { route in
            let id = try BlobRoutes.blobID(route), store = route.store, access = route.access
            return try .wire(try await StoreCalls.run { () throws(CMLError) in
                try store.projects(referencingBlob: id).filter(access.sees(project:))
            })
        },
        ServerRoute(method: .put, path: "/api/v1/blobs/{sha256}", parameters: [], scope: .write, handler: BlobRoutes.put),
    ]
}

extension Response {
    static func wire<Value: Encodable>(_ value: Value) throws(CMLError) -> Response {
        Response(status: .ok, headers: [.contentType: Media.json], body: ResponseBody(byteBuffer: ByteBuffer(bytes: try WireCodec.encode(value))))
    }

    static let done = Response(status: .noContent)
}

extension RequestAccess {
    /// A write to a project the token is not bound to is refused (403), where a read of it finds nothing.
    func requireWrite(project: String) throws(CMLError) {
        guard sees(project: project) else {
            throw CMLError("this token may not write to project \(project)", hint: "its projects: \((projects ?? []).joined(separator: ", "))", kind: .refused)
        }
    }
}

extension RouteRequest {
    /// The body as a record, read up to `StoreAPI.maxRecordBytes` (413 beyond, before it is read whole);
    /// a malformed one is a 400 naming what was wrong, with nothing written.
    func body<Value: Decodable>(_ type: Value.Type, what: String) async throws(CMLError) -> Value {
        try WireCodec.decode(type, from: try await bodyBytes(limit: StoreAPI.maxRecordBytes), what: what)
    }

    func bodyBytes(limit: Int) async throws(CMLError) -> [UInt8] {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            throw CMLError.tooLarge(length, limit: limit)
        }
        do {
            let buffer = try await request.body.collect(upTo: limit)
            return Array(buffer.readableBytesView)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw CMLError.tooLarge(nil, limit: limit)
        } catch {
            throw CMLError("the request's body could not be read: \(error)", kind: .invalid)
        }
    }

    /// Runs `write` on the run the path names, once it exists (404, where the store would only fail on
    /// a missing row) and the token may write to its project; answers 204.
    func writeRun(_ write: @escaping @Sendable (any Store, String) throws(CMLError) -> Void) async throws(CMLError) -> Response {
        let id = try parameter("id"), store = store, access = access, runs = runs
        try await StoreCalls.run { () throws(CMLError) in
            try access.requireWrite(project: try RunReads.kept(id, store: store, runs: runs).project)
            try write(store, id)
        }
        return .done
    }
}

extension CMLError {
    static func tooLarge(_ length: Int?, limit: Int) -> CMLError {
        CMLError("the request's body\(length.map { " of \($0) bytes" } ?? "") is over the limit of \(limit) bytes",
                 hint: "send it in smaller parts", kind: .tooLarge)
    }
}

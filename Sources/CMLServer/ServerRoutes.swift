import CMLKit
import Foundation
import Hummingbird

/// One route: what `docs/http-api.md` documents under `### METHOD PATH`, and what the router serves.
public struct ServerRoute: Sendable {
    public let method: HTTPRequest.Method
    /// The path as documented, parameters in braces: `/api/v1/runs/{id}`.
    public let path: String
    /// The query parameters it takes; any other is refused.
    public let parameters: [String]
    /// The scope a token needs for it (see `TokenScope`); nil: no token is ever needed.
    public let scope: TokenScope?
    let handler: Handler

    enum Handler: Sendable {
        /// Answers once the request's token is checked.
        case checked(@Sendable (RouteRequest) async throws -> Response)
        /// Answers with the run the path's `{id}` names, read in the same store call as the token check
        /// (`RunReads.checkedRecord`): most reads of a run cost one lookup of its revision.
        case run(@Sendable (RunRecordCache.Entry) throws -> Response)
    }

    init(method: HTTPRequest.Method, path: String, parameters: [String], scope: TokenScope? = .read,
         handler: @escaping @Sendable (RouteRequest) async throws -> Response) {
        self.method = method
        self.path = path
        self.parameters = parameters
        self.scope = scope
        self.handler = .checked(handler)
    }

    init(method: HTTPRequest.Method, path: String, run handler: @escaping @Sendable (RunRecordCache.Entry) throws -> Response) {
        self.method = method
        self.path = path
        parameters = []
        scope = .read
        self.handler = .run(handler)
    }

    /// Hummingbird's spelling of the path: `{id}` becomes `:id`.
    var routerPath: String {
        path.split(separator: "/", omittingEmptySubsequences: false).map { part in
            part.hasPrefix("{") && part.hasSuffix("}") ? ":" + part.dropFirst().dropLast() : String(part)
        }.joined(separator: "/")
    }
}

/// The routes `buildApplication` serves, all of them: the router is built from this list, and a test
/// compares it with the routes `docs/http-api.md` documents.
public enum ServerRoutes {
    public static let all: [ServerRoute] = [
        ServerRoute(method: .get, path: "/healthz", parameters: [], scope: nil) { _ in
            Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"], body: ResponseBody(byteBuffer: ByteBuffer(string: "ok\n")))
        },
        ServerRoute(method: .get, path: "/api/v1/runs", parameters: ["where", "sort", "limit", "project", "status", "tag", "since"],
                    handler: RunRoutes.list),
        ServerRoute(method: .get, path: "/api/v1/runs/{id}", run: RunRoutes.show),
        ServerRoute(method: .get, path: "/api/v1/runs/{id}/metrics", parameters: ["key"], handler: RunRoutes.metrics),
        ServerRoute(method: .get, path: "/api/v1/runs/{id}/log", parameters: ["raw", "stream", "follow"], handler: RunRoutes.log),
        ServerRoute(method: .get, path: "/api/v1/runs/{id}/artifacts", parameters: [], handler: RunRoutes.artifacts),
        ServerRoute(method: .get, path: "/api/v1/projects", parameters: [], handler: RunRoutes.projects),
        ServerRoute(method: .get, path: "/api/v1/blobs/{sha256}", parameters: [], handler: BlobRoutes.get),
        ServerRoute(method: .head, path: "/api/v1/blobs/{sha256}", parameters: [], handler: BlobRoutes.head),
    ] + ChartRoutes.routes + StoreAPI.runRoutes + StoreAPI.queueRoutes + StoreAPI.datasetRoutes + StoreAPI.controllerRoutes
}

/// What a route's handler gets: the request, its decoded query, the store, and what its token may see.
struct RouteRequest: Sendable {
    let request: Request
    let context: BasicRequestContext
    let query: QueryParameters
    let store: any ServedStore
    let access: RequestAccess
    let runs: RunRecordCache

    /// A path parameter, percent-decoded (a run's name may hold spaces).
    func parameter(_ name: String) throws(CMLError) -> String {
        try context.parameter(name)
    }
}

extension BasicRequestContext {
    /// A path parameter, percent-decoded (a run's name may hold spaces).
    func parameter(_ name: String) throws(CMLError) -> String {
        // Ids and names are mostly plain: Foundation's decoding is asked only for what it would change.
        if let raw = parameters.get(name), !raw.utf8.contains(UInt8(ascii: "%")) { return raw }
        guard let raw = parameters.get(name), let value = raw.removingPercentEncoding else {
            throw CMLError.usage("the path's \(name) is not percent-encoded correctly")
        }
        return value
    }
}

enum Media {
    static let json = "application/json"
    static let jsonLines = "application/x-ndjson"
    static let text = "text/plain; charset=utf-8"
    static let bytes = "application/octet-stream"
}

extension Response {
    static func whole(_ text: String, type: String) -> Response {
        Response(status: .ok, headers: [.contentType: type], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }
}

import CMLKit
import Hummingbird

extension CMLError.Kind {
    /// The status a client gets for an error of this kind.
    var status: HTTPResponse.Status {
        switch self {
        case .notFound: .notFound
        case .ambiguous, .invalid: .badRequest
        case .conflict: .conflict
        case .busy, .unavailable: .serviceUnavailable
        case .refused: .forbidden
        case .unauthenticated: .unauthorized
        case .tooLarge: .contentTooLarge
        case .damaged, .failed: .internalServerError
        }
    }
}

extension CMLError {
    /// `{"error": message, "hint": …, "kind": …}` with the status of its kind.
    var response: Response { response(status: kind.status) }

    func response(status: HTTPResponse.Status, headers extra: HTTPFields = [:]) -> Response {
        var members: [(String, JSON)] = [("error", .string(message))]
        if let hint { members.append(("hint", .string(hint))) }
        members.append(("kind", .string(kind.rawValue)))
        var headers = extra
        headers[.contentType] = Media.json
        if kind == .busy { headers[.retryAfter] = "1" }
        if kind == .unauthenticated { headers[.wwwAuthenticate] = "Bearer realm=\"cml-serve\"" }
        return Response(status: status, headers: headers,
                        body: ResponseBody(byteBuffer: ByteBuffer(string: JSON.object(members).serialized + "\n")))
    }
}

/// Answers every failure before a response started as one JSON error: a `CMLError` with its kind's
/// status, a path no route has as `not_found` (a page saying so to a browser that asks for HTML
/// outside `/api/`: a mistyped address of the web UI; MLflow's `ENDPOINT_NOT_FOUND` under its paths). A failure while a body streams (a blob found
/// damaged at its end) can only close the connection, so the client never takes a short body for a whole one.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as CMLError {
            return error.response
        } catch let error as HTTPError where error.status == .notFound {
            let path = request.uri.path
            if MLflowError.isMLflowPath(path) { return MLflowError.endpointNotFound(request) }
            if !path.hasPrefix("/api/"), request.headers[values: .accept].contains(where: { $0.contains("text/html") }) {
                let page = WebLayout.errorPage(CMLError("there is no page \(path.prefix(200))", kind: .notFound), chrome: .none)
                return Response(status: .notFound, headers: WebRoutes.pageHeaders, body: ResponseBody(byteBuffer: ByteBuffer(string: page.description)))
            }
            return CMLError("no route \(request.method) \(path)", hint: "see docs/http-api.md", kind: .notFound).response
        }
    }
}

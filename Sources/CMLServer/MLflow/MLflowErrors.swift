import CMLKit
import Hummingbird

/// MLflow's error envelope, `{"error_code": …, "message": …}`, with the status its client expects. The
/// client retries 429 and 5xx answers seven times with backoff (minutes), so only an error that may pass
/// (a locked store) is answered 503; a missing run or a bad value is a 4xx it reports at once.
enum MLflowError {
    static func code(_ kind: CMLError.Kind) -> (code: String, status: HTTPResponse.Status) {
        switch kind {
        case .notFound: ("RESOURCE_DOES_NOT_EXIST", .notFound)
        case .ambiguous, .invalid: ("INVALID_PARAMETER_VALUE", .badRequest)
        case .conflict: ("RESOURCE_ALREADY_EXISTS", .badRequest)
        case .tooLarge: ("INVALID_PARAMETER_VALUE", .contentTooLarge)
        case .unauthenticated: ("UNAUTHENTICATED", .unauthorized)
        case .refused: ("PERMISSION_DENIED", .forbidden)
        case .busy, .unavailable: ("TEMPORARILY_UNAVAILABLE", .serviceUnavailable)
        case .damaged, .failed: ("INTERNAL_ERROR", .internalServerError)
        }
    }

    static func response(_ error: CMLError) -> Response {
        let (code, status) = code(error.kind)
        let message = error.hint.map { "\(error.message) (\($0))" } ?? error.message
        var headers: HTTPFields = [.contentType: Media.json]
        if error.kind == .unauthenticated { headers[.wwwAuthenticate] = "Bearer realm=\"cml-serve\"" }
        if error.kind == .busy { headers[.retryAfter] = "1" }
        let body = MLflowJSON.serialized(.object([("error_code", .string(code)), ("message", .string(message))]))
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }

    static func endpointNotFound(_ request: Request) -> Response {
        let body = MLflowJSON.serialized(.object([
            ("error_code", .string("ENDPOINT_NOT_FOUND")),
            ("message", .string("cml-serve has no MLflow endpoint \(request.method) \(request.uri.path.prefix(200))")),
        ]))
        return Response(status: .notFound, headers: [.contentType: Media.json], body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }

    /// A path MLflow's clients call: a miss there is answered in their envelope.
    static func isMLflowPath(_ path: String) -> Bool {
        path.hasPrefix("/api/2.0/mlflow/") || path.hasPrefix("/api/2.0/mlflow-artifacts/") || path.hasPrefix("/ajax-api/2.0/mlflow")
    }

    static func missing(_ name: String) -> CMLError {
        CMLError("Missing value for required parameter '\(name)'", kind: .invalid)
    }

    static func invalid(_ message: String) -> CMLError {
        CMLError(message, kind: .invalid)
    }
}

/// Answers what the MLflow routes throw in MLflow's envelope (cml's own `JSONErrorMiddleware` sits outside it).
struct MLflowErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as CMLError {
            return MLflowError.response(error)
        } catch let error as HTTPError where error.status == .notFound {
            return MLflowError.endpointNotFound(request)
        }
    }
}

import CMLKit
import Foundation
import Hummingbird

/// The call a ClearML request names: `tasks.create` at `/clearml/v2.23/tasks.create`.
struct ClearMLCall: Sendable {
    let endpoint: String
    /// `2.23` from `v2.23`; nil for `/clearml/auth.login`, which the SDK sends without one.
    let requestedVersion: String?
}

/// ClearML's answer: `{"meta": {id, trx, endpoint: {name, requested_version, actual_version},
/// result_code, result_subcode, result_msg, error_stack}, "data": {…}}`, with the HTTP status its
/// `result_code` says.
enum ClearMLEnvelope {
    /// The API version advertised (in the login token) and answered with: the SDK sends its calls as
    /// `/v2.23/…` from then on.
    static let apiVersion = "2.23"

    static func ok(_ data: JSON, call: ClearMLCall) -> Response {
        respond(status: .ok, subcode: 0, message: "OK", data: data, call: call)
    }

    /// `error` with the status of its kind, except that nothing permanent is ever 429, 502, 503 or 509:
    /// the SDK retries those hundreds of times (a full store is an error, not maintenance).
    static func error(_ error: CMLError, call: ClearMLCall) -> Response {
        var status = error.kind.status
        if [429, 502, 503, 509].contains(status.code) && error.kind != .busy { status = .internalServerError }
        var message = error.message
        if let hint = error.hint { message += " (\(hint))" }
        return respond(status: status, subcode: 0, message: message, data: .object([]), call: call)
    }

    private static func respond(status: HTTPResponse.Status, subcode: Int64, message: String, data: JSON, call: ClearMLCall) -> Response {
        let id = UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let meta = JSON.object([
            ("id", .string(id)), ("trx", .string(id)),
            ("endpoint", .object([("name", .string(call.endpoint)),
                                  ("requested_version", call.requestedVersion.map(JSON.string) ?? .string(apiVersion)),
                                  ("actual_version", .string(apiVersion))])),
            ("result_code", .int(Int64(status.code))), ("result_subcode", .int(subcode)),
            ("result_msg", .string(message)), ("error_stack", .string("")),
        ])
        var headers: HTTPFields = [.contentType: Media.json]
        if status == .serviceUnavailable { headers[.retryAfter] = "1" }
        let body = JSON.object([("meta", meta), ("data", data)]).serialized
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}

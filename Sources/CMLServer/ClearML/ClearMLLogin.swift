import CMLKit
import Foundation
import Hummingbird

/// ClearML's credentials on cml's tokens. The SDK logs in with `GET auth.login` and HTTP Basic
/// (access key : secret key), then sends the token the login answered as `Authorization: Bearer`.
/// The secret key is a cml token (`cml-serve token create`), with its scope and projects; the access
/// key is any name (the SDK insists on one). The login token is a JWT, because the SDK reads the API
/// version and its expiry from it (without checking a signature); it names a session of the server's
/// `WebSessions` that stands for the cml token, which is looked up afresh on every call, so a revoked
/// token stops working at once. A server restarted has no sessions: the SDK's next call gets 401, and
/// the SDK logs in again by itself. While the store has no tokens, any credentials will do (as a
/// request without a token on loopback, `Authorizer`).
struct ClearMLLogin: Sendable {
    let authorizer: Authorizer

    /// How long a login token lasts; the SDK logs in again before it runs out.
    static let lifetime = 7.0 * 86_400

    /// `auth.login`: a new token for the request's Basic credentials.
    func login(_ request: Request) async throws(CMLError) -> JSON {
        guard let header = request.headers[.authorization], header.lowercased().hasPrefix("basic "),
              let decoded = Data(base64Encoded: String(header.dropFirst(6)).trimmingCharacters(in: .whitespaces)),
              let pair = String(data: decoded, encoding: .utf8), let colon = pair.firstIndex(of: ":") else {
            throw CMLError("auth.login needs the access key and secret key as HTTP Basic credentials",
                           hint: "set CLEARML_API_ACCESS_KEY to any name and CLEARML_API_SECRET_KEY to a cml token", kind: .unauthenticated)
        }
        let secret = String(pair[pair.index(after: colon)...])
        let hash = TokenSecret.hash(secret)
        _ = try await access(request, needing: .read, tokenHash: hash)
        let session = authorizer.sessions.open(tokenHash: try await tokensConfigured() ? hash : nil)
        return .object([("token", .string(Self.token(session: session.id)))])
    }

    /// The access of a call that presents a login token.
    func access(_ request: Request, needing scope: TokenScope) async throws(CMLError) -> RequestAccess {
        guard let header = request.headers[.authorization], header.lowercased().hasPrefix("bearer "),
              let session = Self.sessionID(String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)),
              let found = authorizer.sessions.session(id: session) else {
            throw CMLError("not logged in, or the login expired", hint: "log in again with auth.login", kind: .unauthenticated)
        }
        return try await access(request, needing: scope, tokenHash: found.tokenHash)
    }

    private func access(_ request: Request, needing scope: TokenScope, tokenHash: String?) async throws(CMLError) -> RequestAccess {
        let tokens = authorizer.tokens
        let lookup = try await StoreCalls.run { () throws(CMLError) in
            // A token-less store answers any credentials, as it answers requests without a token.
            try tokens.hasTokens() ? try tokens.lookUp(tokenHash.map(PresentedToken.hash) ?? .none) : TokenLookup(configured: false, token: nil)
        }
        let presented: PresentedToken = lookup.configured ? tokenHash.map(PresentedToken.hash) ?? .none : .none
        return try authorizer.access(request, needing: scope, presented: presented, lookup: lookup)
    }

    private func tokensConfigured() async throws(CMLError) -> Bool {
        let tokens = authorizer.tokens
        return try await StoreCalls.run { () throws(CMLError) in try tokens.hasTokens() }
    }

    /// A JWT the SDK can read: the API version it is to use, when it expires, and the session it stands
    /// for. Its signature is random bytes: the server trusts only its session table, never the token's
    /// claims.
    static func token(session: String) -> String {
        let now = Int64(Clock.now())
        let header = JSON.object([("alg", .string("HS256")), ("typ", .string("JWT"))])
        let claims = JSON.object([
            ("session", .string(session)), ("api_version", .string(ClearMLEnvelope.apiVersion)),
            ("server_version", .string("cml")), ("feature_set", .string("basic")),
            ("iat", .int(now)), ("exp", .int(now + Int64(lifetime))),
        ])
        var signature = [UInt8](repeating: 0, count: 32)
        for index in signature.indices { signature[index] = UInt8.random(in: 0...255) }
        return [base64URL(Array(header.serialized.utf8)), base64URL(Array(claims.serialized.utf8)), base64URL(signature)].joined(separator: ".")
    }

    /// The session a login token names; nil for anything else.
    static func sessionID(_ token: String) -> String? {
        let parts = token.split(separator: ".")
        guard parts.count == 3 else { return nil }
        var payload = parts[1].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        payload += String(repeating: "=", count: (4 - payload.count % 4) % 4)
        guard let data = Data(base64Encoded: payload), let text = String(data: data, encoding: .utf8),
              let claims = try? JSON.parse(text) else { return nil }
        return claims["session"]?.stringValue
    }

    private static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

import CMLKit
import Glibc
import Hummingbird

/// What a request may see and do: every project, or only those its token is bound to, with its scope.
struct RequestAccess: Sendable {
    /// nil: every project.
    let projects: [String]?
    /// What its token allows; a store without tokens allows everything.
    let scope: TokenScope
    /// The token's name, shown by the web UI beside "Log out"; nil without a token.
    let tokenName: String?

    static let everything = RequestAccess(projects: nil, scope: .admin, tokenName: nil)

    func sees(project: String) -> Bool { projects?.contains(project) ?? true }
}

/// Checks each request's credentials against the store's tokens, looked up afresh for every request
/// (one indexed read): a token created or revoked with `cml-serve token` counts from the next request,
/// with no cache to invalidate. The credentials are the `Authorization: Bearer TOKEN` header, or, for
/// a browser, the web UI's session cookie (`WebSessions`), which stands for the token it logged in with
/// on `GET` and `HEAD` requests, and on the web pages' own `POST`s, which check a CSRF field besides
/// (`cookieWrites`); the store API's writes never take a cookie. While the store has never had a
/// token, requests without one see everything (the server then listens on loopback, or was told
/// `--insecure`); once it has one, every request needs one, even after all are revoked.
///
/// Without a token, a request must name this server by an address (`127.0.0.1:8080`, `[::1]:8080`) or
/// `localhost` in its `Host`, unless the server was told `--insecure`: a page of another site whose
/// name it points at 127.0.0.1 (DNS rebinding) would otherwise be same-origin with the store, read it
/// and post forms with its CSRF token. Its browser sends that site's name as `Host`.
struct Authorizer: Sendable {
    let tokens: any TokenStore
    let sessions: WebSessions
    /// `--insecure`: answers without a token whatever `Host` a request names.
    var tokenlessFromAnyHost = false

    /// The access of a request to a route that needs `scope` (nil: open to all, as `/healthz`).
    func access(_ request: Request, needing scope: TokenScope?, cookieWrites: Bool = false) async throws(CMLError) -> RequestAccess {
        guard let scope else { return .everything }
        let presented = try presented(request, cookieWrites: cookieWrites)
        let tokens = tokens
        let lookup = try await StoreCalls.run { () throws(CMLError) in try tokens.lookUp(presented) }
        return try access(request, needing: scope, presented: presented, lookup: lookup)
    }

    /// The token a request presents, read from its headers: the store is asked about it in the same
    /// store call as what the request reads, where a route can (`ServedStore.readRun`).
    func presented(_ request: Request, cookieWrites: Bool = false) throws(CMLError) -> PresentedToken {
        if let header = request.headers[.authorization] {
            // The scheme is case-insensitive (RFC 9110 §11.1); the token is never echoed back or logged.
            let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else {
                throw CMLError("the Authorization header is not 'Bearer TOKEN'", hint: "send Authorization: Bearer cml_…", kind: .unauthenticated)
            }
            return .hash(TokenSecret.hash(parts[1].trimmingCharacters(in: .whitespaces)))
        }
        if request.method == .get || request.method == .head || cookieWrites, let session = sessions.session(for: request),
           let hash = session.tokenHash {
            return .hash(hash)
        }
        return .none
    }

    /// The access of a request to a route that needs `scope`, once the store has said what it knows of
    /// the token the request presented.
    func access(_ request: Request, needing scope: TokenScope, presented: PresentedToken, lookup: TokenLookup) throws(CMLError) -> RequestAccess {
        guard case .hash = presented else {
            guard !lookup.configured else {
                throw CMLError("this server needs a token", hint: "send Authorization: Bearer TOKEN; cml-serve token create makes one", kind: .unauthenticated)
            }
            if !tokenlessFromAnyHost, let host = request.head.authority, !Self.namesAnAddress(host) {
                throw CMLError("this server has no token and answers only requests for it by address or localhost, not \(host.prefix(100))",
                               hint: "use http://127.0.0.1:PORT; a page that reaches it by another name may be a DNS-rebinding attack. "
                                   + "To serve by name, create a token (cml-serve token create)", kind: .refused)
            }
            return .everything
        }
        guard let token = lookup.token else { throw CMLError("the token is not known to this server", kind: .unauthenticated) }
        guard token.revokedAt == nil else { throw CMLError("the token was revoked", kind: .unauthenticated) }
        guard token.scope.allows(scope) else {
            throw CMLError("the token's scope \(token.scope.rawValue) does not allow \(request.method) \(request.uri.path)",
                           hint: "it needs scope \(scope.rawValue) or above", kind: .refused)
        }
        return RequestAccess(projects: token.projects.isEmpty ? nil : token.projects, scope: token.scope, tokenName: token.name)
    }
}

extension Authorizer {
    /// `host[:port]` names an IPv4 or bracketed IPv6 address, or `localhost` (or a name under it, which
    /// resolves to loopback only, RFC 6761): no one else's DNS decides where it points.
    static func namesAnAddress(_ authority: String) -> Bool {
        var host = Substring(authority)
        if host.hasPrefix("[") {
            guard let end = host.firstIndex(of: "]") else { return false }
            var address = in6_addr()
            return inet_pton(AF_INET6, String(host[host.index(after: host.startIndex)..<end]), &address) == 1
        }
        if let colon = host.lastIndex(of: ":") { host = host[..<colon] }
        let name = host.lowercased()
        if name == "localhost" || name.hasSuffix(".localhost") { return true }
        var address = in_addr()
        return inet_pton(AF_INET, name, &address) == 1
    }
}

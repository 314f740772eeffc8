import CMLKit
import Foundation
import Hummingbird

/// Logging in with a token (`cml-serve token create`), and out. Once the store has a token, every page
/// asks for one; the token is checked as the API checks it, and the browser keeps only a session id
/// (`WebSessions`).
enum LoginPage {
    static func show(_ web: WebRequest) async throws -> Response {
        guard try await hasTokens(web) else { return WebRoutes.redirect(to: Href()) }
        return web.page(render(next: web.query.string("next"), error: nil, chrome: web.chrome))
    }

    static func logIn(_ web: WebRequest) async throws -> Response {
        let next = localPath(web.query.string("next"))
        guard try await hasTokens(web), let session = web.session else { return redirect(to: next, setCookie: nil) }
        let secret = (web.query.string("token") ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        let tokens = web.store, hash = TokenSecret.hash(secret)
        let token = secret.isEmpty ? nil : try await StoreCalls.run { () throws(CMLError) in try tokens.token(hash: hash) }
        let problem: String? = switch token {
        case nil: secret.isEmpty ? "Enter a token." : "This server does not know that token."
        case let token? where token.revokedAt != nil: "That token was revoked."
        default: nil
        }
        if let problem { return web.page(render(next: next, error: problem, chrome: web.chrome), status: .unauthorized) }
        let opened = web.sessions.open(tokenHash: hash, replacing: session)
        return redirect(to: next, setCookie: WebSessions.setCookie(opened, secure: web.secure))
    }

    static func logOut(_ web: WebRequest) async throws -> Response {
        if let session = web.session { web.sessions.close(session) }
        return redirect(to: try await hasTokens(web) ? "/login" : "/", setCookie: WebSessions.clearCookie(secure: web.secure))
    }

    static func render(next: String?, error: String?, chrome: WebLayout.Chrome) -> HTML {
        let message: HTML = error.map { (text: String) -> HTML in "<div class=\"notice error\" role=\"alert\">\(text)</div>" } ?? .empty
        return WebLayout.page(title: "Log in", section: nil, chrome: chrome, main: """
            <div class="login">
            <h1>Log in</h1>
            <p>This server asks for a token. <code>cml-serve token create --name NAME --scope read</code> on its store makes one.</p>
            \(message)
            <form method="post" action="/login">
            <input type="hidden" name="csrf" value="\(chrome.csrf)"><input type="hidden" name="next" value="\(localPath(next))">
            <div class="field"><label for="token">Token</label><input type="password" id="token" name="token" autocomplete="current-password" required autofocus></div>
            <div class="actions"><button type="submit" class="primary">Log in</button></div>
            </form>
            </div>
            """)
    }

    /// Where to go after logging in: a path on this server, never another site (`//evil.example`).
    static func localPath(_ next: String?) -> String {
        guard let next, next.hasPrefix("/"), !next.hasPrefix("//"), !next.contains("\\"),
              !next.unicodeScalars.contains(where: { $0.value < 0x21 }) else { return "/" }
        return next
    }

    private static func redirect(to path: String, setCookie: String?) -> Response {
        var headers: HTTPFields = [.location: localPath(path), .cacheControl: "no-store"]
        if let setCookie { headers[.setCookie] = setCookie }
        return Response(status: .seeOther, headers: headers)
    }

    private static func hasTokens(_ web: WebRequest) async throws(CMLError) -> Bool {
        let tokens = web.store
        return try await StoreCalls.run { () throws(CMLError) in try tokens.hasTokens() }
    }
}

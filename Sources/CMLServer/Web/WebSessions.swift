import CMLKit
import Foundation
import Hummingbird

/// A browser's session with the web UI, kept in the server's memory and named by a random id in the
/// `cml_session` cookie (HttpOnly, SameSite=Strict; Secure over https). The cookie holds no token: a
/// logged-in session keeps the sha256 of the token it was opened with, looked up in the store on every
/// request as a token sent in a header is, so revoking the token ends the session at once; logging out
/// forgets it on the server. A server restart forgets every session (people log in again).
struct WebSession: Sendable {
    let id: String
    /// The sha256 of the token it logged in with; nil: not logged in (a store without tokens needs none).
    let tokenHash: String?
    /// What each of its forms carries back, compared in constant time (`WebSessions.checkCSRF`).
    let csrf: String
    /// A one-time message for the next page it shows ("2 runs tagged").
    var notice: String?
}

/// Every open session, each forgotten after `idleLimit` seconds unused. Sessions not logged in (the
/// login form's, and everyone's on a store without tokens) are opened by any request without a cookie,
/// a page of another site's included: at most `capacity` of them are kept, the oldest opened going
/// first, in constant time. Logged-in sessions need a token to open, so no flood of requests without
/// one can push them out: there are at most `capacity` of those too, the least recently used going first.
final class WebSessions: @unchecked Sendable {  // every access holds `lock`
    static let cookieName = "cml_session"
    let capacity: Int
    let idleLimit: Double
    private let lock = NSLock()
    private var sessions: [String: (session: WebSession, used: Double)] = [:]
    private var loggedInCount = 0
    /// The ids of sessions opened not logged in, oldest first from `anonymousStart`; some may be gone.
    private var anonymousOrder: [String] = []
    private var anonymousStart = 0
    private var anonymousCount = 0

    init(capacity: Int = 10_000, idleLimit: Double = 7 * 86_400) {
        self.capacity = capacity
        self.idleLimit = idleLimit
    }

    /// The session the request's cookie names, when the server still has it.
    func session(for request: Request) -> WebSession? {
        Self.cookie(Self.cookieName, in: request.headers[values: .cookie]).flatMap(session(id:))
    }

    /// Session `id`, marked used now, when the server still has it.
    func session(id: String) -> WebSession? {
        let now = Clock.now()
        return lock.withLock {
            guard let entry = sessions[id] else { return nil }
            guard now - entry.used < idleLimit else {
                remove(id)
                return nil
            }
            sessions[id]?.used = now
            return entry.session
        }
    }

    /// A new session (logged in with `tokenHash`, or not), replacing `replacing`: logging in always
    /// makes a new id, so an id someone planted before cannot be logged in for them.
    func open(tokenHash: String?, replacing old: WebSession? = nil) -> WebSession {
        let session = WebSession(id: Self.randomHex(), tokenHash: tokenHash, csrf: Self.randomHex(), notice: nil)
        let now = Clock.now()
        lock.withLock {
            if let old { remove(old.id) }
            if tokenHash == nil {
                while anonymousCount >= capacity, anonymousStart < anonymousOrder.count {
                    let oldest = anonymousOrder[anonymousStart]
                    anonymousStart += 1
                    if sessions[oldest]?.session.tokenHash == nil { remove(oldest) }
                }
                if anonymousStart > 1024 && anonymousStart * 2 > anonymousOrder.count {
                    anonymousOrder.removeFirst(anonymousStart)
                    anonymousStart = 0
                }
                anonymousOrder.append(session.id)
                anonymousCount += 1
            } else {
                if loggedInCount >= capacity,
                   let oldest = sessions.filter({ $0.value.session.tokenHash != nil }).min(by: { $0.value.used < $1.value.used })?.key {
                    // Rare (ten thousand people logged in): the cost of finding the oldest is paid then only.
                    remove(oldest)
                }
                loggedInCount += 1
            }
            sessions[session.id] = (session, now)
        }
        return session
    }

    /// Forgets session `id`, if it is there; the caller holds `lock`.
    private func remove(_ id: String) {
        guard let entry = sessions.removeValue(forKey: id) else { return }
        if entry.session.tokenHash == nil { anonymousCount -= 1 } else { loggedInCount -= 1 }
    }

    func close(_ session: WebSession) {
        lock.withLock { remove(session.id) }
    }

    /// Leaves a message for the session's next page.
    func leave(_ notice: String, for session: WebSession) {
        lock.withLock { sessions[session.id]?.session.notice = notice }
    }

    /// The message left for the session, once.
    func takeNotice(_ session: WebSession) -> String? {
        lock.withLock {
            let notice = sessions[session.id]?.session.notice
            sessions[session.id]?.session.notice = nil
            return notice
        }
    }

    /// The `Set-Cookie` value that gives the browser `session`: sent back only to this server, on
    /// same-site requests, never readable by scripts.
    static func setCookie(_ session: WebSession, secure: Bool) -> String {
        "\(cookieName)=\(session.id); Path=/; HttpOnly; SameSite=Strict\(secure ? "; Secure" : "")"
    }

    static func clearCookie(secure: Bool) -> String {
        "\(cookieName)=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict\(secure ? "; Secure" : "")"
    }

    /// Whether a form's CSRF field is the session's, compared in constant time.
    static func checkCSRF(_ presented: String?, session: WebSession) -> Bool {
        guard let presented else { return false }
        return constantTimeEqual(Array(presented.utf8), Array(session.csrf.utf8))
    }

    /// Equal bytes, in a time that depends only on the lengths: how far two values agree never shows.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }

    /// A cookie's value from `Cookie` headers (`a=1; cml_session=…`).
    static func cookie(_ name: String, in headers: [String]) -> String? {
        for header in headers {
            for pair in header.split(separator: ";") {
                let trimmed = pair.trimmingCharacters(in: .whitespaces)
                if trimmed.hasPrefix(name + "=") { return String(trimmed.dropFirst(name.count + 1)) }
            }
        }
        return nil
    }

    /// 32 random bytes from the system's generator (getrandom on Linux), in hex.
    static func randomHex() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }
}

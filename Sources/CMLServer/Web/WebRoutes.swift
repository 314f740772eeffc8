import CMLKit
import Foundation
import Hummingbird

/// One route of the web UI, beside `ServerRoute`: documented in docs/http-api.md ("Web pages") and
/// checked against it by the same test.
struct WebRoute: Sendable {
    enum Kind: Sendable {
        /// A page: text/html, errors as a page, a login asked for when one is needed.
        case page
        /// Data for the pages' script: errors as JSON.
        case data
        /// A file of `StaticAssets`: no session, no token.
        case asset
    }

    let method: HTTPRequest.Method
    let path: String
    /// Query parameters of a GET, form fields of a POST (besides `csrf`, which every POST carries).
    let parameters: [String]
    /// The scope a token needs; nil: none (the login page, static files).
    let scope: TokenScope?
    let kind: Kind
    let handler: @Sendable (WebRequest) async throws -> Response

    init(_ method: HTTPRequest.Method, _ path: String, parameters: [String] = [], scope: TokenScope? = .read, kind: Kind = .page,
         handler: @escaping @Sendable (WebRequest) async throws -> Response) {
        self.method = method
        self.path = path
        self.parameters = parameters
        self.scope = scope
        self.kind = kind
        self.handler = handler
    }

    var serverRoute: ServerRoute {
        ServerRoute(method: method, path: path, parameters: parameters, scope: scope) { _ in Response(status: .notFound) }
    }
}

/// The web UI's routes, all of them: `buildApplication` serves them beside `ServerRoutes.all`. A page
/// of a later stage is one more entry here, a function `(WebRequest) -> Response` that renders with
/// `WebLayout.page`, and, when it is a section, a path in `WebLayout.Section`.
enum WebRoutes {
    static let all: [WebRoute] = [
        WebRoute(.get, "/", parameters: RunsView.parameters, handler: RunsPage.handle),
        WebRoute(.get, "/runs", parameters: RunsView.parameters, handler: RunsPage.handle),
        WebRoute(.get, "/runs/live", parameters: ["id", "column"], kind: .data, handler: RunsPage.live),
        WebRoute(.post, "/runs/actions", parameters: RunActions.fields, handler: RunActions.handle),
        WebRoute(.get, "/runs/{id}", parameters: RunPage.routeParameters, handler: RunPage.handle),
        WebRoute(.get, "/runs/{id}/console", parameters: ["from"], kind: .data, handler: RunPageSections.tail),
        WebRoute(.get, "/runs/{id}/images/{sha256}", kind: .data, handler: RunPageSections.image),
        WebRoute(.get, "/compare", parameters: ComparePage.parameters, handler: ComparePage.handle),
        WebRoute(.get, "/datasets", handler: DatasetPages.list),
        WebRoute(.get, "/datasets/{name}", handler: DatasetPages.dataset),
        WebRoute(.get, "/datasets/{name}/diff", parameters: ["from", "to"], handler: DatasetPages.diff),
        WebRoute(.get, "/datasets/{name}/{version}", parameters: ["page"], handler: DatasetPages.version),
        WebRoute(.get, "/queues", handler: QueuePages.handle),
        WebRoute(.get, "/queues/live", kind: .data, handler: QueuePages.live),
        WebRoute(.post, "/queues/actions", parameters: QueueActions.fields, handler: QueueActions.handle),
        WebRoute(.get, "/login", parameters: ["next"], scope: nil, handler: LoginPage.show),
        WebRoute(.post, "/login", parameters: ["token", "next"], scope: nil, handler: LoginPage.logIn),
        WebRoute(.post, "/logout", scope: nil, handler: LoginPage.logOut),
        WebRoute(.get, "/static/{file}", scope: nil, kind: .asset) { web in try StaticAssets.serve(try web.parameter("file")) },
    ]

    /// What every page answer carries: text/html in UTF-8; a Content-Security-Policy under which only
    /// this server's own scripts and styles run (an injected `<script>` or `onerror=` is inert even if
    /// escaping ever failed), no framing, no caching (pages hold CSRF tokens and private data), and no
    /// referrer beyond this server (a filter in a URL stays here).
    static let pageHeaders: HTTPFields = [
        .contentType: "text/html; charset=utf-8",
        .contentSecurityPolicy: "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        .xContentTypeOptions: "nosniff",
        .referrerPolicy: "same-origin",
        .xFrameOptions: "DENY",
        .cacheControl: "no-store",
    ]

    /// Registers every route on `router`: the session found or opened, the credentials checked as for
    /// the API (`Authorizer`, which takes the session's cookie), a POST's origin and CSRF field checked,
    /// and a page's errors shown as a page.
    static func register(on router: Router<BasicRequestContext>, store: any ServedStore, runs: RunRecordCache, authorizer: Authorizer,
                         secure: Bool) {
        for route in all {
            router.on(RouterPath(route.serverRoute.routerPath), method: route.method) { request, context in
                try await respond(route, request: request, context: context, store: store, runs: runs, authorizer: authorizer, secure: secure)
            }
        }
    }

    private static func respond(_ route: WebRoute, request: Request, context: BasicRequestContext, store: any ServedStore, runs: RunRecordCache,
                                authorizer: Authorizer, secure: Bool) async throws -> Response {
        if route.kind == .asset {
            let query = try QueryParameters(request.uri.query, route: route.serverRoute)
            return try await route.handler(WebRequest(request: request, context: context, query: query, store: store, runs: runs, access: .everything,
                                                      session: nil, sessions: authorizer.sessions, secure: secure))
        }
        var session = authorizer.sessions.session(for: request)
        var setCookie: String?
        if session == nil && route.kind == .page {
            session = authorizer.sessions.open(tokenHash: nil)
            setCookie = WebSessions.setCookie(session!, secure: secure)
        }
        var chrome = WebLayout.Chrome(csrf: session?.csrf ?? "", tokenName: nil, loggedIn: session?.tokenHash != nil, notice: nil)
        do {
            var query: QueryParameters
            if route.method == .post {
                let form = try await formBody(request, route: route)
                try checkPost(request, form: form, session: session)
                query = form
            } else {
                query = try QueryParameters(request.uri.query, route: route.serverRoute)
            }
            var access = RequestAccess.everything
            if let scope = route.scope {
                let checked: Result<RequestAccess, CMLError>
                do { checked = .success(try await authorizer.access(request, needing: scope, cookieWrites: route.method == .post)) } catch {
                    checked = .failure(error)
                }
                if case .failure(let error) = checked, error.kind == .unauthenticated, route.kind == .page, route.method == .get {
                    // A page asks for a login, and comes back once logged in.
                    return redirect(to: Href("login", query: [("next", request.uri.description)]), setCookie: setCookie)
                }
                access = try checked.get()
            }
            chrome.tokenName = access.tokenName
            if let session { chrome.notice = authorizer.sessions.takeNotice(session) }
            var response = try await route.handler(WebRequest(request: request, context: context, query: query, store: store, runs: runs, access: access,
                                                              session: session, sessions: authorizer.sessions, secure: secure, chrome: chrome))
            if let setCookie, !response.headers.contains(.setCookie) { response.headers[.setCookie] = setCookie }
            return response
        } catch let error as CMLError where route.kind == .page {
            var response = Response(status: error.kind.status, headers: pageHeaders,
                                    body: ResponseBody(byteBuffer: ByteBuffer(string: WebLayout.errorPage(error, chrome: chrome).description)))
            if let setCookie { response.headers[.setCookie] = setCookie }
            return response
        }
    }

    /// A POST's form (`application/x-www-form-urlencoded`, at most 1 MiB), its fields those of the route
    /// and `csrf`.
    private static func formBody(_ request: Request, route: WebRoute) async throws(CMLError) -> QueryParameters {
        let type = request.headers[.contentType] ?? ""
        guard type.lowercased().hasPrefix("application/x-www-form-urlencoded") else {
            throw CMLError.usage("a form is sent as application/x-www-form-urlencoded, not \(type.isEmpty ? "nothing" : type)")
        }
        let buffer: ByteBuffer
        do { buffer = try await request.body.collect(upTo: 1 << 20) } catch {
            throw CMLError("the form is over 1 MiB", kind: .tooLarge)
        }
        return try QueryParameters(String(buffer: buffer), parameters: route.parameters + ["csrf"],
                                   describing: "\(route.method) \(route.path)")
    }

    /// A page's POST must come from this server's own pages: the browser's `Origin` (and
    /// `Sec-Fetch-Site`), when it sends them, name this server, and the form carries the session's
    /// CSRF token, which a page of another site cannot read.
    static func checkPost(_ request: Request, form: QueryParameters, session: WebSession?) throws(CMLError) {
        if let origin = request.headers[.origin] {
            let host = request.head.authority ?? ""
            guard origin == "http://" + host || origin == "https://" + host else {
                throw CMLError("a form from \(origin.prefix(100)) may not post to this server", kind: .refused)
            }
        }
        if let site = request.headers[.secFetchSite], site != "same-origin", site != "none" {
            throw CMLError("a form from another site (\(site.prefix(20))) may not post to this server", kind: .refused)
        }
        guard let session else {
            throw CMLError("the form has no session (cookies off, or the server restarted)", hint: "reload the page and send it again", kind: .refused)
        }
        guard WebSessions.checkCSRF(form.string("csrf"), session: session) else {
            throw CMLError("the form's CSRF token is missing or not this session's", hint: "reload the page and send it again", kind: .refused)
        }
    }

    static func redirect(to href: Href, setCookie: String? = nil) -> Response {
        var headers: HTTPFields = [.location: href.description, .cacheControl: "no-store"]
        if let setCookie { headers[.setCookie] = setCookie }
        return Response(status: .seeOther, headers: headers)
    }
}

/// What a web route's handler gets: the request, its query (a GET's) or form (a POST's), the store,
/// what its credentials allow, its session, and the layout's chrome.
struct WebRequest: Sendable {
    let request: Request
    let context: BasicRequestContext
    let query: QueryParameters
    let store: any ServedStore
    let runs: RunRecordCache
    let access: RequestAccess
    /// nil only for static files.
    let session: WebSession?
    let sessions: WebSessions
    /// Served over https: cookies are `Secure`.
    let secure: Bool
    var chrome: WebLayout.Chrome = .none

    func parameter(_ name: String) throws(CMLError) -> String {
        guard let raw = context.parameters.get(name), let value = raw.removingPercentEncoding else {
            throw CMLError.usage("the path's \(name) is not percent-encoded correctly")
        }
        return value
    }

    var reads: RunReads { RunReads(store: store, access: access, runs: runs) }

    /// A page: `html` with the page headers.
    func page(_ html: HTML, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: WebRoutes.pageHeaders, body: ResponseBody(byteBuffer: ByteBuffer(string: html.description)))
    }

    /// Refuses a write without scope `write`, as the API does.
    func requireWriteScope() throws(CMLError) {
        guard access.scope.allows(.write) else {
            throw CMLError("the token's scope \(access.scope.rawValue) does not allow changing runs", hint: "it needs scope write or above", kind: .refused)
        }
    }
}

import CMLKit
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import Glibc
import NIOCore

/// What `buildApplication` needs besides the store.
public struct ServerConfiguration: Sendable {
    public var listen: ListenAddress
    /// https with this certificate; nil: plain HTTP.
    public var tls: ServerTLS?
    /// How long a connection may stay silent while the server waits for a request, or for the rest of
    /// one (its head or its body), before the server closes it. A response in progress is never cut:
    /// a followed log of a quiet run may write nothing for hours.
    public var idleTimeout: Duration
    /// Called once the server accepts connections, with the address it listens on (port 0 resolved).
    public var whenListening: @Sendable (ListenAddress) async -> Void
    public var logLevel: Logger.Level
    /// `--insecure`: requests without a token are answered whatever host they name (`Authorizer`).
    public var tokenlessFromAnyHost = false

    public init(listen: ListenAddress = ListenAddress(host: "127.0.0.1", port: 8080),
                tls: ServerTLS? = nil,
                idleTimeout: Duration = .seconds(60),
                logLevel: Logger.Level = .warning,
                whenListening: @escaping @Sendable (ListenAddress) async -> Void = { _ in }) {
        self.listen = listen
        self.tls = tls
        self.idleTimeout = idleTimeout
        self.logLevel = logLevel
        self.whenListening = whenListening
    }

    /// `https` with TLS, else `http`.
    public var scheme: String { tls == nil ? "http" : "https" }
}

/// The HTTP server of a store: every route of `ServerRoutes.all`, each behind its token check
/// (`Authorizer`), errors as JSON, and the web UI's pages (`WebRoutes.all`). The executable and the
/// tests build the same application with it.
public func buildApplication(store: any ServedStore, configuration: ServerConfiguration) -> some ApplicationProtocol {
    let router = Router()
    router.add(middleware: GzipMiddleware())
    router.add(middleware: JSONErrorMiddleware())
    let authorizer = Authorizer(tokens: store, sessions: WebSessions(), tokenlessFromAnyHost: configuration.tokenlessFromAnyHost)
    let runs = RunRecordCache()
    WebRoutes.register(on: router, store: store, runs: runs, authorizer: authorizer, secure: configuration.tls != nil)
    ClearMLRoutes.register(on: router, store: store, authorizer: authorizer)
    for route in ServerRoutes.all {
        router.on(RouterPath(route.routerPath), method: route.method) { request, context in
            switch route.handler {
            case .checked(let handler):
                let access = try await authorizer.access(request, needing: route.scope)
                let query = try QueryParameters(request.uri.query, route: route)
                return try await handler(RouteRequest(request: request, context: context, query: query, store: store, access: access, runs: runs))
            case .run(let handler):
                let reads = RunReads(store: store, runs: runs)
                return try handler(try await reads.checkedRecord(try context.parameter("id"), request: request, needing: route.scope ?? .read,
                                                                 authorizer: authorizer) { () throws(CMLError) in
                    _ = try QueryParameters(request.uri.query, route: route)
                })
            }
        }
    }
    MLflowRoutes.register(on: router, store: store, runs: runs, authorizer: authorizer)
    var logger = Logger(label: "cml-serve")
    logger.logLevel = configuration.logLevel
    let listen = configuration.listen
    return Application(
        router: router,
        server: httpServer(configuration),
        configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: "cml-serve"),
        onServerRunning: { channel in
            let port = channel.localAddress?.port ?? listen.port
            await configuration.whenListening(ListenAddress(host: listen.host, port: port))
        },
        logger: logger
    )
}

/// HTTP/1.1 with the idle timeout, over TLS when configured.
private func httpServer(_ configuration: ServerConfiguration) -> HTTPServerBuilder {
    let http1 = HTTP1Channel.Configuration(idleTimeout: TimeAmount(configuration.idleTimeout))
    guard let tls = configuration.tls else { return .http1(configuration: http1) }
    return HTTPServerBuilder { responder in
        // The configuration was checked by `ServerTLS`, so making its context again does not fail.
        PlainHTTPRefusingChannel(base: try TLSChannel(HTTP1Channel(responder: responder, configuration: http1),
                                                      tlsConfiguration: tls.configuration))
    }
}

/// Runs the application until SIGTERM or SIGINT, which let the requests in progress finish. A failure
/// to listen is one line naming the address (SwiftNIO's own names the system call).
public func serve(_ application: some ApplicationProtocol, configuration: ServerConfiguration) async throws(CMLError) {
    let url = configuration.listen.url(scheme: configuration.scheme)
    do {
        try await application.runService()
    } catch let error as IOError {
        throw CMLError("cannot listen on \(url): \(String(cString: strerror(error.errnoCode)))",
                       hint: error.errnoCode == EADDRINUSE ? "another server listens there: pick another --listen" : nil)
    } catch {
        throw CMLError("cannot serve on \(url): \(error)")
    }
}

import CMLKit
import Hummingbird
import Logging
import Glibc
import NIOCore

/// What `buildApplication` needs besides the store.
public struct ServerConfiguration: Sendable {
    public var listen: ListenAddress
    /// Called once the server accepts connections, with the address it listens on (port 0 resolved).
    public var whenListening: @Sendable (ListenAddress) async -> Void
    public var logLevel: Logger.Level

    public init(listen: ListenAddress = ListenAddress(host: "127.0.0.1", port: 8080),
                logLevel: Logger.Level = .warning,
                whenListening: @escaping @Sendable (ListenAddress) async -> Void = { _ in }) {
        self.listen = listen
        self.logLevel = logLevel
        self.whenListening = whenListening
    }
}

/// The HTTP server of a store: every route of `ServerRoutes.all`, each behind its token check
/// (`Authorizer`), errors as JSON. The executable and the tests build the same application with it.
public func buildApplication(store: any Store & TokenStore, configuration: ServerConfiguration) -> some ApplicationProtocol {
    let router = Router()
    router.add(middleware: JSONErrorMiddleware())
    let authorizer = Authorizer(tokens: store)
    for route in ServerRoutes.all {
        router.on(RouterPath(route.routerPath), method: route.method) { request, context in
            let access = try await authorizer.access(request, needing: route.scope)
            let query = try QueryParameters(request.uri.query, route: route)
            return try await route.handler(RouteRequest(request: request, context: context, query: query, store: store, access: access))
        }
    }
    var logger = Logger(label: "cml-serve")
    logger.logLevel = configuration.logLevel
    let listen = configuration.listen
    return Application(
        router: router,
        configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: "cml-serve"),
        onServerRunning: { channel in
            let port = channel.localAddress?.port ?? listen.port
            await configuration.whenListening(ListenAddress(host: listen.host, port: port))
        },
        logger: logger
    )
}

/// Runs the application until SIGTERM or SIGINT, which let the requests in progress finish. A failure
/// to listen is one line naming the address (SwiftNIO's own names the system call).
public func serve(_ application: some ApplicationProtocol, on address: ListenAddress) async throws(CMLError) {
    do {
        try await application.runService()
    } catch let error as IOError {
        throw CMLError("cannot listen on \(address.url): \(String(cString: strerror(error.errnoCode)))",
                       hint: error.errnoCode == EADDRINUSE ? "another server listens there: pick another --listen" : nil)
    } catch {
        throw CMLError("cannot serve on \(address.url): \(error)")
    }
}

import CMLKit
import Hummingbird

/// The routes ClearML's SDK talks to, beside cml's own: its API at `/clearml` (set `CLEARML_API_HOST`
/// to `http://HOST:PORT/clearml`) and its file server at `/clearml-files` (`CLEARML_FILES_HOST`).
/// Every call lands on the same store as cml's own routes: a task is a run, a project a project.
enum ClearMLRoutes {
    /// One documented route (docs/http-api.md, "ClearML API"), checked against the doc by the test that
    /// checks `ServerRoutes.all`.
    struct Route: Sendable {
        let method: HTTPRequest.Method
        let path: String

        var serverRoute: ServerRoute {
            ServerRoute(method: method, path: path, parameters: [], scope: nil) { _ in Response(status: .notFound) }
        }
    }

    static let all: [Route] = [
        Route(method: .get, path: "/clearml/auth.login"), Route(method: .post, path: "/clearml/auth.login"),
        Route(method: .get, path: "/clearml/{version}/{call}"), Route(method: .post, path: "/clearml/{version}/{call}"),
        Route(method: .post, path: ClearMLFiles.prefix), Route(method: .get, path: ClearMLFiles.prefix + "/{path}"),
    ]

    /// A call of the API: the scope a token needs for it, and what it answers with.
    private struct Endpoint: Sendable {
        let scope: TokenScope
        let answer: @Sendable (ClearMLTasks, JSON, Request) throws(CMLError) -> JSON
    }

    private static let endpoints: [String: Endpoint] = [
        "projects.get_all": Endpoint(scope: .read) { tasks, body, _ throws(CMLError) in try tasks.projects(body) },
        "projects.get_all_ex": Endpoint(scope: .read) { tasks, body, _ throws(CMLError) in try tasks.projects(body) },
        "projects.get_by_id": Endpoint(scope: .read) { tasks, body, _ throws(CMLError) in try tasks.project(body) },
        "projects.create": Endpoint(scope: .write) { tasks, body, _ throws(CMLError) in try tasks.createProject(body) },
        "tasks.create": Endpoint(scope: .write) { tasks, body, request throws(CMLError) in try tasks.create(body, host: clientHost(request)) },
        "tasks.get_by_id": Endpoint(scope: .read) { tasks, body, _ throws(CMLError) in try tasks.task(body) },
        "tasks.get_all": Endpoint(scope: .read) { tasks, body, _ throws(CMLError) in try tasks.tasks(body) },
        "tasks.get_all_ex": Endpoint(scope: .read) { tasks, body, _ throws(CMLError) in try tasks.tasks(body) },
        "tasks.edit": Endpoint(scope: .write) { tasks, body, _ throws(CMLError) in try tasks.edit(body) },
        "tasks.update": Endpoint(scope: .write) { tasks, body, _ throws(CMLError) in try tasks.edit(body) },
        "tasks.edit_hyper_params": Endpoint(scope: .write) { tasks, body, _ throws(CMLError) in try tasks.editHyperParams(body) },
        "tasks.get_hyper_params": Endpoint(scope: .read) { tasks, body, _ throws(CMLError) in try tasks.hyperParams(body) },
        "tasks.edit_configuration": Endpoint(scope: .write) { tasks, body, _ throws(CMLError) in try tasks.editConfiguration(body) },
        "tasks.get_configurations": Endpoint(scope: .read) { tasks, body, _ throws(CMLError) in try tasks.configurations(body) },
        "tasks.set_requirements": Endpoint(scope: .write) { tasks, body, _ throws(CMLError) in try tasks.setRequirements(body) },
        "tasks.add_or_update_artifacts": Endpoint(scope: .write) { tasks, body, _ throws(CMLError) in try tasks.addArtifacts(body) },
        "tasks.started": Endpoint(scope: .write) { tasks, body, _ throws(CMLError) in try tasks.started(body) },
        "tasks.ping": Endpoint(scope: .write) { tasks, body, _ throws(CMLError) in try tasks.ping(body) },
        "tasks.completed": Endpoint(scope: .write) { tasks, body, _ throws(CMLError) in try tasks.end(body, as: .completed) },
        "tasks.close": Endpoint(scope: .write) { tasks, body, _ throws(CMLError) in try tasks.end(body, as: .completed) },
        "tasks.failed": Endpoint(scope: .write) { tasks, body, _ throws(CMLError) in try tasks.end(body, as: .failed) },
        "tasks.stopped": Endpoint(scope: .write) { tasks, body, _ throws(CMLError) in try tasks.end(body, as: .aborted) },
        "tasks.reset": Endpoint(scope: .write) { _, _, _ throws(CMLError) in
            throw CMLError.usage("cml keeps every run as it ran: a task is never reset", hint: "Task.init makes a new run each time")
        },
        "events.add_batch": Endpoint(scope: .write) { tasks, body, _ throws(CMLError) in try ClearMLEvents(tasks: tasks).add(body.items) },
        "events.scalar_metrics_iter_histogram": Endpoint(scope: .read) { tasks, body, _ throws(CMLError) in
            try ClearMLEvents(tasks: tasks).scalars(body)
        },
        "events.get_task_log": Endpoint(scope: .read) { tasks, body, _ throws(CMLError) in try ClearMLEvents(tasks: tasks).consoleLog(body) },
    ]

    static func register(on router: Router<BasicRequestContext>, store: any ServedStore, authorizer: Authorizer) {
        let login = ClearMLLogin(authorizer: authorizer)
        for method in [HTTPRequest.Method.get, .post] {
            router.on("/clearml/auth.login", method: method) { request, _ in
                await answer(request, version: nil, call: "auth.login", store: store, login: login)
            }
            router.on("/clearml/:version/:call", method: method) { request, context in
                await answer(request, version: context.parameters.get("version"), call: context.parameters.get("call") ?? "",
                             store: store, login: login)
            }
        }
        router.post(RouterPath(ClearMLFiles.prefix)) { request, _ in try await ClearMLFiles.upload(request, store: store, login: login) }
        router.get(RouterPath(ClearMLFiles.prefix + "/**")) { request, context in
            try await ClearMLFiles.download(request, context: context, store: store, login: login)
        }
    }

    /// Every answer in ClearML's envelope, errors too: the SDK reads `meta.result_msg` to say what failed.
    private static func answer(_ request: Request, version: String?, call name: String, store: any ServedStore, login: ClearMLLogin) async -> Response {
        let call = ClearMLCall(endpoint: name, requestedVersion: version.map { $0.hasPrefix("v") ? String($0.dropFirst()) : $0 })
        do throws(CMLError) {
            if let version, !version.hasPrefix("v") { throw CMLError("no ClearML route /clearml/\(version)/\(name)", kind: .notFound) }
            if name == "auth.login" { return ClearMLEnvelope.ok(try await login.login(request), call: call) }
            guard let endpoint = endpoints[name] else {
                // The SDK logs a refused call and goes on: a feature cml has no place for costs a warning.
                throw CMLError.usage("cml-serve does not implement ClearML's \(name.prefix(100))")
            }
            let access = try await login.access(request, needing: endpoint.scope)
            let body = try await body(request, lines: name == "events.add_batch")
            let tasks = ClearMLTasks(store: store, access: access)
            return ClearMLEnvelope.ok(try await StoreCalls.run { () throws(CMLError) in try endpoint.answer(tasks, body, request) }, call: call)
        } catch {
            return ClearMLEnvelope.error(error, call: call)
        }
    }

    /// The request's JSON body (an empty one is `{}`), or its JSON lines as an array.
    private static func body(_ request: Request, lines: Bool) async throws(CMLError) -> JSON {
        let bytes: [UInt8]
        do {
            bytes = Array(try await request.body.collect(upTo: StoreAPI.maxRecordBytes).readableBytesView)
        } catch {
            throw CMLError("the request's body is over \(StoreAPI.maxRecordBytes) bytes or could not be read", kind: .tooLarge)
        }
        let text = String(decoding: bytes, as: UTF8.self)
        if text.allSatisfy(\.isWhitespace) { return lines ? .array([]) : .object([]) }
        guard lines else { return try JSON.parse(text) }
        // JSON lines; a JSON array of events is taken as well.
        if text.first(where: { !$0.isWhitespace }) == "[" { return try JSON.parse(text) }
        var events: [JSON] = []
        for line in text.split(whereSeparator: \.isNewline) where !line.allSatisfy(\.isWhitespace) {
            events.append(try JSON.parse(String(line)))
        }
        return .array(events)
    }

    /// The host the SDK names in its worker header (`host:pid`), else `clearml`.
    private static func clientHost(_ request: Request) -> String {
        for field in request.headers where ["x-clearml-worker", "x-trains-worker"].contains(field.name.canonicalName) {
            if let host = field.value.split(separator: ":").first, !host.isEmpty { return String(host) }
        }
        return "clearml"
    }
}

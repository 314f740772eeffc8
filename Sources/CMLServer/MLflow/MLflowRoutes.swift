import CMLKit
import Hummingbird

/// MLflow's REST tracking API (the paths its client calls, `/api/2.0/mlflow/…`) and its artifact proxy,
/// onto cml's store: an experiment is a project (`MLflowExperiments`), a run a cml run. `MLFLOW_TRACKING_TOKEN`
/// reaches the server as `Authorization: Bearer …` and is checked as every route's token (`Authorizer`);
/// errors are answered in MLflow's envelope (`MLflowError`). docs/http-api.md, "MLflow tracking API".
enum MLflowRoutes {
    static let all: [ServerRoute] = experimentRoutes + runRoutes + modelRoutes + artifactRoutes

    /// Adds the routes to the router, behind the token check and MLflow's error envelope.
    static func register(on router: Router<BasicRequestContext>, store: any ServedStore, runs: RunRecordCache, authorizer: Authorizer) {
        let group = router.group().add(middleware: MLflowErrorMiddleware())
        for route in all {
            guard case .checked(let handler) = route.handler else { continue }
            // `{path}` at the end of the artifact routes is the rest of the path, slashes and all.
            let path = route.path.hasSuffix("/{path}") ? String(route.path.dropLast("{path}".count)) + "**" : route.routerPath
            group.on(RouterPath(path), method: route.method) { request, context in
                let access = try await authorizer.access(request, needing: route.scope)
                let query = try QueryParameters(request.uri.query, route: route)
                return try await handler(RouteRequest(request: request, context: context, query: query, store: store, access: access, runs: runs))
            }
        }
    }

    private static let base = "/api/2.0/mlflow"

    /// A route whose answer is a JSON object worked out on the store's threads.
    private static func call(_ method: HTTPRequest.Method, _ path: String, parameters: [String] = [], scope: TokenScope = .read,
                             _ body: @escaping @Sendable (RouteRequest, MLflowBody, MLflowStore) throws(CMLError) -> JSON) -> ServerRoute {
        ServerRoute(method: method, path: base + path, parameters: parameters, scope: scope) { route in
            let request = method == .get ? MLflowBody(.object([])) : try await MLflowBody(route)
            let mlflow = MLflowStore(route)
            return MLflowJSON.response(try await StoreCalls.run { () throws(CMLError) in try body(route, request, mlflow) })
        }
    }

    private static func runID(_ route: RouteRequest) throws(CMLError) -> String {
        guard let id = route.query.string("run_id") ?? route.query.string("run_uuid") else { throw MLflowError.missing("run_id") }
        return id
    }

    static let experimentRoutes: [ServerRoute] = [
        call(.get, "/experiments/get-by-name", parameters: ["experiment_name"]) { route, _, mlflow throws(CMLError) in
            guard let name = route.query.string("experiment_name") else { throw MLflowError.missing("experiment_name") }
            guard let experiment = try MLflowExperiments.experiment(named: name, store: mlflow.store, access: mlflow.access) else {
                throw CMLError("Could not find experiment with name '\(name.prefix(200))'", kind: .notFound)
            }
            return .object([("experiment", experiment.json)])
        },
        call(.get, "/experiments/get", parameters: ["experiment_id"]) { route, _, mlflow throws(CMLError) in
            guard let id = route.query.string("experiment_id") else { throw MLflowError.missing("experiment_id") }
            return .object([("experiment", try MLflowExperiments.experiment(id: id, store: mlflow.store, access: mlflow.access).json)])
        },
        call(.post, "/experiments/create", scope: .write) { _, body, mlflow throws(CMLError) in
            let id = try MLflowExperiments.create(name: try body.string("name"), tags: try body.keyValues("tags"),
                                                  store: mlflow.store, access: mlflow.access)
            return .object([("experiment_id", .string(id))])
        },
        call(.post, "/experiments/search") { _, body, mlflow throws(CMLError) in
            let filter = try MLflowFilter.parse(body.optionalString("filter"))
            let experiments = try MLflowExperiments.all(store: mlflow.store, access: mlflow.access).filter { experiment in
                let json = experiment.json
                return filter.matches { entity, key in
                    switch entity {
                    case .attribute: json[key == "id" ? "experiment_id" : key]?.stringValue.map { .text($0) }
                    case .tag: json["tags"]?.items.last { $0["key"]?.stringValue == key }?["value"]?.stringValue.map { .text($0) }
                    case .metric, .param: nil
                    }
                }
            }
            let page = try MLflowSearch.page(experiments, maxResults: try body.int64("max_results"), token: body.optionalString("page_token"))
            var answer: [(String, JSON)] = [("experiments", .array(page.items.map(\.json)))]
            if let next = page.next { answer.append(("next_page_token", .string(next))) }
            return .object(answer)
        },
    ]

    static let runRoutes: [ServerRoute] = [
        call(.post, "/runs/create", scope: .write) { _, body, mlflow throws(CMLError) in
            .object([("run", MLflowRunView.json(try mlflow.create(body)))])
        },
        call(.post, "/runs/update", scope: .write) { _, body, mlflow throws(CMLError) in
            .object([("run_info", MLflowRunView.info(try mlflow.update(body)))])
        },
        call(.get, "/runs/get", parameters: ["run_id", "run_uuid"]) { route, _, mlflow throws(CMLError) in
            .object([("run", MLflowRunView.json(try mlflow.run(try runID(route))))])
        },
        call(.post, "/runs/log-metric", scope: .write) { _, body, mlflow throws(CMLError) in
            try mlflow.logBatch(run: try mlflow.runID(body), metrics: [body], params: [], tags: [])
            return .object([])
        },
        call(.post, "/runs/log-parameter", scope: .write) { _, body, mlflow throws(CMLError) in
            try mlflow.logBatch(run: try mlflow.runID(body), metrics: [], params: [(try body.string("key"), body.optionalString("value") ?? "")], tags: [])
            return .object([])
        },
        call(.post, "/runs/set-tag", scope: .write) { _, body, mlflow throws(CMLError) in
            try mlflow.logBatch(run: try mlflow.runID(body), metrics: [], params: [], tags: [(try body.string("key"), body.optionalString("value") ?? "")])
            return .object([])
        },
        call(.post, "/runs/delete-tag", scope: .write) { _, body, mlflow throws(CMLError) in
            try mlflow.deleteTag(run: try mlflow.runID(body), key: try body.string("key"))
            return .object([])
        },
        call(.post, "/runs/log-batch", scope: .write) { _, body, mlflow throws(CMLError) in
            try mlflow.logBatch(run: try mlflow.runID(body), metrics: try body.array("metrics"), params: try body.keyValues("params"),
                                tags: try body.keyValues("tags"))
            return .object([])
        },
        call(.post, "/runs/log-inputs", scope: .write) { _, body, mlflow throws(CMLError) in
            try mlflow.logInputs(run: try mlflow.runID(body), datasets: try body.array("datasets").map(\.json), models: try body.array("models").map(\.json))
            return .object([])
        },
        call(.post, "/runs/outputs", scope: .write) { _, body, mlflow throws(CMLError) in
            try mlflow.logOutputs(run: try mlflow.runID(body), models: try body.array("models").map(\.json))
            return .object([])
        },
        call(.post, "/runs/search") { _, body, mlflow throws(CMLError) in
            try MLflowSearch.search(body, on: mlflow)
        },
        call(.get, "/metrics/get-history", parameters: ["run_id", "run_uuid", "metric_key", "max_results", "page_token"]) { route, _, mlflow throws(CMLError) in
            guard let key = route.query.string("metric_key") else { throw MLflowError.missing("metric_key") }
            return try mlflow.history(run: try runID(route), key: key, maxResults: try route.query.integer("max_results"),
                                      pageToken: route.query.string("page_token"))
        },
    ]

    static let modelRoutes: [ServerRoute] = [
        call(.post, "/logged-models", scope: .write) { _, body, mlflow throws(CMLError) in
            .object([("model", try MLflowModels.create(body, on: mlflow))])
        },
        call(.get, "/logged-models/{model_id}") { route, _, mlflow throws(CMLError) in
            .object([("model", try MLflowModels.model(try route.parameter("model_id"), on: mlflow))])
        },
        call(.patch, "/logged-models/{model_id}", scope: .write) { route, body, mlflow throws(CMLError) in
            .object([("model", try MLflowModels.update(try route.parameter("model_id"), body, on: mlflow))])
        },
        call(.patch, "/logged-models/{model_id}/tags", scope: .write) { route, body, mlflow throws(CMLError) in
            try MLflowModels.setTags(try route.parameter("model_id"), try body.keyValues("tags"), on: mlflow)
            return .object([])
        },
        call(.post, "/logged-models/search") { _, body, mlflow throws(CMLError) in
            try MLflowModels.search(body, on: mlflow)
        },
    ]

    static let artifactRoutes: [ServerRoute] = [
        ServerRoute(method: .get, path: "/api/2.0/mlflow-artifacts/artifacts", parameters: ["path"], handler: MLflowArtifacts.list),
        ServerRoute(method: .get, path: "/api/2.0/mlflow-artifacts/artifacts/{path}", parameters: [], handler: MLflowArtifacts.get),
        ServerRoute(method: .put, path: "/api/2.0/mlflow-artifacts/artifacts/{path}", parameters: [], scope: .write, handler: MLflowArtifacts.put),
    ]
}

import CMLKit
import Foundation
import Hummingbird

/// MLflow's artifact proxy (`mlflow-artifacts:/EXP/RUN/artifacts/PATH`, which the client reaches at
/// `/api/2.0/mlflow-artifacts/artifacts/EXP/RUN/artifacts/PATH`): each file is an artifact of the run named by
/// its path, its content a blob, so `cml-run artifacts` and `cml-run get` see it. A file sent again is a
/// new version of it (cml keeps every version); MLflow reads the latest.
enum MLflowArtifacts {
    /// Where a path of the proxy points: a run, and a path inside its artifacts ("" for their root).
    struct Location {
        var run: String
        var path: String

        init(_ segments: [String]) throws(CMLError) {
            guard segments.count >= 3, segments[2] == "artifacts", !segments[1].isEmpty else {
                throw CMLError("'\(segments.joined(separator: "/").prefix(200))' is not EXPERIMENT/RUN/artifacts/PATH", kind: .notFound)
            }
            let rest = segments.dropFirst(3).filter { !$0.isEmpty }
            guard !rest.contains(where: { $0 == ".." || $0 == "." }) else { throw MLflowError.invalid("an artifact path may not hold '.' or '..'") }
            run = segments[1]
            path = rest.joined(separator: "/")
        }

        init(route: RouteRequest) throws(CMLError) {
            var segments: [String] = []
            for part in route.context.parameters.getCatchAll() {
                guard let decoded = String(part).removingPercentEncoding else { throw MLflowError.invalid("the path is not percent-encoded correctly") }
                segments.append(decoded)
            }
            try self.init(segments)
        }
    }

    static func put(_ route: RouteRequest) async throws -> Response {
        let location = try Location(route: route)
        guard !location.path.isEmpty else { throw MLflowError.invalid("an artifact needs a path below artifacts/") }
        let mlflow = MLflowStore(route)
        _ = try await StoreCalls.run { () throws(CMLError) in try mlflow.writableRun(location.run) }
        // The body goes to a file as it comes (a model may be large), then into the blob store.
        let store = route.store
        let temporary = try await UploadFile.receive(route.request.body, purpose: "mlflow")
        defer { unlink(temporary) }
        try await StoreCalls.run { () throws(CMLError) in
            let (blob, size) = try store.putBlob(file: temporary)
            try store.addArtifact(Artifact(run: location.run, name: location.path, kind: "artifact", step: nil, sha256: blob, size: size,
                                           files: 1, isDirectory: false, mediaType: nil, source: nil, time: Clock.now()))
        }
        return MLflowJSON.empty
    }

    static func get(_ route: RouteRequest) async throws -> Response {
        let location = try Location(route: route)
        let mlflow = MLflowStore(route), store = route.store
        let artifact = try await StoreCalls.run { () throws(CMLError) in
            let run = try mlflow.run(location.run)
            guard let artifact = try latest(store.artifacts(run: run.id)).first(where: { $0.name == location.path && !$0.isDirectory }) else {
                throw CMLError("No artifact at '\(location.path.prefix(200))' of run \(run.id)", kind: .notFound)
            }
            return artifact
        }
        let body = StoreCalls.stream(contentLength: Int(artifact.size)) { send throws(CMLError) in
            try store.readBlob(artifact.sha256) { chunk throws(CMLError) in try send(ByteBuffer(bytes: chunk)) }
        }
        return Response(status: .ok, headers: [.contentType: Media.bytes], body: body)
    }

    /// `?path=EXP/RUN/artifacts/DIR`: the files and directories right under DIR, by their names, as MLflow lists them.
    static func list(_ route: RouteRequest) async throws -> Response {
        guard let path = route.query.string("path") else { return MLflowJSON.response(.object([("files", .array([]))])) }
        let location = try Location(path.split(separator: "/", omittingEmptySubsequences: false).map(String.init))
        let mlflow = MLflowStore(route), store = route.store
        let files = try await StoreCalls.run { () throws(CMLError) -> [JSON] in
            let run = try mlflow.run(location.run)
            let prefix = location.path.isEmpty ? "" : location.path + "/"
            var directories: Set<String> = []
            var files: [JSON] = []
            for artifact in latest(try store.artifacts(run: run.id)) where artifact.name.hasPrefix(prefix) {
                let rest = artifact.name.dropFirst(prefix.count)
                if let slash = rest.firstIndex(of: "/") {
                    let directory = String(rest[..<slash])
                    if directories.insert(directory).inserted {
                        files.append(.object([("path", .string(directory)), ("is_dir", .bool(true))]))
                    }
                } else if !artifact.isDirectory {
                    files.append(.object([("path", .string(String(rest))), ("is_dir", .bool(false)), ("file_size", .int(artifact.size))]))
                }
            }
            return files
        }
        return MLflowJSON.response(.object([("files", .array(files))]))
    }

    /// The latest version of each artifact name, in the order first recorded.
    private static func latest(_ artifacts: [Artifact]) -> [Artifact] {
        var index: [String: Int] = [:]
        var kept: [Artifact] = []
        for artifact in artifacts {
            if let at = index[artifact.name] { kept[at] = artifact } else {
                index[artifact.name] = kept.count
                kept.append(artifact)
            }
        }
        return kept
    }
}

import Foundation
import Testing
import CMLKit
@testable import CMLServer

/// The real MLflow client from PyPI (`$CML_MLFLOW_PYTHON`, else the virtual environment scripts/test makes
/// in .build/mlflow-venv) logging into a live `cml-serve` through `MLFLOW_TRACKING_URI`, with a token in
/// `MLFLOW_TRACKING_TOKEN`: what MLflow reads back (Tests/MLflow/*.py print it) is what cml's commands show.
@Suite(.serialized) struct MLflowClientTests {
    static func python() throws -> String {
        let path = ProcessInfo.processInfo.environment["CML_MLFLOW_PYTHON"] ?? SweepOptunaTests.root + "/.build/mlflow-venv/bin/python3"
        try #require(FileManager.default.isExecutableFile(atPath: path),
                     "\(path) is missing: scripts/test makes .build/mlflow-venv with mlflow-skinny, scikit-learn and pandas from PyPI (or set CML_MLFLOW_PYTHON)")
        return path
    }

    /// The client's environment: the server and its token, no telemetry, and a proxy that answers nothing
    /// for any host but loopback, so that nothing reaches the internet.
    static func environment(_ server: ServerUnderTest, token: String?) -> [String: String] {
        var env = ["MLFLOW_TRACKING_URI": server.url, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
                   "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost",
                   "GIT_PYTHON_REFRESH": "quiet", "PYTHONWARNINGS": "ignore"]
        if let token { env["MLFLOW_TRACKING_TOKEN"] = token }
        return env
    }

    static func run(_ box: Sandbox, _ server: ServerUnderTest, script: String, token: String?, arguments: [String] = []) throws -> CommandResult {
        try box.run(try python(), [script] + arguments, env: environment(server, token: token))
    }

    /// Runs one of Tests/MLflow's scripts, which writes what MLflow read back as JSON to the file it is given.
    static func logged(_ box: Sandbox, _ server: ServerUnderTest, script: String, token: String?) throws -> [String: Any] {
        let output = box.root + "/" + script + ".json"
        let result = try run(box, server, script: SweepOptunaTests.root + "/Tests/MLflow/" + script, token: token, arguments: [output])
        try #require(result.status == 0, "\(result.stderr)")
        let data = try #require(FileManager.default.contents(atPath: output))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }


    /// A parameter as MLflow logged it, from cml's record (numbers are kept typed when their text is unchanged).
    static func text(_ value: Any) -> String {
        if let text = value as? String { return text }
        if let number = value as? NSNumber {
            if let integer = value as? Int, Double(integer) == number.doubleValue, !"\(number)".contains(".") { return String(integer) }
            return "\(number.doubleValue)"
        }
        return "\(value)"
    }

    /// `cml-run metrics ID` as `[key: [[step, value, milliseconds]]]`, the form the scripts print
    /// MLflow's `get_metric_history` in (NaN and the infinities as "nan", "inf", "-inf").
    static func metrics(_ box: Sandbox, _ id: String) throws -> [String: [[AnyHashable]]] {
        let listed = try box.run("cml-run", ["metrics", id])
        #expect(listed.status == 0, "\(listed.stderr)")
        var series: [String: [[AnyHashable]]] = [:]
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        for point in listed.jsonLines {
            let key = try #require(point["key"] as? String)
            let stamp = try #require(point["time"] as? String)
            let time = try #require(formatter.date(from: stamp))
            let step = try #require(point["step"] as? Int), value = try #require(point["value"] as? AnyHashable)
            series[key, default: []].append([step, value, Int((time.timeIntervalSince1970 * 1000).rounded())])
        }
        return series
    }

    /// MLflow's history in the same form.
    static func history(_ metrics: Any?) throws -> [String: [[AnyHashable]]] {
        let series = try #require(metrics as? [String: [[Any]]])
        return try series.mapValues { points in
            try points.map { point in
                let step = try #require(point[0] as? Int), value = try #require(point[1] as? AnyHashable), time = try #require(point[2] as? Int)
                return [step, value, time]
            }
        }
    }

    static func show(_ box: Sandbox, _ id: String) throws -> [String: Any] {
        let shown = try box.run("cml-run", ["show", id])
        #expect(shown.status == 0, "\(shown.stderr)")
        return try #require(shown.jsonLines.first)
    }

    static let statuses = ["FINISHED": "completed", "FAILED": "failed", "KILLED": "aborted", "RUNNING": "running"]

    @Test func trackingScriptLogsOrdinaryRunsThatCmlShowsValueForValue() throws {
        let box = try Sandbox()
        let token = try ServeAuthTests.create(box, "mlflow", scope: "write")
        let server = try ServerUnderTest(box)
        let output = try Self.logged(box, server, script: "tracking.py", token: token)
        let runs = try #require(output["runs"] as? [[String: Any]])
        #expect(runs.count == 3)

        // The same runs, through the server as cml-run's remote store reads them.
        let remote = try box.run("cml-run", ["ls", "--store", server.url, "--project", "mlflow-live", "--format", "jsonl"], env: ["CML_TOKEN": token])
        #expect(remote.status == 0, "\(remote.stderr)")
        #expect(Set(remote.jsonLines.compactMap { $0["id"] as? String }) == Set(runs.compactMap { $0["id"] as? String }))

        for run in runs {
            let id = try #require(run["id"] as? String)
            let shown = try Self.show(box, id)
            #expect(shown["project"] as? String == "mlflow-live")
            #expect(shown["name"] as? String == run["name"] as? String)
            #expect(shown["status"] as? String == Self.statuses[try #require(run["status"] as? String)])
            let params = try #require(shown["params"] as? [String: Any]).mapValues(Self.text)
            #expect(params == run["params"] as? [String: String])
            let extra = (shown["extra"] as? [String: Any])?["mlflow"] as? [String: Any]
            #expect(extra?["tags"] as? [String: String] == run["tags"] as? [String: String])
            #expect(try Self.metrics(box, id) == Self.history(run["metrics"]), "\(id)")
        }
        // The dataset a metric was logged with, kept.
        let failed = try #require(runs.first { $0["status"] as? String == "FAILED" }?["id"] as? String)
        let links = ((try Self.show(box, failed)["extra"] as? [String: Any])?["mlflow"] as? [String: Any])?["metric_datasets"] as? [[String: Any]]
        #expect(links?.map { "\($0["key"] ?? "") \($0["dataset_name"] ?? "")" } == ["eval_acc eval-set"], "\(links ?? [])")
        // NaN and the infinities, kept as such.
        let first = try #require(runs.first?["id"] as? String)
        #expect(try Self.metrics(box, first)["odd"]?.map { $0[1] } == ["nan", "inf", "-inf", 0.5 as Double])

        let artifacts = try box.run("cml-run", ["artifacts", first])
        #expect(artifacts.jsonLines.compactMap { $0["name"] as? String } == ["notes.txt", "nested/dir/weights.bin"])
        let copy = box.root + "/notes.txt"
        #expect(try box.run("cml-run", ["get", first, "notes.txt", copy]).status == 0)
        #expect(try String(contentsOfFile: copy, encoding: .utf8) == "written by the real mlflow client\n")
        let weights = box.root + "/weights.bin"
        #expect(try box.run("cml-run", ["get", first, "nested/dir/weights.bin", weights]).status == 0)
        #expect(FileManager.default.contents(atPath: weights) == Data((0..<40).flatMap { _ in (0...255).map(UInt8.init) }))
        #expect(try server.stop().status == 0)
    }

    @Test func sklearnAutologKeepsItsTrainingMetricsModelAndDataset() throws {
        let box = try Sandbox()
        let server = try ServerUnderTest(box)
        let output = try Self.logged(box, server, script: "autolog.py", token: nil)
        let id = try #require(output["id"] as? String)
        let shown = try Self.show(box, id)
        #expect(shown["project"] as? String == "mlflow-autolog")
        #expect(shown["status"] as? String == "completed")
        #expect(try #require(shown["params"] as? [String: Any]).mapValues(Self.text) == output["params"] as? [String: String])
        let history = try Self.history(output["metrics"])
        #expect(history.keys.contains("training_accuracy_score") && history.keys.contains("training_log_loss"))
        #expect(try Self.metrics(box, id) == history)

        let extra = try #require((shown["extra"] as? [String: Any])?["mlflow"] as? [String: Any])
        let modelID = try #require(output["model_id"] as? String)
        let model = try #require((extra["logged_models"] as? [String: Any])?[modelID] as? [String: Any])
        #expect(model["status"] as? String == "LOGGED_MODEL_READY")
        let modelMetrics = (model["metrics"] as? [[String: Any]] ?? []).compactMap { $0["key"] as? String }.sorted()
        #expect(modelMetrics == output["model_metrics"] as? [String] && !modelMetrics.isEmpty)
        let datasets = (extra["dataset_inputs"] as? [[String: Any]] ?? []).compactMap { ($0["dataset"] as? [String: Any])?["name"] as? String }
        #expect(datasets == output["datasets"] as? [String] && !datasets.isEmpty)
        #expect((extra["model_outputs"] as? [[String: Any]])?.first?["model_id"] as? String == modelID)
        let names = try box.run("cml-run", ["artifacts", id]).jsonLines.compactMap { $0["name"] as? String }
        #expect(names.contains("models/\(modelID)/MLmodel") && names.contains("models/\(modelID)/model.pkl"), "\(names)")
        #expect(try server.stop().status == 0)
    }

    /// A missing run is a 404 the client reports at once (no retries); a request without the token is 401,
    /// a read-only token's write 403, a project-bound token's write elsewhere 403; nothing is written.
    @Test func errorsAreMLflowsEnvelopesAndWriteNothing() async throws {
        let box = try Sandbox()
        let writer = try ServeAuthTests.create(box, "writer", scope: "write")
        let reader = try ServeAuthTests.create(box, "reader", scope: "read")
        let bound = try ServeAuthTests.create(box, "bound", scope: "write", projects: ["mine"])
        let server = try ServerUnderTest(box)
        let api = server.url + "/api/2.0/mlflow"

        func post(_ path: String, _ body: String, token: String?) async throws -> HTTPReply {
            try await HTTPReply.send(api + path, method: "POST", headers: (token.map(ServeAuthTests.bearer) ?? [:]).merging(["Content-Type": "application/json"]) { $1 },
                                     body: Data(body.utf8))
        }
        let missing = try await HTTPReply.send(api + "/runs/get?run_id=" + String(repeating: "0", count: 32), headers: ServeAuthTests.bearer(writer))
        #expect(missing.status == 404 && missing.json["error_code"] as? String == "RESOURCE_DOES_NOT_EXIST", "\(missing.text)")
        let unknown = try await HTTPReply.send(api + "/runs/no-such-endpoint", headers: ServeAuthTests.bearer(writer))
        #expect(unknown.status == 404 && unknown.json["error_code"] as? String == "ENDPOINT_NOT_FOUND", "\(unknown.text)")
        let badValue = try await post("/runs/log-metric", #"{"run_id": "0", "key": "loss"}"#, token: writer)
        #expect(badValue.status == 400 && badValue.json["error_code"] as? String == "INVALID_PARAMETER_VALUE", "\(badValue.text)")

        let anonymous = try await post("/experiments/create", #"{"name": "nobody"}"#, token: nil)
        #expect(anonymous.status == 401 && anonymous.json["error_code"] as? String == "UNAUTHENTICATED", "\(anonymous.text)")
        let readOnly = try await post("/experiments/create", #"{"name": "reader"}"#, token: reader)
        #expect(readOnly.status == 403 && readOnly.json["error_code"] as? String == "PERMISSION_DENIED", "\(readOnly.text)")
        let readRun = try await post("/runs/create", #"{"experiment_id": "0"}"#, token: reader)
        #expect(readRun.status == 403, "\(readRun.text)")
        let elsewhere = try await post("/runs/create", #"{"experiment_id": "0"}"#, token: bound)
        #expect(elsewhere.status == 403 && elsewhere.json["error_code"] as? String == "PERMISSION_DENIED", "\(elsewhere.text)")
        // A read-only token still reads.
        let found = try await HTTPReply.send(api + "/experiments/get-by-name?experiment_name=Default", headers: ServeAuthTests.bearer(reader))
        #expect(found.status == 200 && (found.json["experiment"] as? [String: Any])?["experiment_id"] as? String == "0")

        // Through the real client: each error is reported at once, with MLflow's code, and nothing is written.
        let probe = box.root + "/probe.py"
        try box.write(probe, """
            import json, sys, time
            import mlflow
            from mlflow import MlflowClient
            from mlflow.exceptions import MlflowException
            def attempt(call):
                started = time.monotonic()
                try:
                    call()
                    return {"code": None, "seconds": time.monotonic() - started}
                except MlflowException as error:
                    return {"code": error.error_code, "seconds": time.monotonic() - started, "message": str(error)[:300]}
            client = MlflowClient()
            calls = {
                "get_run": lambda: client.get_run("0" * 32),
                "log_metric": lambda: client.log_metric("f" * 32, "loss", 0.5),
                "create_experiment": lambda: client.create_experiment("forbidden"),
                "start_run": lambda: mlflow.start_run(),
            }
            print(json.dumps({name: attempt(calls[name]) for name in sys.argv[1:]}))
            """)
        for (token, expected) in [(writer, ["get_run": "RESOURCE_DOES_NOT_EXIST", "log_metric": "RESOURCE_DOES_NOT_EXIST"]),
                                  (reader, ["create_experiment": "PERMISSION_DENIED", "start_run": "PERMISSION_DENIED"]),
                                  (nil as String?, ["get_run": "UNAUTHENTICATED", "create_experiment": "UNAUTHENTICATED"])] {
            let probed = try Self.run(box, server, script: probe, token: token, arguments: expected.keys.sorted())
            #expect(probed.status == 0, "\(probed.stderr)")
            let answers = try #require(probed.jsonLines.first as? [String: [String: Any]], "\(probed.out)")
            for (call, code) in expected {
                #expect(answers[call]?["code"] as? String == code, "\(call): \(answers[call] ?? [:])")
                #expect((answers[call]?["seconds"] as? Double ?? 99) < 5, "\(call) was retried: \(answers[call] ?? [:])")
            }
        }
        let listed = try box.run("cml-run", ["ls", "--format", "jsonl"])
        #expect(listed.status == 0 && listed.jsonLines.isEmpty, "\(listed.out)")
        let projects = try await HTTPReply.send(api + "/experiments/search", method: "POST", headers: ServeAuthTests.bearer(writer), body: Data("{}".utf8))
        #expect((projects.json["experiments"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["Default"], "\(projects.text)")
        #expect(try server.stop().status == 0)
    }
}

/// MLflow's filter grammar on its own (`MLflowFilter`): what `search_runs` and `search_logged_models` take.
struct MLflowFilterTests {
    static let fields: [String: MLflowFilter.Field] = [
        "metric acc": .number(0.93), "metric loss": .number(.nan), "param lr": .text("0.1"), "param opt": .text("Adam"),
        "tag my tag": .text("v-1"), "attribute status": .text("FINISHED"), "attribute start_time": .number(1_700_000_000_000),
    ]

    static func matches(_ filter: String) throws -> Bool {
        try MLflowFilter.parse(filter).matches { entity, key in fields["\(entity.rawValue) \(key)"] }
    }

    @Test func clausesJoinedByAndCompareNumbersAndText() throws {
        #expect(try Self.matches("metrics.acc > 0.9 and params.lr = '0.1' AND attributes.status = 'FINISHED'"))
        #expect(try !Self.matches("metrics.acc > 0.9 and params.lr = '0.01'"))
        #expect(try Self.matches("metric.acc >= 0.93 and metrics.acc <= 0.93 and metrics.acc != 1"))
        #expect(try Self.matches("params.opt LIKE 'Ad%' and params.opt ILIKE 'adam' and params.opt LIKE '_dam'"))
        #expect(try !Self.matches("params.opt LIKE 'adam'"))
        #expect(try Self.matches("tags.`my tag` = 'v-1' and tags.\"my tag\" IN ('v-1', 'v-2')"))
        #expect(try Self.matches("params.lr NOT IN ('0.2') and attributes.start_time > 1600000000000"))
        #expect(try Self.matches("status = \"FINISHED\""))
        // A key the subject lacks, and NaN, compare false.
        #expect(try !Self.matches("metrics.missing > 0") && !Self.matches("metrics.loss > 0") && !Self.matches("metrics.loss < 0"))
        #expect(try Self.matches("") && Self.matches("   "))
    }

    @Test func aMalformedFilterIsAnInvalidParameter() {
        for bad in ["metrics.acc >", "metrics.acc > 0.9 or params.lr = '0.1'", "colour.x = 'y'", "params.lr = unquoted",
                    "tags.`open = 'x'", "params.lr IN '0.1'", "metrics.acc ~ 1"] {
            #expect { _ = try MLflowFilter.parse(bad) } throws: { ($0 as? CMLError)?.kind == .invalid }
        }
    }

    @Test func orderingPutsSubjectsWithoutTheKeyLast() throws {
        let subjects: [[String: Double]] = [["acc": 0.5], [:], ["acc": 0.9], ["acc": .nan], ["acc": 0.7]]
        for (text, expected) in [("metrics.acc DESC", [0.9, 0.7, 0.5]), ("metrics.acc", [0.5, 0.7, 0.9]), ("metrics.`acc` ASC", [0.5, 0.7, 0.9])] {
            let orders = try MLflowFilter.orders([text])
            let sorted = MLflowFilter.sorted(subjects, by: orders, field: { subject, _, key in subject[key].map { .number($0) } }) { _, _ in false }
            #expect(sorted.prefix(3).map { $0["acc"] } == expected, "\(text)")
            #expect(sorted[3]["acc"]?.isNaN == true && sorted[4].isEmpty, "\(text)")
        }
        #expect(throws: CMLError.self) { try MLflowFilter.orders(["metrics.acc sideways"]) }
    }
}

import Foundation
import Glibc
import Testing
import CMLKit
@testable import CMLServer

/// Scripts that log with the real `clearml` SDK from PyPI (`$CML_CLEARML_PYTHON`, else the virtual
/// environment scripts/test makes in .build/clearml-venv), unchanged but for the environment that points
/// it at a live cml-serve, from a git repository with an uncommitted change; what they logged is then
/// read with the cml commands and compared with what the SDK itself reads back.
@Suite(.serialized)
struct ClearMLClientTests {
    static func python() throws -> String {
        let path = ProcessInfo.processInfo.environment["CML_CLEARML_PYTHON"] ?? SweepOptunaTests.root + "/.build/clearml-venv/bin/python3"
        try #require(FileManager.default.isExecutableFile(atPath: path),
                     "\(path) is missing: scripts/test makes .build/clearml-venv with clearml from PyPI (or set CML_CLEARML_PYTHON)")
        return path
    }

    /// A store with a write token and a read token, served on loopback, and a repository of scripts.
    final class Setup {
        let box: Sandbox
        let server: ServerUnderTest
        let writeToken: String
        let readToken: String
        var repo: String { box.root + "/repo" }

        init() throws {
            box = try Sandbox()
            writeToken = try Self.token(box, "writer", "write")
            readToken = try Self.token(box, "reader", "read")
            server = try ServerUnderTest(box)
            for (name, text) in ClearMLClientTests.scripts { try box.write(repo + "/" + name, text) }
            try box.write(box.root + "/home/clearml.conf", ClearMLClientTests.configuration)
            let committed = try shell("git init -q -b main && git add . && git commit -qm scripts", cwd: repo)
            #expect(committed.status == 0, "\(committed.stderr)")
            // Uncommitted: the SDK reports it as the diff, which becomes the run's patch.
            try box.write(repo + "/train.py", ClearMLClientTests.scripts["train.py"]! + "\n# tuned locally\n")
        }

        static func token(_ box: Sandbox, _ name: String, _ scope: String, projects: [String] = []) throws -> String {
            let created = try box.run("cml-serve", ["token", "create", "--name", name, "--scope", scope] + projects.flatMap { ["--project", $0] })
            #expect(created.status == 0, "\(created.stderr)")
            return try #require(created.jsonLines.first?["token"] as? String)
        }

        /// What points the SDK at the server: the secret key is a cml token, the access key any name. The
        /// SDK asks updates.clear.ml for a newer version at each Task.init, with no setting to stop it: a
        /// proxy that refuses at once keeps it off the internet, and the server on loopback is reached
        /// directly.
        func sdkEnvironment(secret: String) -> [String: String] {
            ["HOME": box.root + "/home", "CLEARML_API_HOST": server.url + "/clearml", "CLEARML_FILES_HOST": server.url + "/clearml-files",
             "CLEARML_WEB_HOST": server.url, "CLEARML_API_ACCESS_KEY": "tests", "CLEARML_API_SECRET_KEY": secret,
             "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost"]
        }

        func python(_ script: String, _ args: [String] = [], secret: String? = nil) throws -> RunningCommand {
            try box.start(try ClearMLClientTests.python(), [script] + args, env: sdkEnvironment(secret: secret ?? writeToken), cwd: repo)
        }

        /// A cml command against the server, with the write token.
        func cml(_ tool: String, _ args: [String]) throws -> CommandResult {
            let result = try box.run(tool, args + ["--store", server.url], env: ["CML_TOKEN": writeToken])
            #expect(result.status == 0, "\(tool) \(args): \(result.stderr)")
            return result
        }

        func runs() throws -> [[String: Any]] { try cml("cml-run", ["ls", "--format", "jsonl"]).jsonLines }

        /// A request with curl; its status and body.
        func curl(_ path: String, _ arguments: String) throws -> (status: Int, body: [String: Any]) {
            let result = try shell("curl -s -o body.json -w '%{http_code}' \(arguments) '\(server.url)\(path)'", cwd: box.root)
            let body = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: box.root + "/body.json")))) as? [String: Any]
            return (Int(result.out) ?? 0, body ?? [:])
        }
    }

    /// The SDK's own configuration file: reports sent from a thread of the script's process, not from the
    /// subprocess the SDK forks by default on Linux. That fork races the SDK's other threads, whatever the
    /// server: seen here about once in six runs on a loaded machine, (1) a fork while its git detection
    /// starts `git` inherits the pipe Python waits on for `git`'s exec, and detection then hangs until
    /// the SDK gives up after 300 s (its stacks showed it), and (2) the forked reporter and the script's
    /// process wrote on one inherited connection at once: the server read `GET …/tasks.failed` inside
    /// the body of an `events.add_batch`, and both were lost. The thread sends the same batches.
    static let configuration = "sdk { development { report_use_subprocess: false } }\n"

    static let scripts: [String: String] = [
        "train.py": """
            import argparse, json
            from clearml import Task
            parser = argparse.ArgumentParser()
            parser.add_argument("--epochs", type=int, default=3)
            parser.add_argument("--lr", type=float, default=0.01)
            args = parser.parse_args()
            task = Task.init(project_name="vision", task_name="resnet")
            config = task.connect({"batch": 32, "optimizer": "adam"})
            task.add_tags(["baseline", "gpu"])
            logger = task.get_logger()
            for i in range(args.epochs):
                logger.report_scalar("loss", "train", 1.0 / (i + 1) + args.lr, iteration=i)
                logger.report_scalar("accuracy", "val", 0.5 + i / 100, iteration=i * 10)
                print(f"epoch {i} done", flush=True)
            with open("weights.bin", "wb") as f:
                f.write(bytes(range(256)) * 40)
            task.upload_artifact("weights", artifact_object="weights.bin")
            task.flush(wait_for_uploads=True)
            same = Task.get_task(task_id=task.id)
            with open(same.artifacts["weights"].get_local_copy(), "rb") as f:
                downloaded = f.read() == bytes(range(256)) * 40
            listed = Task.get_tasks(project_name="vision", task_name="resnet")
            print("RESULT " + json.dumps({"id": task.id, "scalars": task.get_reported_scalars(), "status": same.get_status(),
                                          "name": same.name, "listed": [t.id for t in listed], "parameters": same.get_parameters(),
                                          "artifacts": sorted(same.artifacts.keys()), "downloaded": downloaded}), flush=True)
            task.close()
            """,
        "fail.py": """
            from clearml import Task
            task = Task.init(project_name="vision", task_name="broken")
            print("about to fail", flush=True)
            raise RuntimeError("the data loader broke")
            """,
        "loop.py": """
            import time
            from clearml import Task
            task = Task.init(project_name="vision", task_name="forever")
            print("LOOPING " + task.id, flush=True)
            i = 0
            while True:
                task.get_logger().report_scalar("loop", "i", i, iteration=i)
                i += 1
                time.sleep(0.1)
            """,
    ]

    @Test func aTrainingScriptLogsIntoCMLServeUnchanged() throws {
        let setup = try Setup()
        let ran = try setup.python("train.py", ["--epochs", "4", "--lr", "0.02"]).wait()
        #expect(ran.status == 0, "\(ran.out)\(ran.stderr)")
        let line = try #require(ran.out.split(separator: "\n").first { $0.hasPrefix("RESULT ") })
        let result = try #require(try JSONSerialization.jsonObject(with: Data(line.dropFirst(7).utf8)) as? [String: Any])
        let id = try #require(result["id"] as? String)

        // The SDK reads back what it logged.
        #expect(result["status"] as? String == "in_progress")
        #expect(result["name"] as? String == "resnet")
        #expect((result["listed"] as? [String])?.contains(id) == true)
        #expect(result["artifacts"] as? [String] == ["weights"])
        #expect(result["downloaded"] as? Bool == true, "the SDK's download of its artifact through /clearml-files")
        let parameters = try #require(result["parameters"] as? [String: String])
        #expect(parameters == ["Args/epochs": "4", "Args/lr": "0.02", "General/batch": "32", "General/optimizer": "adam"])

        // The same run through cml's commands.
        let runs = try setup.runs()
        #expect(runs.count == 1)
        let run = try #require(runs.first)
        #expect(run["id"] as? String == id)
        #expect(run["name"] as? String == "resnet" && run["project"] as? String == "vision")
        #expect(run["status"] as? String == "completed")
        #expect(Set(run["tags"] as? [String] ?? []) == ["baseline", "gpu"])
        let params = try #require(run["params"] as? [String: Any])
        #expect(params["Args/epochs"] as? Int == 4 && params["Args/lr"] as? Double == 0.02)
        #expect(params["General/batch"] as? Int == 32 && params["General/optimizer"] as? String == "adam")

        // Every point, value for value, as get_reported_scalars() read them.
        let scalars = try #require(result["scalars"] as? [String: [String: [String: Any]]])
        let points = try setup.cml("cml-run", ["metrics", id]).jsonLines
        for (key, title, series) in [("loss/train", "loss", "train"), ("accuracy/val", "accuracy", "val")] {
            let reported = try #require(scalars[title]?[series])
            let mine = points.filter { $0["key"] as? String == key }
            #expect(mine.count == 4)
            #expect(mine.map { $0["step"] as? Int } == (reported["x"] as? [Int] ?? []).map(Optional.some), "\(key)")
            #expect(mine.map { $0["value"] as? Double } == (reported["y"] as? [Double] ?? []).map(Optional.some), "\(key)")
        }
        let losses = points.filter { $0["key"] as? String == "loss/train" }.compactMap { $0["value"] as? Double }
        #expect(zip(losses, [1.02, 0.52, 1.0 / 3 + 0.02, 0.27]).allSatisfy { abs($0 - $1) < 1e-12 } && losses.count == 4, "\(losses)")

        // The console the SDK captured is the run's output.
        let log = try setup.cml("cml-run", ["log", id]).out
        for epoch in 0..<4 { #expect(log.contains("epoch \(epoch) done\n"), "\(log)") }
        #expect(log.contains("RESULT {"))

        // The code state: the commit, the branch, and the uncommitted change as the patch.
        let shown = try #require(setup.cml("cml-run", ["show", id]).jsonLines.first)
        let code = try #require(shown["code"] as? [String: Any])
        let head = try shell("git rev-parse HEAD", cwd: setup.repo).out.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(code["commit"] as? String == head && code["branch"] as? String == "main" && code["dirty"] as? Bool == true)
        #expect(shown["command"] as? [String] == ["python3", "train.py"] || (shown["command"] as? [String])?.last == "train.py")
        let patch = try setup.curl("/api/v1/blobs/\(try #require(code["patch_blob"] as? String))", "-H 'Authorization: Bearer \(setup.writeToken)'")
        #expect(patch.status == 200)
        let patchText = try String(contentsOfFile: setup.box.root + "/body.json", encoding: .utf8)
        #expect(patchText.contains("+# tuned locally"), "\(patchText)")

        // The uploaded file is a cml artifact, byte for byte.
        let artifacts = try setup.cml("cml-run", ["artifacts", id]).jsonLines
        #expect(artifacts.map { $0["name"] as? String } == ["weights"])
        _ = try setup.cml("cml-run", ["get", id, "weights", setup.box.root + "/fetched.bin"])
        let fetched = try Data(contentsOf: URL(fileURLWithPath: setup.box.root + "/fetched.bin"))
        #expect(fetched == Data(Array(0...255).map(UInt8.init) + []).repeated(40))
    }

    @Test func anExceptionFailsTheRun() throws {
        let setup = try Setup()
        let ran = try setup.python("fail.py").wait()
        #expect(ran.status != 0)
        let run = try #require(try setup.runs().first)
        #expect(run["name"] as? String == "broken")
        #expect(run["status"] as? String == "failed", "\(ran.out)\(ran.stderr)")
        let log = try setup.cml("cml-run", ["log", try #require(run["id"] as? String)]).out
        #expect(log.contains("about to fail") && log.contains("RuntimeError: the data loader broke"), "\(log)")
    }

    /// `cml-run abort` is what ClearML's abort is to the SDK: the status poll (every two seconds or so)
    /// finds the task stopped, and the SDK stops the script.
    @Test func cmlRunAbortStopsTheScript() throws {
        let setup = try Setup()
        let script = try setup.python("loop.py")
        #expect(waitUntil(timeout: 60) { script.stdoutSoFar.contains("LOOPING ") || script.hasExited })
        let id = try #require(script.stdoutSoFar.split(separator: "\n").first { $0.hasPrefix("LOOPING ") }?.dropFirst(8)).description
        #expect(waitUntil(timeout: 20) { ((try? setup.cml("cml-run", ["metrics", id]).jsonLines.count) ?? 0) > 0 })
        #expect(try setup.cml("cml-run", ["show", id]).jsonLines.first?["status"] as? String == "running")
        let asked = Date()
        let aborted = try setup.cml("cml-run", ["abort", id])
        #expect(aborted.jsonLines.first?["abort"] as? String == "requested")
        #expect(waitUntil(timeout: 15) { script.hasExited }, "the script still runs")
        if !script.hasExited { kill(script.pid, SIGKILL) }
        let stopped = try script.wait()
        #expect(Date().timeIntervalSince(asked) < 15)
        #expect(stopped.out.contains("LOOPING") && (stopped.out + stopped.stderr).contains("USER ABORTED"), "\(stopped.out)\(stopped.stderr)")
        let run = try #require(try setup.cml("cml-run", ["show", id]).jsonLines.first)
        #expect(run["status"] as? String == "aborted")
        #expect((run["metrics"] as? [String: Any])?["loop/i"] != nil)
    }

    @Test func aBadSecretIs401InClearMLsEnvelopeAndWritesNothing() throws {
        let setup = try Setup()
        let login = try setup.curl("/clearml/auth.login", "-u tests:cml_not-a-token")
        #expect(login.status == 401)
        let meta = try #require(login.body["meta"] as? [String: Any])
        #expect(meta["result_code"] as? Int == 401)
        #expect((meta["endpoint"] as? [String: Any])?["name"] as? String == "auth.login")
        #expect((meta["result_msg"] as? String)?.contains("token") == true)
        #expect(login.body["data"] as? [String: Any] != nil)
        let ran = try setup.python("train.py", secret: "cml_not-a-token").wait()
        #expect(ran.status != 0)
        #expect(try setup.runs().isEmpty)
    }

    @Test func aReadOnlyTokenMayReadButNotWrite() throws {
        let setup = try Setup()
        let login = try setup.curl("/clearml/auth.login", "-u tests:\(setup.readToken)")
        #expect(login.status == 200)
        let token = try #require((login.body["data"] as? [String: Any])?["token"] as? String)
        let listed = try setup.curl("/clearml/v2.23/projects.get_all", "-H 'Authorization: Bearer \(token)' -H 'Content-Type: application/json' -d '{}'")
        #expect(listed.status == 200 && (listed.body["data"] as? [String: Any])?["projects"] as? [Any] != nil)
        let created = try setup.curl("/clearml/v2.23/tasks.create",
                                     "-H 'Authorization: Bearer \(token)' -H 'Content-Type: application/json' -d '{\"name\":\"x\",\"project\":\"vision\"}'")
        #expect(created.status == 403)
        #expect((created.body["meta"] as? [String: Any])?["result_code"] as? Int == 403)
        let ran = try setup.python("train.py", secret: setup.readToken).wait()
        #expect(ran.status != 0)
        #expect(try setup.runs().isEmpty)
        // A call cml has no place for is a 400 the SDK logs and goes on from, never one it retries.
        let unknown = try setup.curl("/clearml/v2.23/workers.get_all", "-H 'Authorization: Bearer \(token)'")
        #expect(unknown.status == 400 && (unknown.body["meta"] as? [String: Any])?["result_code"] as? Int == 400)
    }
}

extension ClearMLClientTests {
    /// A token bound to a project writes and reads tasks of that project only.
    @Test func aProjectBoundTokenSeesAndWritesOnlyItsProjects() throws {
        let setup = try Setup()
        let bound = try Setup.token(setup.box, "bound", "write", projects: ["nlp"])
        let ran = try setup.python("fail.py").wait()  // a run in project vision, with the unbound token
        #expect(ran.status != 0)
        let login = try setup.curl("/clearml/auth.login", "-u tests:\(bound)")
        let token = try #require((login.body["data"] as? [String: Any])?["token"] as? String)
        let json = "-H 'Authorization: Bearer \(token)' -H 'Content-Type: application/json'"
        let refused = try setup.curl("/clearml/v2.23/tasks.create", json + " -d '{\"name\":\"x\",\"project\":\"vision\"}'")
        #expect(refused.status == 403)
        let created = try setup.curl("/clearml/v2.23/tasks.create", json + " -d '{\"name\":\"bert\",\"project\":\"nlp\"}'")
        #expect(created.status == 200)
        let id = try #require((created.body["data"] as? [String: Any])?["id"] as? String)
        let listed = try setup.curl("/clearml/v2.23/tasks.get_all", json + " -d '{\"only_fields\":[\"id\",\"project\"]}'")
        let tasks = try #require((listed.body["data"] as? [String: Any])?["tasks"] as? [[String: Any]])
        #expect(tasks.map { $0["id"] as? String } == [id] && tasks.first?["project"] as? String == "nlp")
        let projects = try setup.curl("/clearml/v2.23/projects.get_all", json + " -d '{}'")
        #expect(((projects.body["data"] as? [String: Any])?["projects"] as? [[String: Any]])?.map { $0["name"] as? String } == ["nlp"])
        let other = try #require(try setup.runs().first { $0["project"] as? String == "vision" }?["id"] as? String)
        let hidden = try setup.curl("/clearml/v2.23/tasks.get_by_id", json + " -d '{\"task\":\"\(other)\"}'")
        #expect(hidden.status == 404)
        #expect(try setup.runs().count == 2)
    }
}

/// The SDK retries 429, 502, 503 and 509 hundreds of times: only a busy store may answer one of them.
@Test func clearMLErrorsAreNeverOnesTheSDKRetriesUnlessTheStoreIsBusy() throws {
    for kind in CMLError.Kind.allCases {
        let response = ClearMLEnvelope.error(CMLError("failed", kind: kind), call: ClearMLCall(endpoint: "tasks.edit", requestedVersion: "2.23"))
        let retried = [429, 502, 503, 509].contains(response.status.code)
        #expect(retried == (kind == .busy), "\(kind) answers \(response.status.code)")
    }
}

extension Data {
    func repeated(_ times: Int) -> Data {
        var result = Data()
        for _ in 0..<times { result.append(self) }
        return result
    }
}

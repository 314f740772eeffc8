import Foundation
import Testing

/// Secrets on the command line and in the work tree never reach the store; what a run leaves out of its
/// code is named, and a re-run takes the secrets from the agent's environment.
struct SecretTests {
    /// A repository whose script takes secrets and writes what it received where `$RECEIVED` says.
    private func repository() throws -> QueueBox {
        let q = try QueueBox()
        try q.box.write(q.repo + "/secret.py", """
            import argparse, os
            parser = argparse.ArgumentParser()
            parser.add_argument("--api-key")
            parser.add_argument("--password")
            parser.add_argument("--lr", type=float, default=0.1)
            args, rest = parser.parse_known_args()
            if os.environ.get("RECEIVED"):
                with open(os.environ["RECEIVED"], "w") as f:
                    f.write(" ".join([str(args.api_key), str(args.password)] + rest))
            print(f"loss: {args.lr}")
            """)
        #expect(try shell("git add secret.py && git commit -qm secret", cwd: q.repo).status == 0)
        return q
    }

    private func latestID(_ box: Sandbox) throws -> String {
        try #require(try box.runs().first?["id"] as? String)
    }

    @Test func secretOptionValuesNeverReachTheStore() throws {
        let q = try repository()
        let run = try q.box.run("cml-run", ["--monitor-interval", "0", "--", "python3", "secret.py", "--api-key", "sk-live-xyz789",
                                            "--password=hunter2", "db_token=tok-123", "--lr", "0.5"], cwd: q.repo)
        #expect(run.status == 0, "\(run.stderr)")
        let marker = "<redacted>"
        let id = try latestID(q.box)
        let listed = try #require(try q.box.runs().first)
        for record in [try q.show(id), listed] {
            #expect(record["command"] as? [String] == ["python3", "secret.py", "--api-key", marker, "--password=\(marker)",
                                                       "db_token=\(marker)", "--lr", "0.5"], "\(record)")
            let params = try #require(record["params"] as? [String: Any])
            #expect(params["api-key"] as? String == marker && params["password"] as? String == marker
                    && params["db_token"] as? String == marker && params["lr"] as? Double == 0.5, "\(params)")
        }

        // Specs made from a command line, by cml-run spec and cml-queue add, and one written by hand.
        let spec = try q.box.run("cml-run", ["spec", "--", "python3", "secret.py", "--api-key", "sk-spec-111"], cwd: q.repo)
        #expect(spec.status == 0 && spec.stderr.contains("$CML_SECRET_API_KEY"), "\(spec.stderr)")
        #expect(spec.jsonLines.first?["command"] as? [String] == ["python3", "secret.py", "--api-key", marker])
        let queued = try q.add(["python3", "secret.py", "--password", "sk-queue-222"])
        let byHand = #"{"command": ["python3", "secret.py", "--api-key=sk-hand-333"]}"#
        let added = try q.queue(["add", "q"], stdin: byHand + "\n")
        #expect(added.status == 0, "\(added.stderr)")
        let handID = try #require(added.jsonLines.first?["id"] as? String)
        let waiting = try q.queue(["ls", "q", "--format", "jsonl"]).jsonLines
        #expect(waiting.first { $0["id"] as? String == queued }?["command"] as? [String] == ["python3", "secret.py", "--password", marker])
        #expect(waiting.first { $0["id"] as? String == handID }?["command"] as? [String] == ["python3", "secret.py", "--api-key=\(marker)"])

        // Nowhere in the store: not in the database (runs, params, queued specs), its journal, logs or blobs.
        let files = try FileManager.default.subpathsOfDirectory(atPath: q.box.store)
        #expect(files.contains("cml.db"))
        for file in files {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: q.box.store + "/" + file, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            let bytes = try Data(contentsOf: URL(fileURLWithPath: q.box.store + "/" + file))
            for secret in ["sk-live-xyz789", "hunter2", "tok-123", "sk-spec-111", "sk-queue-222", "sk-hand-333"] {
                #expect(bytes.range(of: Data(secret.utf8)) == nil, "\(secret) is in \(file)")
            }
        }
    }

    @Test func anAgentTakesSecretsFromItsEnvironmentAndNamesTheFilesItLacks() throws {
        let q = try repository()
        try q.box.write(q.repo + "/.env", "OPENAI_API_KEY=sk-env-file\n")
        #expect(try shell("head -c 1500000 /dev/urandom > model.pt", cwd: q.repo).status == 0)
        let run = try q.box.run("cml-run", ["--monitor-interval", "0", "--", "python3", "secret.py", "--api-key", "sk-live-xyz789",
                                            "--password=hunter2"], cwd: q.repo)
        #expect(run.status == 0)
        // Quiet about the large file, a note for the secret one.
        #expect(run.stderr == "cml-run: warning: left out of the code patch as secret files: .env\n", "\(run.stderr)")
        let id = try latestID(q.box)
        let code = try #require(try q.show(id)["code"] as? [String: Any])
        let leftOut = try #require(code["left_out"] as? [[String: Any]])
        let sha256 = try shell("sha256sum model.pt", cwd: q.repo).out.prefix(64)
        #expect(leftOut.count == 2, "\(leftOut)")
        #expect(leftOut.first { $0["path"] as? String == ".env" }?["reason"] as? String == "secret")
        let model = try #require(leftOut.first { $0["path"] as? String == "model.pt" })
        #expect(model["reason"] as? String == "size" && model["size"] as? Int == 1_500_000 && model["sha256"] as? String == String(sha256))
        let patch = try q.box.run("cml-run", ["show", "--patch", id]).out
        #expect(!patch.contains("sk-env-file") && !patch.contains("model.pt") && !patch.contains(".env"), "\(patch)")

        // The clone says what the agent needs, and --set cannot put a secret into the spec.
        let clone = try q.box.run("cml-run", ["clone", id])
        #expect(clone.status == 0 && clone.out.contains("\"--api-key\",\"<redacted>\""), "\(clone.out)")
        #expect(clone.stderr.contains("$CML_SECRET_API_KEY") && clone.stderr.contains("$CML_SECRET_PASSWORD"), "\(clone.stderr)")
        let set = try q.box.run("cml-run", ["clone", id, "--set", "api-key=sk-other"])
        #expect(set.status == 2 && set.stderr.contains("CML_SECRET_API_KEY") && set.out.isEmpty, "\(set.stderr)")

        // Without the variables the command does not run; the error names them.
        let received = q.box.root + "/received.txt"
        let refused = try #require(try q.queue(["add", "q"], stdin: clone.out).jsonLines.first?["id"] as? String)
        #expect(try q.agent("a", ["--once"], env: ["RECEIVED": received]).wait().status == 0)
        let failed = try q.show(refused)
        #expect(failed["status"] as? String == "failed", "\(failed)")
        #expect((failed["error"] as? String)?.contains("CML_SECRET_API_KEY, CML_SECRET_PASSWORD are not set in the agent's environment") == true,
                "\(failed)")
        #expect(!FileManager.default.fileExists(atPath: received))

        // With them it runs with the real values; the record keeps the marker.
        let rerun = try #require(try q.queue(["add", "q"], stdin: clone.out).jsonLines.first?["id"] as? String)
        let env = ["RECEIVED": received, "CML_SECRET_API_KEY": "sk-from-agent", "CML_SECRET_PASSWORD": "pw-from-agent"]
        #expect(try q.agent("a", ["--once"], env: env).wait().status == 0)
        #expect(try q.status(rerun) == "completed", "\(q.describe(rerun))")
        #expect(try String(contentsOfFile: received, encoding: .utf8) == "sk-from-agent pw-from-agent")
        let record = try q.show(rerun)
        #expect(record["command"] as? [String] == ["python3", "secret.py", "--api-key", "<redacted>", "--password=<redacted>"])
        #expect((record["env"] as? [String: Any])?["CML_SECRET_API_KEY"] as? String == "<redacted>")
        let log = try q.log(rerun)
        #expect(log.contains("cml-agent: not in the reproduced code (left out when it was captured): .env (secret), model.pt (1,500,000 bytes, sha256 \(sha256.prefix(12)))"),
                "\(log)")
    }

    @Test func cmlignoreAndTheCapOnUntrackedFiles() throws {
        let q = try repository()
        try q.box.write(q.repo + "/.cmlignore", "ckpt/\n")
        try q.box.write(q.repo + "/ckpt/epoch1.pt", "weights\n")
        #expect(try shell("head -c 1500000 /dev/urandom > model.pt", cwd: q.repo).status == 0)
        func record(_ options: [String]) throws -> (code: [String: Any], patch: String) {
            let run = try q.box.run("cml-run", options + ["--monitor-interval", "0", "--", "true"], cwd: q.repo)
            #expect(run.status == 0 && run.stderr.isEmpty, "\(run.stderr)")
            let id = try latestID(q.box)
            return (try #require(try q.show(id)["code"] as? [String: Any]), try q.box.run("cml-run", ["show", "--patch", id]).out)
        }
        let capped = try record([])
        #expect((capped.code["left_out"] as? [[String: Any]])?.compactMap { $0["path"] as? String } == ["model.pt"])
        #expect(capped.patch.contains("b/.cmlignore") && !capped.patch.contains("b/ckpt/") && !capped.patch.contains("model.pt"))
        let whole = try record(["--max-untracked-size", "2M"])
        #expect((whole.code["left_out"] as? [Any])?.isEmpty == true)
        #expect(whole.patch.contains("b/model.pt") && whole.patch.contains("GIT binary patch") && !whole.patch.contains("b/ckpt/"))

        let before = try q.box.runs().count
        let bad = try q.box.run("cml-run", ["--max-untracked-size", "lots", "--", "true"], cwd: q.repo)
        #expect(bad.status == 2 && bad.stderr.contains("--max-untracked-size lots is not a size"), "\(bad.stderr)")
        #expect(try q.box.runs().count == before)
    }
}

import Foundation
import Testing

/// Metric keys, tags, run names and parameters over their length limits are refused where they enter,
/// with an error that shows their start and length, and the store is left as it was.
struct NameLimitTests {
    private let long = String(repeating: "k", count: 300)
    private let longValue = String(repeating: "v", count: 70_000)
    private var shown: String { "\"\(String(repeating: "k", count: 40))…\" is too long (300 bytes; at most 256)" }

    private func recordedRun(_ box: Sandbox) throws -> String {
        let result = try box.run("cml-run", ["--monitor-interval", "0", "--name", "base", "--tag", "kept", "--param", "lr=0.1", "--", "true"])
        #expect(result.status == 0, "\(result.stderr)")
        return try #require(try box.runs().first?["id"] as? String)
    }

    @Test func cmlRunRefusesOverLongOptionsAndRecordsNothing() throws {
        let box = try Sandbox()
        for options in [["--name", long], ["--tag", long], ["--param", "\(long)=1"], ["--param", "notes=\(longValue)"],
                        ["--project", long]] {
            let result = try box.run("cml-run", ["--monitor-interval", "0"] + options + ["--", "true"])
            #expect(result.status == 2, "\(options[0]): \(result.stderr)")
            #expect(result.stderr.utf8.count < 400, "\(options[0]): the error repeats the whole name")
            #expect(result.stderr.contains("is too long"), "\(result.stderr)")
        }
        #expect(try box.run("cml-run", ["--name", long, "--", "true"]).stderr.contains("--name \(shown)"))
        #expect(try box.runs().isEmpty)
    }

    @Test func anOverLongParameterOnTheCommandLineIsLeftOutWithAWarning() throws {
        let box = try Sandbox()
        let result = try box.run("cml-run", ["--monitor-interval", "0", "--", "true", "--lr", "0.1", "--\(long)", "1", "--notes", longValue])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("cml-run: warning: parameter name \(shown): the parameter is not recorded"), "\(result.stderr)")
        #expect(result.stderr.contains("cml-run: warning: value of parameter \"notes\""))
        let run = try #require(try box.runs().first)
        #expect((run["params"] as? [String: Any])?.keys.sorted() == ["lr"])
        #expect(run["status"] as? String == "completed")
    }

    @Test func tagAndRenameRefuseOverLongNames() throws {
        let box = try Sandbox()
        let id = try recordedRun(box)
        let tagged = try box.run("cml-run", ["tag", id, "+ok", "+\(long)"])
        #expect(tagged.status == 2 && tagged.stderr.contains("tag \(shown)"), "\(tagged.stderr)")
        let piped = try box.run("cml-run", ["tag", "+\(long)"], stdin: Data("\(id)\n".utf8))
        #expect(piped.status == 2)
        let renamed = try box.run("cml-run", ["rename", id, long])
        #expect(renamed.status == 2 && renamed.stderr.contains("run name \(shown)"), "\(renamed.stderr)")
        let cloned = try box.run("cml-run", ["clone", id, "--name", long])
        #expect(cloned.status == 2 && cloned.out.isEmpty)
        let set = try box.run("cml-run", ["clone", id, "--set", "\(long)=1"])
        #expect(set.status == 2 && set.stderr.contains("parameter name \(shown)"), "\(set.stderr)")
        let run = try box.show(id)
        #expect(run["tags"] as? [String] == ["kept"] && run["name"] as? String == "base")
    }

    @Test func cmlLogRefusesOverLongNamesAndLeavesTheRunAsItWas() throws {
        let box = try Sandbox()
        let id = try recordedRun(box)
        for arguments in [["scalar", long, "1"], ["param", long, "1"], ["param", "notes", longValue], ["tag", long]] {
            let result = try box.run("cml-log", arguments + ["--run", id])
            #expect(result.status == 2 && result.stderr.contains("is too long"), "\(arguments[0]): \(result.stderr)")
            #expect(result.stderr.utf8.count < 400)
        }
        // A batch with one bad line stores none of it: not the parameter, tag or point before it.
        let lines = "{\"param\": {\"batch\": 64}}\n{\"tag\": \"good\"}\n{\"step\": 1, \"acc\": 0.5}\n{\"\(long)\": 1}\n"
        let batch = try box.run("cml-log", ["--run", id], stdin: Data(lines.utf8))
        #expect(batch.status == 1 && batch.stderr.contains("stdin line 4: metric name \(shown)"), "\(batch.stderr)")
        let run = try box.show(id)
        #expect((run["params"] as? [String: Any])?.keys.sorted() == ["lr"])
        #expect(run["tags"] as? [String] == ["kept"])
        #expect((run["metrics"] as? [String: Any])?.isEmpty ?? true)
    }

    @Test func anOverLongLineOnTheLogChannelIsReportedOnceAndSkipped() throws {
        let box = try Sandbox()
        try box.write("log.py", """
            import json, os
            fd = int(os.environ["CML_LOG_FD"])
            for line in [{"\(long)": 1}, {"tag": "\(long)"}, {"step": 1, "loss": 0.5}, {"tag": "fine"}]:
                os.write(fd, (json.dumps(line) + "\\n").encode())
            """)
        let result = try box.run("cml-run", ["--monitor-interval", "0", "--", "python3", "log.py"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.components(separatedBy: "was not recorded").count == 2, "\(result.stderr)")
        #expect(result.stderr.contains("line 1 of $CML_LOG_FD was not recorded: metric name \(shown)"), "\(result.stderr)")
        let run = try #require(try box.runs().first)
        #expect(run["tags"] as? [String] == ["fine"])
        #expect((run["metrics"] as? [String: Any])?.keys.sorted() == ["loss"])
    }

    @Test func overLongKeysFromOutputAndLogFilesAreLeftOutAndArtifactAndDatasetNamesRefused() throws {
        let box = try TensorBoardImportTests.sandbox()
        // Printed, in a Lightning CSV log and as a TensorBoard tag, beside keys of a fine length.
        try box.write("train.py", """
            import os
            from tensorboardX import SummaryWriter
            print("\(long)=1 loss=0.5", flush=True)
            os.makedirs("logs", exist_ok=True)
            with open("logs/metrics.csv", "w") as f:
                f.write("step,\(long),acc\\n0,1,0.75\\n")
            w = SummaryWriter("tb")
            w.add_scalar("\(long)", 1.0, 0)
            w.add_scalar("val_loss", 0.25, 0)
            w.close()
            """)
        let result = try box.run("cml-run", ["--monitor-interval", "0", "--", "python3", "train.py"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("metrics.csv: metric name \(shown): its column is not recorded"), "\(result.stderr)")
        #expect(result.stderr.contains("metric name \(shown): its scalars are not recorded"), "\(result.stderr)")
        #expect(result.stderr.utf8.count < 2_000, "a warning repeats the whole name")
        let run = try #require(try box.runs().first)
        #expect((run["metrics"] as? [String: Any])?.keys.sorted() == ["acc", "loss", "val_loss"], "\(run["metrics"] ?? "")")

        let id = try #require(run["id"] as? String)
        try box.write("f.txt", "x")
        for arguments in [["artifact", "f.txt", "--name", long], ["text", "note", "--name", long]] {
            let refused = try box.run("cml-log", arguments + ["--run", id])
            #expect(refused.status == 2 && refused.stderr.contains("artifact name \(shown)"), "\(refused.stderr)")
        }
        #expect(try box.run("cml-run", ["artifacts", id]).out.isEmpty)

        try FileManager.default.createDirectory(atPath: box.work + "/data", withIntermediateDirectories: true)
        try box.write("data/a", "a")
        let snapshot = try box.run("cml-data", ["snapshot", "data", "--name", String(repeating: "d", count: 300)])
        #expect(snapshot.status == 2 && snapshot.stderr.contains("is not a valid dataset name (over 200 bytes)"), "\(snapshot.stderr)")
        #expect(snapshot.stderr.utf8.count < 400, "the error repeats the whole name")
    }

    @Test func aQueuedSpecWithAnOverLongNameIsRefused() throws {
        let box = try Sandbox()
        let spec = try box.run("cml-run", ["spec", "--", "true"])
        #expect(spec.status == 0, "\(spec.stderr)")
        var object = try #require(try JSONSerialization.jsonObject(with: spec.stdout) as? [String: Any])
        object["tags"] = [long]
        let line = try JSONSerialization.data(withJSONObject: object) + Data("\n".utf8)
        let added = try box.run("cml-queue", ["add", "gpu"], stdin: line)
        #expect(added.status == 1 && added.stderr.contains("stdin line 1 is not a run spec: tag \(shown)"), "\(added.stderr)")
        let option = try box.run("cml-queue", ["add", "gpu", "--tag", long], stdin: spec.stdout)
        #expect(option.status == 2 && option.stderr.contains("--tag \(shown)"), "\(option.stderr)")
        #expect(try box.run("cml-queue", ["stats", "--format", "jsonl"]).out.isEmpty)
    }
}

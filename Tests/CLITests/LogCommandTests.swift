import Foundation
import Testing

/// `cml-log`, inside a run (through $CML_LOG_FD) and outside one (straight into the store).
struct LogCommandTests {
    @Test func insideARunItGoesThroughTheChannel() throws {
        let box = try Sandbox()
        let log = binDirectory + "/cml-log"
        let script = """
            \(log) scalar loss 0.5 --step 3 && \(log) param lr 0.01 && \(log) tag best && \
            printf '{"step": 4, "loss": 0.25}\\n{"param": {"batch": 64}}\\n' | \(log)
            """
        let result = try box.run("cml-run", ["--monitor-interval", "0", "--", "sh", "-c", script])
        #expect(result.status == 0, "\(result.stderr)")
        let run = try #require(try box.runs().first)
        #expect((run["params"] as? [String: Any])?["lr"] as? Double == 0.01)
        #expect((run["params"] as? [String: Any])?["batch"] as? Int == 64)
        #expect(run["tags"] as? [String] == ["best"])
        let points = try box.run("cml-run", ["metrics", try #require(run["id"] as? String)]).jsonLines
        #expect(points.map { $0["step"] as? Int } == [3, 4])
    }

    @Test func outsideARunItNeedsTheRunAndChecksItsInput() throws {
        let box = try Sandbox()
        #expect(try box.run("cml-run", ["--", "true"]).status == 0)
        let id = try #require(try box.runs().first?["id"] as? String)
        #expect(try box.run("cml-log", ["scalar", "acc", "0.9", "--run", String(id.prefix(12))]).status == 0)
        #expect(try box.run("cml-log", ["param", "opt", "adam", "--run", id]).status == 0)
        let lines = Data("{\"step\": 1, \"acc\": 0.95}\n".utf8)
        #expect(try box.run("cml-log", ["--run", id], stdin: lines).status == 0)
        let bad = try box.run("cml-log", ["--run", id], stdin: Data("{\"acc\": 1}\n{\"acc\": \"high\"}\n".utf8))
        #expect(bad.status == 1 && bad.stderr.contains("stdin line 2"))
        let noRun = try box.run("cml-log", ["tag", "x"])
        #expect(noRun.status == 2 && noRun.stderr.contains("no run to log to"))
        let unknown = try box.run("cml-log", ["tag", "x", "--run", "ffffffffff"])
        #expect(unknown.status == 1 && unknown.stderr.contains("no run with id"))
        let run = try box.show(id)
        #expect((run["params"] as? [String: Any])?["opt"] as? String == "adam")
        let acc = try #require((run["metrics"] as? [String: [String: Any]])?["acc"])
        // The bad batch was refused whole: its good first line was not stored either.
        #expect(acc["count"] as? Int == 2 && acc["last"] as? Double == 0.95)
    }

    @Test func nonFiniteValuesAreKeptAndBadMetricNamesRefused() throws {
        let box = try Sandbox()
        #expect(try box.run("cml-run", ["--monitor-interval", "0", "--", "true"]).status == 0)
        let id = try #require(try box.runs().first?["id"] as? String)
        // Python's json writes NaN and Infinity bare; cml's own output writes them as strings.
        let lines = "{\"step\": 1, \"loss\": NaN}\n{\"loss\": -Infinity}\n{\"loss\": \"inf\"}\n"
        let stored = try box.run("cml-log", ["--run", id], stdin: Data(lines.utf8))
        #expect(stored.status == 0, "\(stored.stderr)")
        let loss = try box.run("cml-run", ["metrics", id, "--key", "loss"]).jsonLines
        #expect(loss.map { $0["value"] as? String } == ["nan", "-inf", "inf"])
        #expect(loss.map { $0["step"] as? Int } == [1, 2, 3])

        let empty = try box.run("cml-log", ["scalar", "", "1", "--run", id])
        #expect(empty.status == 1 && empty.stderr.contains("a metric name is empty"))
        let control = try box.run("cml-log", ["--run", id], stdin: Data("{\"acc\": 1}\n{\"a\\u0007b\": 1}\n".utf8))
        #expect(control.status == 1 && control.stderr.contains("stdin line 2") && control.stderr.contains("control character"))
        let word = try box.run("cml-log", ["--run", id], stdin: Data("{\"acc\": \"high\"}\n".utf8))
        #expect(word.status == 1 && word.stderr.contains("the value of \"acc\" is not a number"))
    }
}

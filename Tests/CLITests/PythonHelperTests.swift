import Foundation
import Glibc
import Testing

/// End-to-end: `python/cml.py` as a script uses it, under the built `cml-run` (which puts the module on
/// the `PYTHONPATH`) and outside it; what was recorded is read back with `cml-run metrics` and `show`.
struct PythonHelperTests {
    /// The folder cml-run takes the module from (three above its real location), resolved: Python
    /// normalises `..` in `PYTHONPATH` without following links, and `CML_BIN_DIR` may be one.
    static func pythonDirectory() throws -> String {
        let resolved = try #require(realpath(binDirectory + "/../../../python", nil))
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Runs `script` under cml-run (output not parsed for metrics) and returns its output and run id.
    func record(_ box: Sandbox, _ script: String) throws -> (CommandResult, String) {
        try box.write("train.py", script)
        let result = try box.run("cml-run", ["--monitor-interval", "0", "--no-metrics", "--", "python3", "train.py"])
        #expect(result.status == 0, "\(result.stderr)")
        return (result, try #require(try box.runs().first?["id"] as? String))
    }

    /// Every recorded point, by key, as "step=value" in order ("nan", "inf", "-inf" as stored).
    func points(_ box: Sandbox, _ id: String) throws -> [String: [String]] {
        let result = try box.run("cml-run", ["metrics", id])
        #expect(result.status == 0, "\(result.stderr)")
        var byKey: [String: [String]] = [:]
        for point in result.jsonLines {
            let key = try #require(point["key"] as? String)
            let step = try #require(point["step"] as? Int)
            let value = (point["value"] as? Double).map { "\($0)" } ?? (point["value"] as? String ?? "?")
            byKey[key, default: []].append("\(step)=\(value)")
        }
        return byKey
    }

    @Test func dictKeywordAndMixedForms() throws {
        let box = try Sandbox()
        let (_, id) = try record(box, """
            import cml
            cml.log({"loss": 0.5, "val/acc": 0.25, "top-1 err%": 0.125}, step=3)
            cml.log(step=4, loss=0.375)
            cml.log({"val/acc": 0.5}, loss=0.25, step=5)
            cml.log({"step": 6, "loss": 0.0625})
            """)
        #expect(try points(box, id) == [
            "loss": ["3=0.5", "4=0.375", "5=0.25", "6=0.0625"],
            "val/acc": ["3=0.25", "5=0.5"],
            "top-1 err%": ["3=0.125"],
        ])
    }

    /// Steps are integers: integral floats and scalar objects (as numpy's and torch's) are taken, 2.7,
    /// "3", True and -1 refused before anything is sent; a value that is no number names its key.
    static let stepScript = """
        import cml

        class FloatScalar:  # a 0-d float tensor converts through __float__
            def __float__(self):
                return 4.0

        class IntScalar:  # numpy's and torch's integers through __index__
            def __index__(self):
                return 5

        cml.log(loss=0.5, step=2.0)
        cml.log({"loss": 0.25}, step=FloatScalar())
        cml.log({"loss": FloatScalar()}, step=IntScalar())
        for bad in (2.7, "3", True, -1):
            try:
                cml.log({"loss": 9.0}, step=bad)
            except ValueError as error:
                print("refused:", error)
        try:
            cml.log({"acc": "high"}, step=6)
        except TypeError as error:
            print("refused:", error)
        """

    @Test func stepsAreIntegersAndBadOnesAreRefused() throws {
        let box = try Sandbox()
        let (result, id) = try record(box, Self.stepScript)
        #expect(result.out == """
            refused: cml: a step must be an integer >= 0 (below 9e15), not 2.7
            refused: cml: a step must be an integer >= 0 (below 9e15), not '3'
            refused: cml: a step must be an integer >= 0 (below 9e15), not True
            refused: cml: a step must be an integer >= 0 (below 9e15), not -1
            refused: cml: the value of 'acc' is not a number: 'high'

            """)
        #expect(try points(box, id) == ["loss": ["2=0.5", "4=0.25", "5=4.0"]])
    }

    @Test func nanAndInfinitiesAreKept() throws {
        let box = try Sandbox()
        let (_, id) = try record(box, """
            import cml
            cml.log({"loss": float("nan"), "up": float("inf"), "down": -float("inf"), "ok": 1.5}, step=1)
            """)
        #expect(try points(box, id) == ["loss": ["1=nan"], "up": ["1=inf"], "down": ["1=-inf"], "ok": ["1=1.5"]])
    }

    @Test func loggerObject() throws {
        let box = try Sandbox()
        let (_, id) = try record(box, """
            import cml
            logger = cml.Logger(prefix="train/")
            logger.log_metrics({"loss": 0.5, "acc": 0.75}, step=1)
            logger.log({"loss": 0.25}, acc=0.875, step=2)
            logger.log_params({"lr": 0.01, "optimizer": "adam"})
            logger.log_hyperparams({"batch": 64})
            logger.tag("baseline", "v2")
            logger.report_scalar("loss", "val", 0.125, 7)
            cml.Logger().report_scalar("loss", "val", 0.0625, 8)
            """)
        #expect(try points(box, id) == [
            "train/loss": ["1=0.5", "2=0.25"],
            "train/acc": ["1=0.75", "2=0.875"],
            "train/loss/val": ["7=0.125"],
            "loss/val": ["8=0.0625"],
        ])
        let run = try box.show(id)
        let params = try #require(run["params"] as? [String: Any])
        #expect(params["lr"] as? Double == 0.01 && params["optimizer"] as? String == "adam" && params["batch"] as? Int == 64)
        #expect((run["param_sources"] as? [String: String])?["batch"] == "log")
        #expect(Set(run["tags"] as? [String] ?? []) == ["baseline", "v2"])
    }

    /// Outside cml-run the module imports, records nothing and prints nothing, and refuses what it
    /// refuses inside: the step script prints the same lines.
    @Test func outsideCmlRunEveryCallIsANoOpThatStillChecks() throws {
        let box = try Sandbox()
        let python = "env -u CML_LOG_FD PYTHONPATH=\(try Self.pythonDirectory()) python3"
        let alone = try shell(#"\#(python) -c 'import cml; cml.log({"a": 1}, step=1); cml.Logger().log_metrics({"b": 2})'"#,
                              cwd: box.work)
        #expect(alone.status == 0 && alone.out.isEmpty && alone.stderr.isEmpty, "\(alone.stderr)")
        try box.write("steps.py", Self.stepScript)
        let outside = try shell("\(python) steps.py", cwd: box.work)
        let (inside, _) = try record(box, Self.stepScript)
        #expect(outside.status == 0 && outside.out == inside.out && outside.out.contains("not 2.7"), "\(outside.stderr)")
    }
}

import Testing

@testable import CMLKit

/// Length limits on names, and the checks of what programs log and what `--where` reads as a number.
struct InputCheckTests {
    private func refusal(_ line: String) -> String? {
        var interpreter = ChannelInterpreter()
        do {
            _ = try interpreter.interpret(Array(line.utf8), time: 1)
            return nil
        } catch {
            return error.message
        }
    }

    @Test func anOverLongNameIsNamedByItsStartAndLength() throws {
        let long = String(repeating: "k", count: 300)
        let message = try #require(NameLimits.problem(long, "metric name"))
        #expect(message == "metric name \"\(String(repeating: "k", count: 40))…\" is too long (300 bytes; at most 256)")
        #expect(NameLimits.problem(String(repeating: "k", count: 256), "metric name") == nil)
        // Bytes, not characters: 200 two-byte characters are 400 bytes.
        #expect(NameLimits.problem(String(repeating: "é", count: 200), "tag") != nil)
        let value = Param(key: "notes", value: .string(String(repeating: "v", count: 70_000)), source: "log")
        #expect(NameLimits.problem(value)?.hasPrefix("value of parameter \"notes\" \"vvv") == true)
        #expect(NameLimits.problem(Param(key: "notes", value: .string(String(repeating: "v", count: 60_000)), source: "log")) == nil)
    }

    @Test func theLogChannelRefusesOverLongNamesAndValues() {
        let long = String(repeating: "x", count: 1000)
        #expect(refusal("{\"\(long)\": 1}")?.contains("metric name \"xxxx") == true)
        #expect(refusal("{\"param\": {\"\(long)\": 1}}")?.contains("parameter name") == true)
        #expect(refusal("{\"param\": {\"lr\": \"\(String(repeating: "v", count: 70_000))\"}}")?.contains("value of parameter \"lr\"") == true)
        #expect(refusal("{\"tag\": \"\(long)\"}")?.contains("tag \"xxxx") == true)
        #expect(refusal("{\"tag\": \"\"}") == "\"tag\" must not be empty")
        #expect(refusal("{\"tag\": 3}") == "\"tag\" must be a string")
    }

    @Test func aStepMustBeAnInteger() {
        #expect(refusal("{\"step\": 1.5, \"loss\": 2}") == "\"step\" must be an integer, not 1.5")
        #expect(refusal("{\"step\": \"nan\", \"loss\": 2}") == "\"step\" must be an integer, not \"nan\"")
        #expect(refusal("{\"step\": 2.0, \"loss\": 2}") == nil)
        // Other counters may be fractional: they are metrics then, as in printed output.
        #expect(refusal("{\"epoch\": 0.5, \"loss\": 2}") == nil)
    }

    @Test func overLongCommandLineParametersAreLeftOutWithAWarning() {
        let argv = ["python", "train.py", "--lr", "0.1", "--\(String(repeating: "k", count: 300))", "1",
                    "--notes", String(repeating: "n", count: 70_000)]
        #expect(ParamParser.parse(argv).map(\.key) == ["lr"])
        let warnings = ParamParser.leftOut(argv)
        #expect(warnings.count == 2)
        #expect(warnings.allSatisfy { $0.hasSuffix("is not recorded") && $0.utf8.count < 200 })
    }

    @Test func numbersInWhereAreDecimal() throws {
        for text in ["1", "-2", "0.5", ".5", "3.", "1e-3", "2E+4"] {
            #expect(RunFilter.isDecimal(text), "\(text)")
        }
        for (text, position) in [("acc > 0x10", 7), ("acc > 1 and loss < -inf", 20), ("acc > 0x1p3", 7)] {
            do {
                _ = try RunFilter.parse(text)
                Issue.record("\(text) parsed")
            } catch {
                #expect(error.message.contains("is not a decimal number at character \(position)"), "\(error.message)")
                #expect(error.exitCode == 2)
            }
        }
        // A date or a run id is a word, not a number.
        guard case .compare(_, _, _, .word("2026-11-20", _)) = try RunFilter.parse("started > 2026-11-20") else {
            Issue.record("a date read as something else")
            return
        }
    }
}

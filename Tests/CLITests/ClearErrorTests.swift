import Foundation
import Testing

/// Mistakes that used to give a misleading error, or none.
struct ClearErrorTests {
    @Test func cmlLogTakesItsOptionsBeforeTheSubcommand() throws {
        let box = try Sandbox()
        #expect(try box.run("cml-run", ["--monitor-interval", "0", "--", "true"]).status == 0)
        let id = try #require(try box.runs().first?["id"] as? String)
        for arguments in [["--run", id, "scalar", "acc", "0.9"], ["--run=\(id)", "tag", "best"], ["--run", id, "lines"]] {
            let result = try box.run("cml-log", arguments, stdin: Data())
            #expect(result.status == 0, "\(arguments): \(result.stderr)")
        }
        // The store named before the subcommand is the one used, not $CML_STORE.
        let other = box.root + "/other"
        let named = try box.run("cml-log", ["--store", box.store, "--run", id, "param", "opt", "adam"], env: ["CML_STORE": other])
        #expect(named.status == 0, "\(named.stderr)")
        let run = try box.show(id)
        #expect((run["metrics"] as? [String: Any])?["acc"] != nil)
        #expect((run["params"] as? [String: Any])?["opt"] as? String == "adam")
        #expect(run["tags"] as? [String] == ["best"])
        let missing = try box.run("cml-log", ["--store", other, "--run", id, "tag", "x"])
        #expect(missing.status == 1 && missing.stderr.contains("no run with id"), "\(missing.stderr)")
    }

    @Test func aCommandWithoutDashDashIsToldToUseIt() throws {
        let box = try Sandbox()
        for arguments in [["echo", "hi"], ["--name", "x", "echo", "hi"]] {
            let result = try box.run("cml-run", arguments)
            #expect(result.status == 2, "\(result.stderr)")
            #expect(result.stderr.hasPrefix("cml-run: error: 'echo' is not a cml-run subcommand (to run a command, put -- before it: cml-run -- echo hi)"),
                    "\(result.stderr)")
        }
        #expect(try box.runs().isEmpty)
    }

    @Test func cmlLogRefusesAFractionalStepAndAnEmptyTag() throws {
        let box = try Sandbox()
        #expect(try box.run("cml-run", ["--monitor-interval", "0", "--", "true"]).status == 0)
        let id = try #require(try box.runs().first?["id"] as? String)
        let step = try box.run("cml-log", ["--run", id], stdin: Data("{\"step\": 1, \"loss\": 3}\n{\"step\":1.5,\"loss\":2}\n".utf8))
        #expect(step.status == 1 && step.stderr.contains("stdin line 2: \"step\" must be an integer, not 1.5"), "\(step.stderr)")
        let tag = try box.run("cml-log", ["--run", id], stdin: Data("{\"tag\":\"\"}\n".utf8))
        #expect(tag.status == 1 && tag.stderr.contains("stdin line 1: \"tag\" must not be empty"), "\(tag.stderr)")
        let tagCommand = try box.run("cml-log", ["tag", "", "--run", id])
        #expect(tagCommand.status == 1 && tagCommand.stderr.contains("\"tag\" must not be empty"), "\(tagCommand.stderr)")
        #expect((try box.show(id)["metrics"] as? [String: Any])?.isEmpty ?? true)
    }

    @Test func listingRefusesNoColumnsAndMalformedNumbers() throws {
        let box = try Sandbox()
        #expect(try box.run("cml-run", ["--monitor-interval", "0", "--", "sh", "-c", "echo acc: 20"]).status == 0)
        for columns in ["", ","] {
            let result = try box.run("cml-run", ["ls", "--columns", columns])
            #expect(result.status == 2 && result.stderr.contains("--columns names no column"), "\(result.stderr)")
            #expect(result.out.isEmpty)
        }
        let hex = try box.run("cml-run", ["ls", "--where", "acc > 0x10"])
        #expect(hex.status == 2 && hex.stderr.contains("'0x10' is not a decimal number at character 7"), "\(hex.stderr)")
        let decimal = try box.run("cml-run", ["ls", "--where", "acc > 16"])
        #expect(decimal.status == 0 && decimal.jsonLines.count == 1, "\(decimal.stderr)")
    }
}

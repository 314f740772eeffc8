import Foundation
import Testing

/// Commands that take runs (or specs) on stdin, given a pipe with nothing in it: a cron pipeline whose
/// filter matched nothing does nothing and succeeds.
struct EmptyInputTests {
    private static let empties = [Data(), Data("\n  \n\n".utf8)]

    @Test func runCommandsDoNothingOnAnEmptyPipe() throws {
        let box = try Sandbox()
        #expect(try box.run("cml-run", ["--monitor-interval", "0", "--tag", "kept", "--", "sh", "-c", "echo loss: 0.5"]).status == 0)
        let id = try #require(try box.runs().first?["id"] as? String)
        for stdin in Self.empties {
            for arguments in [["tag", "+new", "-kept"], ["show"], ["show", "--patch"], ["abort"], ["clone"], ["metrics"],
                              ["log"], ["artifacts"]] {
                let result = try box.run("cml-run", arguments, stdin: stdin)
                #expect(result.status == 0 && result.out.isEmpty && result.stderr.isEmpty, "\(arguments): \(result.stderr)")
            }
            let removed = try box.run("cml-run", ["rm", "--yes"], stdin: stdin)
            #expect(removed.status == 0, "\(removed.stderr)")
            #expect(removed.out == "{\"removed\":[],\"blobs_removed\":0,\"bytes_freed\":0}\n")
            let diff = try box.run("cml-diff", [], stdin: stdin)
            #expect(diff.status == 0 && diff.out.isEmpty && diff.stderr.isEmpty, "\(diff.stderr)")
        }
        let run = try box.show(id)
        #expect(run["tags"] as? [String] == ["kept"] && run["status"] as? String == "completed")
        // What the pipe names is still checked.
        let bad = try box.run("cml-run", ["rm", "--yes"], stdin: Data("not-an-id\n".utf8))
        #expect(bad.status == 1 && bad.stderr.contains("stdin line 1 is neither a run id nor a JSON line"))
    }

    @Test func queueCommandsDoNothingOnAnEmptyPipe() throws {
        let box = try Sandbox()
        for stdin in Self.empties {
            let added = try box.run("cml-queue", ["add", "gpu", "--format", "jsonl"], stdin: stdin)
            #expect(added.status == 0 && added.out.isEmpty && added.stderr.isEmpty, "\(added.stderr)")
            let moved = try box.run("cml-queue", ["mv", "cpu", "--format", "jsonl"], stdin: stdin)
            #expect(moved.status == 0 && moved.out.isEmpty, "\(moved.stderr)")
            let removed = try box.run("cml-queue", ["rm"], stdin: stdin)
            #expect(removed.status == 0 && removed.out == "{\"removed\":[]}\n", "\(removed.stderr)")
        }
        // Neither queue was created.
        let stats = try box.run("cml-queue", ["stats", "--format", "jsonl"])
        #expect(stats.status == 0 && stats.out.isEmpty, "\(stats.out)\(stats.stderr)")
        // The options are still checked.
        let badQueue = try box.run("cml-queue", ["add", "no/such", "--format", "jsonl"], stdin: Data())
        #expect(badQueue.status == 2, "\(badQueue.stderr)")
    }

    @Test func withNoRunAndStdinATerminalItIsStillAUsageError() throws {
        let box = try Sandbox()
        #expect(try box.run("cml-run", ["--monitor-interval", "0", "--", "true"]).status == 0)
        try box.write("tty.py", """
            import os, subprocess, sys
            primary, secondary = os.openpty()
            done = subprocess.run(sys.argv[1:], stdin=secondary, capture_output=True)
            sys.stderr.buffer.write(done.stderr)
            sys.exit(done.returncode)
            """)
        for command in [[binDirectory + "/cml-run", "rm", "--yes"], [binDirectory + "/cml-diff"]] {
            let result = try box.run("/usr/bin/env", ["python3", "tty.py"] + command)
            #expect(result.status == 2 && result.stderr.contains("no run given"), "\(command): \(result.stderr)")
        }
        #expect(try box.runs().count == 1)
    }
}

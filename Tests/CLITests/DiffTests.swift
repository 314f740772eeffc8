import Foundation
import Testing

/// `cml-diff`, fed ids or what `cml-run ls` prints.
struct DiffTests {
    /// Two runs of one script with different --lr, in a git repository with different uncommitted edits.
    private func twoRuns(_ box: Sandbox) throws -> [String] {
        let setup = "git init -q -b main && printf 'print(\"acc: 0.9\")\\n' > train.py && git add -A && git commit -qm init"
        #expect(try shell(setup, cwd: box.work).status == 0)
        for (lr, extra) in [("0.1", "print('loss: 0.5')"), ("0.01", "print('loss: 0.25')")] {
            try box.write("train.py", "import sys\nprint('acc: 0.9')\n\(extra)\nprint('done')\n")
            let result = try box.run("cml-run", ["--monitor-interval", "0", "--", "python3", "train.py", "--lr", lr, "--seed", "1"],
                                     env: ["GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org"])
            #expect(result.status == 0, "\(result.stderr)")
        }
        return try box.runs().compactMap { $0["id"] as? String }.reversed()
    }

    @Test func onlyWhatDiffersUnlessAll() throws {
        let box = try Sandbox()
        let ids = try twoRuns(box)
        let piped = try box.run("cml-diff", [], stdin: try box.run("cml-run", ["ls", "--sort", "lr"]).stdout)
        #expect(piped.status == 0, "\(piped.stderr)")
        let rows = piped.jsonLines
        #expect(rows.map { $0["key"] as? String } == ["command", "lr", "loss"])
        let lr = try #require(rows.first { $0["key"] as? String == "lr" })
        #expect(lr["kind"] as? String == "param")
        #expect((lr["values"] as? [String: Any])?[ids[0]] as? Double == 0.1)
        #expect((lr["values"] as? [String: Any])?[ids[1]] as? Double == 0.01)

        let all = try box.run("cml-diff", [ids[0], ids[1], "--all", "--stats", "last,max"]).jsonLines.compactMap { $0["key"] as? String }
        #expect(all.contains("seed") && all.contains("acc") && all.contains("acc.max") && all.contains("status"))

        let long = try box.run("cml-diff", [ids[0], ids[1], "--long"]).jsonLines
        #expect(long.count == 6 && long.allSatisfy { $0["run"] is String && $0["key"] is String })
        #expect(long.contains { $0["run"] as? String == ids[1] && $0["key"] as? String == "loss" && $0["value"] as? Double == 0.25 })
        let tsv = try box.run("cml-diff", [ids[0], ids[1], "--long", "--format", "tsv"]).out
        #expect(tsv.contains("\(ids[1])\tparam\tlr\t0.01\n"))
    }

    @Test func codeLogAndEnvironment() throws {
        let box = try Sandbox()
        let ids = try twoRuns(box)
        let code = try box.run("cml-diff", [ids[0], ids[1], "--code"])
        #expect(code.status == 0, "\(code.stderr)")
        #expect(code.out.contains("uncommitted changes, as a diff of the two captured patches"))
        #expect(code.out.contains("-+print('loss: 0.5')\n") && code.out.contains("++print('loss: 0.25')\n"), "\(code.out)")
        #expect(!code.out.contains("\u{1B}["))  // no colour when piped

        let log = try box.run("cml-diff", [ids[0], ids[1], "--log"]).out
        #expect(log.contains("-loss: 0.5\n+loss: 0.25\n") && log.contains(" done\n"), "\(log)")

        let env = try box.run("cml-diff", [ids[0], ids[1], "--env", "--all"]).jsonLines.compactMap { $0["key"] as? String }
        #expect(env.contains("CML_STORE") && !env.contains("CML_RUN_ID"))
        #expect(try box.run("cml-diff", [ids[0], ids[1], "--env"]).out.isEmpty)
    }

    @Test func codeShowsWhatWasCommittedBetweenTheRuns() throws {
        let box = try Sandbox()
        let setup = "git init -q -b main && printf 'lr = 0.1\\n' > config.py && git add -A && git commit -qm one"
        #expect(try shell(setup, cwd: box.work).status == 0)
        #expect(try box.run("cml-run", ["--monitor-interval", "0", "--", "true"]).status == 0)
        #expect(try shell("printf 'lr = 0.2\\n' > config.py && git commit -qam two", cwd: box.work).status == 0)
        #expect(try box.run("cml-run", ["--monitor-interval", "0", "--", "true"]).status == 0)
        let ids: [String] = try box.runs().compactMap { $0["id"] as? String }.reversed()
        let code = try box.run("cml-diff", [ids[0], ids[1], "--code"])
        #expect(code.status == 0, "\(code.stderr)")
        #expect(code.out.contains("committed changes from ") && code.out.contains("-lr = 0.1\n+lr = 0.2\n"), "\(code.out)")
        #expect(code.out.contains("no uncommitted changes in either run"))
        // The clone is gone: the commits cannot be compared here, and the output says so.
        #expect(try shell("rm -rf .git", cwd: box.work).status == 0)
        let gone = try box.run("cml-diff", [ids[0], ids[1], "--code"]).out
        #expect(gone.contains("the commits are not both in"), "\(gone)")
    }

    @Test func codeShowsBinaryFilesAndFilesLeftOutAsOneLineEach() throws {
        let box = try Sandbox()
        #expect(try shell("git init -q -b main && echo x > train.py && git add -A && git commit -qm init", cwd: box.work).status == 0)
        for size in [3_000, 3_100] {
            let files = "head -c \(size) /dev/urandom > weights.bin && head -c 1500000 /dev/urandom > model.pt"
            #expect(try shell(files, cwd: box.work).status == 0)
            #expect(try box.run("cml-run", ["--monitor-interval", "0", "--", "true"]).status == 0)
        }
        let ids: [String] = try box.runs().compactMap { $0["id"] as? String }.reversed()
        let shas = try ids.map { id in
            try #require((try box.show(id)["code"] as? [String: Any])?["left_out"] as? [[String: Any]]).first?["sha256"] as? String ?? ""
        }
        let code = try box.run("cml-diff", [ids[0], ids[1], "--code"])
        #expect(code.status == 0, "\(code.stderr)")
        let lines = code.out.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("-binary weights.bin: new, 3,000 bytes, blob ") }, "\(code.out)")
        #expect(lines.contains { $0.hasPrefix("+binary weights.bin: new, 3,100 bytes, blob ") }, "\(code.out)")
        #expect(lines.contains("-left out: model.pt (1,500,000 bytes, sha256 \(shas[0].prefix(12)))"), "\(code.out)")
        #expect(lines.contains("+left out: model.pt (1,500,000 bytes, sha256 \(shas[1].prefix(12)))"), "\(code.out)")
        // No base85: a handful of lines.
        #expect(!code.out.contains("GIT binary patch") && !code.out.contains("literal ") && lines.count < 20, "\(code.out)")
    }

    @Test func aTerminalGetsAColouredTable() throws {
        let box = try Sandbox()
        let ids = try twoRuns(box)
        let table = try shell("env -u NO_COLOR CML_STORE=\(box.store) script -qec '\(binDirectory)/cml-diff \(ids[0]) \(ids[1])' /dev/null", cwd: box.work)
        #expect(table.out.contains("\u{1B}[1mKEY"), "\(table.out)")
        #expect(table.out.contains("\u{1B}[33m0.01\u{1B}[0m"))  // differs from the first run
        #expect(table.out.contains("0.1  "))
    }

    @Test func badInputNamesTheProblem() throws {
        let box = try Sandbox()
        let ids = try twoRuns(box)
        let cases: [([String], Data?, String)] = [
            ([ids[0]], nil, "give at least two runs to compare"),
            ([ids[0], "ffff"], nil, "no run with id ffff"),
            ([ids[0], "01"], nil, "run id prefix 01 is ambiguous (candidates: "),
            ([], Data("\(ids[0])\nnot an id!\n".utf8), "stdin line 2 is neither a run id nor a JSON line"),
            ([], Data("{\"name\": 1}\n".utf8), "stdin line 1 is not a JSON object with an \"id\" field"),
            ([ids[0], ids[1], "--stats", "median"], nil, "unknown metric summary 'median'"),
        ]
        for (arguments, stdin, message) in cases {
            let result = try box.run("cml-diff", arguments, stdin: stdin)
            #expect(result.status != 0 && result.stderr.contains(message), "\(arguments): \(result.stderr)")
        }
    }

    @Test func plotsOverlayTheRunsInTheTerminalAndAsSVG() throws {
        let box = try Sandbox()
        try box.write("train.py", """
            import sys
            lr = float(sys.argv[2])
            for step in range(300):
                print(f"step={step} loss={2 / (1 + lr * step):.5f}")
            """)
        for lr in ["0.1", "0.5"] {
            #expect(try box.run("cml-run", ["--monitor-interval", "0", "--", "python3", "train.py", "--lr", lr]).status == 0)
        }
        let listing = try box.run("cml-run", ["ls", "--sort", "lr"]).stdout
        let chart = try box.run("cml-diff", ["--plot", "loss", "--smooth", "5"], stdin: listing)
        #expect(chart.status == 0, "\(chart.stderr)")
        let lines = chart.out.split(separator: "\n")
        #expect(lines.first?.trimmingCharacters(in: .whitespaces) == "loss")
        #expect(lines.contains { $0.contains("A━━ lr=0.1") && $0.contains("B━━ lr=0.5") }, "\(chart.out)")
        #expect(lines.last == "(smoothed: trailing mean of 5 points)")
        #expect(chart.out.unicodeScalars.contains { (0x2801...0x28FF).contains($0.value) })  // Braille dots
        #expect(lines.contains { $0.contains("step") })

        let svg = box.root + "/loss.svg"
        let written = try box.run("cml-diff", ["--plot", "loss", "--plot", "lr", "--svg", svg], stdin: listing)
        #expect(written.status == 2 && written.stderr.contains("no run given has a metric 'lr' (they have: loss)"))
        let single = try box.run("cml-diff", ["--plot", "loss", "--svg", svg, "--log-y", "--x", "elapsed"], stdin: listing)
        #expect(single.status == 0 && single.out == svg + "\n", "\(single.stderr)")
        let document = try String(contentsOfFile: svg, encoding: .utf8)
        #expect(document.hasPrefix("<?xml") || document.hasPrefix("<svg"))
        #expect(document.components(separatedBy: "class=\"series\"").count - 1 == 2)
        #expect(document.contains("lr=0.1") && document.contains("time since start"))

        let badAxis = try box.run("cml-diff", ["--plot", "loss", "--x", "epoch"], stdin: listing)
        #expect(badAxis.status == 2 && badAxis.stderr.contains("--x must be step, time or elapsed"))

        // A weight below 1 is TensorBoard's exponential moving average.
        let exponential = try box.run("cml-diff", ["--plot", "loss", "--smooth", "0.9"], stdin: listing)
        #expect(exponential.status == 0, "\(exponential.stderr)")
        #expect(exponential.out.split(separator: "\n").last == "(smoothed: exponential moving average, weight 0.9)")
        let badSmooth = try box.run("cml-diff", ["--plot", "loss", "--smooth", "2.5"], stdin: listing)
        #expect(badSmooth.status == 2 && badSmooth.stderr.contains("--smooth of 1 or more is a whole number of points, not '2.5'"))
    }

    /// A long command is cut where the runs agree, not where the differing arguments are.
    @Test func theCommandRowShowsTheArgumentsThatDiffer() throws {
        let box = try Sandbox()
        for lr in ["0.01", "0.1"] {
            let result = try box.run("cml-run", ["--monitor-interval", "0", "--", "sh", "-c", "echo training; echo loss: 1",
                                                 "/home/me/projects/vision/train.py", "--lr", lr, "--seed", "1"])
            #expect(result.status == 0, "\(result.stderr)")
        }
        let ids = try box.runs().compactMap { $0["id"] as? String }.reversed()
        let table = try box.run("cml-diff", Array(ids) + ["--format", "table"])
        #expect(table.status == 0, "\(table.stderr)")
        let row = try #require(table.out.split(separator: "\n").first { $0.hasPrefix("command") })
        #expect(row.contains("… --lr 0.01 …") && row.contains("… --lr 0.1 …"), "\(table.out)")
        // Piped, the value is the whole command line, quoted.
        let piped = try box.run("cml-diff", Array(ids)).jsonLines.first { $0["key"] as? String == "command" }
        let values = try #require(piped?["values"] as? [String: String])
        #expect(values.values.sorted().first == "sh -c 'echo training; echo loss: 1' /home/me/projects/vision/train.py --lr 0.01 --seed 1")
    }
}

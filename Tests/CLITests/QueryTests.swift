import Foundation
import Testing

/// `cml-run ls` filtering, sorting and columns, as a user pipes them.
struct QueryTests {
    /// Four runs: lr 0.1/0.01/0.001 in project sweep (acc 0.9/0.99/0.999), and a failed one elsewhere.
    private func populate(_ box: Sandbox) throws {
        for (lr, acc) in [("0.1", "0.9"), ("0.01", "0.99"), ("0.001", "0.999")] {
            let result = try box.run("cml-run", ["--monitor-interval", "0", "--project", "sweep", "--tag", "grid",
                                                 "--", "sh", "-c", "echo acc: 0.5; echo acc: \(acc); echo loss: \(lr)", "x", "--lr", lr,
                                                 "--opt", lr == "0.01" ? "sgd" : "adam"])
            #expect(result.status == 0, "\(result.stderr)")
        }
        let failed = try box.run("cml-run", ["--monitor-interval", "0", "--name", "broken", "--", "sh", "-c", "echo acc: 0.3; exit 4"])
        #expect(failed.status == 4)
    }

    private func ids(_ result: CommandResult) -> [String] {
        result.jsonLines.compactMap { $0["lr"] as? Double }.map { String($0) }
    }

    @Test func whereSortAndColumns() throws {
        let box = try Sandbox()
        try populate(box)
        func ls(_ arguments: [String]) throws -> CommandResult {
            let result = try box.run("cml-run", ["ls"] + arguments)
            #expect(result.status == 0, "\(arguments): \(result.stderr)")
            return result
        }
        let best = try ls(["--where", "acc > 0.95 and lr <= 0.01 and status = completed", "--sort", "-acc", "--columns", "lr,acc"])
        #expect(best.out == "{\"lr\":0.001,\"acc\":0.999}\n{\"lr\":0.01,\"acc\":0.99}\n")
        #expect(ids(try ls(["--sort=lr", "--columns", "lr"])) == ["0.001", "0.01", "0.1"])
        // Runs without the key come last in both directions.
        let descending = try ls(["--sort", "-lr", "--columns", "name,lr"]).jsonLines
        #expect(descending.map { $0["name"] is NSNull } == [true, true, true, false])
        #expect(try ls(["--where", "acc.max < 0.4", "--columns", "name"]).out == "{\"name\":\"broken\"}\n")
        #expect(try ls(["--where", "acc.min = 0.5 and acc.count = 2", "--columns", "lr"]).jsonLines.count == 3)
        #expect(ids(try ls(["--where", "opt = adam and not lr > 0.05", "--columns", "lr"])) == ["0.001"])
        #expect(ids(try ls(["--where", "opt ~ 's*' or lr = 0.1", "--sort", "lr", "--columns", "lr"])) == ["0.01", "0.1"])
        #expect(try ls(["--where", "status = failed and exit_code = 4 and name = 'broken'", "--columns", "name"]).jsonLines.count == 1)
        #expect(try ls(["--where", "loss < acc.min", "--columns", "lr"]).jsonLines.count == 3)
        #expect(try ls(["--tag", "grid", "--project", "sweep", "--since", "1h", "--limit", "2"]).jsonLines.count == 2)
        #expect(try ls(["--since", "2999-01-01"]).out.isEmpty)
        #expect(try ls(["--where", "tag = grid and duration < 60", "--columns", "lr"]).jsonLines.count == 3)

        // CSV headers are the keys as written.
        let csv = try ls(["--sort", "-acc", "--columns", "lr,acc,status", "--format", "csv"])
        #expect(csv.out == "lr,acc,status\n0.001,0.999,completed\n0.01,0.99,completed\n0.1,0.9,completed\n,0.3,failed\n")
        let table = try ls(["--where", "acc > 0.95", "--sort", "-acc.max", "--format", "table"])
        let header = try #require(table.out.split(separator: "\n").first)
        // What it was sorted and filtered by, right after the status.
        #expect(header.split(separator: " ").prefix(6) == ["ID", "NAME", "STATUS", "ACC.MAX", "ACC", "LR"], "\(header)")
    }

    /// A table on a terminal shows the parameters that differ among the listed runs and the metrics they
    /// share, fitted to the terminal's width.
    @Test func theDefaultTableShowsDifferingParametersAndSharedMetricsFittedToTheWidth() throws {
        let box = try Sandbox()
        try populate(box)
        // A parameter every run has alike is no column.
        let same = try box.run("cml-run", ["--monitor-interval", "0", "--project", "sweep", "--", "sh", "-c", "echo acc: 0.95", "x",
                                           "--lr", "0.05", "--opt", "adam", "--seed", "1"])
        #expect(same.status == 0, "\(same.stderr)")
        func table(columns: Int?, _ arguments: [String] = []) throws -> [String] {
            let result = try box.run("cml-run", ["ls", "--format", "table"] + arguments, env: columns.map { ["COLUMNS": String($0)] } ?? [:])
            #expect(result.status == 0, "\(result.stderr)")
            let lines = result.out.split(separator: "\n").map(String.init)
            try #require(lines.count >= 2, "\(result.out)")
            return lines
        }
        let wide = try table(columns: 400)
        let words = wide[0].split(separator: " ").map(String.init)
        // lr and opt differ, seed only one run has; acc all share, loss the failed run lacks.
        #expect(words == ["ID", "NAME", "STATUS", "LR", "OPT", "SEED", "ACC", "STARTED", "DURATION", "PROJECT", "EXIT_CODE", "COMMAND"],
                "\(wide[0])")
        #expect(wide[1].contains("0.05") && wide[1].contains("adam") && wide[1].contains("0.95"), "\(wide[1])")
        // The same runs in a project alike but for lr: only lr is shown.
        #expect(try table(columns: 400, ["--project", "sweep", "--where", "opt = adam"])[0].split(separator: " ").prefix(5)
            == ["ID", "NAME", "STATUS", "OPT", "LR"])

        // Narrower: the command shrinks first, then the rightmost columns go; id and status stay.
        let fitted = try table(columns: 90)
        #expect(fitted.allSatisfy { $0.count <= 90 }, "\(fitted)")
        #expect(fitted[0].hasPrefix("ID") && fitted[0].contains("STATUS") && fitted[0].contains("ACC") && !fitted[0].contains("COMMAND"),
                "\(fitted[0])")
        let shrunk = try table(columns: wide[0].count + 24)
        #expect(shrunk[0].hasSuffix("COMMAND") && shrunk.allSatisfy { $0.count <= wide[0].count + 24 }, "\(shrunk)")
        #expect(shrunk.dropFirst().contains { $0.hasSuffix("…") })
        let narrow = try table(columns: 20)
        #expect(narrow[0].split(separator: " ") == ["ID", "STATUS"], "\(narrow[0])")
        // Piped without COLUMNS, a table is whole; JSON lines stay the whole records.
        #expect(try table(columns: nil)[0].hasSuffix("COMMAND"))
        #expect(try box.runs().first?["params"] != nil)
    }

    /// `--columns` takes globs, and a key no run has is an empty cell, so one command line serves projects
    /// with different parameters.
    @Test func columnsTakeGlobsAndKeysNoRunHas() throws {
        let box = try Sandbox()
        try populate(box)
        let csv = try box.run("cml-run", ["ls", "--project", "sweep", "--sort", "lr", "--format", "csv",
                                          "--columns", "id,lr*,metrics.*,batch,*.max"])
        #expect(csv.status == 0, "\(csv.stderr)")
        let lines = csv.out.split(separator: "\n").map(String.init)
        try #require(lines.count == 4, "\(csv.out)")
        #expect(lines[0] == "id,lr,acc,loss,batch,acc.max,loss.max", "\(csv.out)")
        #expect(lines[1].hasSuffix(",0.001,0.999,0.001,,0.999,0.001"), "\(lines[1])")
        let json = try box.run("cml-run", ["ls", "--project", "sweep", "--limit", "1", "--columns", "lr,batch,acc.max,params.*"])
        #expect(json.status == 0, "\(json.stderr)")
        #expect(json.out.hasPrefix("{\"lr\":0.001,\"batch\":null,\"acc.max\":0.999,\"opt\":\"adam\"}"), "\(json.out)")
    }

    @Test func badQueriesAreRefusedWithWhatExists() throws {
        let box = try Sandbox()
        try populate(box)
        let cases: [([String], String)] = [
            (["--where", "accuracy > 0.9"], "--where: no run has a key 'accuracy' (at character 1) (parameters: lr, opt; metrics: acc, loss;"),
            (["--sort", "-f1"], "no run has a key 'f1' (parameters: lr, opt; metrics: acc, loss;"),
            (["--where", "acc > > 1"], "expected a value after >, found '>' at character 7"),
            (["--where", "status = done"], "unknown status 'done'"),
            (["--where", "started > 'last week'"], "'last week' is not a date"),
            (["--since", "recently"], "--since 'recently' is neither a duration nor a date"),
        ]
        for (arguments, message) in cases {
            let result = try box.run("cml-run", ["ls"] + arguments)
            #expect(result.status == 2 && result.stderr.contains(message), "\(arguments): \(result.stderr)")
            #expect(result.out.isEmpty)
        }
    }

    /// `command` is the command line as typed, shell-quoted, not the stored JSON array.
    @Test func commandIsTheCommandLineAsTyped() throws {
        let box = try Sandbox()
        for command in [["true"], ["sh", "-c", "echo acc: 1", "x", "--lr", "0.01"], ["sh", "-c", "echo \"it's\""]] {
            let result = try box.run("cml-run", ["--monitor-interval", "0", "--"] + command)
            #expect(result.status == 0, "\(result.stderr)")
        }
        func commands(_ arguments: [String]) throws -> [String] {
            let result = try box.run("cml-run", ["ls", "--columns", "command"] + arguments)
            #expect(result.status == 0, "\(arguments): \(result.stderr)")
            return result.jsonLines.compactMap { $0["command"] as? String }
        }
        #expect(try commands(["--where", "command = true"]) == ["true"])
        #expect(try commands(["--where", "command != true", "--sort", "command"])
            == [#"sh -c 'echo "it'\''s"'"#, "sh -c 'echo acc: 1' x --lr 0.01"])
        #expect(try commands(["--where", "command ~ '*--lr 0.01*'"]) == ["sh -c 'echo acc: 1' x --lr 0.01"])
        #expect(try commands(["--where", "command = \"sh -c 'echo acc: 1' x --lr 0.01\""]).count == 1)
        #expect(try commands(["--where", "command ~ '*lr\",\"0*'"]).isEmpty)
        #expect(try commands(["--sort", "-command"]).first == "true")

        let table = try box.run("cml-run", ["ls", "--format", "table", "--sort", "command"])
        #expect(table.out.contains("sh -c 'echo acc: 1' x --lr 0.01\n"), "\(table.out)")
        // JSON keeps the argv as it is.
        #expect(try box.runs().contains { $0["command"] as? [String] == ["sh", "-c", "echo acc: 1", "x", "--lr", "0.01"] })
    }
}

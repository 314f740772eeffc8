import Foundation
import Testing

@testable import CMLKit

struct ShellQuotingTests {
    @Test func safeArgumentsStayBareAndOthersAreSingleQuoted() {
        let cases: [(String, String)] = [
            ("train.py", "train.py"),
            ("--lr=0.01", "--lr=0.01"),
            ("user@host:/a/b,c%d+e_f-g", "user@host:/a/b,c%d+e_f-g"),
            ("", "''"),
            ("print(1)", "'print(1)'"),
            ("a b", "'a b'"),
            ("it's", #"'it'\''s'"#),
            ("'", #"''\'''"#),
            ("$HOME", "'$HOME'"),
            ("say \"hi\"", "'say \"hi\"'"),
            ("a\\b", "'a\\b'"),
            ("line 1\nline 2", "'line 1\nline 2'"),
            ("*.py", "'*.py'"),
            ("~", "'~'"),
            ("a;b", "'a;b'"),
            // Non-ASCII is always quoted: the bare set is ASCII, whatever the locale.
            ("café", "'café'"),
            ("日本", "'日本'"),
        ]
        for (argument, quoted) in cases {
            #expect(ShellQuoting.quote(argument) == quoted, "\(argument)")
        }
        #expect(ShellQuoting.commandLine(["python3", "-c", "print(1)"]) == "python3 -c 'print(1)'")
        #expect(ShellQuoting.commandLine([]) == "")
    }

    /// What `sh` makes of the printed line is the argv it came from.
    @Test func aQuotedLineReadsBackAsTheSameArguments() throws {
        let arguments = ["printf", "%s\\0", "", "a b", "it's", "'", "$HOME", "`id`", "\"q\"", "back\\slash", "two\nlines",
                         "*", "~", "é日本", "--lr=0.01", "!x", "a#b", "#c"]
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", ShellQuoting.commandLine(arguments)]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let printed = output.split(separator: 0, omittingEmptySubsequences: false).dropLast().map { String(decoding: $0, as: UTF8.self) }
        #expect(printed == Array(arguments.dropFirst(2)))
    }

    @Test func commandExcerptsShowWhereTheCommandsDiffer() {
        // Short enough: whole, quoted.
        #expect(RunComparison.commandExcerpts([["python3", "-c", "print(1)"], ["python3", "-c", "print(2)"]], width: 40)
            == ["python3 -c 'print(1)'", "python3 -c 'print(2)'"])
        // Long: the shared start and end cut, the option whose value differs kept.
        let base = ["python3", "/home/me/projects/vision/train.py", "--epochs", "3", "--lr"]
        #expect(RunComparison.commandExcerpts([base + ["0.01", "--seed", "1"], base + ["0.1", "--seed", "1"]], width: 40)
            == ["… --lr 0.01 …", "… --lr 0.1 …"])
        // An argument only one run has, at the end.
        #expect(RunComparison.commandExcerpts([base + ["0.01"], base + ["0.01", "--fp16"]], width: 40)
            == ["… 0.01", "… 0.01 --fp16"])
        // Different programs: from the start, cut to the width.
        let excerpts = RunComparison.commandExcerpts([["sh", "-c", String(repeating: "a", count: 50)], ["bash"] + base], width: 40)
        #expect(excerpts[0] == "sh -c " + String(repeating: "a", count: 33) + "…")
        #expect(excerpts[1].hasPrefix("bash python3 ") && excerpts[1].count == 40)
        // The same commands (`--all`): whole, cut to the width.
        #expect(RunComparison.commandExcerpts([base, base], width: 20) == Array(repeating: "python3 /home/me/pr…", count: 2))
    }
}

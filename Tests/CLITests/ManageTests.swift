import Foundation
import Glibc
import Testing

/// `cml-run tag`, `rename`, `rm` and `projects`.
struct ManageTests {
    private func makeRuns(_ box: Sandbox, _ count: Int, project: String = "default") throws -> [String] {
        for i in 0..<count {
            let result = try box.run("cml-run", ["--monitor-interval", "0", "--project", project, "--tag", "old",
                                                 "--", "sh", "-c", "echo loss: 0.\(i); echo step=1 loss=0.0\(i)"])
            #expect(result.status == 0, "\(result.stderr)")
        }
        return try box.runs().compactMap { $0["id"] as? String }
    }

    @Test func tagsAndNamesChange() throws {
        let box = try Sandbox()
        let ids = try makeRuns(box, 3)
        let tagged = try box.run("cml-run", ["tag", String(ids[0].prefix(12)), "+best", "-old", "+keep"])
        #expect(tagged.status == 0, "\(tagged.stderr)")
        #expect(tagged.jsonLines.first?["tags"] as? [String] == ["best", "keep"])
        let piped = try box.run("cml-run", ["tag", "+sweep"], stdin: try box.run("cml-run", ["ls", "--tag", "old"]).stdout)
        #expect(piped.jsonLines.count == 2)
        #expect(try box.show(ids[1])["tags"] as? [String] == ["old", "sweep"])
        let noChange = try box.run("cml-run", ["tag", ids[0]])
        #expect(noChange.status == 2 && noChange.stderr.contains("no tag to add or remove"))
        let empty = try box.run("cml-run", ["tag", ids[0], "+"])
        #expect(empty.status == 2 && empty.stderr.contains("bad tag"))

        #expect(try box.run("cml-run", ["rename", ids[2], "baseline"]).status == 0)
        #expect(try box.show(ids[2])["name"] as? String == "baseline")
        #expect(try box.run("cml-run", ["rename", ids[2], ""]).status == 0)
        #expect(try box.show(ids[2])["name"] is NSNull)
        #expect(try box.run("cml-run", ["rename", "abcdef", "x"]).stderr.contains("no run with id abcdef"))
    }

    @Test func removingRunsFreesOnlyWhatNothingElseUses() throws {
        let box = try Sandbox()
        let ids = try makeRuns(box, 2)
        var unique = [UInt8](repeating: 0, count: 200_000)
        for i in unique.indices { unique[i] = UInt8(truncatingIfNeeded: i &* 7919 >> 3) }
        try Data(unique).write(to: URL(fileURLWithPath: box.work + "/unique.bin"))
        try box.write("shared.txt", "used by both runs\n")
        for (id, path) in [(ids[0], "unique.bin"), (ids[0], "shared.txt"), (ids[1], "shared.txt")] {
            #expect(try box.run("cml-log", ["artifact", path, "--run", id]).status == 0)
        }
        let logPath = box.store + "/logs/\(ids[0]).log"
        #expect(FileManager.default.fileExists(atPath: logPath))

        let removed = try box.run("cml-run", ["rm", "--yes", ids[0]])
        #expect(removed.status == 0, "\(removed.stderr)")
        let report = try #require(removed.jsonLines.first)
        #expect(report["removed"] as? [String] == [ids[0]] && report["blobs_removed"] as? Int == 1)
        #expect((report["bytes_freed"] as? Int ?? 0) > unique.count)
        #expect(!FileManager.default.fileExists(atPath: logPath))
        #expect(try box.runs().map { $0["id"] as? String } == [ids[1]])
        #expect(try box.run("cml-run", ["get", ids[1], "shared.txt", "-"]).out == "used by both runs\n")
        let points = try shell("python3 -c \"import sqlite3; print(sqlite3.connect('\(box.store)/cml.db').execute('SELECT COUNT(*) FROM metric_points').fetchone()[0])\"", cwd: box.work)
        #expect(points.out == "2\n")  // only the remaining run's two points

        let last = try box.run("cml-run", ["rm", "-y"], stdin: try box.run("cml-run", ["ls"]).stdout)
        #expect(last.jsonLines.first?["blobs_removed"] as? Int == 1)
        let objects = (try? FileManager.default.contentsOfDirectory(atPath: box.store + "/objects")) ?? []
        #expect(objects.filter { !$0.hasPrefix(".") }.isEmpty, "\(objects)")
    }

    @Test func removalAsksOnATerminalAndRefusesARunningRun() throws {
        let box = try Sandbox()
        let ids = try makeRuns(box, 1)
        // `script` gives cml-run a terminal; the answer "n" keeps the run.
        let asked = try shell("printf 'n\\n' | CML_STORE=\(box.store) script -qec '\(binDirectory)/cml-run rm \(ids[0])' /dev/null", cwd: box.work)
        #expect(asked.out.contains("remove 1 run") && asked.out.contains("nothing removed"), "\(asked.out)")
        #expect(try box.runs().count == 1)

        let sleeper = try box.start("cml-run", ["--monitor-interval", "0", "--", "sleep", "30"])
        defer { kill(sleeper.pid, SIGTERM); _ = try? sleeper.wait() }
        #expect(waitUntil { (try? box.runs().count) == 2 })
        let running = try #require(try box.runs().first?["id"] as? String)
        let refused = try box.run("cml-run", ["rm", "--yes", running])
        #expect(refused.status == 1 && refused.stderr.contains("is still running"))
        #expect(try box.runs().count == 2)
    }

    @Test func projectsCountTheirRuns() throws {
        let box = try Sandbox()
        _ = try makeRuns(box, 2, project: "mnist")
        _ = try makeRuns(box, 1, project: "cifar")
        #expect(try box.run("cml-run", ["--monitor-interval", "0", "--project", "cifar", "--", "false"]).status == 1)
        let projects = try box.run("cml-run", ["projects"]).jsonLines
        #expect(projects.map { $0["project"] as? String } == ["cifar", "mnist"])
        #expect(projects.map { $0["runs"] as? Int } == [2, 2])
        #expect(projects[0]["failed"] as? Int == 1 && projects[0]["completed"] as? Int == 1)
        let table = try box.run("cml-run", ["projects", "--format", "tsv"]).out
        #expect(table.hasPrefix("PROJECT\tRUNS\tQUEUED\tRUNNING\tCOMPLETED\tFAILED"))
    }

    @Test func theStoreMayBeNamedBeforeAnySubcommand() throws {
        let box = try Sandbox()
        for tool in ["cml-run", "cml-data"] {
            let help = try box.run(tool, ["--help"]).out
            let section = try #require(help.components(separatedBy: "SUBCOMMANDS:").last)
            // Subcommand names start their line, indented by two spaces.
            let names = section.split(separator: "\n").compactMap { line -> String? in
                guard line.hasPrefix("  "), !line.hasPrefix("   ") else { return nil }
                return line.split(separator: " ").first.map(String.init)
            }
            #expect(names.count >= 10, "\(tool): \(names)")
            for name in names {
                // Misread, `--store` would go to the default subcommand, which would print its own help.
                let result = try box.run(tool, ["--store", box.store, name, "--help"])
                let expected = try box.run(tool, [name, "--help"])
                #expect(result.status == 0 && result.out == expected.out, "\(tool) --store DIR \(name): \(result.stderr)")
            }
        }
    }

    @Test func aRunCanBeNamedWhereAnIdIsTaken() throws {
        // Issue 13: `cml-run show baseline` was refused as not an id.
        let box = try Sandbox()
        #expect(try box.run("cml-run", ["--name", "baseline", "--", "true"]).status == 0)
        let id = try #require(try box.runs().first?["id"] as? String)
        let shown = try box.run("cml-run", ["show", "baseline"])
        #expect(shown.status == 0 && shown.jsonLines.first?["id"] as? String == id, "\(shown.stderr)")
        #expect(try box.run("cml-run", ["tag", "baseline", "+best"]).status == 0)
        #expect(try box.show(id)["tags"] as? [String] == ["best"])
        #expect(try box.run("cml-run", ["--name", "baseline", "--", "true"]).status == 0)
        let twice = try box.run("cml-run", ["show", "baseline"])
        #expect(twice.status == 1 && twice.stderr.contains("more than one run is named baseline"), "\(twice.stderr)")
        let none = try box.run("cml-run", ["show", "nonesuch"])
        #expect(none.status == 1 && none.stderr.contains("no run is named 'nonesuch', and it is not a run id"))
    }
}

import Foundation
import Glibc
import Testing
import CMLKit

/// `cml-data` against a live `cml-serve` through the built executables, compared with a store
/// directory; and dataset versions copied by `cml-serve push` and `pull`.
struct RemoteDataTests {
    /// 17 MiB: stored as a file of its own, which a test can damage in place.
    static let bigSize = 17 << 20

    /// Nested folders, modes, a link, two files of one content, and a big file.
    static func makeTree(_ box: Sandbox, _ name: String) throws {
        try box.write("\(name)/readme.txt", "hello\n")
        try box.write("\(name)/run.sh", "#!/bin/sh\necho hi\n", mode: 0o755)
        try box.write("\(name)/a/b/deep.txt", "deep\n")
        try box.write("\(name)/copy1.txt", "same\n")
        try box.write("\(name)/copy2.txt", "same\n")
        let big = (0..<bigSize).map { UInt8(truncatingIfNeeded: ($0 &* 2654435761) >> 11) }
        try Data(big).write(to: URL(fileURLWithPath: box.work + "/\(name)/big.bin"))
        symlink("readme.txt", box.work + "/\(name)/latest")
        // Old enough for the stat cache to trust on the next snapshot.
        usleep(200_000)
    }

    /// `cml-data …` that must succeed; its first JSON line.
    @discardableResult
    static func data(_ box: Sandbox, _ args: [String], env: [String: String]) throws -> [String: Any] {
        let result = try box.run("cml-data", args, env: env)
        #expect(result.status == 0, "cml-data \(args.joined(separator: " ")): \(result.stderr)")
        return try #require(result.jsonLines.first, "cml-data \(args.joined(separator: " ")) printed \(result.out)")
    }

    /// The same files, contents, links and (with `modes`) modes.
    static func sameTree(_ a: String, _ b: String, modes: Bool = true) throws -> Bool {
        let listing = modes ? " && [ \"$(cd '\(a)' && find . -printf '%p %m %y\\n' | sort)\" = \"$(cd '\(b)' && find . -printf '%p %m %y\\n' | sort)\" ]" : ""
        return try shell("diff -r --no-dereference '\(a)' '\(b)'" + listing, cwd: "/").status == 0
    }

    /// Where a blob stored as a file of its own lies in the store directory `store`.
    static func blobFile(_ store: String, _ id: String) -> String {
        store + "/objects/" + id.prefix(2) + "/" + id.dropFirst(2)
    }

    /// Overwrites three bytes in the middle of a file.
    static func damage(_ path: String) throws {
        chmod(path, 0o644)
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: 1000)
        try handle.write(contentsOf: Data([0, 1, 2]))
        try handle.close()
    }

    /// The one spool under a cache directory (`$XDG_CACHE_HOME`).
    static func spool(under cache: String) throws -> String {
        let spools = try FileManager.default.contentsOfDirectory(atPath: cache + "/cml/spool")
        try #require(spools.count == 1)
        return cache + "/cml/spool/" + spools[0]
    }

    @Test func aSnapshotSendsOnlyWhatTheServerLacksAndComesBackAsFromADirectory() throws {
        let box = try Sandbox()
        let server = try ServerUnderTest(box)
        let env = RemoteStoreTests.remote(box, ["CML_STORE": server.url])
        try Self.makeTree(box, "data")
        // The same directory in a store directory, for comparison.
        let directory = try Sandbox()
        let reference = try Self.data(box, ["snapshot", "data", "--store", directory.store], env: [:])

        let first = try Self.data(box, ["snapshot", "data", "-m", "first"], env: env)
        #expect(first["version"] as? Int == 1 && first["unchanged"] as? Bool == false && first["hashed_files"] as? Int == 6)
        #expect(first["manifest"] as? String == reference["manifest"] as? String)
        #expect(first["files"] as? Int == reference["files"] as? Int && first["size"] as? Int == reference["size"] as? Int)
        // The server had nothing: 5 contents (the copies share one) and the manifest.
        #expect(first["new_blobs"] as? Int == 6 && first["new_bytes"] as? Int == reference["new_bytes"] as? Int)
        let bytesAfterFirst = RemoteStoreTests.fileBytes(box.store)

        // The same directory again: nothing hashed (the spool's stat cache), nothing sent, no version.
        let again = try Self.data(box, ["snapshot", "data"], env: env)
        #expect(again["unchanged"] as? Bool == true && again["id"] as? String == first["id"] as? String)
        #expect(again["hashed_files"] as? Int == 0 && again["unchanged_files"] as? Int == 6)
        #expect(RemoteStoreTests.fileBytes(box.store) == bytesAfterFirst)

        // One file changed: it and the manifest go up, nothing else.
        try box.write("data/readme.txt", "hello again\n")
        usleep(200_000)
        let second = try Self.data(box, ["snapshot", "data"], env: env)
        #expect(second["version"] as? Int == 2 && second["hashed_files"] as? Int == 1 && second["new_blobs"] as? Int == 2)
        #expect(second["parents"] as? [String] == [try #require(first["id"] as? String)])
        let grown = RemoteStoreTests.fileBytes(box.store) - bytesAfterFirst
        #expect(grown > 0 && grown < 64 << 10, "\(grown) bytes more on the server for one small file")

        // Read back on another machine (another spool): the same files as the directory store gives.
        let elsewhere = RemoteStoreTests.remote(box, ["CML_STORE": server.url, "XDG_CACHE_HOME": box.root + "/cache2"])
        let checkedOut = try Self.data(box, ["checkout", "data@1", box.root + "/from-server"], env: elsewhere)
        #expect(checkedOut["files"] as? Int == 7 && checkedOut["id"] as? String == first["id"] as? String)
        try Self.data(box, ["checkout", "data@1", box.root + "/from-directory", "--store", directory.store], env: [:])
        #expect(try Self.sameTree(box.root + "/from-server", box.root + "/from-directory"))
        let got = try box.run("cml-data", ["get", "data"], env: elsewhere)
        let path = got.out.trimmingCharacters(in: .newlines)
        #expect(got.status == 0 && path.hasPrefix(box.root + "/cache2/cml/spool/") && path.hasSuffix("/cache/datasets/" + (second["id"] as! String)),
                "\(got.out) \(got.stderr)")
        #expect(try Self.sameTree(path, box.work + "/data", modes: false))
        #expect(try box.run("cml-data", ["get", "data"], env: elsewhere).out == got.out)

        // Inside a run recorded through the server, the run records what it used there.
        let inRun = try box.run("cml-run", ["--", binDirectory + "/cml-data", "--store", server.url, "get", "data@1"], env: env)
        #expect(inRun.status == 0, "\(inRun.stderr)")
        let runs = try box.run("cml-run", ["ls", "--format", "jsonl"], env: env).jsonLines
        let ranID = try #require(runs.first?["id"] as? String)
        let usedThere = try #require(try box.run("cml-run", ["show", ranID], env: env).jsonLines.first?["datasets"] as? [[String: Any]])
        #expect(usedThere.count == 1 && usedThere.first?["id"] as? String == first["id"] as? String, "\(usedThere)")

        // Damaged in the spool: checkout refuses, and leaves nothing.
        let big = try #require(try box.run("cml-data", ["show", "data@1"], env: env).jsonLines.first { $0["path"] as? String == "big.bin" }?["sha256"] as? String)
        try Self.damage(Self.blobFile(try Self.spool(under: box.root + "/cache2"), big))
        let fromDamagedSpool = try box.run("cml-data", ["checkout", "data@1", box.root + "/out1"], env: elsewhere)
        #expect(fromDamagedSpool.status == 1 && fromDamagedSpool.stderr.contains("blob \(big) is damaged"), "\(fromDamagedSpool.stderr)")
        #expect(access(box.root + "/out1", F_OK) != 0)
        // Damaged on the server: a fresh spool's download refuses it.
        try Self.damage(Self.blobFile(box.store, big))
        let fresh = RemoteStoreTests.remote(box, ["CML_STORE": server.url, "XDG_CACHE_HOME": box.root + "/cache3"])
        let fromDamagedServer = try box.run("cml-data", ["checkout", "data@1", box.root + "/out2"], env: fresh)
        #expect(fromDamagedServer.status == 1 && fromDamagedServer.stderr.split(separator: "\n").count == 1, "\(fromDamagedServer.stderr)")
        #expect(access(box.root + "/out2", F_OK) != 0)
        let verified = try box.run("cml-data", ["verify", "data@1"], env: env)
        #expect(verified.status == 1 && verified.jsonLines.first?["sha256"] as? String == big, "\(verified.out)")
        _ = try server.stop()
    }

    @Test func importLsShowDiffExportAndRmWorkThroughTheServer() throws {
        let box = try Sandbox()
        let server = try ServerUnderTest(box)
        let env = RemoteStoreTests.remote(box, ["CML_STORE": server.url])
        try box.write("data/labels.csv", "1,a\n")
        try box.write("data/sub/more.txt", "more\n")
        let directory = try Sandbox()
        let local = ["CML_STORE": directory.store]
        let made = try Self.data(box, ["snapshot", "data", "-m", "made here"], env: local)
        try box.write("data/labels.csv", "1,a\n2,b\n")
        let changed = try Self.data(box, ["snapshot", "data"], env: local)
        #expect(try box.run("cml-data", ["export", "data@1", box.root + "/v1.tar.gz"], env: local).status == 0)
        #expect(try box.run("cml-data", ["export", "data@2", box.root + "/v2.tar.gz"], env: local).status == 0)

        // Imported through the server: id, number and message kept; everything was new there.
        let imported = try Self.data(box, ["import", box.root + "/v1.tar.gz"], env: env)
        #expect(imported["id"] as? String == made["id"] as? String && imported["version"] as? Int == 1)
        #expect(imported["message"] as? String == "made here" && imported["already_present"] as? Bool == false)
        #expect(imported["new_blobs"] as? Int == 3)
        let importedAgain = try Self.data(box, ["import", box.root + "/v1.tar.gz"], env: env)
        #expect(importedAgain["already_present"] as? Bool == true)
        // The second shares a file with the first: only the changed one and the manifest go up.
        let second = try Self.data(box, ["import", box.root + "/v2.tar.gz"], env: env)
        #expect(second["version"] as? Int == 2 && second["new_blobs"] as? Int == 2 && second["parents"] as? [String] == [made["id"] as! String])

        // The reading commands answer as on the directory store.
        for command in [["ls"], ["show", "data@2"], ["diff", "data@1", "data@2"], ["log", "data"]] {
            let remote = try box.run("cml-data", command + ["--format", "jsonl"], env: env)
            let original = try box.run("cml-data", command + ["--format", "jsonl"], env: local)
            #expect(remote.status == 0 && !remote.out.isEmpty, "\(command): \(remote.stderr)")
            // ls and log show what importing added to each store, which differs by design.
            if command == ["ls"] || command == ["log", "data"] {
                #expect(remote.jsonLines.map { $0["id"] as? String } == original.jsonLines.map { $0["id"] as? String })
            } else {
                #expect(remote.stdout == original.stdout, "\(command)")
            }
        }
        // Exported from the server, imported into a fresh store directory: the same version.
        #expect(try box.run("cml-data", ["export", "data@2", box.root + "/back.tar"], env: env).status == 0)
        let other = try Sandbox()
        let back = try Self.data(box, ["import", box.root + "/back.tar"], env: ["CML_STORE": other.store])
        #expect(back["id"] as? String == changed["id"] as? String && back["manifest"] as? String == changed["manifest"] as? String)

        let removed = try Self.data(box, ["rm", "data@1", "--yes"], env: env)
        #expect(removed["removed"] as? [String] == [made["id"] as! String] && removed["blobs_removed"] as? Int == 2)
        #expect(try box.run("cml-data", ["ls"], env: env).jsonLines.count == 1)
        #expect(try Self.data(box, ["gc", "--dry-run"], env: env)["blobs_removed"] as? Int == 0)
        _ = try server.stop()
    }

    @Test func aServerThatIsDownIsNamedInOneLine() throws {
        let box = try Sandbox()
        try box.write("data/labels.csv", "1,a\n")
        let url = "http://127.0.0.1:\(try RemoteStoreTests.freePort())"
        let env = RemoteStoreTests.remote(box, ["CML_STORE": url])
        _ = try Self.data(box, ["snapshot", "data"], env: ["CML_STORE": box.store])
        #expect(try box.run("cml-data", ["export", "data", box.root + "/d.tar"], env: ["CML_STORE": box.store]).status == 0)
        for command in [["snapshot", "data"], ["checkout", "data", box.root + "/out"], ["get", "data"], ["import", box.root + "/d.tar"]] {
            let result = try box.run("cml-data", command, env: env)
            #expect(result.status == 1 && result.stderr.hasPrefix("cml-data: error: ") && result.stderr.contains(url)
                    && result.stderr.split(separator: "\n").count == 1, "\(command): \(result.stderr)")
        }
        #expect(access(box.root + "/out", F_OK) != 0)
    }

    /// A run that used one version and made another: pushing it takes both (and the used one's
    /// parent) with their ids and numbers; pushing again sends nothing; pulling a dataset back does
    /// the same the other way; a version another store numbered alike is refused with both named.
    @Test func pushAndPullCopyTheVersionsRunsUsedAndMadeOnce() throws {
        let box = try Sandbox()
        let local = ["CML_STORE": box.store, "CML_TOKEN": ""]
        try box.write("raw/labels.csv", "1,a\n")
        let raw1 = try Self.data(box, ["snapshot", "raw"], env: local)
        try box.write("raw/labels.csv", "1,a\n2,b\n")
        usleep(200_000)
        let raw2 = try Self.data(box, ["snapshot", "raw"], env: local)
        try box.write("prepare.sh", "mkdir -p out && cp \"$CML_DATA_RAW/labels.csv\" out/features.csv && echo extra >> out/features.csv && cml-data snapshot out --name features\n")
        let ran = try box.run("cml-run", ["--data", "raw@2", "--", "sh", "prepare.sh"], env: local.merging(["PATH": binDirectory + ":/usr/bin:/bin"]) { $1 })
        #expect(ran.status == 0, "\(ran.stderr)")
        let run = try #require(try box.runs().first?["id"] as? String)
        let features = try #require(try box.run("cml-data", ["ls", "features"], env: local).jsonLines.first)
        #expect(features["run"] as? String == run)

        let serverBox = try Sandbox()
        let server = try ServerUnderTest(serverBox)
        let remote = RemoteStoreTests.remote(box, ["CML_STORE": server.url])
        let pushed = try box.run("cml-serve", ["push", server.url, run], env: local)
        #expect(pushed.status == 0, "\(pushed.stderr)")
        let line = try #require(pushed.jsonLines.first)
        #expect(line["dataset_versions"] as? Int == 3 && line["dataset_uses"] as? Int == 1 && line["created"] as? Bool == true)
        let onServer = try box.run("cml-data", ["ls"], env: remote).jsonLines
        #expect(onServer.count == 3)
        for version in [raw1, raw2, features] {
            #expect(onServer.contains { $0["id"] as? String == version["id"] as? String && $0["version"] as? Int == version["version"] as? Int
                && $0["dataset"] as? String == version["dataset"] as? String })
        }
        let used = try #require(try box.run("cml-run", ["show", run, "--store", server.url], env: remote).jsonLines.first?["datasets"] as? [[String: Any]])
        #expect(used.count == 1 && used[0]["id"] as? String == raw2["id"] as? String && used[0]["version"] as? Int == 2)
        #expect(try Self.data(box, ["checkout", "features", box.root + "/features"], env: remote)["files"] as? Int == 1)
        #expect(try String(contentsOfFile: box.root + "/features/features.csv", encoding: .utf8) == "1,a\n2,b\nextra\n")

        // Pushed again, with every dataset named: nothing is sent.
        let bytes = RemoteStoreTests.fileBytes(serverBox.store)
        let twice = try box.run("cml-serve", ["push", server.url, run, "--dataset", "raw", "--dataset", "features@1"], env: local)
        #expect(twice.status == 0, "\(twice.stderr)")
        let lines = twice.jsonLines
        #expect(lines.count == 4 && lines.allSatisfy { ($0["blobs"] as? Int) == 0 && ($0["created"] as? Bool) == false }, "\(twice.out)")
        #expect(lines.last?["dataset_versions"] as? Int == 0 && lines.last?["dataset_uses"] as? Int == 0)
        #expect(RemoteStoreTests.fileBytes(serverBox.store) == bytes)

        // Pulled into another store by dataset: parents first, the same ids and numbers; twice sends nothing.
        let puller = try Sandbox()
        let pulled = try puller.run("cml-serve", ["pull", server.url, "--dataset", "raw@2"], env: ["CML_STORE": puller.store, "CML_TOKEN": ""])
        #expect(pulled.status == 0, "\(pulled.stderr)")
        #expect(pulled.jsonLines.map { $0["id"] as? String } == [raw1["id"] as? String, raw2["id"] as? String])
        #expect(pulled.jsonLines.map { $0["version"] as? Int } == [1, 2] && pulled.jsonLines.allSatisfy { $0["created"] as? Bool == true })
        let pulledAgain = try puller.run("cml-serve", ["pull", server.url, "--all"], env: ["CML_STORE": puller.store, "CML_TOKEN": ""])
        #expect(pulledAgain.status == 0, "\(pulledAgain.stderr)")
        // --all: the features version and the run are new, raw's versions are not.
        let versionLines = pulledAgain.jsonLines.filter { $0["dataset"] != nil }
        #expect(versionLines.filter { $0["created"] as? Bool == true }.map { $0["id"] as? String } == [features["id"] as? String])
        #expect(try Self.data(puller, ["verify", "raw@1"], env: ["CML_STORE": puller.store])["damaged"] as? Int == 0)

        // Another store's raw@1 is another version: refused, naming both, and the server keeps its own.
        let stranger = try Sandbox()
        try stranger.write("raw/labels.csv", "other\n")
        let theirs = try Self.data(stranger, ["snapshot", "raw"], env: ["CML_STORE": stranger.store])
        let refused = try stranger.run("cml-serve", ["push", server.url, "--dataset", "raw@1"], env: ["CML_STORE": stranger.store, "CML_TOKEN": ""])
        #expect(refused.status == 1 && refused.stderr.contains(theirs["id"] as! String) && refused.stderr.contains(raw1["id"] as! String),
                "\(refused.stderr)")
        #expect(try box.run("cml-data", ["ls", "raw"], env: remote).jsonLines.map { $0["id"] as? String } == [raw2["id"] as? String, raw1["id"] as? String])
        _ = try server.stop()
    }

    /// Inside a run recorded against a server, `$CML_STORE` is the server's spool, which stands for the
    /// server: versions are made there (numbered by the server) and found there, the run uses a version
    /// given with --data, and all of it is on the server once the run is up.
    @Test func versionsInsideASpooledRunAreTheServers() throws {
        let box = try Sandbox()
        let server = try ServerUnderTest(box)
        let env = RemoteStoreTests.remote(box, ["CML_STORE": server.url, "PATH": binDirectory + ":/usr/bin:/bin"])
        try box.write("inner/a.txt", "a\n")
        let made = try box.run("cml-run", ["--", "cml-data", "snapshot", "inner"], env: env)
        #expect(made.status == 0, "\(made.stderr)")
        let run = try #require(made.jsonLines.first?["run"] as? String)
        let there = try #require(try box.run("cml-data", ["ls", "inner"], env: env).jsonLines.first)
        #expect(there["run"] as? String == run && there["version"] as? Int == 1 && there["id"] as? String == made.jsonLines.first?["id"] as? String)

        // outer@1 exists on the server before a run makes the next version: outer@2, no clash.
        try box.write("outer/b.txt", "b\n")
        let first = try Self.data(box, ["snapshot", "outer"], env: env)
        try box.write("outer/b.txt", "b, changed\n")
        let next = try box.run("cml-run", ["--", "cml-data", "snapshot", "outer"], env: env)
        #expect(next.status == 0 && next.jsonLines.first?["version"] as? Int == 2, "\(next.stderr)")
        #expect(next.jsonLines.first?["parents"] as? [String] == [first["id"] as! String])
        let nextRun = try #require(next.jsonLines.first?["run"] as? String)
        let onServer = try box.run("cml-run", ["ls", "--format", "jsonl"], env: env).jsonLines
        #expect(onServer.first { $0["id"] as? String == nextRun }?["status"] as? String == "completed")
        #expect(onServer.allSatisfy { $0["upload"] == nil }, "\(onServer)")
        #expect(try box.run("cml-data", ["ls", "outer"], env: env).jsonLines.count == 2)

        // --data outer@1: its files in $CML_DATA_OUTER, and a version made from it names it as parent.
        let script = "cat \"$CML_DATA_OUTER/b.txt\" && mkdir -p derived && cp \"$CML_DATA_OUTER/b.txt\" derived/ && cml-data snapshot derived --parent outer@1"
        let used = try box.run("cml-run", ["--data", "outer@1", "--", "sh", "-c", script], env: env)
        #expect(used.status == 0, "\(used.stderr)")
        #expect(used.out.hasPrefix("b\n"), "\(used.out)")
        let derived = try #require(used.jsonLines.first)
        #expect(derived["parents"] as? [String] == [first["id"] as! String])
        let usedRun = try #require(derived["run"] as? String)
        let shown = try box.run("cml-run", ["show", usedRun], env: env)
        let shownRun = try #require(shown.jsonLines.first, "\(shown.stderr)")
        #expect((shownRun["datasets"] as? [[String: Any]])?.map { $0["id"] as? String } == [first["id"] as? String], "\(shown.out)")
        _ = try server.stop()
    }
}

import Foundation
import Glibc
import Testing

/// `cml-data` end to end: real directories, a real store, real archives written by libarchive and read
/// back, and hostile inputs crafted with Python's tarfile.
struct DataTests {
    /// Writes distinct bytes (`seed`) of `size` to `path` under the work directory.
    private func writeBytes(_ box: Sandbox, _ path: String, seed: Int, size: Int, mode: Int = 0o644) throws {
        let full = path.hasPrefix("/") ? path : box.work + "/" + path
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data((0..<size).map { UInt8(truncatingIfNeeded: ($0 &+ seed &* 7919) &* 2654435761 >> 11) }).write(to: URL(fileURLWithPath: full))
        chmod(full, mode_t(mode))
    }

    /// Large enough to be stored as a file of its own; smaller blobs go into packs.
    private let ownFileSize = 17 << 20

    /// A small tree with nested folders, modes, a link, an empty file, two files of equal content and a
    /// 17 MiB one (stored as a file of its own, not in a pack).
    private func makeTree(_ box: Sandbox, _ name: String = "data") throws {
        try box.write("\(name)/readme.txt", "hello\n")
        try box.write("\(name)/run.sh", "#!/bin/sh\necho hi\n", mode: 0o755)
        try box.write("\(name)/private/key", "k\n", mode: 0o600)
        try box.write("\(name)/empty", "")
        try box.write("\(name)/a/b/c/deep.txt", "deep\n")
        try box.write("\(name)/copy1.txt", "same\n")
        try box.write("\(name)/copy2.txt", "same\n")
        try writeBytes(box, "\(name)/big.bin", seed: 1, size: ownFileSize)
        symlink("readme.txt", box.work + "/\(name)/latest")
        // Old enough for the stat cache to trust on the next snapshot.
        usleep(200_000)
    }

    private func data(_ box: Sandbox, _ args: [String], env: [String: String] = [:], stdin: Data? = nil) throws -> CommandResult {
        try box.run("cml-data", args, env: env, stdin: stdin)
    }

    /// `cml-data …` that must succeed; its first JSON line.
    @discardableResult
    private func record(_ box: Sandbox, _ args: [String], env: [String: String] = [:]) throws -> [String: Any] {
        let result = try data(box, args, env: env)
        #expect(result.status == 0, "cml-data \(args.joined(separator: " ")): \(result.stderr)")
        return try #require(result.jsonLines.first, "cml-data \(args.joined(separator: " ")) printed \(result.out)")
    }

    /// Every file under the store's objects, with its size: what "the store is as it was" compares.
    private func objects(_ box: Sandbox) -> [String] {
        let root = box.store + "/objects"
        return (FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? []).compactMap { path in
            var st = stat()
            guard stat(root + "/" + path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
            return "\(path) \(st.st_size)"
        }.sorted()
    }

    private func sameTree(_ a: String, _ b: String) throws -> CommandResult {
        try shell("diff -r --no-dereference '\(a)' '\(b)' && [ \"$(cd '\(a)' && find . -printf '%p %m %y\\n' | sort)\" = "
                  + "\"$(cd '\(b)' && find . -printf '%p %m %y\\n' | sort)\" ]", cwd: "/")
    }

    @Test func aSnapshotComesBackByteForByteWithModesAndLinks() throws {
        let box = try Sandbox()
        try makeTree(box)
        let version = try record(box, ["snapshot", "data", "-m", "first"])
        #expect(version["dataset"] as? String == "data" && version["version"] as? Int == 1)
        #expect(version["files"] as? Int == 9 && version["hashed_files"] as? Int == 8)
        #expect(version["size"] as? Int == ownFileSize + 6 + 18 + 2 + 5 + 5 + 5)
        // copy1 and copy2 share one blob: 7 contents plus the manifest.
        #expect(version["new_blobs"] as? Int == 8 && version["message"] as? String == "first")

        let shown = try data(box, ["show", "data@1"])
        #expect(shown.status == 0)
        let entries = Dictionary(uniqueKeysWithValues: shown.jsonLines.map { ($0["path"] as! String, $0) })
        #expect(entries.count == 9)
        #expect(entries["run.sh"]?["mode"] as? String == "0755" && entries["private/key"]?["mode"] as? String == "0600")
        #expect(entries["latest"]?["link"] as? String == "readme.txt" && entries["latest"]?["sha256"] == nil)
        #expect(entries["copy1.txt"]?["sha256"] as? String == entries["copy2.txt"]?["sha256"] as? String)

        let checkedOut = try record(box, ["checkout", "data@1", box.root + "/out"])
        #expect(checkedOut["files"] as? Int == 9)
        let compared = try sameTree(box.work + "/data", box.root + "/out")
        #expect(compared.status == 0, "\(compared.out)")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: box.root + "/out/latest") == "readme.txt")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: box.root).filter { $0.hasPrefix(".out") }
        #expect(leftovers.isEmpty)
    }

    /// Files under 16 MiB (audio clips, small shards) share packs, written and synced once each, rather
    /// than each becoming a file synced on its own; they come back whole.
    @Test func mediumSizedFilesShareAFewPacks() throws {
        let box = try Sandbox()
        for index in 0..<20 { try writeBytes(box, "clips/c\(index).wav", seed: 40 + index, size: (2 << 20) + index) }
        let version = try record(box, ["snapshot", "clips", "--jobs", "2"])
        #expect(version["new_blobs"] as? Int == 21)
        let stored = objects(box)
        #expect(stored.allSatisfy { $0.hasPrefix("packs/") }, "\(stored)")
        #expect(stored.count { $0.hasSuffix(".pack") } <= 2)
        try record(box, ["checkout", "clips", box.root + "/back"])
        #expect(try sameTree(box.work + "/clips", box.root + "/back").status == 0)
    }

    /// With every core hashing (here the only one), a large file new to the store is written out from
    /// each chunk as it is hashed; it comes back whole, and one written meanwhile leaves nothing behind.
    @Test func largeFilesWrittenAsTheyAreHashedComeBackWhole() throws {
        let box = try Sandbox()
        for index in 0..<2 { try writeBytes(box, "shards/s\(index).bin", seed: 60 + index, size: ownFileSize + index) }
        let version = try record(box, ["snapshot", "shards", "--jobs", "1"])
        #expect(version["new_blobs"] as? Int == 3)
        #expect(objects(box).count { !$0.hasPrefix("packs/") } == 2, "\(objects(box))")
        #expect(try record(box, ["verify", "shards"])["damaged"] as? Int == 0)
        try record(box, ["checkout", "shards", box.root + "/back"])
        #expect(try sameTree(box.work + "/shards", box.root + "/back").status == 0)

        try writeBytes(box, "growing/log.bin", seed: 70, size: ownFileSize)
        let before = objects(box)
        let writer = try box.start("/bin/sh", ["-c", "while :; do echo more >> growing/log.bin; done"])
        defer { kill(writer.pid, SIGKILL); _ = try? writer.wait() }
        usleep(100_000)
        let refused = try data(box, ["snapshot", "growing", "--jobs", "1"])
        #expect(refused.status == 1 && refused.stderr.contains("changed or disappeared"), "\(refused.stderr)")
        #expect(objects(box) == before)
    }

    @Test func aChangedFileIsTheOnlyOneReadAndRenamesStoreNothing() throws {
        let box = try Sandbox()
        try makeTree(box)
        let first = try record(box, ["snapshot", "data"])
        let before = objects(box)
        // Reorganised: a folder renamed and a file moved. Nothing new is stored but the manifest.
        #expect(rename(box.work + "/data/a", box.work + "/data/renamed") == 0)
        #expect(rename(box.work + "/data/big.bin", box.work + "/data/renamed/big.bin") == 0)
        // A file changed less than a tenth of a second before it is hashed is hashed again next time.
        usleep(200_000)
        let moved = try record(box, ["snapshot", "data", "-m", "reorganised"])
        #expect(moved["new_blobs"] as? Int == 1 && moved["parents"] as? [String] == [first["id"] as! String])
        #expect(moved["hashed_files"] as? Int == 1 && moved["unchanged_files"] as? Int == 7,
                "only the moved big.bin is read again (a rename changes its ctime; renaming a folder does not)")
        #expect(objects(box).count == before.count + 2, "one pack and its index, holding the new manifest")

        try box.write("data/readme.txt", "hello again\n")
        let changed = try record(box, ["snapshot", "data"])
        #expect(changed["hashed_files"] as? Int == 1 && changed["new_blobs"] as? Int == 2)

        let diff = try data(box, ["diff", "data@1", "data"])
        #expect(diff.status == 0, "\(diff.stderr)")
        let changes = diff.jsonLines.map { "\($0["change"]!) \($0["from"].map { "\($0) -> " } ?? "")\($0["path"]!)" }
        #expect(changes == ["modified readme.txt", "renamed a/b/c/deep.txt -> renamed/b/c/deep.txt",
                            "renamed big.bin -> renamed/big.bin"])
        let modified = try #require(diff.jsonLines.first)
        #expect(modified["old_size"] as? Int == 6 && modified["size"] as? Int == 12)
        #expect(try data(box, ["diff", "data@2", "data@2"]).out.isEmpty)
    }

    @Test func aStoreInsideTheDirectoryIsLeftOut() throws {
        let box = try Sandbox()
        try box.write("project/data.csv", "a,b\n")
        let version = try record(box, ["--store", box.work + "/project/.cml", "snapshot", "project"])
        #expect(version["files"] as? Int == 1)
        let again = try data(box, ["--store", box.work + "/project/.cml", "snapshot", "project"])
        #expect(again.status == 0 && again.stderr.contains("left out \(box.work)/project/.cml: it is the store"))
    }

    @Test func versionsAreNamedByNumberIdPrefixAndLatestAndMistakesListWhatExists() throws {
        let box = try Sandbox()
        try box.write("d/x", "1")
        let one = try record(box, ["snapshot", "d", "--name", "set"])
        try box.write("d/x", "2")
        let two = try record(box, ["snapshot", "d", "--name", "set"])
        let id = two["id"] as! String
        for reference in ["set", "set@latest", "set@2", "set@\(id.prefix(12))", String(id.prefix(14))] {
            let resolved = try record(box, ["log", reference])
            #expect(resolved["id"] as? String == id, "\(reference)")
        }
        #expect(try record(box, ["log", "set@1"])["id"] as? String == one["id"] as? String)

        let noVersion = try data(box, ["show", "set@7"])
        #expect(noVersion.status == 1 && noVersion.stderr == "cml-data: error: dataset set has no version 7 (its versions: 1, 2)\n")
        let noDataset = try data(box, ["checkout", "sett", box.root + "/x"])
        #expect(noDataset.status == 1 && noDataset.stderr.contains("no dataset named sett (datasets: set)"))
        #expect(access(box.root + "/x", F_OK) != 0)
        let badReference = try data(box, ["show", "set@x!"])
        #expect(badReference.status == 2 && badReference.stderr.hasPrefix("cml-data: error: "))
        let listed = try data(box, ["ls", "set"]).jsonLines
        #expect(listed.map { $0["version"] as? Int } == [2, 1])
    }

    @Test func lineageFollowsParentsRunsAndContentAcrossRenames() throws {
        let box = try Sandbox()
        let path = binDirectory + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "")
        try box.write("raw/labels.csv", "a,1\n")
        try box.write("raw/images/1.png", "png")
        let raw = try record(box, ["snapshot", "raw", "-m", "download"])

        // A run uses raw@1 (a read-only copy in $CML_DATA_RAW) and records what it made.
        let script = """
            test -f "$CML_DATA_RAW/labels.csv" && \
            mkdir -p clean && cp "$CML_DATA_RAW/labels.csv" clean/labels.csv && echo fixed > clean/extra.txt && \
            cml-data snapshot clean -m cleaned --parent raw@1
            """
        let made = try box.run("cml-run", ["--monitor-interval", "0", "--data", "raw@1", "--", "sh", "-c", script], env: ["PATH": path])
        #expect(made.status == 0, "\(made.stderr)")
        let runID = try #require(try box.runs().first?["id"] as? String)
        let clean = try #require(made.jsonLines.first)
        #expect(clean["run"] as? String == runID && clean["parents"] as? [String] == [raw["id"] as! String])
        let shownRun = try box.show(runID)
        #expect((shownRun["datasets"] as? [[String: Any]])?.first?["id"] as? String == raw["id"] as? String)
        let env = shownRun["env"] as? [String: String]
        #expect(env?["CML_DATA_RAW"] == box.store + "/cache/datasets/" + (raw["id"] as! String))

        try box.write("clean/moved/labels.csv", "a,1\n")
        #expect(unlink(box.work + "/clean/labels.csv") == 0)
        try box.write("more/x", "x")
        let other = try record(box, ["snapshot", "more"])
        let merged = try record(box, ["snapshot", "clean", "--parent", "clean", "--parent", "more@1", "-m", "merge"])
        #expect(merged["parents"] as? [String] == [clean["id"] as! String, other["id"] as! String])

        let log = try data(box, ["log", "clean"])
        #expect(log.status == 0)
        #expect(log.jsonLines.map { $0["message"] as? String } == ["merge", nil, "cleaned", "download"])
        let rawLine = try #require(log.jsonLines.last)
        #expect(rawLine["used_by"] as? [String] == [runID])

        // The labels came with raw@1, under the same path, and moved since.
        let blame = try record(box, ["blame", "clean", "moved/labels.csv"])
        #expect(blame["version_id"] as? String == raw["id"] as? String && blame["introduced_as"] as? String == "labels.csv")
        let blameExtra = try record(box, ["blame", "clean@1", "extra.txt"])
        #expect(blameExtra["version"] as? Int == 1 && blameExtra["dataset"] as? String == "clean" && blameExtra["run"] as? String == runID)
        let noFile = try data(box, ["blame", "clean", "labels.csv"])
        #expect(noFile.status == 1 && noFile.stderr.contains("did you mean moved/labels.csv?"))

        // Parents removed are shown as missing, not lost.
        #expect(try data(box, ["rm", "--yes", "raw@1"]).status == 0)
        let afterRemoval = try data(box, ["log", "clean@1"]).jsonLines
        #expect(afterRemoval.last?["missing"] as? Bool == true && afterRemoval.last?["id"] as? String == raw["id"] as? String)
        let badData = try box.run("cml-run", ["--data", "nothing@1", "--", "true"])
        #expect(badData.status == 1 && badData.stderr.contains("no dataset named nothing"))
        #expect(try box.runs().count == 1, "a run with a version that does not exist is not recorded")
    }

    @Test func aRunNeverSeesWhatAnotherRunWroteIntoItsDataCopy() throws {
        // Issue 13: as root the read-only copy can be written, and the next run saw the change.
        let box = try Sandbox()
        try box.write("raw/labels.csv", "a,1\n")
        _ = try record(box, ["snapshot", "raw"])
        let tamper = #"echo x > "$CML_DATA_RAW/new.txt"; chmod u+w "$CML_DATA_RAW/labels.csv" && echo b,2 >> "$CML_DATA_RAW/labels.csv"; true"#
        #expect(try box.run("cml-run", ["--data", "raw@1", "--", "sh", "-c", tamper]).status == 0)
        let look = try box.run("cml-run", ["--data", "raw@1", "--", "sh", "-c", #"ls "$CML_DATA_RAW"; cat "$CML_DATA_RAW/labels.csv""#])
        #expect(look.out == "labels.csv\na,1\n", "\(look.out)")
        // An untouched copy is used as it is: the same inode.
        let first = try box.run("cml-run", ["--data", "raw@1", "--", "sh", "-c", #"stat -c %i "$CML_DATA_RAW/labels.csv""#]).out
        let second = try box.run("cml-run", ["--data", "raw@1", "--", "sh", "-c", #"stat -c %i "$CML_DATA_RAW/labels.csv""#]).out
        #expect(!first.isEmpty && first == second)
    }

    @Test func checkoutRefusesAFullDirectoryAndLinksWhenAsked() throws {
        let box = try Sandbox()
        try makeTree(box)
        try record(box, ["snapshot", "data"])
        try box.write(box.root + "/full/keep.txt", "mine")
        let refused = try data(box, ["checkout", "data", box.root + "/full"])
        #expect(refused.status == 1 && refused.stderr.contains("already exists and is not empty"))
        #expect(try String(contentsOfFile: box.root + "/full/keep.txt", encoding: .utf8) == "mine")
        try FileManager.default.createDirectory(atPath: box.root + "/empty", withIntermediateDirectories: false)
        try record(box, ["checkout", "data", box.root + "/empty"])
        #expect(try sameTree(box.work + "/data", box.root + "/empty").status == 0)

        let linked = try record(box, ["checkout", "data", box.root + "/full", "--force", "--link"])
        #expect(linked["hard_linked"] as? Int == 1 && access(box.root + "/full/keep.txt", F_OK) != 0)
        var st = stat()
        #expect(stat(box.root + "/full/big.bin", &st) == 0 && st.st_nlink == 2 && st.st_mode & 0o222 == 0)
        #expect(stat(box.root + "/full/run.sh", &st) == 0 && st.st_mode & 0o7777 == 0o555)

        let first = try data(box, ["get", "data"])
        let second = try data(box, ["get", "data@1"])
        #expect(first.status == 0 && first.out == second.out && first.out.hasPrefix(box.store + "/cache/datasets/"))
        let copy = String(first.out.dropLast())
        #expect(try shell("diff -r --no-dereference '\(box.work)/data' '\(copy)'", cwd: "/").status == 0)
        #expect(stat(copy + "/run.sh", &st) == 0 && st.st_mode & 0o7777 == 0o555)
        #expect(stat(copy + "/a", &st) == 0 && st.st_mode & 0o7777 == 0o555)

        // An executable large file is copied, since a link would take the blob's mode (0444).
        try writeBytes(box, "data/tool.bin", seed: 8, size: ownFileSize, mode: 0o755)
        try record(box, ["snapshot", "data"])
        let executable = try record(box, ["checkout", "data", box.root + "/tools", "--link"])
        #expect(executable["hard_linked"] as? Int == 1)
        #expect(stat(box.root + "/tools/tool.bin", &st) == 0 && st.st_nlink == 1 && st.st_mode & 0o7777 == 0o555)
    }

    @Test func archivesMoveVersionsAndImportOnlyWhatIsNew() throws {
        let box = try Sandbox()
        try makeTree(box)
        let version = try record(box, ["snapshot", "data", "-m", "to share"])
        let other = box.root + "/other"
        for name in ["v.tar", "v.tar.gz", "v.tar.zst"] {
            let exported = try record(box, ["export", "data@1", box.root + "/" + name])
            #expect((exported["bytes"] as? Int ?? 0) > 0)
            // GNU tar reads it back (recognising the compression by its content).
            let listing = try shell("tar -tf \(box.root)/\(name) | head -3", cwd: "/")
            #expect(listing.out == "cml-dataset.json\nmanifest.jsonl\ndata/a/b/c/deep.txt\n", "\(listing.out) \(listing.stderr)")
            let imported = try record(box, ["--store", other + name, "import", box.root + "/" + name])
            #expect(imported["id"] as? String == version["id"] as? String && imported["already_present"] as? Bool == false)
            #expect(imported["message"] as? String == "to share" && imported["new_blobs"] as? Int == 8)
            try record(box, ["--store", other + name, "checkout", "data", box.root + "/from-" + name])
            #expect(try sameTree(box.work + "/data", box.root + "/from-" + name).status == 0)
        }
        // Importing again stores nothing; a store holding most of the content stores only the rest.
        let again = try record(box, ["--store", other + "v.tar", "import", box.root + "/v.tar"])
        #expect(again["already_present"] as? Bool == true)
        try box.write("data/new.txt", "new\n")
        let second = try record(box, ["snapshot", "data"])
        try record(box, ["export", "data@2", box.root + "/v2.tar.zst"])
        let partial = try record(box, ["--store", other + "v.tar", "import", box.root + "/v2.tar.zst", "--name", "shared"])
        #expect(partial["id"] as? String == second["id"] as? String && partial["dataset"] as? String == "shared")
        #expect(partial["new_blobs"] as? Int == 2, "new.txt and the manifest")
        #expect(partial["parents"] as? [String] == [version["id"] as! String])
        let piped = try shell("'\(binDirectory)/cml-data' --store '\(box.store)' export data@1 - | '\(binDirectory)/cml-data' --store '\(box.root)/piped' import -", cwd: "/")
        #expect(piped.status == 0, "\(piped.stderr)")
    }

    /// What `snapshot` records, `import` accepts: links inside the dataset (chains and loops too) go
    /// through export and import; links that lead out are refused at both ends, naming the link that
    /// does, unless --allow-outside-links, and then both ends take them.
    @Test func linksInsideTheDatasetSurviveExportAndImportAndOutsideOnesNeedTheOptionAtBothEnds() throws {
        let box = try Sandbox()
        try box.write("t/a", "a\n")
        try box.write("t/d/b", "b\n")
        for (link, target) in [("l2", "l1"), ("l1", "l2"), ("chain", "d/up"), ("d/up", "../a"), ("d/self", ".")] {
            #expect(symlink(target, box.work + "/t/" + link) == 0)
        }
        try record(box, ["snapshot", "t"])
        try record(box, ["export", "t", box.root + "/t.tar"])
        let other = box.root + "/other"
        let imported = try record(box, ["--store", other, "import", box.root + "/t.tar"])
        #expect(imported["files"] as? Int == 7)
        try record(box, ["--store", other, "checkout", "t", box.root + "/back"])
        #expect(try sameTree(box.work + "/t", box.root + "/back").status == 0)

        // Out: absolute, .. above the top, and through d/self; `via` leads out only through `up`.
        for (link, target) in [("host", "/etc/hostname"), ("up", "../x"), ("via", "up"), ("sneaky", "d/self/../..")] {
            #expect(symlink(target, box.work + "/t/" + link) == 0)
        }
        let before = objects(box)
        let refused = try data(box, ["snapshot", "t"])
        #expect(refused.status == 1)
        #expect(refused.stderr == "cml-data: error: 3 links point outside \(box.work)/t: host (to /etc/hostname), sneaky (to d/self/../..), "
                + "up (to ../x) (nothing was recorded; pass --allow-outside-links to record them as links anyway)\n")
        #expect(objects(box) == before)
        #expect(try data(box, ["ls", "t"]).jsonLines.count == 1)

        let allowed = try record(box, ["snapshot", "t", "--allow-outside-links"])
        #expect(allowed["version"] as? Int == 2 && allowed["files"] as? Int == 11)
        try record(box, ["export", "t@2", box.root + "/t2.tar"])
        let fresh = box.root + "/fresh"
        let importRefused = try data(box, ["--store", fresh, "import", box.root + "/t2.tar"])
        #expect(importRefused.status == 1)
        #expect(importRefused.stderr == "cml-data: error: cannot import \(box.root)/t2.tar: 3 links point outside the dataset: host (to /etc/hostname), "
                + "sneaky (to d/self/../..), up (to ../x) (nothing was imported; pass --allow-outside-links to keep them as links anyway)\n")
        let accepted = try record(box, ["--store", fresh, "import", box.root + "/t2.tar", "--allow-outside-links"])
        #expect(accepted["id"] as? String == allowed["id"] as? String)
        // Checkout makes them links again, and writes nothing through them.
        try record(box, ["--store", fresh, "checkout", "t", box.root + "/back2"])
        #expect(try sameTree(box.work + "/t", box.root + "/back2").status == 0)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: box.root + "/back2/host") == "/etc/hostname")
        #expect(!FileManager.default.fileExists(atPath: box.root + "/x"))
    }

    @Test func importKeepsVersionNumbersOrSaysItRenumberedAndNeverIgnoresName() throws {
        let box = try Sandbox()
        for number in 1...3 {
            try box.write("data/v", "\(number)\n")
            try record(box, ["snapshot", "data"])
            try record(box, ["export", "data@\(number)", box.root + "/v\(number).tar"])
        }
        let other = ["--store", box.root + "/other"]
        // Into a store without the dataset: the numbers are kept, gaps and all.
        let second = try data(box, other + ["import", box.root + "/v2.tar"])
        #expect(second.status == 0 && second.stderr.isEmpty, "\(second.stderr)")
        #expect(second.jsonLines.first?["version"] as? Int == 2)
        // data@1 after data@2: numbers only grow (a removed version's number is never given again).
        let first = try data(box, other + ["import", box.root + "/v1.tar"])
        #expect(first.status == 0 && first.jsonLines.first?["version"] as? Int == 3)
        #expect(first.stderr == "cml-data: data@1 is data@3 in this store (data has had version 1 or a later one here)\n")
        let listed = try data(box, other + ["ls", "data"]).jsonLines.compactMap { $0["version"] as? Int }
        #expect(listed.sorted() == [2, 3])

        // --name puts it in another dataset, keeping its number there.
        let renamed = try record(box, other + ["import", box.root + "/v3.tar", "--name", "copy"])
        #expect(renamed["dataset"] as? String == "copy" && renamed["version"] as? Int == 3)
        // It cannot be in two datasets: importing it again under a third name is refused, not ignored.
        let twice = try data(box, other + ["import", box.root + "/v3.tar", "--name", "third"])
        #expect(twice.status == 1)
        #expect(twice.stderr == "cml-data: error: cannot import \(box.root)/v3.tar: this store holds the version already, as copy@3 "
                + "(nothing was imported; a version belongs to one dataset, so --name cannot give it another)\n")
        let same = try record(box, other + ["import", box.root + "/v3.tar", "--name", "copy"])
        #expect(same["already_present"] as? Bool == true)
    }

    @Test func anUnchangedDirectoryMakesNoNewVersion() throws {
        let box = try Sandbox()
        try makeTree(box)
        let first = try record(box, ["snapshot", "data"])
        #expect(first["unchanged"] as? Bool == false)
        let again = try data(box, ["snapshot", "data", "-m", "nothing new"])
        #expect(again.status == 0)
        let shown = try #require(again.jsonLines.first)
        #expect(shown["id"] as? String == first["id"] as? String && shown["unchanged"] as? Bool == true)
        #expect(shown["hashed_files"] as? Int == 0)
        #expect(again.stderr == "cml-data: nothing changed since data@1: no version recorded (the message was not kept)\n")
        #expect(try data(box, ["ls", "data"]).jsonLines.count == 1)
        // A change, even to a mode alone, is a version.
        chmod(box.work + "/data/readme.txt", 0o600)
        let changed = try record(box, ["snapshot", "data"])
        #expect(changed["version"] as? Int == 2 && changed["unchanged"] as? Bool == false)
    }

    @Test func aFileWithoutPermissionsAndANameThatIsNotUTF8AreShownForWhatTheyAre() throws {
        let box = try Sandbox()
        try box.write("d/none", "x", mode: 0o000)
        try box.write("d/ok", "y")
        try record(box, ["snapshot", "d"])
        let shown = try data(box, ["show", "d@1"]).jsonLines
        #expect(shown.first { $0["path"] as? String == "none" }?["mode"] as? String == "0000")

        let made = try shell("printf x > \"$(printf 'd/bad\\377name')\"", cwd: box.work)
        #expect(made.status == 0, "\(made.stderr)")
        let refused = try data(box, ["snapshot", "d"])
        #expect(refused.status == 1)
        #expect(refused.stderr == "cml-data: error: the name of \(box.work)/d/bad\\xffname is not UTF-8 "
                + "(nothing was recorded; rename it, or pass --skip-unreadable to leave it out)\n")
        #expect(try data(box, ["ls"]).jsonLines.count == 1)
        let skipped = try data(box, ["snapshot", "d", "--skip-unreadable"])
        #expect(skipped.status == 0)
        #expect(skipped.jsonLines.first?["skipped"] as? [String] == ["\(box.work)/d/bad\\xffname: the name is not UTF-8"])
    }

    /// Writes an archive with Python's tarfile: `entries` is Python code adding members to `tar` (helpers
    /// `add(name, bytes, mode=0o644)` and `link(name, target)`), after a record and manifest built from
    /// `manifest` (a list of dicts) unless `header` replaces them.
    private func craft(_ box: Sandbox, _ name: String, manifest: String, entries: String, header: String? = nil) throws {
        try box.write(box.root + "/craft.py", """
            import hashlib, io, json, sys, tarfile
            tar = tarfile.open(sys.argv[1], "w")
            def add(name, data, mode=0o644, kind=tarfile.REGTYPE):
                info = tarfile.TarInfo(name); info.size = len(data); info.mode = mode; info.type = kind
                tar.addfile(info, io.BytesIO(data))
            def link(name, target, kind=tarfile.SYMTYPE):
                info = tarfile.TarInfo(name); info.type = kind; info.linkname = target; info.mode = 0o777
                tar.addfile(info)
            def sha(data): return hashlib.sha256(data).hexdigest()
            def crc32c(data):
                crc = 0xFFFFFFFF
                for byte in data:
                    crc ^= byte
                    for _ in range(8): crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
                return crc ^ 0xFFFFFFFF
            files = \(manifest)
            lines = "".join(json.dumps(f, separators=(",", ":")) + "\\n" for f in files).encode()
            record = {"id": "0" * 31 + "1", "dataset": "evil", "version": 1, "parents": [], "message": None,
                      "files": len(files), "size": sum(f["size"] for f in files), "manifest": sha(lines),
                      "created_at": "2026-11-27T10:00:00.000Z", "run": None}
            \(header ?? "add('cml-dataset.json', json.dumps(record).encode()); add('manifest.jsonl', lines)")
            \(entries)
            tar.close()
            """)
        let made = try shell("python3 \(box.root)/craft.py \(box.root)/\(name)", cwd: "/")
        #expect(made.status == 0, "\(made.stderr)")
    }

    @Test func hostileArchivesAreRefusedBeforeAnythingIsStored() throws {
        let box = try Sandbox()
        try box.write("d/ok", "fine")
        try record(box, ["snapshot", "d"])
        let before = objects(box)
        let good = #"[{"path": "a.txt", "size": 5, "mode": "0644", "sha256": sha(b"hello")}]"#
        let cases: [(String, String, String, String?)] = [
            ("dotdot.tar", good, "add('data/a.txt', b'hello'); add('data/../../etc/cron', b'x')", "unsafe path"),
            ("absolute.tar", good, "add('data/a.txt', b'hello'); add('/etc/evil', b'x')", "unsafe path"),
            ("lie.tar", good, "add('data/a.txt', b'HELLO')", "does not match its manifest"),
            ("crc-lie.tar", #"[{"path": "a.txt", "size": 5, "mode": "0644", "sha256": sha(b"hello"), "crc32c": "%08x" % (crc32c(b"hello") ^ 1)}]"#,
             "add('data/a.txt', b'hello')", "does not match its manifest (sha256, crc32c or size)"),
            ("short.tar", good, "", "lacks 1 file of its manifest: a.txt"),
            ("extra.tar", good, "add('data/a.txt', b'hello'); add('data/b.txt', b'more')", "not in its manifest"),
            ("hardlink.tar", good, "add('data/a.txt', b'hello'); link('data/h', 'data/a.txt', tarfile.LNKTYPE)", "hard link"),
            ("escape.tar", #"[{"path": "l", "size": 0, "mode": "0777", "link": "../../etc/passwd"}]"#,
             "link('data/l', '../../etc/passwd')", "points outside the dataset"),
            ("unsafe-manifest.tar", #"[{"path": "../x", "size": 1, "mode": "0644", "sha256": sha(b"x")}]"#,
             "add('data/x', b'x')", "unsafe path"),
            ("not-ours.tar", good, "", "not a cml-data archive"),
            ("bad-record.tar", good, "add('data/a.txt', b'hello')", "does not match the version record"),
        ]
        for (name, manifest, entries, expected) in cases {
            let header: String? = switch name {
            case "not-ours.tar": "add('README', b'hi')"
            case "bad-record.tar": "add('cml-dataset.json', json.dumps(dict(record, manifest=sha(b'other'))).encode()); add('manifest.jsonl', lines)"
            default: nil
            }
            try craft(box, name, manifest: manifest, entries: entries, header: header)
            let result = try data(box, ["import", box.root + "/" + name])
            #expect(result.status == 1, "\(name) was accepted")
            #expect(result.stderr.hasPrefix("cml-data: error: cannot import \(box.root)/\(name): "), "\(name): \(result.stderr)")
            #expect(result.stderr.contains(expected!), "\(name): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1)
            #expect(objects(box) == before, "\(name) left something in the store")
        }
        #expect(try data(box, ["ls"]).jsonLines.count == 1)
        // The crafted good one is accepted, so the refusals above are the checks' doing.
        try craft(box, "good.tar", manifest: good, entries: "add('data/a.txt', b'hello')")
        #expect(try record(box, ["import", box.root + "/good.tar"])["dataset"] as? String == "evil")
        // So is one whose manifest keeps the CRC-32C that Python, bit by bit, computes: cml-data's agrees.
        let checked = #"[{"path": "b.txt", "size": 5, "mode": "0644", "sha256": sha(b"world"), "crc32c": "%08x" % crc32c(b"world")}]"#
        try craft(box, "checked.tar", manifest: checked, entries: "add('data/b.txt', b'world')",
                  header: "record['id'] = '0' * 31 + '2'; add('cml-dataset.json', json.dumps(record).encode()); add('manifest.jsonl', lines)")
        #expect(try record(box, ["import", box.root + "/checked.tar", "--name", "checked"])["dataset"] as? String == "checked")
        try record(box, ["checkout", "checked", box.root + "/checked"])
        #expect(try String(contentsOfFile: box.root + "/checked/b.txt", encoding: .utf8) == "world")
    }

    @Test func verifyNamesDamagedAndMissingBlobs() throws {
        let box = try Sandbox()
        try makeTree(box)
        try writeBytes(box, "data/other.bin", seed: 9, size: ownFileSize)
        try record(box, ["snapshot", "data"])
        let clean = try data(box, ["verify", "data"])
        #expect(clean.status == 0 && clean.jsonLines.last?["damaged"] as? Int == 0 && clean.jsonLines.last?["blobs_checked"] as? Int == 9)
        let entries = try data(box, ["show", "data"]).jsonLines
        func blobPath(_ name: String) throws -> (String, String) {
            let id = try #require(entries.first { $0["path"] as? String == name }?["sha256"] as? String)
            return (id, box.store + "/objects/" + id.prefix(2) + "/" + id.dropFirst(2))
        }
        // Both large files are blobs of their own: damage three bytes of one, remove the other.
        let (big, bigPath) = try blobPath("big.bin")
        let (other, otherPath) = try blobPath("other.bin")
        chmod(bigPath, 0o644)
        let handle = try #require(FileHandle(forUpdatingAtPath: bigPath))
        try handle.seek(toOffset: 1000)
        try handle.write(contentsOf: Data([0, 1, 2]))
        try handle.close()
        // Checkout checks each file by the CRC-32C its manifest keeps, and finds the damage.
        #expect(entries.allSatisfy { $0["link"] != nil || ($0["crc32c"] as? String)?.utf8.count == 8 })
        let damagedCheckout = try data(box, ["checkout", "data", box.root + "/out"])
        #expect(damagedCheckout.status == 1 && damagedCheckout.stderr.contains("blob \(big) is damaged (its CRC-32C is "),
                "\(damagedCheckout.stderr)")
        #expect(unlink(otherPath) == 0)
        let result = try data(box, ["verify", "data"])
        #expect(result.status == 1 && result.stderr == "cml-data: error: data@1 has 1 damaged and 1 missing blobs (a copy elsewhere can be imported again: cml-data import)\n")
        let problems = Dictionary(uniqueKeysWithValues: result.jsonLines.dropLast().map { ($0["sha256"] as! String, $0) })
        #expect(problems.count == 2)
        #expect(problems[big]?["problem"] as? String == "damaged" && problems[big]?["paths"] as? [String] == ["big.bin"])
        #expect(problems[other]?["problem"] as? String == "missing" && problems[other]?["paths"] as? [String] == ["other.bin"])
        #expect(result.jsonLines.last?["damaged"] as? Int == 1 && result.jsonLines.last?["missing"] as? Int == 1)
        let checkout = try data(box, ["checkout", "data", box.root + "/out"])
        #expect(checkout.status == 1 && checkout.stderr.contains("nothing was left behind"))
        #expect(access(box.root + "/out", F_OK) != 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: box.root).filter { $0.hasPrefix(".out") }.isEmpty)
    }

    /// One large file and spare threads: the copy is split into ranges, each copied and read back for its
    /// CRC-32C, the CRCs joined. Three threads give ranges of 6, 6 and 4 MiB and 12,345 bytes.
    @Test func aLargeFileIsCopiedInPartsAndCheckedWhole() throws {
        let box = try Sandbox()
        let size = (16 << 20) + 12_345
        try writeBytes(box, "one/weights.bin", seed: 11, size: size, mode: 0o640)
        try record(box, ["snapshot", "one"])
        let entry = try #require(try data(box, ["show", "one"]).jsonLines.first)
        try record(box, ["checkout", "one", box.root + "/copy", "--jobs", "3"])
        #expect(try shell("cmp '\(box.work)/one/weights.bin' '\(box.root)/copy/weights.bin'", cwd: "/").status == 0)
        var st = stat()
        #expect(stat(box.root + "/copy/weights.bin", &st) == 0 && st.st_mode & 0o7777 == 0o640 && st.st_size == size)

        // One byte changed in the second range: the joined CRC differs, and nothing is left behind.
        let id = try #require(entry["sha256"] as? String)
        let blob = box.store + "/objects/" + id.prefix(2) + "/" + id.dropFirst(2)
        chmod(blob, 0o644)
        let handle = try #require(FileHandle(forUpdatingAtPath: blob))
        try handle.seek(toOffset: 7 << 20)
        let original = try #require(try handle.read(upToCount: 1)).first!
        try handle.seek(toOffset: 7 << 20)
        try handle.write(contentsOf: Data([original ^ 0x10]))
        try handle.close()
        let damaged = try data(box, ["checkout", "one", box.root + "/again", "--jobs", "3"])
        #expect(damaged.status == 1 && damaged.stderr.contains("blob \(id) is damaged (its CRC-32C is "), "\(damaged.stderr)")
        #expect(damaged.stderr.contains("its manifest says \(entry["crc32c"] as? String ?? "?")"))
        #expect(access(box.root + "/again", F_OK) != 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: box.root).filter { $0.hasPrefix(".again") }.isEmpty)
    }

    @Test func removingAVersionFreesOnlyWhatNothingElseReferences() throws {
        let box = try Sandbox()
        try makeTree(box)
        try record(box, ["snapshot", "data"])
        try box.write("data/readme.txt", "changed\n")
        #expect(unlink(box.work + "/data/big.bin") == 0)
        try writeBytes(box, "data/big2.bin", seed: 2, size: 3 << 20)
        try record(box, ["snapshot", "data"])
        #expect(try data(box, ["get", "data@1"]).status == 0)
        // A run keeps big2.bin as an artifact.
        #expect(try box.run("cml-run", ["--monitor-interval", "0", "--", "true"]).status == 0)
        let run = try #require(try box.runs().first?["id"] as? String)
        #expect(try box.run("cml-log", ["artifact", "data/big2.bin", "--run", run]).status == 0)

        let removed = try record(box, ["rm", "--yes", "data@1"])
        // readme.txt's old content, big.bin, the manifest; and the cached copy of data@1.
        #expect(removed["blobs_removed"] as? Int == 3)
        #expect((removed["bytes_freed"] as? Int ?? 0) >= 2 * (2 << 20))
        #expect(!FileManager.default.fileExists(atPath: box.store + "/cache/datasets/" + (try data(box, ["ls"]).jsonLines[0]["parents"] as! [String])[0]))
        #expect(try data(box, ["verify", "data"]).status == 0)
        #expect(try record(box, ["gc"])["blobs_removed"] as? Int == 0)

        // The run's artifact outlives the version; the version's blobs outlive the run.
        #expect(try data(box, ["rm", "--yes", "data"]).status == 0)
        #expect(try box.run("cml-run", ["get", run, "big2.bin", box.root + "/restored.bin"]).status == 0)
        try record(box, ["snapshot", "data"])
        #expect(try box.run("cml-run", ["rm", "--yes", run]).status == 0)
        #expect(try data(box, ["verify", "data"]).status == 0)
        #expect(try data(box, ["rm", "--yes", "data"]).status == 0)
        let collected = try record(box, ["gc"])
        #expect(collected["blobs_removed"] as? Int == 0, "rm freed everything already")
        #expect(objects(box).isEmpty)
    }

    @Test func badDirectoriesAndUnreadableFilesAreRefusedByName() throws {
        let box = try Sandbox()
        let missing = try data(box, ["snapshot", "nowhere"])
        #expect(missing.status == 1 && missing.stderr == "cml-data: error: nowhere does not exist\n")
        try box.write("file.txt", "x")
        let file = try data(box, ["snapshot", "file.txt"])
        #expect(file.status == 1 && file.stderr.contains("file.txt is not a directory"))

        try box.write("d/ok.txt", "ok")
        try box.write("d/secret.txt", "s", mode: 0o000)
        try box.write("d/locked/inside.txt", "s")
        chmod(box.work + "/d/locked", 0o000)
        #expect(mkfifo(box.work + "/d/pipe", 0o644) == 0)
        // The suite runs as root, who reads anything: drop the capabilities that let root ignore
        // permissions, for cml-data only.
        let dropped = ["--bounding-set", "-dac_override,-dac_read_search", binDirectory + "/cml-data"]
        let refused = try box.run("/usr/bin/setpriv", dropped + ["snapshot", "d"])
        #expect(refused.status == 1, "\(refused.stderr)")
        #expect(refused.stderr.contains("cannot read \(box.work)/d/locked: Permission denied, \(box.work)/d/secret.txt: Permission denied"),
                "\(refused.stderr)")
        #expect(refused.stderr.contains("--skip-unreadable"))
        #expect(refused.stderr.contains("warning: skipped \(box.work)/d/pipe"))
        #expect(try data(box, ["ls"]).jsonLines.isEmpty)
        let skipped = try box.run("/usr/bin/setpriv", dropped + ["snapshot", "d", "--skip-unreadable"])
        #expect(skipped.status == 0, "\(skipped.stderr)")
        let version = try #require(skipped.jsonLines.first)
        #expect(version["files"] as? Int == 1 && (version["skipped"] as? [String])?.count == 2)
        #expect(skipped.stderr.contains("left out \(box.work)/d/secret.txt"))
        #expect(skipped.stderr.contains("left out \(box.work)/d/locked: Permission denied"))
    }

    @Test func aFileWrittenWhileItIsHashedIsNeverRecorded() throws {
        let box = try Sandbox()
        try writeBytes(box, "d/growing.log", seed: 3, size: 8 << 20)
        try box.write("d/other", "x")
        let writer = try box.start("/bin/sh", ["-c", "while :; do echo more >> d/growing.log; done"])
        defer { kill(writer.pid, SIGKILL); _ = try? writer.wait() }
        usleep(100_000)
        let result = try data(box, ["snapshot", "d"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("growing.log changed or disappeared while the snapshot read it"), "\(result.stderr)")
        #expect(try data(box, ["ls"]).jsonLines.isEmpty)
    }

    @Test(.enabled(if: canMountTmpfs, "needs root and mount(2): a small tmpfs stands in for a full disk"))
    func aFullDiskStopsCheckoutAndLeavesNothingBehind() throws {
        let box = try Sandbox()
        try writeBytes(box, "d/a.bin", seed: 4, size: 3 << 20)
        try writeBytes(box, "d/b.bin", seed: 5, size: 100_000)
        try record(box, ["snapshot", "d"])
        let disk = box.root + "/small"
        try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: false)
        #expect(try shell("mount -t tmpfs -o size=1m cml-test '\(disk)'", cwd: "/").status == 0)
        defer { _ = try? shell("umount '\(disk)'", cwd: "/") }
        let result = try data(box, ["checkout", "d", disk + "/out"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("cannot check out d@1 into \(disk)/out") && result.stderr.contains("No space left on device"),
                "\(result.stderr)")
        #expect(result.stderr.contains("nothing was left behind"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: disk).isEmpty)
    }

    @Test(.enabled(if: canMountTmpfs, "needs root and mount(2): a small tmpfs stands in for a full disk"))
    func aFullDiskStopsASnapshotAndRecordsNothing() throws {
        let box = try Sandbox()
        for index in 0..<300 { try writeBytes(box, "d/f\(index)", seed: index, size: 10_000) }
        let disk = box.root + "/small"
        try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: false)
        #expect(try shell("mount -t tmpfs -o size=2m cml-test '\(disk)'", cwd: "/").status == 0)
        defer { _ = try? shell("umount '\(disk)'", cwd: "/") }
        let result = try data(box, ["snapshot", "d", "--store", disk + "/store"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("No space left on device"), "\(result.stderr)")
        #expect(try data(box, ["ls", "--store", disk + "/store"]).jsonLines.isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: disk + "/store/objects/packs").isEmpty)
    }

    @Test(.enabled(if: canMountTmpfs, "needs root and mount(2): ramfs refuses direct I/O"))
    func aStoreWhoseFilesystemRefusesDirectWritesGetsOrdinaryOnes() throws {
        let box = try Sandbox()
        for index in 0..<300 { try writeBytes(box, "d/f\(index)", seed: index, size: 10_000 + index) }
        let disk = box.root + "/ram"
        try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: false)
        #expect(try shell("mount -t ramfs cml-test '\(disk)'", cwd: "/").status == 0)
        defer { _ = try? shell("umount '\(disk)'", cwd: "/") }
        let store = ["--store", disk + "/store"]
        let version = try record(box, ["snapshot", "d"] + store)
        #expect(version["files"] as? Int == 300 && version["new_blobs"] as? Int == 301)
        let verified = try record(box, ["verify", "d"] + store)
        #expect(verified["damaged"] as? Int == 0 && verified["missing"] as? Int == 0 && verified["blobs_checked"] as? Int == 301)
        try record(box, ["checkout", "d", "out"] + store)
        #expect(try shell("diff -r d out", cwd: box.work).status == 0)
    }

    @Test func concurrentSnapshotsAndGarbageCollectionLoseNothing() throws {
        let box = try Sandbox()
        for index in 0..<4 {
            // Shared content (the garbage collections must keep it), and one file each that makes each tree a version.
            for file in 0..<30 { try writeBytes(box, "d\(index)/f\(file)", seed: file + (index % 2) * 7, size: 5000) }
            try writeBytes(box, "d\(index)/own", seed: 100 + index, size: 5000)
        }
        var running: [RunningCommand] = []
        for index in 0..<4 { running.append(try box.start("cml-data", ["snapshot", "d\(index)", "--name", "set"])) }
        for _ in 0..<3 { running.append(try box.start("cml-data", ["gc"])) }
        for command in running {
            let result = try command.wait()
            #expect(result.status == 0, "\(result.stderr)")
        }
        let versions = try data(box, ["ls", "set"]).jsonLines
        #expect(versions.count == 4 && Set(versions.compactMap { $0["version"] as? Int }) == [1, 2, 3, 4])
        for number in 1...4 { #expect(try data(box, ["verify", "set@\(number)"]).status == 0) }
    }
}

/// Whether this process may mount a tmpfs (root in a namespace that allows it).
private let canMountTmpfs: Bool = {
    guard getuid() == 0 else { return false }
    var template = Array("/tmp/cml-mount-XXXXXX".utf8CString)
    let directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    defer { rmdir(directory) }
    guard mount("cml-probe", directory, "tmpfs", 0, "size=64k") == 0 else { return false }
    umount(directory)
    return true
}()

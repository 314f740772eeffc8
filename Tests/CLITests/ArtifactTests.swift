import Foundation
import Glibc
import Testing

/// Artifacts, images and notes: stored by `cml-log` (and `cml.artifact` in Python) into the blob store,
/// listed by `cml-run artifacts`, fetched back whole and verified by `cml-run get`.
struct ArtifactTests {
    /// A run with one finished record to attach artifacts to.
    private func runID(_ box: Sandbox) throws -> String {
        #expect(try box.run("cml-run", ["--monitor-interval", "0", "--", "true"]).status == 0)
        return try #require(try box.runs().first?["id"] as? String)
    }

    /// Blobs in the store: files of their own, plus the entries of every pack index (a 16-byte header,
    /// 48 bytes per blob, a 32-byte checksum). How many packs a batch writes depends on which thread
    /// hashed what.
    /// `restored` holds the work directory's `model` as it is: the same files, its link `latest` to
    /// `config.json`, and `run.sh` executable.
    static func expectRestoredModel(_ box: Sandbox, at restored: String) throws {
        let diff = try shell("diff -r --no-dereference model \(restored)", cwd: box.work)
        #expect(diff.status == 0, "\(diff.out)")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: restored + "/latest") == "config.json")
        let mode = try FileManager.default.attributesOfItem(atPath: restored + "/run.sh")[.posixPermissions] as? Int
        #expect(mode == 0o755)
    }

    private func blobCount(_ box: Sandbox) -> Int {
        let objects = box.store + "/objects"
        let folders = (try? FileManager.default.contentsOfDirectory(atPath: objects)) ?? []
        return folders.filter { !$0.hasPrefix(".") }.reduce(0) { count, folder in
            let names = (try? FileManager.default.contentsOfDirectory(atPath: objects + "/" + folder)) ?? []
            guard folder == "packs" else { return count + names.count }
            return count + names.filter { $0.hasSuffix(".idx") }.reduce(0) { sum, name in
                let size = (try? FileManager.default.attributesOfItem(atPath: objects + "/packs/" + name)[.size] as? Int) ?? 0
                return sum + (size - 48) / 48
            }
        }
    }

    private func artifactRows(_ box: Sandbox, _ id: String) throws -> [[String: Any]] {
        let listed = try box.run("cml-run", ["artifacts", id])
        #expect(listed.status == 0, "\(listed.stderr)")
        return listed.jsonLines
    }

    @Test func aDirectoryComesBackWithItsModesLinksAndBytes() throws {
        let box = try Sandbox()
        try box.write("model/config.json", "{\"layers\": 3}\n")
        try box.write("model/run.sh", "#!/bin/sh\necho hi\n", mode: 0o755)
        var weights = [UInt8](repeating: 0, count: 3 << 20)
        for i in weights.indices { weights[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 13) }
        try FileManager.default.createDirectory(atPath: box.work + "/model/sub", withIntermediateDirectories: true)
        try Data(weights).write(to: URL(fileURLWithPath: box.work + "/model/sub/weights.bin"))
        symlink("config.json", box.work + "/model/latest")
        let script = "cml-log artifact model --kind model --step 7"
        let recorded = try box.run("cml-run", ["--monitor-interval", "0", "--", "sh", "-c", script],
                                   env: ["PATH": binDirectory + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "")])
        #expect(recorded.status == 0, "\(recorded.stderr)")
        let id = try #require(try box.runs().first?["id"] as? String)
        // cml-log prints its record on stdout, which cml-run reads: a record, not metrics (issue 13).
        #expect((try box.show(id)["metrics"] as? [String: Any])?.isEmpty == true)
        let rows = try artifactRows(box, id)
        #expect(rows.count == 1)
        let row = try #require(rows.first)
        #expect(row["name"] as? String == "model" && row["kind"] as? String == "model" && row["step"] as? Int == 7)
        #expect(row["type"] as? String == "directory" && row["files"] as? Int == 4)
        #expect(row["size"] as? Int == weights.count + 14 + 18)

        let fetched = try box.run("cml-run", ["get", String(id.prefix(10)), "model", box.root + "/restored"])
        #expect(fetched.status == 0, "\(fetched.stderr)")
        #expect(fetched.out == box.root + "/restored\n")
        try Self.expectRestoredModel(box, at: box.root + "/restored")

        // The same content again stores no new blob; a changed file stores one blob and a new manifest.
        let before = blobCount(box)
        #expect(try box.run("cml-log", ["artifact", "model", "--run", id]).status == 0)
        #expect(blobCount(box) == before)
        try box.write("model/config.json", "{\"layers\": 4}\n")
        #expect(try box.run("cml-log", ["artifact", "model", "--run", id]).status == 0)
        #expect(blobCount(box) == before + 2)
        #expect(try artifactRows(box, id).count == 3)
    }

    /// Each hashing thread that stores a small file writes a pack: a few small files take one thread, so
    /// an artifact logged every epoch adds one pack, not one per core.
    @Test func aFewSmallFilesGoIntoOnePack() throws {
        let box = try Sandbox()
        let id = try runID(box)
        // 31 files of 100 KB: long enough to hash that, given a thread per core, each core would take some.
        for index in 0..<31 { try box.write("few/f\(index).txt", String(repeating: "\(index) ", count: 100_000 / 3)) }
        #expect(try box.run("cml-log", ["artifact", "few", "--run", id]).status == 0)
        let packs = try FileManager.default.contentsOfDirectory(atPath: box.store + "/objects/packs").filter { $0.hasSuffix(".pack") }
        #expect(packs.count == 1, "\(packs)")
        #expect(blobCount(box) == 32, "31 files and the manifest")
    }

    @Test func imagesAndNotesKeepEveryStepAndGetPicksOne() throws {
        let box = try Sandbox()
        let id = try runID(box)
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 1, 2, 3]
        for step in 1...3 {
            try Data(png + [UInt8(step)]).write(to: URL(fileURLWithPath: box.work + "/sample.png"))
            let stored = try box.run("cml-log", ["image", "sample.png", "--step", "\(step)", "--run", id])
            #expect(stored.status == 0, "\(stored.stderr)")
            #expect(stored.jsonLines.first?["media_type"] as? String == "image/png")
        }
        #expect(try box.run("cml-log", ["text", "first note", "--run", id]).status == 0)
        #expect(try box.run("cml-log", ["text", "-", "--name", "log", "--run", id], stdin: Data("from\nstdin".utf8)).status == 0)

        let rows = try artifactRows(box, id)
        #expect(rows.map { $0["name"] as? String } == ["sample.png", "sample.png", "sample.png", "text", "log"])
        #expect(rows.map { $0["kind"] as? String } == ["image", "image", "image", "text", "text"])

        let second = try box.run("cml-run", ["get", id, "sample.png", "--step", "2", "-"])
        #expect(second.status == 0 && [UInt8](second.stdout) == png + [2])
        let latest = try box.run("cml-run", ["get", id, "sample.png", "-"])
        #expect([UInt8](latest.stdout) == png + [3])
        #expect(try box.run("cml-run", ["get", id, "log", "-"]).out == "from\nstdin")
        let missingStep = try box.run("cml-run", ["get", id, "sample.png", "--step", "9"])
        #expect(missingStep.status == 1 && missingStep.stderr.contains("its steps: 1, 2, 3"))
        let unknown = try box.run("cml-run", ["get", id, "weights"])
        #expect(unknown.status == 1 && unknown.stderr.contains("it has: log, sample.png, text"))

        let table = try box.run("cml-run", ["artifacts", id, "--format", "table"])
        #expect(table.out.hasPrefix("NAME") && table.out.contains("image/png"))
    }

    @Test func everyVersionOfANameCanBeFetched() throws {
        // Issue 13: after two notes, the first could not be fetched (no steps to name it by).
        let box = try Sandbox()
        let id = try runID(box)
        // What cml-log prints is the record as stored: each note with its own version.
        let printed = try ["first", "second"].map { note in try box.run("cml-log", ["text", note, "--run", id]) }
        #expect(printed.map(\.status) == [0, 0])
        #expect(printed.map { $0.jsonLines.first?["version"] as? Int } == [1, 2])
        #expect(try artifactRows(box, id).map { $0["version"] as? Int } == [1, 2])
        // Times are RFC 3339, as everywhere else (issue 13).
        #expect(try artifactRows(box, id).allSatisfy { ($0["time"] as? String)?.hasSuffix("Z") == true })
        #expect(try box.run("cml-run", ["get", id, "text", "--version", "1", "-"]).out == "first")
        #expect(try box.run("cml-run", ["get", id, "text", "-"]).out == "second")
        let missing = try box.run("cml-run", ["get", id, "text", "--step", "0"])
        #expect(missing.status == 1 && missing.stderr.contains("--version 1 to 2"), "\(missing.stderr)")
        let beyond = try box.run("cml-run", ["get", id, "text", "--version", "3"])
        #expect(beyond.status == 1 && beyond.stderr.contains("no version 3 (its versions: 1 to 2)"), "\(beyond.stderr)")
        #expect(try box.run("cml-run", ["get", id, "text", "--version", "1", "--step", "0"]).status == 2)
        let table = try box.run("cml-run", ["artifacts", id, "--format", "table"])
        #expect(table.out.hasPrefix("NAME") && table.out.contains("VERSION"))
    }

    @Test func getRefusesToOverwriteAndLeavesNothingWhenTheBlobIsDamaged() throws {
        let box = try Sandbox()
        let id = try runID(box)
        try box.write("weights.bin", "version one")
        let stored = try box.run("cml-log", ["artifact", "weights.bin", "--run", id])
        let sha = try #require(stored.jsonLines.first?["sha256"] as? String)

        try box.write("out/weights.bin", "keep me")
        let refused = try box.run("cml-run", ["get", id, "weights.bin", "out"])
        #expect(refused.status == 1 && refused.stderr.contains("already exists"))
        #expect(try String(contentsOfFile: box.work + "/out/weights.bin", encoding: .utf8) == "keep me")
        #expect(try box.run("cml-run", ["get", id, "weights.bin", "out", "--force"]).status == 0)
        #expect(try String(contentsOfFile: box.work + "/out/weights.bin", encoding: .utf8) == "version one")

        // Damage the stored blob: get fails, names it, and writes nothing.
        let blob = box.store + "/objects/" + sha.prefix(2) + "/" + sha.dropFirst(2)
        chmod(blob, 0o644)
        try Data("version two".utf8).write(to: URL(fileURLWithPath: blob))
        let damaged = try box.run("cml-run", ["get", id, "weights.bin", box.root + "/fresh.bin"])
        #expect(damaged.status == 1 && damaged.stderr.contains("blob \(sha) is damaged"))
        #expect(!FileManager.default.fileExists(atPath: box.root + "/fresh.bin"))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: box.root).filter { $0.contains("cml-") }
        #expect(leftovers.isEmpty, "\(leftovers)")
    }

    @Test func badArtifactsAreRefusedBeforeAnythingIsStored() throws {
        let box = try Sandbox()
        let id = try runID(box)
        try box.write("notes.txt", "not a picture")
        let cases: [([String], String)] = [
            (["artifact", "missing.pt"], "cannot read missing.pt"),
            (["image", "notes.txt"], "notes.txt is not an image"),
            (["artifact", "notes.txt", "--name", ""], "the artifact name is empty"),
            (["artifact", "notes.txt", "--kind", "a\u{7}b"], "holds a control character"),
            (["artifact", "/dev/null"], "not a regular file or directory"),
        ]
        for (arguments, message) in cases {
            let result = try box.run("cml-log", arguments + ["--run", id])
            #expect(result.status == 1 && result.stderr.contains(message), "\(arguments): \(result.stderr)")
        }
        #expect(blobCount(box) == 0)
        #expect(try artifactRows(box, id).isEmpty)

        // A pipe inside a directory is skipped with a warning; the rest is stored.
        try box.write("data/a.csv", "1,2\n")
        mkfifo(box.work + "/data/pipe", 0o644)
        let withPipe = try box.run("cml-log", ["artifact", "data", "--run", id])
        #expect(withPipe.status == 0 && withPipe.stderr.contains("skipped") && withPipe.stderr.contains("data/pipe"))
        #expect(withPipe.jsonLines.first?["files"] as? Int == 1)
    }

    @Test func pythonStoresArtifactsInsideARunAndDoesNothingOutside() throws {
        let box = try Sandbox()
        try box.write("ckpt.pt", "weights")
        try box.write("train.py", """
            import os, cml
            record = cml.artifact("ckpt.pt", kind="model", step=2)
            os.remove("ckpt.pt")  # stored before artifact() returned
            cml.text("done", name="summary")
            cml.log(step=1, loss=float("nan"))
            cml.log(step=2, loss=float("inf"))
            try:
                cml.image("train.py")
            except cml.ArtifactError as error:
                print("refused:", error)
            print("sha", record["sha256"] if record else None)
            """)
        let result = try box.run("cml-run", ["--monitor-interval", "0", "--no-metrics", "--", "python3", "train.py"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.out.contains("refused: train.py is not an image"))
        let id = try #require(try box.runs().first?["id"] as? String)
        let rows = try artifactRows(box, id)
        #expect(rows.map { $0["name"] as? String } == ["ckpt.pt", "summary"])
        #expect(result.out.contains("sha \(try #require(rows.first?["sha256"] as? String))"))
        let loss = try box.run("cml-run", ["metrics", id, "--key", "loss"]).jsonLines
        #expect(loss.map { $0["value"] as? String } == ["nan", "inf"])

        // Outside cml-run every call is a no-op.
        try box.write("ckpt.pt", "weights")
        let outside = try shell("PYTHONPATH=\(binDirectory)/../../../python python3 train.py", cwd: box.work)
        #expect(outside.status == 0 && outside.out.contains("sha None"), "\(outside.stderr)")
    }
}

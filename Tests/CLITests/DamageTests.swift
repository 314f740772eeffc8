import Foundation
import Testing

/// A store whose files were lost or damaged says what is wrong instead of carrying on as if empty:
/// opening it, `cml-run log`, `cml-run verify`.
struct DamageTests {
    /// Records a run printing `script`'s output and returns its id.
    private func recordRun(_ box: Sandbox, _ script: String) throws -> String {
        let result = try box.run("cml-run", ["--", "sh", "-c", script])
        #expect(result.status == 0, "\(result.stderr)")
        return try #require(try box.runs().first?["id"] as? String)
    }

    private func logPath(_ box: Sandbox, _ id: String) -> String { box.store + "/logs/\(id).log" }

    private func logBytes(_ box: Sandbox, _ id: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: logPath(box, id))))
    }

    private func writeLog(_ box: Sandbox, _ id: String, _ bytes: [UInt8]) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: logPath(box, id)))
    }

    @Test func anEmptyOrMissingDatabaseBesideLogsIsRefusedNotRecreated() throws {
        let box = try Sandbox()
        _ = try recordRun(box, "echo hello")
        let database = box.store + "/cml.db"
        for sidecar in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: database + sidecar) }
        #expect(truncate(database, 0) == 0)
        let empty = try box.run("cml-run", ["ls"])
        #expect(empty.status == 1)
        #expect(empty.stderr.contains("database \(database) is empty but the store holds 1 run log"), "\(empty.stderr)")
        #expect(empty.stderr.contains("restore cml.db from a backup"))
        #expect((try FileManager.default.attributesOfItem(atPath: database)[.size] as? Int) == 0)

        try FileManager.default.removeItem(atPath: database)
        let missing = try box.run("cml-run", ["--", "true"])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("database \(database) is missing but the store holds 1 run log"), "\(missing.stderr)")
        #expect(!FileManager.default.fileExists(atPath: database))

        // A directory holding nothing of a store becomes one, as before.
        let fresh = try Sandbox()
        try FileManager.default.createDirectory(atPath: fresh.store + "/logs", withIntermediateDirectories: true)
        #expect(try fresh.run("cml-run", ["ls"]).status == 0)
    }

    @Test func logSaysTheRunsLogIsMissing() throws {
        let box = try Sandbox()
        let id = try recordRun(box, "echo hello")
        try FileManager.default.removeItem(atPath: logPath(box, id))
        let result = try box.run("cml-run", ["log", id])
        #expect(result.status == 1)
        #expect(result.stderr.contains("the console log of run \(id) is missing (the run recorded 6 bytes of output)"), "\(result.stderr)")

        // A run that printed nothing has no log to miss.
        let quiet = try recordRun(box, "true")
        try? FileManager.default.removeItem(atPath: logPath(box, quiet))
        #expect(try box.run("cml-run", ["log", quiet]).status == 0)
    }

    @Test func logPrintsWhatReadsThenNamesAGarbledRecord() throws {
        let box = try Sandbox()
        let id = try recordRun(box, "echo hello")
        let good = try logBytes(box, id)
        // A header whose flags byte is no stream, then bytes that would look like a record.
        try writeLog(box, id, good + [0x7F] + [UInt8](repeating: 1, count: 12) + Array("junk\n".utf8))
        let result = try box.run("cml-run", ["log", id])
        #expect(result.status == 1)
        #expect(result.out == "hello\n")
        #expect(result.stderr.contains("is damaged at byte offset \(good.count) (a garbled record header"), "\(result.stderr)")
    }

    @Test func logNamesABadlyCompressedRecord() throws {
        let box = try Sandbox()
        let id = try recordRun(box, "python3 -c \"print('a' * 20000)\"; echo after")
        var bytes = try logBytes(box, id)
        try #require(bytes[0] & 0x80 != 0, "the first record is compressed")
        // The zstd frame's magic number, right after the 13-byte header.
        for offset in 13..<17 { bytes[offset] ^= 0x5A }
        try writeLog(box, id, bytes)
        let result = try box.run("cml-run", ["log", id])
        #expect(result.status == 1)
        #expect(result.stderr.contains("is damaged at byte offset 0 (a compressed record that does not decode)"), "\(result.stderr)")
    }

    @Test func logNamesARecordCutShortInAnEndedRun() throws {
        let box = try Sandbox()
        let id = try recordRun(box, "echo hello; sleep 0.6; echo world")
        let bytes = try logBytes(box, id)
        // The first record ("hello\n", 13 + 6 bytes) loses two bytes of its body: the records after it no
        // longer line up.
        try writeLog(box, id, Array(bytes[..<15] + bytes[17...]))
        let result = try box.run("cml-run", ["log", id])
        #expect(result.status == 1)
        #expect(result.stderr.contains("the console log of run \(id) is "), "\(result.stderr)")
        let verify = try box.run("cml-run", ["verify", id])
        #expect(verify.status == 1)
    }

    @Test func verifyChecksLogsAndArtifactBlobs() throws {
        let box = try Sandbox()
        try box.write("model.bin", String(repeating: "weights ", count: 100))
        try box.write("checkpoint/a.txt", "first file")
        // Over the pack threshold (16 MiB), so stored as a file of its own, which the test can delete.
        try box.write("checkpoint/b.txt", String(repeating: "second file\n", count: 1_500_000))
        let log = binDirectory + "/cml-log"
        let id = try recordRun(box, "echo training; \(log) artifact model.bin && \(log) artifact checkpoint")
        let other = try recordRun(box, "echo fine")

        let clean = try box.run("cml-run", ["verify", id, other])
        #expect(clean.status == 0, "\(clean.stderr)")
        #expect(clean.jsonLines.map { $0["ok"] as? Bool } == [true, true])
        #expect(clean.jsonLines.map { $0["id"] as? String } == [id, other])

        let modelBlob = try sha256(of: box.work + "/model.bin")
        let modelPath = box.store + "/objects/\(modelBlob.prefix(2))/\(modelBlob.dropFirst(2))"
        chmod(modelPath, 0o644)
        try Data("tampered".utf8).write(to: URL(fileURLWithPath: modelPath))
        let fileBlob = try sha256(of: box.work + "/checkpoint/b.txt")
        try FileManager.default.removeItem(atPath: box.store + "/objects/\(fileBlob.prefix(2))/\(fileBlob.dropFirst(2))")
        try FileManager.default.removeItem(atPath: logPath(box, id))

        // Ids as JSON lines on stdin, as cml-run ls prints them.
        let listed = try box.run("cml-run", ["ls"]).stdout
        let damaged = try box.run("cml-run", ["verify"], stdin: listed)
        #expect(damaged.status == 1)
        #expect(damaged.stderr.contains("1 of 2 runs damaged"), "\(damaged.stderr)")
        let report = try #require(damaged.jsonLines.first { $0["id"] as? String == id })
        #expect(report["ok"] as? Bool == false)
        let problems = try #require(report["problems"] as? [[String: Any]])
        let described = Set(problems.map { "\($0["part"] as? String ?? "") \($0["name"] as? String ?? "-") \($0["problem"] as? String ?? "")" })
        #expect(described == ["log - missing", "artifact model.bin v1 damaged", "artifact checkpoint v1/b.txt missing"],
                "\(problems)")
        #expect(damaged.jsonLines.first { $0["id"] as? String == other }?["ok"] as? Bool == true)

        // An empty pipe names no run.
        let none = try box.run("cml-run", ["verify"], stdin: Data())
        #expect(none.status == 0 && none.out.isEmpty)
    }

    private func sha256(of path: String) throws -> String {
        let result = try Sandbox().run("/usr/bin/sha256sum", [path])
        return String(result.out.prefix(64))
    }
}

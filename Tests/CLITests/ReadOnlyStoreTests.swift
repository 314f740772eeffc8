import Foundation
import Glibc
import Testing

/// A store nobody may write (an archive, a read-only mount, `chmod -R a-w`) is read by every reading
/// command, and refused by writing ones with an error that says so. The tests run as root, whom
/// permissions do not stop: the commands run as `nobody` through `setpriv`.
struct ReadOnlyStoreTests {
    /// A sandbox whose store holds two runs, and their ids, newest first. A run is the last command, so
    /// its write-ahead log and index stay beside the database (cml-run exits without closing it).
    private func readOnlyStore() throws -> (box: Sandbox, ids: [String]) {
        let box = try Sandbox()
        var ids: [String] = []
        for lr in ["0.1", "0.01"] {
            let result = try box.run("cml-run", ["--monitor-interval", "0", "--", "sh", "-c", "echo acc: 0.5; echo loss: \(lr); echo $CML_RUN_ID > id",
                                                 "x", "--lr", lr])
            #expect(result.status == 0, "\(result.stderr)")
            ids.insert(try String(contentsOfFile: box.work + "/id", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), at: 0)
        }
        chmod(box.root, 0o755)
        return (box, ids)
    }

    private func makeReadOnly(_ box: Sandbox) throws {
        #expect(try shell("chmod -R a-w '\(box.store)'", cwd: box.root).status == 0)
    }

    /// Lets the sandbox be removed where permissions hold (not root).
    private func makeWritable(_ box: Sandbox) {
        _ = try? shell("chmod -R u+w '\(box.store)'", cwd: box.root)
    }

    /// Runs a built command as `nobody`, or as this user when it is not root. Binaries under a directory
    /// `nobody` cannot enter are copied into the sandbox first.
    private func runAsOtherUser(_ box: Sandbox, _ tool: String, _ args: [String]) throws -> CommandResult {
        guard getuid() == 0 else { return try box.run(tool, args) }
        let drop = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        var executable = binDirectory + "/" + tool
        if try box.run("/usr/bin/setpriv", drop + ["/usr/bin/test", "-x", executable]).status != 0 {
            let copy = box.root + "/bin-" + tool
            if !FileManager.default.fileExists(atPath: copy) { try FileManager.default.copyItem(atPath: executable, toPath: copy) }
            chmod(copy, 0o755)
            executable = copy
        }
        return try box.run("/usr/bin/setpriv", drop + [executable] + args)
    }

    private func expectReads(_ box: Sandbox, _ ids: [String]) throws {
        let ls = try runAsOtherUser(box, "cml-run", ["ls", "--columns", "id,lr"])
        #expect(ls.status == 0 && ls.jsonLines.count == 2, "\(ls.stderr)")
        let show = try runAsOtherUser(box, "cml-run", ["show", ids[0]])
        #expect(show.status == 0 && show.jsonLines.first?["id"] as? String == ids[0], "\(show.stderr)")
        let log = try runAsOtherUser(box, "cml-run", ["log", ids[0]])
        #expect(log.status == 0 && log.out == "acc: 0.5\nloss: 0.01\n", "\(log.stderr)")
        let metrics = try runAsOtherUser(box, "cml-run", ["metrics", ids[0], "--key", "loss"])
        #expect(metrics.status == 0 && metrics.jsonLines.first?["value"] as? Double == 0.01, "\(metrics.stderr)")
        let diff = try runAsOtherUser(box, "cml-diff", ids + ["--format", "csv"])
        #expect(diff.status == 0 && diff.out.contains("param,lr,0.01,0.1"), "\(diff.stderr)")
    }

    @Test func readingCommandsReadAStoreTheyCannotWrite() throws {
        let (box, ids) = try readOnlyStore()
        defer { makeWritable(box) }
        #expect(FileManager.default.fileExists(atPath: box.store + "/cml.db-wal"))
        #expect(FileManager.default.fileExists(atPath: box.store + "/cml.db-shm"))
        try makeReadOnly(box)
        try expectReads(box, ids)
        // Nothing was written: no file appeared in the store.
        #expect(try FileManager.default.contentsOfDirectory(atPath: box.store).sorted() == ["cml.db", "cml.db-shm", "cml.db-wal", "logs"])
    }

    @Test func aStoreWhoseLastWriterClosedItIsReadToo() throws {
        let (box, ids) = try readOnlyStore()
        defer { makeWritable(box) }
        // Closing the last connection (as every command but a run does) folds the log into the database
        // and removes it and its index.
        try box.write("close.py", "import sqlite3, sys\ndb = sqlite3.connect(sys.argv[1])\ndb.execute('SELECT COUNT(*) FROM runs')\ndb.close()\n")
        #expect(try box.run("/usr/bin/env", ["python3", "close.py", box.store + "/cml.db"]).status == 0)
        #expect(!FileManager.default.fileExists(atPath: box.store + "/cml.db-wal"))
        try makeReadOnly(box)
        try expectReads(box, ids)
    }

    @Test func writingCommandsAreRefusedNamingTheStore() throws {
        let (box, ids) = try readOnlyStore()
        defer { makeWritable(box) }
        try makeReadOnly(box)
        for args in [["tag", ids[0], "+best"], ["--monitor-interval", "0", "--", "echo", "never run"], ["rename", ids[0], "x"]] {
            let result = try runAsOtherUser(box, "cml-run", args)
            #expect(result.status == 1 && result.stderr.hasPrefix("cml-run: error: the store at \(box.store) is read-only"), "\(args): \(result.stderr)")
            #expect(!result.out.contains("never run"))
        }
        #expect(try box.show(ids[0])["tags"] as? [String] == [])
    }

    @Test func aReadOnlyStoreOfAnOlderSchemaIsNotMigratedButNamed() throws {
        let (box, _) = try readOnlyStore()
        defer { makeWritable(box) }
        try box.write("downgrade.py", "import sqlite3, sys\ndb = sqlite3.connect(sys.argv[1])\ndb.execute('PRAGMA user_version = 5')\ndb.close()\n")
        #expect(try box.run("/usr/bin/env", ["python3", "downgrade.py", box.store + "/cml.db"]).status == 0)
        try makeReadOnly(box)
        let result = try runAsOtherUser(box, "cml-run", ["ls"])
        #expect(result.status == 1 && result.stderr.contains("is read-only and was written by an older cml (schema 5")
            && result.stderr.contains("open it once with write access to upgrade it"), "\(result.stderr)")
    }
}

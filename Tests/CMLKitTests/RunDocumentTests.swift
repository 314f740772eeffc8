import CMLKit
import Testing

/// What another client's protocol keeps in a run's record (`Run.extra[client]`, through
/// `runDocument`/`saveRunDocument`), and a run's origin reported after it was created (`setOrigin`), as
/// ClearML's routes use them.
struct RunDocumentTests {
    @Test func aDocumentIsKeptPerClientInTheRecordReplacedWholeAndRemovedWithItsRun() throws {
        let box = try TemporaryStore()
        let store = box.store!
        let id = try box.makeRun()
        #expect(try store.runDocument(run: id, client: "clearml") == nil)
        let document = JSON.object([("script", .object([("requirements", .object([("pip", .string("numpy==2.1"))]))])),
                                    ("ratio", .double(0.1)), ("list", .array([.int(1), .null]))])
        try store.saveRunDocument(run: id, client: "clearml", document)
        try store.saveRunDocument(run: id, client: "other", .object([("x", .int(1))]))
        #expect(try store.runDocument(run: id, client: "clearml") == document)
        try store.saveRunDocument(run: id, client: "clearml", .object([("y", .bool(true))]))
        #expect(try store.runDocument(run: id, client: "clearml") == .object([("y", .bool(true))]))
        #expect(try store.runDocument(run: id, client: "other") == .object([("x", .int(1))]))
        // Both are the record's, as `cml-run show` prints it.
        #expect(try store.run(id: id).extra == .object([("clearml", .object([("y", .bool(true))])), ("other", .object([("x", .int(1))]))]))
        #expect(throws: CMLError.self) { try store.saveRunDocument(run: "0123", client: "clearml", document) }
        _ = try store.removeRuns([id])
        #expect(throws: CMLError.self) { try store.runDocument(run: id, client: "clearml") }
    }

    @Test func anOriginReportedLaterSetsTheCommandAndCodeWithThePatchAsABlob() throws {
        let box = try TemporaryStore()
        let store = box.store!
        let id = try box.makeRun()
        let patch = Array("diff --git a/t.py b/t.py\n+# edited\n".utf8)
        try store.setOrigin(run: id, command: ["python3", "t.py"], cwd: "/work",
                            code: .object([("commit", .string("abc")), ("dirty", .bool(true))]), patch: patch)
        let run = try store.run(id: id)
        #expect(run.command == ["python3", "t.py"] && run.cwd == "/work" && run.code["commit"] == .string("abc"))
        let blob = try #require(run.code["patch_blob"]?.stringValue)
        #expect(try store.blob(blob) == patch)
        #expect(try store.collectGarbage(dryRun: true).blobs == 0, "the patch is referenced by its run")
    }
}

import Foundation
import Testing
import CMLKit

/// The dataset part of the store API, through the built `cml-serve`: a version snapshotted in one store
/// recorded in a served one with `HTTPStore`, read back with the built `cml-data --store URL`.
struct ServeDatasetTests {
    @Test func aVersionIsRecordedOverHTTPOnceItsBlobsAreThere() async throws {
        let source = try Sandbox()
        try source.write("data/a.txt", "alpha\n")
        try source.write("data/sub/b.bin", String(repeating: "b", count: 100_000))
        let snapshot = try source.run("cml-data", ["snapshot", "data", "--name", "mnist", "--message", "first"])
        #expect(snapshot.status == 0, "\(snapshot.stderr)")
        let local = try SQLiteStore(directory: source.store, access: .reading)
        let version = try #require(try local.datasetVersions(dataset: "mnist").first)
        let manifestBytes = try local.blob(version.manifest)
        let files = try Manifest(decoding: manifestBytes).entries.compactMap(\.sha256)
        let blobs = Set(files + [version.manifest])
        #expect(files.count == 2)
        let draft = DatasetVersionDraft(id: version.id, dataset: version.dataset, parents: version.parents, message: version.message,
                                        manifest: version.manifest, files: version.files, size: version.size, newBlobs: version.newBlobs,
                                        newBytes: version.newBytes, source: version.source, run: version.run, createdAt: version.createdAt,
                                        blobs: blobs.compactMap(BlobDigest.init(hex:)), number: version.number)

        let box = try Sandbox()
        _ = try SQLiteStore(directory: box.store)
        let server = try ServerUnderTest(box)
        let store = try HTTPStore(url: server.url, token: nil)
        // None of its blobs is there yet: the answer names them all, and nothing is recorded.
        guard case .missingBlobs(let missing) = try store.createDatasetVersion(draft) else {
            Issue.record("a version was recorded without its blobs")
            return
        }
        #expect(missing == blobs)
        #expect(try store.datasetVersions(dataset: nil).isEmpty)
        // Uploaded with PUT /api/v1/blobs/{sha256}: the files, then the manifest.
        for file in files { #expect(try store.putBlob(try local.blob(file)) == file) }
        guard case .missingBlobs(let stillMissing) = try store.createDatasetVersion(draft) else {
            Issue.record("a version was recorded without its manifest")
            return
        }
        #expect(stillMissing == [version.manifest])
        #expect(try store.putBlob(manifestBytes) == version.manifest)
        guard case .created(let created) = try store.createDatasetVersion(draft) else {
            Issue.record("the version was not recorded")
            return
        }
        #expect(created == version)

        // The built commands read it through the server as they read the store it came from.
        for command in [["ls", "--format", "jsonl"], ["ls", "mnist", "--format", "jsonl"], ["show", "mnist@1", "--format", "jsonl"],
                        ["show", "mnist", "--format", "jsonl"], ["log", "mnist", "--format", "jsonl"], ["verify", "mnist@1"],
                        ["blame", "mnist", "sub/b.bin"]] {
            let remote = try box.run("cml-data", command + ["--store", server.url])
            let original = try source.run("cml-data", command)
            #expect(remote.status == 0 && !remote.out.isEmpty && remote.stdout == original.stdout, "\(command): \(remote.stderr)")
        }

        for reference in ["mnist", "mnist@latest", "mnist@1", "mnist@" + version.id.prefix(12), String(version.id.prefix(12))] {
            #expect(try store.resolveDatasetVersion(VersionReference(reference)) == version, "\(reference)")
        }
        let unknown = ServeQueueTests.failure { () throws(CMLError) in _ = try store.resolveDatasetVersion(VersionReference("cifar")) }
        #expect(unknown?.message == "no dataset named cifar" && unknown?.hint == "datasets: mnist", "\(String(describing: unknown))")
        let noVersion = ServeQueueTests.failure { () throws(CMLError) in _ = try store.resolveDatasetVersion(VersionReference("mnist@7")) }
        #expect(noVersion?.message == "dataset mnist has no version 7", "\(String(describing: noVersion))")
        #expect(try store.datasetVersion(id: version.id) == version)
        #expect(try store.datasetVersion(id: String(repeating: "0", count: 32)) == nil)

        // Recorded again from an unchanged directory: nothing new.
        var again = draft
        again.id = RunID.make()
        again.parents = nil
        again.number = nil
        again.unlessUnchanged = true
        guard case .unchanged(let same) = try store.createDatasetVersion(again) else {
            Issue.record("an unchanged version was recorded again")
            return
        }
        #expect(same == version)
        #expect(try store.datasetVersions(dataset: "mnist").count == 1)

        // A run records what it used, as the store holds it.
        let ran = try box.run("cml-run", ["--", "true"])
        #expect(ran.status == 0)
        let run = try #require(try box.runs().first?["id"] as? String)
        var claimed = version
        claimed.number = 9
        try store.recordDatasetUse(run: run, [claimed])
        #expect(try store.runsUsing(version: version.id) == [run])
        let used = try #require(try box.show(run)["datasets"] as? [[String: Any]])
        #expect(used.count == 1 && used[0]["version"] as? Int == 1 && used[0]["id"] as? String == version.id)
        var invented = version
        invented.id = RunID.make()
        #expect(ServeQueueTests.failure { () throws(CMLError) in try store.recordDatasetUse(run: run, [invented]) }?.kind == .notFound)

        // Removed with the blobs only it referenced; an unknown id removes nothing.
        #expect(ServeQueueTests.failure { () throws(CMLError) in _ = try store.removeDatasetVersions([version.id, invented.id]) }?.kind == .notFound)
        #expect(try store.datasetVersions(dataset: nil).count == 1)
        let removal = try store.removeDatasetVersions([version.id])
        #expect(removal.versions == [version.id] && removal.blobs == blobs.count)
        #expect(try store.datasetVersions(dataset: nil).isEmpty)
        #expect(blobs.allSatisfy { !store.hasBlob($0) })
        #expect(try store.collectGarbage(dryRun: true) == BlobRemovalReport())
        _ = try server.stop()
    }
}

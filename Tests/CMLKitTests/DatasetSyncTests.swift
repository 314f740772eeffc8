import Foundation
import Glibc
import Testing

@testable import CMLKit

/// `DatasetSync` between two store directories: lineages arrive parents first, with their ids and
/// numbers, and nothing goes twice.
struct DatasetSyncTests {
    /// A version of `name` holding one file of `text`, with `parents` (nil: the dataset's latest).
    private func snapshot(_ box: TemporaryStore, _ name: String, _ text: String, parents: [VersionReference]? = nil) throws -> DatasetVersion {
        let root = box.directory + "/tree-" + RunID.make()
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: root + "/file.txt"))
        return try Snapshot.take(SnapshotRequest(directory: root, name: name, parents: parents), store: box.store) { _ in }.version
    }

    @Test func aMergeArrivesParentsFirstWithItsNumbersAndASecondCopySendsNothing() throws {
        let source = try TemporaryStore()
        let target = try TemporaryStore()
        let a1 = try snapshot(source, "a", "one")
        let a2 = try snapshot(source, "a", "two")
        let b1 = try snapshot(source, "b", "bee")
        let a3 = try snapshot(source, "a", "three")
        let merged = try snapshot(source, "m", "merged", parents: [try VersionReference("a@\(a3.number)"), try VersionReference("b")])
        _ = try source.store.removeDatasetVersions([a1.id])
        #expect(a2.parents == [a1.id] && a3.parents == [a2.id] && merged.parents == [a3.id, b1.id])

        let copies = try DatasetSync(from: source.store, to: target.store).copyVersion(merged.id)
        // a1 is gone from the source: the lineage arrives as the source holds it.
        #expect(copies.map(\.version.id) == [a2.id, a3.id, b1.id, merged.id])
        #expect(copies.allSatisfy { $0.created })
        // Each version's file and the manifest, nothing shared.
        #expect(copies.map(\.blobs) == [2, 2, 2, 2])
        for version in [a2, a3, b1, merged] {
            #expect(try target.store.datasetVersion(id: version.id) == version)
            #expect(try Datasets.verify(version, in: target.store, jobs: 1).damage.isEmpty)
        }
        // A version made there later takes the number after the copied ones.
        #expect(try snapshot(target, "a", "four").number == a3.number + 1)

        let again = try DatasetSync(from: source.store, to: target.store).copyVersion(merged.id)
        #expect(again.map(\.version.id) == [merged.id] && again.allSatisfy { !$0.created && $0.blobs == 0 })
    }

    @Test func theSameIdOrNumberForAnotherVersionIsRefusedAndNothingIsCopied() throws {
        let source = try TemporaryStore()
        let target = try TemporaryStore()
        let mine = try snapshot(source, "d", "mine")
        let theirs = try snapshot(target, "d", "theirs")
        #expect(mine.number == theirs.number)
        do {
            _ = try DatasetSync(from: source.store, to: target.store).copyVersion(mine.id)
            Issue.record("a version took a number another version has")
        } catch {
            #expect(error.kind == .conflict)
            #expect(error.message.contains(mine.id) && error.message.contains(theirs.id), "\(error.message)")
        }
        #expect(try target.store.datasetVersions(dataset: nil) == [theirs])

        // The same id for other content (a store that recorded another version under it).
        var forged = theirs
        forged.id = mine.id
        forged.number = 7
        let other = try TemporaryStore()
        _ = try other.store.putBlob(try target.store.blob(theirs.manifest))
        for entry in try Datasets.manifest(of: theirs, in: target.store).entries { _ = try other.store.putBlob(try target.store.blob(entry.sha256!)) }
        guard case .created = try other.store.copyDatasetVersion(forged) else {
            Issue.record("not recorded")
            return
        }
        do {
            _ = try DatasetSync(from: source.store, to: other.store).copyVersion(mine.id)
            Issue.record("a version was copied over another with its id")
        } catch {
            #expect(error.kind == .conflict && error.message.contains("d@\(mine.number)") && error.message.contains("d@7"), "\(error.message)")
        }
        #expect(try other.store.datasetVersion(id: mine.id) == forged)
    }
}

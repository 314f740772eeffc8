import Foundation
import Glibc
import GRDB
import CSupport
import Testing

@testable import CMLKit

/// Bytes that differ from file to file (so each holds distinct content).
private func content(_ seed: Int, _ size: Int) -> [UInt8] {
    (0..<size).map { UInt8(truncatingIfNeeded: ($0 &+ seed &* 7919) &* 2654435761 >> 11) }
}

private func writeFile(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    chmod(path, mode)
}

/// Every file under `folder` (relative paths).
private func filesUnder(_ folder: String) -> [String] {
    (FileManager.default.enumerator(atPath: folder)?.allObjects as? [String] ?? []).filter {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: folder + "/" + $0, isDirectory: &isDirectory) && !isDirectory.boolValue
    }.sorted()
}

struct BlobPackTests {
    @Test func digestsRoundTripAndOrderLikeTheirHex() {
        let ids = (0..<50).map { SHA256Hasher.hex(content($0, 10)) }
        let digests = ids.map { BlobDigest(hex: $0)! }
        #expect(digests.map(\.hex) == ids)
        #expect(digests.sorted().map(\.hex) == ids.sorted())
        #expect(BlobDigest(hex: "xyz") == nil && BlobDigest(hex: String(repeating: "A", count: 64)) == nil)
        #expect(BlobDigest(hex: String(repeating: "0", count: 63) + "g") == nil && BlobDigest(hex: String(repeating: "0", count: 63)) == nil)
        for edge in ["0", "f", "9", "a"].map({ String(repeating: $0, count: 64) }) + [String(repeating: "0123456789abcdef", count: 4)] {
            #expect(BlobDigest(hex: edge)?.hex == edge)
        }
    }

    @Test func aBatchStoresSmallBlobsInPacksVisibleOnlyWhenFinished() throws {
        let box = try TemporaryStore(open: false)
        let blobs = BlobDirectory(directory: box.directory + "/objects")
        let small = (0..<300).map { content($0, 100 + $0) }
        let large = content(999, BlobDirectory.packThreshold + 5)
        let batch = try BlobBatch(store: blobs, workers: 2)
        var ids: [String] = []
        for (index, bytes) in small.enumerated() { ids.append(try batch.put(bytes, worker: index % 2)) }
        #expect(try batch.put(small[0], worker: 1) == ids[0])  // the same content again stores nothing
        let largeID = try batch.put(large)
        #expect(batch.stored.blobs == 301)
        try blobs.refreshPacks()
        #expect(try !blobs.contains(ids[0]) && !blobs.contains(largeID), "nothing is visible before finish")
        try batch.finish()
        for (id, bytes) in zip(ids, small) {
            #expect(try blobs.get(id) == bytes)
            #expect(try !blobs.location(of: id).isWholeFile)
        }
        #expect(try blobs.get(largeID) == large && blobs.location(of: largeID).isWholeFile)
        let packFiles = try FileManager.default.contentsOfDirectory(atPath: box.directory + "/objects/packs")
        #expect(packFiles.filter { $0.hasSuffix(".pack") }.count == 2 && packFiles.filter { $0.hasSuffix(".idx") }.count == 2)
        #expect(!packFiles.contains { $0.hasPrefix(".tmp") })

        // A second batch finds them stored; a discarded one leaves no trace.
        let again = try BlobBatch(store: blobs, workers: 1)
        #expect(try !again.claim(BlobDigest(hex: ids[5])!, size: 105))
        try again.put(content(5000, 10))
        again.discard()
        #expect(try FileManager.default.contentsOfDirectory(atPath: box.directory + "/objects/packs").sorted() == packFiles.sorted())
        #expect(try FileManager.default.contentsOfDirectory(atPath: box.directory + "/objects").filter { $0.hasPrefix(".tmp") }.isEmpty)
    }

    @Test func removingBlobsRewritesTheirPacksAndFreesTheirBytes() throws {
        let box = try TemporaryStore(open: false)
        let blobs = BlobDirectory(directory: box.directory + "/objects")
        let batch = try BlobBatch(store: blobs, workers: 1)
        let ids = try (0..<10).map { try batch.put(content($0, 1000)) }
        try batch.finish()
        let (count, bytes) = try blobs.remove(Set(ids[0..<4]))
        #expect(count == 4 && bytes == 4000)
        for id in ids[0..<4] { #expect(try !blobs.contains(id)) }
        for (index, id) in ids.enumerated().dropFirst(4) { #expect(try blobs.get(id) == content(index, 1000)) }
        #expect(try blobs.remove(Set(ids[4...])) == (6, 6000))
        #expect(try FileManager.default.contentsOfDirectory(atPath: box.directory + "/objects/packs").isEmpty)
    }

    @Test func aDamagedPackIndexOrPackIsReportedNotBelieved() throws {
        let box = try TemporaryStore(open: false)
        let blobs = BlobDirectory(directory: box.directory + "/objects")
        let batch = try BlobBatch(store: blobs, workers: 1)
        let id = try batch.put(content(1, 500))
        try batch.finish()
        let packs = box.directory + "/objects/packs"
        let pack = try #require(try FileManager.default.contentsOfDirectory(atPath: packs).first { $0.hasSuffix(".pack") })
        // Flip a byte of the content: reading it back fails the hash check.
        let handle = try #require(FileHandle(forUpdatingAtPath: packs + "/" + pack))
        try handle.seek(toOffset: 10)
        let byte = try #require(try handle.read(upToCount: 1)?.first)
        try handle.seek(toOffset: 10)
        try handle.write(contentsOf: [byte ^ 0xFF])
        try handle.close()
        #expect(throws: CMLError.self) { try blobs.get(id) }
        // A damaged index is refused when the packs are read.
        let index = packs + "/" + pack.replacingOccurrences(of: ".pack", with: ".idx")
        var bytes = try FileSystem.readAll(index)
        bytes[20] ^= 1
        chmod(index, 0o644)
        try Data(bytes).write(to: URL(fileURLWithPath: index))
        #expect(throws: CMLError.self) { try BlobDirectory(directory: box.directory + "/objects").refreshPacks() }
    }
}

struct ManifestRulesTests {
    private func file(_ path: String) -> ManifestEntry {
        ManifestEntry(path: path, size: 1, mode: 0o644, sha256: String(repeating: "a", count: 64))
    }

    private func link(_ path: String, _ target: String) -> ManifestEntry {
        ManifestEntry(path: path, size: 0, mode: 0o777, linkTarget: target)
    }

    @Test func pathsThatCannotCoexistAreRefused() throws {
        #expect(throws: CMLError.self) { try Manifest(decoding: Manifest(entries: [file("a"), file("a")]).encoded) }
        #expect(throws: CMLError.self) { try Manifest(decoding: Manifest(entries: [link("a", "b"), file("a/x")]).encoded) }
        #expect(throws: CMLError.self) { try Manifest(decoding: Manifest(entries: [file("d/a"), file("d/a/b/c")]).encoded) }
        let fine = Manifest(entries: [file("a-b"), file("a/b"), file("a.b")])
        #expect(try Manifest(decoding: fine.encoded) == fine)
    }

    @Test func theFastEncodingIsTheJSONOfEachEntry() throws {
        let manifest = Manifest(entries: [
            file("plain.txt"), file("quote\"and\\slash"), file("new\nline\u{7F}"), file("é/ü 中.bin"),
            link("tab\tlink", "../target \"x\""),
            ManifestEntry(path: "checked.bin", size: 1, mode: 0o644, sha256: String(repeating: "b", count: 64), crc32c: 0x0012_ABCD),
            ManifestEntry(path: "huge", size: Int64.max, mode: 0o7777, sha256: String(repeating: "c", count: 64), crc32c: 0xFFFF_FFFF),
            ManifestEntry(path: "empty", size: 0, mode: 0, sha256: String(repeating: "d", count: 64), crc32c: 0),
            ManifestEntry(path: "ten", size: 10, mode: 0o4755, sha256: String(repeating: "e", count: 64), crc32c: 0x10),
        ])
        let expected = manifest.entries.map { $0.json.serialized + "\n" }.joined()
        #expect(String(decoding: manifest.encoded, as: UTF8.self) == expected)
        #expect(try Manifest(decoding: manifest.encoded) == manifest)
        // Sorted by bytes, as `sort` in the C locale: "a-b" < "a.b" < "a/b" < "aa" < "é".
        let sorted = Manifest(entries: ["é", "aa", "a/b", "a.b", "a-b"].map(file)).entries.map(\.path)
        #expect(sorted == ["a-b", "a.b", "a/b", "aa", "é"])
        #expect(String(decoding: Manifest(entries: manifest.entries.filter { $0.crc32c != nil }).encoded, as: UTF8.self).contains(#""crc32c":"0012abcd""#))
    }

    @Test func aCRCMustBeEightHexDigitsOnAFile() {
        let sha = String(repeating: "a", count: 64)
        for line in [#"{"path":"a","size":1,"mode":"0644","sha256":"\#(sha)","crc32c":"12345"}"#,
                     #"{"path":"a","size":1,"mode":"0644","sha256":"\#(sha)","crc32c":305419896}"#,
                     #"{"path":"a","size":0,"mode":"0777","link":"b","crc32c":"00000000"}"#] {
            #expect(throws: CMLError.self, "\(line)") { try Manifest(decoding: Array((line + "\n").utf8)) }
        }
    }

    @Test func linksLeadingOutOfTheDirectoryAreFound() {
        let manifest = Manifest(entries: [
            link("inside", "d/x"), link("d/up", "../inside"), link("abs", "/etc/passwd"), link("out", "../x"),
            link("d/deep", "../../x"),
            // `d/self` is the folder d itself; through it, `d/self/../..` is above the top, although the
            // same text read without following links would stay inside.
            link("d/self", "."), link("sneaky", "d/self/../.."),
            // A loop never leads anywhere, so it never leads out; nor does a chain that stays inside.
            link("loop1", "loop2"), link("loop2", "loop1"), link("chain", "d/up"),
            // Through a link that leads out: that link is the one to name, not this one.
            link("via", "out"), link("d/via", "../abs/y"),
        ])
        #expect(manifest.escapingLinks.map(\.path) == ["abs", "d/deep", "out", "sneaky"])
        #expect(Manifest.describe([link("abs", "/etc/passwd")], outside: "the dataset")
            == "the link abs points outside the dataset (to /etc/passwd)")
        #expect(Manifest.describe(manifest.escapingLinks, outside: "t")
            == "4 links point outside t: abs (to /etc/passwd), d/deep (to ../../x), out (to ../x), sneaky (to d/self/../..)")
    }

    @Test func modesAreOctalWithAtLeastThreeDigitsAfterTheZero() throws {
        #expect([0, 0o44, 0o600, 0o644, 0o755, 0o4755].map(ManifestEntry.modeText) == ["0000", "0044", "0600", "0644", "0755", "04755"])
        // The manifest's own encoding (which its id hashes) writes them the same way and reads them back.
        let entries = zip(["a", "b", "c", "d", "e"], [0, 0o7, 0o44, 0o644, 0o4755]).map { path, mode in
            ManifestEntry(path: path, size: 1, mode: UInt32(mode), sha256: String(repeating: "a", count: 64))
        }
        let manifest = Manifest(entries: entries)
        let lines = String(decoding: manifest.encoded, as: UTF8.self).split(separator: "\n")
        #expect(lines.map { $0.split(separator: ",")[2] } == [#""mode":"0000""#, #""mode":"0007""#, #""mode":"0044""#,
                                                             #""mode":"0644""#, #""mode":"04755""#])
        #expect(try Manifest(decoding: manifest.encoded) == manifest)
        #expect(entries.map { $0.json.serialized } == lines.map(String.init))
    }

    @Test func namesThatAreNotUTF8AreShownWithTheirBadBytesEscaped() {
        #expect(DirectoryWalk.escaped(Array("plain é.txt".utf8)) == "plain é.txt")
        #expect(DirectoryWalk.escaped([0x61, 0xFF, 0x62, 0x0A]) == "a\\xffb\n")
        // A character cut short: its lead byte escaped, what follows read on its own.
        #expect(DirectoryWalk.escaped([0xC3, 0x41, 0xE2, 0x82]) == "\\xc3A\\xe2\\x82")
    }

    @Test func diffsFindRenamesByContent() {
        let a = ManifestEntry(path: "a", size: 1, mode: 0o644, sha256: String(repeating: "1", count: 64))
        let b = ManifestEntry(path: "b", size: 2, mode: 0o644, sha256: String(repeating: "2", count: 64))
        let c = ManifestEntry(path: "c", size: 3, mode: 0o644, sha256: String(repeating: "3", count: 64))
        var bModified = b
        bModified.sha256 = String(repeating: "4", count: 64)
        var aMoved = a
        aMoved.path = "z/a"
        let d = ManifestEntry(path: "d", size: 5, mode: 0o644, sha256: String(repeating: "5", count: 64))
        let changes = ManifestDiff.changes(from: Manifest(entries: [a, b, c]), to: Manifest(entries: [aMoved, bModified, d]))
        #expect(changes.map { "\($0.kind.rawValue) \($0.from.map { $0 + "->" } ?? "")\($0.path)" }
            == ["modified b", "removed c", "added d", "renamed a->z/a"])
        #expect(ManifestDiff.changes(from: Manifest(entries: [a]), to: Manifest(entries: [a])).isEmpty)
        // A version from before manifests kept CRCs against one after: the same files, nothing changed.
        var aChecked = a
        aChecked.crc32c = 0x1234_5678
        #expect(ManifestDiff.changes(from: Manifest(entries: [a]), to: Manifest(entries: [aChecked])).isEmpty)
        var aExecutable = aChecked
        aExecutable.mode = 0o755
        #expect(ManifestDiff.changes(from: Manifest(entries: [a]), to: Manifest(entries: [aExecutable])).map(\.kind) == [.modified])
    }

    @Test func versionReferencesReadNumbersIdsAndLatest() throws {
        #expect(try VersionReference("mnist").selector == .latest)
        #expect(try VersionReference("mnist@latest").selector == .latest)
        #expect(try VersionReference("mnist@12").selector == .number(12))
        #expect(try VersionReference("mnist@019A3F").selector == .idPrefix("019a3f"))
        #expect(try VersionReference("my-data.v2@3").name == "my-data.v2")
        for bad in ["", "@3", "a b", "x@", "x@-1", "x@zz", ".hidden", "a/b@1"] {
            #expect(throws: CMLError.self, "\(bad)") { try VersionReference(bad) }
        }
    }
}

struct DirectoryWalkTests {
    /// Listing on one thread and looking at files on several must find what a plain recursive walk finds:
    /// directories larger than one thread's share, nested ones, links (dangling too), an empty directory;
    /// special files and the store left out with a warning.
    @Test func everyFileAndLinkIsFoundWithItsIdentityOnAnyNumberOfThreads() throws {
        let box = try TemporaryStore(open: false)
        let root = box.directory + "/tree"
        var expected: [String: String?] = [:]
        for index in 0..<600 { expected["big/f\(index)"] = .some(nil) }
        for path in ["big/sub/deeper/a", "big/sub/deeper/b", "big/sub/c", "small/x", "store-like/kept"] { expected[path] = .some(nil) }
        for path in expected.keys { try writeFile("\(root)/\(path)", content(path.count, 10)) }
        try FileManager.default.createDirectory(atPath: root + "/empty", withIntermediateDirectories: true)
        #expect(symlink("small/x", root + "/link") == 0 && symlink("../nowhere", root + "/big/dangling") == 0)
        expected["link"] = "small/x"
        expected["big/dangling"] = "../nowhere"
        #expect(mkfifo(root + "/small/pipe", 0o644) == 0)
        try FileManager.default.createDirectory(atPath: root + "/big/the-store/objects", withIntermediateDirectories: true)
        try writeFile(root + "/big/the-store/objects/blob", [1])

        for jobs in [1, 3] {
            var warnings: [String] = []
            let walk = DirectoryWalk.walk(root, excluding: root + "/big/the-store", jobs: jobs) { warnings.append($0) }
            #expect(walk.unreadable.isEmpty)
            #expect(Dictionary(uniqueKeysWithValues: walk.files.map { ($0.path, $0.linkTarget) }) == expected)
            #expect(walk.files.count == expected.count)
            for file in walk.files {
                var st = stat()
                #expect(lstat(root + "/" + file.path, &st) == 0 && FileIdentity(st) == file.identity
                        && UInt32(st.st_mode) & 0o7777 == file.mode, "\(file.path)")
            }
            #expect(warnings.sorted() == ["left out \(root)/big/the-store: it is the store",
                                          "skipped \(root)/small/pipe: not a regular file, directory or symbolic link"])
        }
    }
}

struct SnapshotStoreTests {
    /// A directory of files old enough for the stat cache to trust (see `StatCache.margin`).
    private func makeTree(_ root: String, files: Int) throws {
        for index in 0..<files { try writeFile("\(root)/d\(index % 3)/f\(index)", content(index, 200 + index)) }
        usleep(useconds_t(StatCache.margin / 1000) + 50_000)
    }

    @Test func anUnchangedFileIsNotReadAgainAndAMovedOneStoresNothing() throws {
        let box = try TemporaryStore()
        let root = box.directory + "/data"
        try makeTree(root, files: 40)
        let first = try Snapshot.take(SnapshotRequest(directory: root, name: "t"), store: box.store) { _ in }
        #expect(first.hashedFiles == 40 && first.version.newBlobs == 41 && first.version.number == 1)
        try writeFile(root + "/d0/f0", content(7777, 10))
        #expect(rename(root + "/d1/f1", root + "/moved") == 0)
        let second = try Snapshot.take(SnapshotRequest(directory: root, name: "t"), store: box.store) { _ in }
        // The changed file and the moved one (a rename changes its ctime) are read; only the changed
        // content and the new manifest are stored.
        #expect(second.hashedFiles == 2 && second.unchangedFiles == 38)
        #expect(second.version.newBlobs == 2 && second.version.parents == [first.version.id])
    }

    @Test func contentTheCacheKnowsButTheStoreLostIsStoredAgain() throws {
        let box = try TemporaryStore()
        let root = box.directory + "/data"
        try makeTree(root, files: 12)
        let first = try Snapshot.take(SnapshotRequest(directory: root, name: "t"), store: box.store) { _ in }
        let freed = try box.store.removeDatasetVersions([first.version.id])
        #expect(freed.blobs == 13 && freed.bytesFreed > 0)
        let second = try Snapshot.take(SnapshotRequest(directory: root, name: "t"), store: box.store) { _ in }
        #expect(second.hashedFiles == 12 && second.version.newBlobs == 13 && second.version.number == 2)
        let (damage, blobs, _) = try Datasets.verify(second.version, in: box.store, jobs: 2)
        #expect(damage.isEmpty && blobs == 13)
    }

    @Test func aVersionIsRecordedOnlyWhenTheStoreHoldsAllItsBlobs() throws {
        let box = try TemporaryStore()
        let missing = String(repeating: "e", count: 64)
        let draft = DatasetVersionDraft(id: RunID.make(), dataset: "d", parents: nil, message: nil, manifest: missing, files: 0,
                                        size: 0, newBlobs: 0, newBytes: 0, source: nil, run: nil, createdAt: Clock.now(),
                                        blobs: [BlobDigest(hex: missing)!])
        guard case .missingBlobs(let blobs) = try box.store.createDatasetVersion(draft) else {
            Issue.record("recorded a version whose blob the store lacks")
            return
        }
        #expect(blobs == [missing])
        #expect(try box.store.datasetVersions(dataset: nil).isEmpty)
    }

    @Test func aVersionKeepsTheNumberAskedForUnlessTheDatasetHadItOrALaterOne() throws {
        let box = try TemporaryStore()
        func record(_ number: Int64?) throws -> Int64 {
            let draft = DatasetVersionDraft(id: RunID.make(), dataset: "d", parents: nil, message: nil,
                                            manifest: String(repeating: "e", count: 64), files: 0, size: 0, newBlobs: 0,
                                            newBytes: 0, source: nil, run: nil, createdAt: Clock.now(), blobs: [], number: number)
            guard case .created(let version) = try box.store.createDatasetVersion(draft) else {
                Issue.record("not recorded")
                return 0
            }
            return version.number
        }
        #expect(try record(5) == 5)
        #expect(try record(3) == 6, "3 is free, but numbers below the next are never given again")
        #expect(try record(nil) == 7)
        #expect(try record(9) == 9)
        let versions = try box.store.datasetVersions(dataset: "d")
        _ = try box.store.removeDatasetVersions(versions.filter { $0.number == 9 }.map(\.id))
        #expect(try record(9) == 10, "a removed version's number is not reused")
    }

    @Test func aSnapshotOfAnUnchangedDirectoryRecordsNothing() throws {
        let box = try TemporaryStore()
        let root = box.directory + "/data"
        try makeTree(root, files: 5)
        let first = try Snapshot.take(SnapshotRequest(directory: root, name: "t"), store: box.store) { _ in }
        let again = try Snapshot.take(SnapshotRequest(directory: root, name: "t", message: "again"), store: box.store) { _ in }
        #expect(again.unchanged && again.version.id == first.version.id && !first.unchanged)
        // Another line of history (no parent) is a version of its own, even with the same files.
        let fresh = try Snapshot.take(SnapshotRequest(directory: root, name: "t", parents: []), store: box.store) { _ in }
        #expect(!fresh.unchanged && fresh.version.number == 2)
        // So is the first version of another dataset whose parent holds the same files.
        let derived = try Snapshot.take(SnapshotRequest(directory: root, name: "u", parents: [try VersionReference("t@1")]),
                                        store: box.store) { _ in }
        #expect(!derived.unchanged && derived.version.parents == [first.version.id])
        #expect(try box.store.datasetVersions(dataset: nil).count == 3)
    }

    @Test func removingRunsAndVersionsKeepsWhatTheOtherStillReferences() throws {
        let box = try TemporaryStore()
        let root = box.directory + "/data"
        try makeTree(root, files: 3)
        let version = try Snapshot.take(SnapshotRequest(directory: root, name: "t"), store: box.store) { _ in }.version
        // A run stores one of the dataset's files as an artifact: the same blob, loose.
        let run = try box.makeRun()
        let artifact = try Artifacts.record(path: root + "/d0/f0", name: nil, kind: nil, step: nil, run: run, in: box.store) { _ in }
        let removal = try box.store.removeRuns([run])
        #expect(removal.blobs == 0, "the version still references the artifact's content")
        #expect(try Datasets.verify(version, in: box.store, jobs: 1).damage.isEmpty)

        let other = try box.makeRun()
        try box.store.addArtifact(Artifact(run: other, name: "f", kind: "data", step: nil, sha256: artifact.sha256,
                                           size: artifact.size, files: 1, isDirectory: false, mediaType: nil, source: nil,
                                           time: Clock.now()))
        let freed = try box.store.removeDatasetVersions([version.id])
        #expect(freed.blobs == 3, "the manifest and two files; the artifact's content stays")
        #expect(try box.store.blob(artifact.sha256) == content(0, 200))
        #expect(try box.store.collectGarbage(dryRun: false).blobs == 0)
        #expect(try box.store.blob(artifact.sha256) == content(0, 200))
    }

    @Test func garbageCollectionFreesUnreferencedBlobsAndLeftovers() throws {
        let box = try TemporaryStore()
        let batch = try box.store.blobBatch(workers: 1)
        let orphans = try (0..<5).map { try batch.put(content($0, 300)) }
        try batch.finish()
        let root = box.directory + "/data"
        try makeTree(root, files: 4)
        let version = try Snapshot.take(SnapshotRequest(directory: root, name: "t"), store: box.store) { _ in }.version
        // A temporary file an interrupted writer left two hours ago, and one a writer is writing now.
        let stale = box.directory + "/objects/.tmp-1-stale"
        try writeFile(stale, content(1, 1000))
        var old = [timespec(tv_sec: time(nil) - 7200, tv_nsec: 0), timespec(tv_sec: time(nil) - 7200, tv_nsec: 0)]
        utimensat(AT_FDCWD, stale, &old, 0)
        let fresh = box.directory + "/objects/.tmp-2-fresh"
        try writeFile(fresh, content(2, 10))

        let dry = try box.store.collectGarbage(dryRun: true)
        #expect(dry.blobs == 5 && dry.bytesFreed == 1500)
        for id in orphans { #expect(try box.store.blob(id).count == 300) }
        let report = try box.store.collectGarbage(dryRun: false)
        #expect(report.blobs == 5 && report.bytesFreed == 2500)
        for id in orphans { #expect(throws: CMLError.self) { try box.store.blob(id) } }
        #expect(access(stale, F_OK) != 0 && access(fresh, F_OK) == 0)
        #expect(try Datasets.verify(version, in: box.store, jobs: 2).damage.isEmpty)
        #expect(try box.store.collectGarbage(dryRun: false).blobs == 0)
    }

    /// Each snapshot of a few changed files leaves a small pack; gc merges them (dropping what nothing
    /// references), and every version still reads back whole.
    @Test func garbageCollectionMergesSmallPacks() throws {
        let box = try TemporaryStore()
        let root = box.directory + "/data"
        try makeTree(root, files: 6)
        var versions = [try Snapshot.take(SnapshotRequest(directory: root, name: "t"), store: box.store) { _ in }.version]
        for round in 1...4 {
            try writeFile("\(root)/d0/f0", content(9000 + round, 500))
            try writeFile("\(root)/new\(round)", content(8000 + round, 700))
            usleep(useconds_t(StatCache.margin / 1000) + 50_000)
            versions.append(try Snapshot.take(SnapshotRequest(directory: root, name: "t"), store: box.store) { _ in }.version)
        }
        let packs = box.directory + "/objects/packs"
        func packCount() throws -> Int { try FileManager.default.contentsOfDirectory(atPath: packs).count { $0.hasSuffix(".pack") } }
        #expect(try packCount() == 5)
        // Dropping version 2 leaves its d0/f0 (9001) referenced by nothing.
        _ = try box.store.removeDatasetVersions([versions[1].id])
        #expect(try packCount() == 5)
        let dry = try box.store.collectGarbage(dryRun: true)
        #expect(dry.blobs == 0)
        #expect(try packCount() == 5)
        let report = try box.store.collectGarbage(dryRun: false)
        #expect(report.blobs == 0 && report.bytesFreed == 0)
        #expect(try packCount() == 1)
        for version in versions where version.id != versions[1].id {
            #expect(try Datasets.verify(version, in: box.store, jobs: 2).damage.isEmpty)
        }
        // One pack with nothing to drop is left as it is.
        let before = try FileManager.default.contentsOfDirectory(atPath: packs).sorted()
        #expect(try box.store.collectGarbage(dryRun: false).bytesFreed == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: packs).sorted() == before)
    }
}

struct CRC32CTests {
    /// One bit at a time, straight from the definition: the reference both implementations must match.
    private func reference(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }

    /// The hardware path interleaves three streams of 4 KiB, then of 1 KiB, and joins them: lengths around
    /// every boundary of that, and odd offsets, must give the reference's answer; so must the table fallback.
    @Test func hardwareAndTableMatchTheDefinitionAtEveryBoundary() {
        let data = content(3, 100_003)
        var lengths = Array(0...40) + [3071, 3072, 3073, 6151, 9215, 9216, 12_287, 12_288, 12_289, 15_360, 15_367]
        lengths += [4095, 4096, 4097, 24_576, 24_583, 36_871, 100_000]
        lengths += (1...6).map { $0 * 12_288 + 7 }
        for length in lengths {
            for offset in [0, 1, 3] where offset + length <= data.count {
                let slice = Array(data[offset..<(offset + length)])
                let expected = reference(slice)
                let (hardware, table) = slice.withUnsafeBytes { raw in
                    (cml_crc32c(0, raw.baseAddress, raw.count), cml_crc32c_software(0, raw.baseAddress, raw.count))
                }
                #expect(hardware == expected, "length \(length) at offset \(offset)")
                #expect(table == expected, "length \(length) at offset \(offset)")
            }
        }
        #expect(CRC32C.checksum(ArraySlice("123456789".utf8)) == 0xE306_9283)
    }

    @Test func aChecksumContinuesOrJoinsAcrossChunksAndReadsBackFromHex() {
        let data = content(5, 50_000)
        let whole = CRC32C.checksum(data[...])
        for split in [1, 4096, 12_288, 30_001] {
            let first = CRC32C.checksum(data[..<split])
            let continued = data[split...].withUnsafeBytes { CRC32C.update(first, $0) }
            #expect(continued == whole)
        }
        for split in [0, 1, 4096, 12_289, 49_999, 50_000] {
            let joined = CRC32C.combine(CRC32C.checksum(data[..<split]), CRC32C.checksum(data[split...]),
                                        secondLength: Int64(data.count - split))
            #expect(joined == whole, "joined at \(split)")
        }
        #expect(CRC32C.hex(0x0000_00AB) == "000000ab" && CRC32C.parseHex("000000ab") == 0xAB)
        #expect(CRC32C.hex(0) == "00000000" && CRC32C.hex(0xFFFF_FFFF) == "ffffffff" && CRC32C.hex(0x1234_5678) == "12345678")
        #expect(CRC32C.parseHex("ABCDEF01") == nil && CRC32C.parseHex("abc") == nil && CRC32C.parseHex("0000000g") == nil)
    }
}

struct StatCacheTests {
    @Test func entriesRoundTripAndADamagedCacheIsIgnored() throws {
        let directory = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let identity = FileIdentity(device: 1, inode: 2, size: 3, modified: 1_000_000_000, changed: 1_000_000_000)
        let digest = ContentDigest(sha256: BlobDigest(hex: SHA256Hasher.hex([1]))!, crc32c: 0xDEAD_BEEF)
        let path = directory + "/cache"
        StatCache.save([StatCache.Entry(identity: identity, hashedAt: 5_000_000_000, digest: digest)], to: path)
        #expect(StatCache.load(path).lookup(identity)?.digest == digest)
        var changed = identity
        changed.changed += 1
        #expect(StatCache.load(path).lookup(changed) == nil)
        var bytes = try FileSystem.readAll(path)
        bytes[30] ^= 1
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect(StatCache.load(path).lookup(identity) == nil)
    }

    @Test func aFileChangedJustBeforeItWasHashedIsNotTrusted() {
        let identity = FileIdentity(device: 1, inode: 2, size: 3, modified: 1_000_000_000, changed: 1_000_000_000)
        let digest = ContentDigest(sha256: BlobDigest(hex: SHA256Hasher.hex([1]))!, crc32c: 1)
        // Hashed 10 ms after its last change: a write in the same clock tick would not have moved its times.
        let racy = StatCache([StatCache.Entry(identity: identity, hashedAt: 1_010_000_000, digest: digest)])
        #expect(racy.lookup(identity) == nil)
        let settled = StatCache([StatCache.Entry(identity: identity, hashedAt: 2_000_000_000, digest: digest)])
        #expect(settled.lookup(identity)?.digest == digest)
    }
}

struct DirectFileWriterTests {
    /// Whole and partial blocks, whole and partial buffers, chunks larger than a buffer: the file holds
    /// exactly what was appended, past the page cache or through it.
    @Test(arguments: [true, false])
    func theFileHoldsExactlyWhatWasAppended(direct: Bool) throws {
        let directory = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let capacity = 4 * DirectFileWriter.blockSize
        let chunkings: [[Int]] = [[], [0], [1], [4095], [4096], [4097], [capacity - 1], [capacity], [capacity + 1],
                                  [3, 5000, 1, capacity * 3 + 17, 4096, 0, 123], Array(repeating: 1000, count: 50)]
        for (number, chunks) in chunkings.enumerated() {
            let path = "\(directory)/file\(number)"
            let writer = try DirectFileWriter(creating: path, mode: 0o444, capacity: capacity, direct: direct)
            var expected: [UInt8] = []
            for (index, count) in chunks.enumerated() {
                let chunk = content(number * 100 + index, count)
                try chunk.withUnsafeBytes { raw in try writer.append(raw) }
                expected += chunk
                #expect(writer.size == Int64(expected.count))
            }
            try writer.finish()
            #expect(try FileSystem.readAll(path) == expected, "chunks \(chunks)")
            var st = stat()
            #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o444)
        }
        #expect(throws: CMLError.self) { _ = try DirectFileWriter(creating: directory + "/file0", mode: 0o444, capacity: capacity) }
    }
}

struct FileCopyTests {
    private func copy(from source: String, to destination: String, length: Int64) throws -> FileCopy.Method {
        let input = open(source, O_RDONLY)
        let output = open(destination, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        defer { close(input); close(output) }
        return try FileCopy.copy(from: input, offset: 0, length: length, whole: true, to: output,
                                 sourcePath: source, destinationPath: destination)
    }

    /// Copies the file in three ranges, last one first, each to its own offset of the destination.
    private func copyInRanges(from source: String, to destination: String, length: Int64) throws -> [FileCopy.Method] {
        let input = open(source, O_RDONLY)
        let output = open(destination, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        defer { close(input); close(output) }
        let third = length / 3
        return try [(2 * third, length - 2 * third), (third, third), (0, third)].map { start, count in
            try FileCopy.copy(from: input, offset: start, length: count, whole: false, to: output, at: start,
                              sourcePath: source, destinationPath: destination)
        }
    }

    /// The filesystem's type name (`ext4`, `tmpfs`), as `stat -f` prints it.
    private func filesystemType(_ path: String) throws -> String {
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/stat")
        process.arguments = ["-f", "-c", "%T", path]
        process.standardOutput = output
        try process.run()
        process.waitUntilExit()
        return String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    /// The store's filesystem here is ext4, which cannot share blocks: FICLONE fails and the kernel
    /// copies (copy_file_range). Across filesystem types the kernel refuses too, and bytes go through us.
    @Test func copiesCloneOrCopyInTheKernelAndFallBackAcrossFilesystems() throws {
        let directory = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let bytes = content(3, (3 << 20) + 5)
        try writeFile(directory + "/source", bytes)
        let sameFilesystem = try copy(from: directory + "/source", to: directory + "/copy", length: Int64(bytes.count))
        #expect(sameFilesystem == .reflink || sameFilesystem == .kernel)
        #expect(try FileSystem.readAll(directory + "/copy") == bytes)
        #expect(throws: CMLError.self) { _ = try copy(from: directory + "/source", to: directory + "/long", length: Int64(bytes.count) + 1) }
        #expect(try copyInRanges(from: directory + "/source", to: directory + "/ranges", length: Int64(bytes.count)) == [.kernel, .kernel, .kernel])
        #expect(try FileSystem.readAll(directory + "/ranges") == bytes)

        let memory = "/dev/shm/cml-copy-\(getpid())"
        guard FileManager.default.isWritableFile(atPath: "/dev/shm") else { return }
        defer { unlink(memory) }
        try writeFile(memory, bytes)
        let across = try copy(from: memory, to: directory + "/across", length: Int64(bytes.count))
        #expect(try FileSystem.readAll(directory + "/across") == bytes)
        let rangesAcross = try copyInRanges(from: memory, to: directory + "/ranges-across", length: Int64(bytes.count))
        #expect(try FileSystem.readAll(directory + "/ranges-across") == bytes)
        if try filesystemType(memory) != filesystemType(directory) {
            #expect(across == .userspace && rangesAcross == [.userspace, .userspace, .userspace])
        }
    }
}

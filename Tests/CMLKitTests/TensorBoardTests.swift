import Foundation
import Glibc
import Testing

@testable import CMLKit

/// Event files written by the real tensorboardX (Fixtures/tensorboard/make_fixtures.py).
private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/Fixtures/tensorboard/run"
private let mainFixture = fixtures + "/events.out.tfevents.fixture"
private let t0 = 1_700_000_000.25

/// Warnings given to a reader, kept for the test to look at.
private final class Warnings {
    var all: [String] = []
    func add(_ text: String) { all.append(text) }
}

private func write(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

private func size(_ path: String) -> Int64 {
    var info = stat()
    return stat(path, &info) == 0 ? Int64(info.st_size) : -1
}

/// Reads a whole file with a fresh reader.
private func readAll(_ path: String, warnings: Warnings = Warnings()) -> [MetricPoint] {
    var reader = EventFileReader(path: path)
    return reader.readNew(upTo: size(path), warn: warnings.add)
}

/// The points make_fixtures.py writes to the main file, in the order it writes them; values as float32
/// where tensorboardX stores them so.
private let expectedMainPoints: [MetricPoint] = (0..<5).flatMap { (step: Int) -> [MetricPoint] in
    let s = Double(step), t = t0 + s, i = Int64(step)
    return [
        MetricPoint(key: "loss", step: i, value: Double(Float(1.0 / (s + 1))), time: t),
        MetricPoint(key: "train/accuracy", step: i, value: Double(Float(0.1 * s + 0.05)), time: t + 0.5),
        MetricPoint(key: "lr", step: i * 10, value: Double(Float(0.01 * (s + 1))), time: t),
        MetricPoint(key: "precise", step: i, value: 1.0 / 3.0 + s, time: t),
        MetricPoint(key: "tf2/loss", step: i, value: Double(Float(2.5 * s)), time: t),
        MetricPoint(key: "tokens", step: i, value: 1000 * s, time: t),
    ]
}

struct TensorBoardTests {
    @Test func crc32cMatchesTheKnownCheckValue() {
        #expect(CRC32C.checksum(ArraySlice("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([]) == 0)
        let crc: UInt32 = 0xE306_9283
        #expect(CRC32C.masked(ArraySlice("123456789".utf8)) == ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8)
    }

    @Test func readsTheScalarsTensorboardXWroteAndNothingElse() {
        let warnings = Warnings()
        let points = readAll(mainFixture, warnings: warnings)
        #expect(warnings.all.isEmpty)
        // simple_value, float and double tensors, TensorFlow 2's tensor_content with the plugin named
        // only once, int64; not the histogram, image, text, or a one-element tensor of another plugin.
        #expect(points == expectedMainPoints)
    }

    @Test func addScalarsSeriesAreNamedAfterTheirKeys() throws {
        var importer = TensorBoardImporter(directories: [fixtures])
        let warnings = Warnings()
        let points = importer.importNew(warn: warnings.add)
        #expect(warnings.all.isEmpty)
        for (key, factor) in [("split/train", 0.3), ("split/val", 0.4)] {
            let series = points.filter { $0.key == key }
            #expect(series == (0..<5).map { MetricPoint(key: key, step: Int64($0), value: Double(Float(Double($0) * factor)), time: t0 + Double($0)) })
        }
        #expect(Set(points.map(\.key)) == Set(expectedMainPoints.map(\.key) + ["split/train", "split/val"]))
        #expect(importer.importNew(warn: warnings.add).isEmpty, "a second pass finds nothing new")
    }

    @Test func seriesKeysFollowPyTorchsAddScalarsLayoutOnlyBesideAWriter() throws {
        let root = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        for directory in ["writer/loss_train", "writer/a_b_val", "runs/lr_0.1"] {
            try FileManager.default.createDirectory(atPath: root + "/" + directory, withIntermediateDirectories: true)
        }
        try write([], to: root + "/writer/events.out.tfevents.1")
        #expect(TensorBoardImporter.seriesKey(tag: "loss", file: root + "/writer/loss_train/events.out.tfevents.2") == "loss/train")
        #expect(TensorBoardImporter.seriesKey(tag: "a/b", file: root + "/writer/a_b_val/events.out.tfevents.2") == "a/b/val")
        // A run directory named after a parameter, with no writer's file above it, keeps the tag.
        #expect(TensorBoardImporter.seriesKey(tag: "lr", file: root + "/runs/lr_0.1/events.out.tfevents.2") == "lr")
        #expect(TensorBoardImporter.seriesKey(tag: "loss", file: root + "/writer/events.out.tfevents.1") == "loss")
        // Keras's TensorBoard callback: the same tag under train/ and validation/.
        #expect(TensorBoardImporter.seriesKey(tag: "epoch_loss", file: root + "/logs/train/events.out.tfevents.3") == "train/epoch_loss")
        #expect(TensorBoardImporter.seriesKey(tag: "epoch_loss", file: root + "/logs/validation/events.out.tfevents.4") == "validation/epoch_loss")
    }

    @Test func anIncompleteLastRecordIsReadOnceItIsComplete() throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: mainFixture)))
        let directory = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/events.out.tfevents.cut"
        let all = readAll(mainFixture)
        // Cuts inside headers, data and trailing checksums alike.
        for cut in stride(from: 5, to: bytes.count, by: 389) {
            try write(Array(bytes[..<cut]), to: path)
            var reader = EventFileReader(path: path, chunkSize: 1000)
            let warnings = Warnings()
            let before = reader.readNew(upTo: size(path), warn: warnings.add)
            #expect(reader.offset <= Int64(cut))
            let handle = try #require(FileHandle(forWritingAtPath: path))
            handle.seekToEndOfFile()
            handle.write(Data(bytes[cut...]))
            try handle.close()
            let after = reader.readNew(upTo: size(path), warn: warnings.add)
            #expect(warnings.all.isEmpty)
            #expect(before + after == all, "cut at \(cut)")
            #expect(reader.offset == Int64(bytes.count))
        }
        // Cut in half the record of the last point: the points before it are read, and it follows.
        let starts = try recordStarts(bytes)
        let last = try #require(starts.indices.dropLast().first { readAllRecords(bytes, upTo: starts[$0 + 1]).count == all.count })
        let cut = (starts[last] + starts[last + 1]) / 2
        try write(Array(bytes[..<cut]), to: path)
        var reader = EventFileReader(path: path)
        let warnings = Warnings()
        #expect(reader.readNew(upTo: size(path), warn: warnings.add) == Array(all.dropLast()))
        #expect(reader.offset == Int64(starts[last]))
        try write(bytes, to: path)
        #expect(reader.readNew(upTo: size(path), warn: warnings.add) == [all.last!])
        #expect(warnings.all.isEmpty)
    }

    @Test func aDamagedRecordIsReportedAndStopsTheFile() throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: mainFixture)))
        let directory = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/events.out.tfevents.bad"
        let starts = try recordStarts(bytes)
        let all = readAll(mainFixture)
        // Damage the data of the 8th record, then (in a second file) the length checksum of the 8th.
        for (flip, problem) in [(starts[7] + 12 + 3, "the data's checksum does not match"), (starts[7] + 9, "the length's checksum does not match")] {
            var damaged = bytes
            damaged[flip] ^= 0x40
            try write(damaged, to: path)
            var reader = EventFileReader(path: path)
            let warnings = Warnings()
            let points = reader.readNew(upTo: size(path), warn: warnings.add)
            #expect(warnings.all == ["TensorBoard events \(path) are damaged at offset \(starts[7]) (\(problem)); the rest of the file is not imported"])
            let goodPrefix = readAllRecords(bytes, upTo: starts[7])
            #expect(points == Array(all.prefix(goodPrefix.count)) && goodPrefix == points)
            #expect(reader.stopped && reader.readNew(upTo: size(path), warn: warnings.add).isEmpty && warnings.all.count == 1)
        }
    }

    @Test func anEmptyFileHasNoPoints() throws {
        let directory = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try write([], to: directory + "/events.out.tfevents.empty")
        var importer = TensorBoardImporter(directories: [directory])
        let warnings = Warnings()
        #expect(importer.importNew(warn: warnings.add).isEmpty)
        #expect(readAll(directory + "/events.out.tfevents.empty", warnings: warnings).isEmpty)
        #expect(warnings.all.isEmpty)
    }

    @Test func theSearchSkipsHiddenAndVendoredDirectoriesLinksAndDepth() throws {
        let root = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let deep = (1...9).map { "d\($0)" }.joined(separator: "/")
        let places = ["runs/a", ".venv/lib", "node_modules/x", "src/__pycache__", "outside", "d1/d2/d3/d4/d5/d6/d7/d8", deep]
        for place in places {
            try FileManager.default.createDirectory(atPath: root + "/" + place, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: mainFixture, toPath: root + "/\(place)/events.out.tfevents.\(place.count)")
        }
        try FileManager.default.createSymbolicLink(atPath: root + "/runs/linked", withDestinationPath: root + "/outside")
        var found: [String] = []
        #expect(MetricLogSearch.findFiles(in: root + "/runs", maxEntries: 100, named: TensorBoardImporter.wants) { path, _ in found.append(path) })
        #expect(MetricLogSearch.findFiles(in: root + "/d1", maxEntries: 100, named: TensorBoardImporter.wants) { path, _ in found.append(path) })
        // Searching d1, a file in d8 is 8 levels down (d2/…/d8/file): found; one in d9 is 9: not.
        #expect(found.sorted() == [root + "/d1/d2/d3/d4/d5/d6/d7/d8/events.out.tfevents.23", root + "/runs/a/events.out.tfevents.6"])
        found = []
        #expect(MetricLogSearch.findFiles(in: root, maxEntries: 100, named: TensorBoardImporter.wants) { path, _ in found.append(path) })
        #expect(!found.contains { $0.contains(".venv") || $0.contains("node_modules") || $0.contains("__pycache__") || $0.contains("linked") })
        #expect(found.contains(root + "/outside/events.out.tfevents.7"))
    }

    @Test func theSearchStopsAtItsEntryLimitWithOneWarningAfterLookingNearFirst() throws {
        let root = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/data/a/b", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/runs/x", withIntermediateDirectories: true)
        for index in 0..<30 { try write([], to: root + "/data/a/b/file\(index)") }
        try FileManager.default.copyItem(atPath: mainFixture, toPath: root + "/runs/x/events.out.tfevents.1")
        var importer = TensorBoardImporter(directories: [root], maxEntries: 10)
        let warnings = Warnings()
        // Level by level: runs/x is listed before data/a/b spends the entries.
        #expect(importer.importNew(warn: warnings.add) == expectedMainPoints)
        #expect(importer.importNew(warn: warnings.add).isEmpty)
        #expect(warnings.all == ["stopped looking for TensorBoard event files in \(root) after 10 entries (name their directory with --tb-dir, or turn this off with --no-tensorboard)"])
    }

    @Test func filesOlderThanTheRunAreLeftAlone() throws {
        let root = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/old", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/new", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: mainFixture, toPath: root + "/old/events.out.tfevents.1")
        try FileManager.default.copyItem(atPath: mainFixture, toPath: root + "/new/events.out.tfevents.1")
        let hourAgo = timeval(tv_sec: time(nil) - 3600, tv_usec: 0)
        #expect(utimes(root + "/old/events.out.tfevents.1", [hourAgo, hourAgo]) == 0)
        var importer = TensorBoardImporter(directories: [root], modifiedSince: Clock.now() - 60)
        let warnings = Warnings()
        #expect(importer.importNew(warn: warnings.add) == expectedMainPoints)
    }

    @Test func tensorFormsDecodeToScalarsOnlyWithOneNumericElement() throws {
        func tensor(_ fields: [UInt8]) throws -> SummaryValue.Scalar? {
            let value = message([(1, bytes("t")), (8, fields)])
            return try SummaryValue(decoding: ProtobufReader(value)).scalar
        }
        // float_val not packed (wire type 5), as older writers do.
        #expect(try tensor(varintField(1, 1) + [0x2D] + le(Float(1.5).bitPattern)) == .tensor(1.5))
        // int_val, packed, negative: an int32 sign-extended to ten bytes.
        #expect(try tensor(varintField(1, 3) + lengthField(7, varint(UInt64(bitPattern: -7)))) == .tensor(-7))
        // A shape of [1, 1] is still one element; [2] and an unknown rank are not.
        let one = lengthField(2, lengthField(2, varintField(1, 1)) + lengthField(2, varintField(1, 1)))
        #expect(try tensor(varintField(1, 2) + one + [0x31] + le(Double(2.25).bitPattern)) == .tensor(2.25))
        let two = lengthField(2, lengthField(2, varintField(1, 2)))
        #expect(try tensor(varintField(1, 1) + two + lengthField(5, le(Float(1).bitPattern) + le(Float(2).bitPattern))) == nil)
        #expect(try tensor(varintField(1, 1) + lengthField(2, varintField(3, 1)) + [0x2D] + le(Float(1).bitPattern)) == nil)
        // Strings (DT_STRING 7) and a float tensor without a value are not scalars.
        #expect(try tensor(varintField(1, 7) + lengthField(8, bytes("x"))) == nil)
        #expect(try tensor(varintField(1, 1)) == nil)
        // A message that runs past its end is an error, not a crash.
        #expect(throws: ProtobufError.self) { try SummaryValue(decoding: ProtobufReader([0x0A, 0x05, 0x41])) }
    }
}

// MARK: Helpers

/// Where each record of a tfevents file starts.
private func recordStarts(_ bytes: [UInt8]) throws -> [Int] {
    var starts: [Int] = []
    var position = 0
    while position < bytes.count {
        starts.append(position)
        position += 12 + Int(ProtobufReader.littleEndian(bytes, at: position, size: 8)) + 4
    }
    try #require(position == bytes.count)
    return starts
}

/// The points of the records before `end`, read from a copy of just those bytes.
private func readAllRecords(_ bytes: [UInt8], upTo end: Int) -> [MetricPoint] {
    let path = makeTemporaryDirectory() + "/events.out.tfevents.prefix"
    defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
    try? write(Array(bytes[..<end]), to: path)
    return readAll(path)
}

private func varint(_ value: UInt64) -> [UInt8] {
    var value = value, out: [UInt8] = []
    while value >= 0x80 { out.append(UInt8(value & 0x7F) | 0x80); value >>= 7 }
    return out + [UInt8(value)]
}

private func varintField(_ number: UInt64, _ value: UInt64) -> [UInt8] { varint(number << 3) + varint(value) }
private func lengthField(_ number: UInt64, _ body: [UInt8]) -> [UInt8] { varint(number << 3 | 2) + varint(UInt64(body.count)) + body }
private func message(_ fields: [(UInt64, [UInt8])]) -> [UInt8] { fields.flatMap { lengthField($0.0, $0.1) } }
private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
private func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }

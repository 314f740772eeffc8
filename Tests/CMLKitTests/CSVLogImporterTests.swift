import Foundation
import Glibc
import Testing

@testable import CMLKit

/// Logs written by the real Lightning and Keras `CSVLogger`s (Fixtures/csvlogs/make_fixtures.py).
private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/Fixtures/csvlogs"

private func fixture(_ name: String) throws -> String {
    try String(contentsOfFile: fixtures + "/" + name, encoding: .utf8)
}

/// Warnings given to an importer, kept for the test to look at.
private final class CSVWarnings {
    var all: [String] = []
    func add(_ text: String) { all.append(text) }
}

private func write(_ text: String, to path: String) throws {
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

private func append(_ text: String, to path: String) throws {
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    defer { try? handle.close() }
    try handle.seekToEnd()
    try handle.write(contentsOf: Data(text.utf8))
}

private func modificationTime(_ path: String) -> Double {
    var info = stat()
    #expect(stat(path, &info) == 0)
    return Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
}

/// What a log says, read without the importer: each non-empty cell of a row but the `stepColumn`'s, at
/// the row's step. The fixtures quote nothing, so their rows are their lines split at commas.
private func expectedPoints(_ text: String, stepColumn: String, time: Double = 0) -> [MetricPoint] {
    let lines = text.components(separatedBy: "\r\n").filter { !$0.isEmpty }.map { $0.components(separatedBy: ",") }
    let header = lines[0]
    let step = header.firstIndex(of: stepColumn)!
    return lines.dropFirst().flatMap { row in
        header.indices.filter { $0 != step && !row[$0].isEmpty }.map {
            MetricPoint(key: header[$0], step: Int64(row[step])!, value: Double(row[$0])!, time: time)
        }
    }
}

/// The points with their times left out: a file's points take its modification time when read.
private func withoutTime(_ points: [MetricPoint]) -> [MetricPoint] {
    points.map { MetricPoint(key: $0.key, step: $0.step, value: $0.value, time: 0) }
}

struct CSVLogImporterTests {
    /// The fixture written at `relativePath` in a new directory, and what one import of it gives.
    private func imported(_ name: String, at relativePath: String, stepColumn: String,
                          _ more: (_ points: [MetricPoint], _ importer: inout CSVLogImporter, _ warnings: CSVWarnings) -> Void) throws {
        let root = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let text = try fixture(name)
        let path = root + "/" + relativePath
        try write(text, to: path)
        var importer = CSVLogImporter(directories: [root])
        let warnings = CSVWarnings()
        let points = importer.importNew(warn: warnings.add)
        #expect(warnings.all.isEmpty)
        #expect(points == expectedPoints(text, stepColumn: stepColumn, time: modificationTime(path)))
        more(points, &importer, warnings)
    }

    @Test func readsEveryCellLightningWroteAtItsRowsStep() throws {
        try imported("lightning-metrics.csv", at: "lightning_logs/version_0/metrics.csv", stepColumn: "step") { points, importer, warnings in
            // 3 epochs of 8 steps: train_loss every second step, val_loss at each epoch's last, epoch in every row.
            #expect(points.filter { $0.key == "train_loss" }.map(\.step) == [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23])
            #expect(points.filter { $0.key == "val_loss" }.map(\.step) == [7, 15, 23])
            #expect(points.filter { $0.key == "epoch" }.map(\.value) == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2])
            #expect(importer.importNew(warn: warnings.add).isEmpty, "a second pass finds nothing new")
        }
    }

    @Test func readsOnePointPerEpochAndColumnKerasWrote() throws {
        try imported("keras-training.csv", at: "training.log", stepColumn: "epoch") { points, _, _ in
            #expect(points.map(\.key) == Array(repeating: ["accuracy", "loss", "val_accuracy", "val_loss"], count: 3).flatMap { $0 })
            #expect(points.map(\.step) == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
        }
    }

    @Test func inTheFixturesFolderOnlyKerasLogIsOneLightningsNeedsItsName() throws {
        // lightning-metrics.csv has Lightning's header but not its name: it is left alone.
        var importer = CSVLogImporter(directories: [fixtures])
        let warnings = CSVWarnings()
        let keras = fixtures + "/keras-training.csv"
        #expect(importer.importNew(warn: warnings.add) == expectedPoints(try fixture("keras-training.csv"), stepColumn: "epoch",
                                                                       time: modificationTime(keras)))
        #expect(warnings.all.isEmpty)
    }

    @Test func rowsAreReadAsTheyAreAppendedAndAnUnterminatedLineWaits() throws {
        let root = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let text = try fixture("lightning-metrics.csv")
        let path = root + "/metrics.csv"
        let half = String(text.prefix(text.count / 2))
        #expect(!half.hasSuffix("\r\n"), "the cut is inside a row")
        try write(half, to: path)
        var importer = CSVLogImporter(directories: [root])
        let warnings = CSVWarnings()
        let first = importer.importNew(warn: warnings.add)
        let completeRows = String(half[..<half.range(of: "\r\n", options: .backwards)!.upperBound])
        #expect(first == expectedPoints(completeRows, stepColumn: "step", time: modificationTime(path)))

        let rest = text.dropFirst(half.count)
        try append(String(rest.dropLast()), to: path)  // all but the last line end
        let second = importer.importNew(warn: warnings.add)
        #expect(!second.isEmpty)
        try append("\r\n", to: path)
        let third = importer.importNew(warn: warnings.add)
        let lastRow = "epoch,step,train_loss,val_loss\r\n" + text.components(separatedBy: "\r\n").dropLast().last! + "\r\n"
        #expect(third == expectedPoints(lastRow, stepColumn: "step", time: modificationTime(path)))
        #expect(withoutTime(first + second + third) == expectedPoints(text, stepColumn: "step"))
        #expect(importer.importNew(warn: warnings.add).isEmpty)
        #expect(warnings.all.isEmpty)
    }

    /// What Lightning's file held before `val_loss` first appeared: its first rows, without the column.
    private func lightningBeforeValidation(_ text: String, rows: Int) -> String {
        let lines = text.components(separatedBy: "\r\n")
        #expect(lines[0] == "epoch,step,train_loss,val_loss")
        return (["epoch,step,train_loss"] + lines[1...rows].map { String($0.dropLast()) }).joined(separator: "\r\n") + "\r\n"
    }

    @Test func lightningsRewriteWithAWiderHeaderGivesOnlyTheNewCells() throws {
        let root = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let text = try fixture("lightning-metrics.csv")
        let before = lightningBeforeValidation(text, rows: 4)
        let path = root + "/metrics.csv"
        try write(before, to: path)
        var importer = CSVLogImporter(directories: [root])
        let warnings = CSVWarnings()
        let first = importer.importNew(warn: warnings.add)
        #expect(withoutTime(first) == expectedPoints(before, stepColumn: "step"))
        // The same rows under the wider header, then the rows logged since.
        try write(text, to: path)
        let second = importer.importNew(warn: warnings.add)
        #expect(second.first.map { [$0.key, "\($0.step)"] } == ["epoch", "7"])
        #expect(withoutTime(first + second) == expectedPoints(text, stepColumn: "step"))
        #expect(warnings.all.isEmpty)
    }

    @Test func aRewriteIsReadFromTheStartEvenWhereALineEndsAtTheOldEnd() throws {
        let root = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = root + "/metrics.csv"
        let before = "epoch,step,loss\r\n0,1,0.5\r\n0,3,0.25\r\n"
        try write(before, to: path)
        var importer = CSVLogImporter(directories: [root])
        let warnings = CSVWarnings()
        #expect(importer.importNew(warn: warnings.add).count == 4)
        // The wider header and cells move the rows so that the second row's line end is where the file ended.
        let after = "epoch,step,loss,val_loss\r\n0,1,0.5,\r\n0,3,0.25,\r\n0,3,,0.5\r\n"
        #expect(Array(after.utf8)[before.utf8.count - 1] == UInt8(ascii: "\n"))
        try write(after, to: path)
        #expect(withoutTime(importer.importNew(warn: warnings.add)) == [
            MetricPoint(key: "epoch", step: 3, value: 0, time: 0),
            MetricPoint(key: "val_loss", step: 3, value: 0.5, time: 0),
        ])
    }

    @Test func aFileThatShrankIsReadAgainOnlyForRowsNotYetReturned() throws {
        let root = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let text = try fixture("lightning-metrics.csv")
        let path = root + "/metrics.csv"
        try write(lightningBeforeValidation(text, rows: 4), to: path)
        var importer = CSVLogImporter(directories: [root])
        let warnings = CSVWarnings()
        let first = importer.importNew(warn: warnings.add)
        // Caught while Lightning writes the file again: empty, then with fewer rows than were read.
        try write("", to: path)
        #expect(importer.importNew(warn: warnings.add).isEmpty)
        try write(lightningBeforeValidation(text, rows: 2), to: path)
        #expect(importer.importNew(warn: warnings.add).isEmpty)
        try write(text, to: path)
        let second = importer.importNew(warn: warnings.add)
        #expect(withoutTime(first + second) == expectedPoints(text, stepColumn: "step"))
        #expect(warnings.all.isEmpty)
    }

    @Test func aFileWrittenAgainUnseenIsNotReadFromTheMiddleOfARow() throws {
        let root = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = root + "/training.log"
        try write("epoch,loss\r\n0,0.3125\r\n", to: path)
        var importer = CSVLogImporter(directories: [root])
        let warnings = CSVWarnings()
        #expect(withoutTime(importer.importNew(warn: warnings.add)) == [MetricPoint(key: "loss", step: 0, value: 0.3125, time: 0)])
        // A second fit() truncated the file and wrote more; the old end now falls inside its first row.
        try write("epoch,loss\r\n0,0.5\r\n1,0.25\r\n", to: path)
        #expect(withoutTime(importer.importNew(warn: warnings.add)) == [MetricPoint(key: "loss", step: 1, value: 0.25, time: 0)])
    }

    @Test func dataSetsOtherCSVsAndOldLogsAreLeftAlone() throws {
        let root = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try write("x,y\n1,2\n", to: root + "/data.csv")
        try write("step,loss\n1,0.5\n", to: root + "/results.csv")  // Lightning's shape, not its name
        try write("name,score\na,1\n", to: root + "/eval/metrics.csv")  // its name, not its shape
        try write("epoch,step,loss\n0,1,0.5\n", to: root + "/steps.log")  // neither's shape
        try write("epoch,loss\n0,0.5\n", to: root + "/old/training.log")
        let now = Double(time(nil))
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSince1970: now - 3600)],
                                              ofItemAtPath: root + "/old/training.log")
        let log = root + "/new/training.log"
        try write("epoch,loss\n0,0.5\n", to: log)
        var importer = CSVLogImporter(directories: [root], modifiedSince: now - 60)
        let warnings = CSVWarnings()
        #expect(importer.importNew(warn: warnings.add) == [MetricPoint(key: "loss", step: 0, value: 0.5, time: modificationTime(log))])
        #expect(warnings.all.isEmpty)
    }

    @Test func valuesAreNumbersNanAndInfinitiesAndOtherCellsAreSkipped() throws {
        let root = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let lines = [
            #"epoch,loss,"a,b","say ""hi""",note"#,
            "0,nan,-INF,1,NA",
            #"1,1e-3,Inf,-2.5,"x, y""#,
            "2.5,1,1,1,1",
            "",
            #"3,,,"7","#,
        ]
        try write(lines.joined(separator: "\r\n") + "\r\n", to: root + "/log.csv")
        var importer = CSVLogImporter(directories: [root])
        let points = importer.importNew(warn: CSVWarnings().add)
        // A row whose step is not an integer has no points; blank lines are passed over.
        #expect(points.map { "\($0.key)@\($0.step)=\($0.value)" }
                == ["loss@0=nan", "a,b@0=-inf", "say \"hi\"@0=1.0", "loss@1=0.001", "a,b@1=inf", "say \"hi\"@1=-2.5", "say \"hi\"@3=7.0"])
    }

    @Test func aFileOverTheLimitIsSkippedWithOneWarning() throws {
        let root = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = root + "/training.log"
        try write("epoch,loss\n0,0.5\n", to: path)
        #expect(truncate(path, off_t(CSVLogImporter.maxFileBytes + 1)) == 0)
        var importer = CSVLogImporter(directories: [root])
        let warnings = CSVWarnings()
        #expect(importer.importNew(warn: warnings.add).isEmpty)
        #expect(truncate(path, off_t(CSVLogImporter.maxFileBytes + 2)) == 0)
        #expect(importer.importNew(warn: warnings.add).isEmpty)
        #expect(warnings.all == ["CSV metric log \(path) is over 64 MiB; it is not imported"])
    }

    @Test func filesComeInPathOrderOnceWhenDirectoriesOverlap() throws {
        let root = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try write("epoch,step,loss\n0,4,0.5\n", to: root + "/b/metrics.csv")
        try write("epoch,loss\n0,0.25\n", to: root + "/a/training.log")
        var importer = CSVLogImporter(directories: [root + "/b", root])
        let points = importer.importNew(warn: CSVWarnings().add)
        #expect(withoutTime(points) == [
            MetricPoint(key: "loss", step: 0, value: 0.25, time: 0),
            MetricPoint(key: "epoch", step: 4, value: 0, time: 0),
            MetricPoint(key: "loss", step: 4, value: 0.5, time: 0),
        ])
    }

    @Test func aMissingDirectoryIsReported() throws {
        let root = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var importer = CSVLogImporter(directories: [root, root + "/missing"])
        #expect(importer.importNew(warn: CSVWarnings().add).isEmpty)
        #expect(importer.missingDirectories() == [root + "/missing"])
    }
}

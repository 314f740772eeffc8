import Foundation
import Glibc
import Testing

@testable import CMLKit

/// Console output the deep-learning frameworks printed themselves (Hugging Face's Trainer 4 and 5, Keras 3
/// with `verbose=1` and `2`, Lightning's TQDM and Rich bars; piped, where stdout and stderr are apart, and
/// on a terminal; with fast and slow steps), beside the points each framework's own log of the same run
/// says were shown: `Fixtures/dl`, made by `bench/frameworks.py --fixtures`.
struct FrameworkFixtureTests {
    struct Fixture: CustomStringConvertible {
        var name: String
        /// One stream on a terminal; stdout and stderr when piped.
        var streams: [[UInt8]]
        var expected: [Expected]
        var description: String { name }
    }

    struct Expected {
        var key: String
        var step: Int64
        var value: Double
        var tolerance: Double
    }

    static let folder = FileSystem.directoryName("\(#filePath)") + "/Fixtures/dl/"

    static let fixtures: [Fixture] = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { $0.hasSuffix(".expected.jsonl") }.sorted().map { file in
            let stem = folder + file.dropLast(".expected.jsonl".count)
            func read(_ path: String) -> [UInt8]? { try? FileSystem.readAll(path) }
            let streams = read(stem + ".tty").map { [$0] } ?? [read(stem + ".stdout") ?? [], read(stem + ".stderr") ?? []]
            let expected = String(decoding: read(folder + file) ?? [], as: UTF8.self).split(separator: "\n").map { line in
                let object = try! JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
                return Expected(key: object["key"] as! String, step: (object["step"] as! NSNumber).int64Value,
                                value: (object["value"] as! NSNumber).doubleValue, tolerance: (object["tolerance"] as! NSNumber).doubleValue)
            }
            return Fixture(name: String(file.dropLast(".expected.jsonl".count)), streams: streams, expected: expected)
        }
    }()

    /// Every stream whole, then the end: what `cml-run parse` does.
    static func parsed(_ streams: [[UInt8]]) -> [MetricPoint] {
        var console = ConsoleMetrics(streams: streams.count)
        var points: [MetricPoint] = []
        for (index, bytes) in streams.enumerated() {
            bytes.withUnsafeBufferPointer { console.feed(index, $0, time: 0, into: &points) }
        }
        console.finish(time: 0, into: &points)
        return points
    }

    /// Problems with `points` against what the framework logged: each (key, step) it logged once, with
    /// its value, and nothing else.
    static func problems(_ points: [MetricPoint], _ expected: [Expected]) -> [String] {
        var problems: [String] = []
        var got: [String: [Double]] = [:]
        for point in points { got["\(point.key)@\(point.step)", default: []].append(point.value) }
        var wanted: Set<String> = []
        for entry in expected {
            let identity = "\(entry.key)@\(entry.step)"
            wanted.insert(identity)
            guard let values = got[identity] else { problems.append("\(identity) missing"); continue }
            if values.count > 1 { problems.append("\(identity) recorded \(values.count) times") }
            let value = values[values.count - 1]
            if abs(value - entry.value) > max(entry.tolerance * abs(entry.value), 1e-7) {
                problems.append("\(identity) = \(value), logged \(entry.value)")
            }
        }
        for identity in got.keys.sorted() where !wanted.contains(identity) { problems.append("\(identity) not logged") }
        return problems
    }

    @Test func fixturesAreThere() {
        // 2 Transformers versions, 2 Keras verbosities, 2 Lightning bars; fast and slow; piped and on a terminal.
        #expect(Self.fixtures.count == 24, "\(Self.fixtures.map(\.name))")
    }

    @Test(arguments: fixtures) func eachValueShownAtTheStepTheFrameworkLoggedIt(_ fixture: Fixture) {
        let problems = Self.problems(Self.parsed(fixture.streams), fixture.expected)
        #expect(problems.isEmpty, "\(fixture.name): \(problems.prefix(10))")
    }

    /// The live path: the recorder, writing to a real store, gets the output in random chunks, the two
    /// streams interleaved at random, with random pauses (some longer than the collapser's hold and the
    /// recorder's batch), and must record what the whole output parsed at once gives.
    @Test(arguments: fixtures) func theLiveRecordingDoesNotDependOnTiming(_ fixture: Fixture) throws {
        let box = try TemporaryStore()
        let id = try box.makeRun()
        let recorder = OutputRecorder(log: try box.store.logWriter(run: id), metrics: try box.store.metricWriter(run: id),
                                      parseOutput: true, streams: fixture.streams.count, interval: 0.05, warn: { _ in })
        var random = SeededRandom(seed: fixture.name.utf8.reduce(17) { $0 &* 31 &+ UInt64($1) })
        var offsets = fixture.streams.map { _ in 0 }
        var longPauses = 0
        while let stream = offsets.indices.filter({ offsets[$0] < fixture.streams[$0].count }).randomElement(using: &random) {
            let bytes = fixture.streams[stream]
            let size = [1, 7, 64, 700, 4096, 65536].randomElement(using: &random)!
            let end = min(bytes.count, offsets[stream] + Int.random(in: 1...size, using: &random))
            recorder.receive(stream == 0 ? .stdout : .stderr, Array(bytes[offsets[stream]..<end]))
            offsets[stream] = end
            switch Int.random(in: 0..<40, using: &random) {
            case 0 where longPauses < 2:
                longPauses += 1
                usleep(600_000)  // past the 0.5 s hold
            case 1...4: usleep(UInt32.random(in: 1_000...60_000, using: &random))
            default: break
            }
        }
        _ = recorder.finish()
        var recorded: [MetricPoint] = []
        try box.store.forEachMetric(run: id, key: nil) { recorded.append($0) }
        func normalised(_ points: [MetricPoint]) -> [String] { points.map { "\($0.key)@\($0.step)=\($0.value)" }.sorted() }
        #expect(normalised(recorded) == normalised(Self.parsed(fixture.streams)), "\(fixture.name)")
        #expect(Self.problems(recorded, fixture.expected).isEmpty, "\(fixture.name)")
    }
}

/// A small deterministic generator (SplitMix64), so that a failure can be replayed.
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

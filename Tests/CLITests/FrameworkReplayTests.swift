import Foundation
import Testing

/// Output the frameworks printed (`Tests/CMLKitTests/Fixtures/dl`), written again by a real process under
/// `cml-run` in random chunks with random pauses, some past the collapser's 0.5 s hold: what is recorded
/// must be what `cml-run parse` makes of the same bytes, and what the framework's own log holds.
struct FrameworkReplayTests {
    static let fixtures = FileManager.default.currentDirectoryPath + "/Tests/CMLKitTests/Fixtures/dl/"

    /// Writes the files named on its command line, stdout's and stderr's, interleaved in random chunks.
    static let replay = """
        import os, random, sys, time
        random.seed(int(sys.argv[1]))
        streams = [(1, open(sys.argv[2], "rb").read())] + ([(2, open(sys.argv[3], "rb").read())] if len(sys.argv) > 3 else [])
        offsets = [0 for _ in streams]
        long_pauses = 0
        while any(offset < len(data) for offset, (_, data) in zip(offsets, streams)):
            index = random.choice([i for i, (_, data) in enumerate(streams) if offsets[i] < len(data)])
            fd, data = streams[index]
            size = random.randint(1, random.choice([1, 7, 64, 700, 4096]))
            os.write(fd, data[offsets[index]:offsets[index] + size])
            offsets[index] += size
            roll = random.random()
            if roll < 0.01 and long_pauses < 2:
                long_pauses += 1
                time.sleep(0.6)
            elif roll < 0.06:
                time.sleep(random.uniform(0.001, 0.05))
        """

    func recorded(_ box: Sandbox, _ files: [String], seed: Int) throws -> [String: Double] {
        try box.write("replay.py", Self.replay)
        let run = try box.run("cml-run", ["--no-tty", "--monitor-interval", "0", "--", "python3", "replay.py", String(seed)] + files.map { Self.fixtures + $0 })
        #expect(run.status == 0, "\(run.stderr)")
        let id = try #require(try box.runs().first?["id"] as? String)
        var points: [String: Double] = [:]
        for point in try box.run("cml-run", ["metrics", id]).jsonLines {
            let identity = "\(point["key"]!)@\(point["step"]!)"
            #expect(points[identity] == nil, "\(identity) recorded twice")
            points[identity] = (point["value"] as? NSNumber)?.doubleValue ?? .nan
        }
        return points
    }

    func parsed(_ box: Sandbox, _ file: String) throws -> [String: Double] {
        let result = try box.run("cml-run", ["parse"], stdin: try Data(contentsOf: URL(fileURLWithPath: Self.fixtures + file)))
        #expect(result.status == 0)
        return Dictionary(result.jsonLines.map { ("\($0["key"]!)@\($0["step"]!)", ($0["value"] as? NSNumber)?.doubleValue ?? .nan) }) { $1 }
    }

    func logged(_ stem: String) throws -> [String: (value: Double, tolerance: Double)] {
        let text = try String(contentsOfFile: Self.fixtures + stem + ".expected.jsonl", encoding: .utf8)
        var points: [String: (Double, Double)] = [:]
        for line in text.split(separator: "\n") {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            points["\(object["key"]!)@\(object["step"]!)"] = ((object["value"] as! NSNumber).doubleValue, (object["tolerance"] as! NSNumber).doubleValue)
        }
        return points
    }

    @Test(arguments: ["keras-v1-slow-tty", "lightning-rich-fast-tty", "lightning-tqdm-slow-pipe", "hf5-slow-tty"])
    func oneStreamRecordedAsParsed(_ stem: String) throws {
        let box = try Sandbox()
        // Piped, Lightning's TQDM bar goes to stdout.
        let file = FileManager.default.fileExists(atPath: Self.fixtures + stem + ".tty") ? stem + ".tty" : stem + ".stdout"
        let recorded = try recorded(box, [file], seed: 7)
        let parsed = try parsed(box, file)
        #expect(!parsed.isEmpty)
        #expect(recorded == parsed)
        if file.hasSuffix(".tty") {
            let logged = try logged(stem)
            #expect(Set(recorded.keys) == Set(logged.keys))
        }
    }

    @Test func trainerDictsOnStdoutTakeTheirStepsFromTheBarOnStderr() throws {
        let box = try Sandbox()
        let recorded = try recorded(box, ["hf5-slow-pipe.stdout", "hf5-slow-pipe.stderr"], seed: 11)
        let logged = try logged("hf5-slow-pipe")
        #expect(Set(recorded.keys) == Set(logged.keys))
        for (identity, entry) in logged {
            let value = try #require(recorded[identity], "\(identity)")
            #expect(abs(value - entry.value) <= entry.tolerance * abs(entry.value) + 1e-7, "\(identity)")
        }
    }
}

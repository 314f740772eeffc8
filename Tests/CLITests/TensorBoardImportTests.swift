import Foundation
import Glibc
import Testing

/// TensorBoard scalars written by the real tensorboardX, through cml-run and cml-log.
struct TensorBoardImportTests {
    /// A script that writes four `loss` points (explicit wall times) and an add_scalars pair with
    /// tensorboardX, to the log directory given as its argument, else SummaryWriter's default ./runs/….
    static let writer = """
        import sys
        from tensorboardX import SummaryWriter
        w = SummaryWriter(*sys.argv[1:2])
        for step in range(4):
            w.add_scalar("loss", 1.0 / (step + 1), step, walltime=1700000000.25 + step)
        w.add_scalars("acc", {"train": 0.5, "val": 0.25}, 3, walltime=1700000010.5)
        w.close()
        """

    /// The sandbox, once python3 is known to import tensorboardX: CI installs it; elsewhere, say how.
    static func sandbox() throws -> Sandbox {
        let box = try Sandbox()
        let check = try box.run("/usr/bin/env", ["python3", "-c", "import tensorboardX"])
        try #require(check.status == 0, "python3 cannot import tensorboardX: python3 -m pip install tensorboardX (\(check.stderr))")
        try box.write("writer.py", writer)
        return box
    }

    static func points(_ box: Sandbox, _ id: String, _ key: String) throws -> [[String: Any]] {
        let result = try box.run("cml-run", ["metrics", id, "--key", key])
        #expect(result.status == 0, "\(result.stderr)")
        return result.jsonLines
    }

    static func expectTheWritersPoints(_ box: Sandbox, _ id: String) throws {
        let loss = try points(box, id, "loss")
        #expect(loss.map { $0["step"] as? Int } == [0, 1, 2, 3])
        #expect(loss.map { $0["value"] as? Double } == [1, 0.5, Double(Float(1.0 / 3)), 0.25])
        #expect(loss.map { $0["time"] as? String }
                == ["2023-11-14T22:13:20.250Z", "2023-11-14T22:13:21.250Z", "2023-11-14T22:13:22.250Z", "2023-11-14T22:13:23.250Z"])
        for (key, value) in [("acc/train", 0.5), ("acc/val", 0.25)] {
            let point = try points(box, id, key)
            #expect(point.count == 1 && point.first?["step"] as? Int == 3 && point.first?["value"] as? Double == value
                    && point.first?["time"] as? String == "2023-11-14T22:13:30.500Z", "\(key): \(point)")
        }
    }

    @Test func aRunsSummaryWriterScalarsBecomeItsMetrics() throws {
        let box = try Self.sandbox()
        // A previous run's log in ./runs, written an hour ago: not this run's.
        try box.write("stale.py", """
            import os, time
            from tensorboardX import SummaryWriter
            w = SummaryWriter("runs/yesterday")
            w.add_scalar("stale", 1.0, 0)
            w.close()
            for name in os.listdir("runs/yesterday"):
                os.utime(os.path.join("runs/yesterday", name), (time.time() - 3600, time.time() - 3600))
            """)
        #expect(try box.run("/usr/bin/env", ["python3", "stale.py"]).status == 0)
        let result = try box.run("cml-run", ["--monitor-interval", "0", "--", "python3", "writer.py"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.isEmpty)
        let run = try #require(try box.runs().first)
        let id = try #require(run["id"] as? String)
        try Self.expectTheWritersPoints(box, id)
        #expect((run["metrics"] as? [String: Any]).map { Set($0.keys) } == ["loss", "acc/train", "acc/val"])
    }

    @Test func aTensorBoardDirectoryOutsideTheWorkingDirectory() throws {
        let box = try Self.sandbox()
        let result = try box.run("cml-run", ["--monitor-interval", "0", "--tb-dir", "../tblogs", "--",
                                             "python3", "writer.py", box.root + "/tblogs/exp"])
        #expect(result.status == 0, "\(result.stderr)")
        try Self.expectTheWritersPoints(box, try #require(try box.runs().first?["id"] as? String))
    }

    @Test func pointsArriveWhileTheRunLives() throws {
        let box = try Self.sandbox()
        try box.write("live.py", """
            import os, time
            from tensorboardX import SummaryWriter
            w = SummaryWriter("runs/live")
            for step in range(3):
                w.add_scalar("loss", step, step)
            # tensorboardX queues events for a writer thread: flush until the test has seen them.
            while not os.path.exists("release"):
                w.flush()
                time.sleep(0.05)
            w.add_scalar("loss", 3, 3)
            w.close()
            """)
        // --tb-interval 0.2: searches five times a second instead of every 5 s.
        let running = try box.start("cml-run", ["--monitor-interval", "0", "--tb-interval", "0.2", "--", "python3", "live.py"])
        var id: String?
        let arrived = try waitUntil(timeout: 30) {
            if id == nil { id = try box.runs().first?["id"] as? String }
            guard let id else { return false }
            let loss = try box.run("cml-run", ["metrics", id, "--key", "loss"])
            return loss.jsonLines.count == 3 || !running.process.isRunning
        }
        #expect(arrived && running.process.isRunning, "three points while the script waits")
        try box.write("release", "")
        let result = try running.wait()
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try Self.points(box, try #require(id), "loss").map { $0["value"] as? Double } == [0, 1, 2, 3])
    }

    @Test func noTensorBoardLeavesTheFilesToCmlLog() throws {
        let box = try Self.sandbox()
        #expect(try box.run("cml-run", ["--no-tensorboard", "--", "python3", "writer.py"]).status == 0)
        #expect((try box.runs().first?["metrics"] as? [String: Any])?.isEmpty == true)
        // Inside a run, cml-log tensorboard finds the run through $CML_RUN_ID and writes to the store.
        let log = binDirectory + "/cml-log"
        let result = try box.run("cml-run", ["--no-tensorboard", "--", "sh", "-c", "python3 writer.py logs && \(log) tensorboard logs"])
        #expect(result.status == 0, "\(result.stderr)")
        try Self.expectTheWritersPoints(box, try #require(try box.runs().first?["id"] as? String))
    }

    @Test func importingTheSameFilesTwiceAddsNothing() throws {
        let box = try Self.sandbox()
        #expect(try box.run("cml-run", ["--", "true"]).status == 0)
        let id = try #require(try box.runs().first?["id"] as? String)
        #expect(try box.run("/usr/bin/env", ["python3", "writer.py", "logs"]).status == 0)
        for _ in 0..<2 {
            let result = try box.run("cml-log", ["tensorboard", "logs", "--run", String(id.prefix(12))])
            #expect(result.status == 0 && result.stderr.isEmpty, "\(result.stderr)")
        }
        try Self.expectTheWritersPoints(box, id)
        let summary = try #require((try box.show(id)["metrics"] as? [String: [String: Any]])?["loss"])
        #expect(summary["count"] as? Int == 4)
        let missing = try box.run("cml-log", ["tensorboard", "nowhere", "--run", id])
        #expect(missing.status == 1 && missing.stderr.contains("nowhere is not a directory"))
    }
}

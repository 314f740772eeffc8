import Foundation
import Glibc
import Testing

/// Issue 14: runs recorded by cml-run keep a heartbeat in the store, so that `lost` and `cml-run abort`
/// work from any host. A run is made to look as if it ran on another machine by rewriting its host in the
/// database: no signal or process check from here can reach it then.
struct HeartbeatTests {
    private func moveElsewhere(_ box: Sandbox, _ id: String) throws {
        let result = try shell("sqlite3 -cmd '.timeout 10000' '\(box.store)/cml.db' \"UPDATE runs SET host = 'elsewhere' WHERE id = '\(id)'\"",
                               cwd: box.work)
        #expect(result.status == 0, "\(result.stderr)")
    }

    private func time(_ value: Any?) -> Double? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return (value as? String).flatMap { formatter.date(from: $0)?.timeIntervalSince1970 }
    }

    private func listed(_ box: Sandbox, _ args: [String]) throws -> [String] {
        let result = try box.run("cml-run", ["ls", "--format", "jsonl"] + args)
        #expect(result.status == 0, "\(result.stderr)")
        return result.jsonLines.compactMap { $0["id"] as? String }
    }

    /// A command that says it started, then prints nothing until the test creates `go`.
    private let quietUntilGo = "echo started; while [ ! -e go ]; do sleep 0.1; done; echo done"

    @Test func aKilledCmlRunElsewhereIsLostOnceItsHeartbeatAges() throws {
        let box = try Sandbox()
        // Lost after six missed beats: 6 s.
        let running = try box.start("cml-run", ["--", "sh", "-c", "echo $$; exec sleep 30"], env: ["CML_HEARTBEAT_INTERVAL": "1"])
        #expect(waitUntil { running.stdoutSoFar.hasSuffix("\n") })
        let command = try #require(Int32(running.stdoutSoFar.trimmingCharacters(in: .whitespacesAndNewlines)))
        let id = try #require(try box.runs().first?["id"] as? String)
        try moveElsewhere(box, id)
        // As when its machine dies: cml-run first, so that it records nothing.
        kill(running.pid, SIGKILL)
        kill(command, SIGKILL)
        _ = try running.wait()
        // Its last beat is recent: as far as anyone can tell from here, it runs.
        #expect(try box.show(id)["status"] as? String == "running")
        #expect(try listed(box, ["--where", "status = running"]) == [id])
        #expect(try waitUntil(timeout: 30) { try box.show(id)["status"] as? String == "lost" })
        #expect(try box.runs().first?["status"] as? String == "lost")
        #expect(try listed(box, ["--where", "status = lost"]) == [id])
        #expect(try listed(box, ["--status", "lost"]) == [id])
        #expect(try listed(box, ["--where", "status = running"]).isEmpty)
    }

    @Test func abortReachesACmlRunElsewhereThroughTheStore() throws {
        let box = try Sandbox()
        // The default interval: an abort is polled for every second, whatever the beats' interval.
        let running = try box.start("cml-run", ["--", "sh", "-c", SignalTests.trapScript("TERM", SIGTERM)])
        #expect(waitUntil { running.stdoutSoFar.contains("ready") })
        let id = try #require(try box.runs().first?["id"] as? String)
        try moveElsewhere(box, id)
        let result = try box.run("cml-run", ["abort", id])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.jsonLines.first?["abort"] as? String == "requested", "\(result.out)")
        #expect(result.jsonLines.first?["host"] as? String == "elsewhere", "\(result.out)")
        // Stopped as SIGTERM to cml-run stops it: the command got SIGTERM, and the run ends aborted.
        let ended = try running.wait()
        #expect(ended.out == "ready\ngot TERM\n")
        #expect(ended.status == 128 + SIGTERM)
        let record = try box.show(id)
        #expect(record["status"] as? String == "aborted")
        #expect(record["abort_requested"] as? Bool == true)
        let again = try box.run("cml-run", ["abort", id])
        #expect(again.status == 1 && again.stderr.contains("has already ended (aborted)"), "\(again.stderr)")
    }

    @Test func heartbeatsKeepAQuietRunRunningPastTheThreshold() throws {
        let box = try Sandbox()
        // Lost after six missed beats: 1.8 s.
        let running = try box.start("cml-run", ["--", "sh", "-c", quietUntilGo], env: ["CML_HEARTBEAT_INTERVAL": "0.3"])
        #expect(waitUntil { running.stdoutSoFar.contains("started") })
        let id = try #require(try box.runs().first?["id"] as? String)
        try moveElsewhere(box, id)
        let movedAt = Date().timeIntervalSince1970
        // Beats still come well past the threshold, with nothing printed meanwhile.
        #expect(try waitUntil { (time(try box.show(id)["heartbeat_at"]) ?? 0) > movedAt + 2.5 })
        #expect(try box.show(id)["status"] as? String == "running")
        #expect(try listed(box, ["--where", "status = running"]) == [id])
        try box.write("go", "")
        let result = try running.wait()
        #expect(result.status == 0 && result.out == "started\ndone\n", "\(result.stderr)")
        #expect(try box.show(id)["status"] as? String == "completed")
    }

    @Test func aBusyStoreSkipsBeatsWithoutFailingTheRun() throws {
        let box = try Sandbox()
        let running = try box.start("cml-run", ["--", "sh", "-c", quietUntilGo], env: ["CML_HEARTBEAT_INTERVAL": "0.2"])
        #expect(waitUntil { running.stdoutSoFar.contains("started") })
        let id = try #require(try box.runs().first?["id"] as? String)
        let lock = try box.lockStore(seconds: 1.5)
        #expect(waitUntil { lock.stdoutSoFar.contains("locked") })
        #expect(try lock.wait().status == 0)
        let releasedAt = Date().timeIntervalSince1970
        // Beats resume once the lock is gone.
        #expect(try waitUntil { (time(try box.show(id)["heartbeat_at"]) ?? 0) > releasedAt })
        try box.write("go", "")
        let result = try running.wait()
        #expect(result.status == 0 && result.out == "started\ndone\n")
        #expect(result.stderr == "")
        #expect(try box.show(id)["status"] as? String == "completed")
    }

    @Test func aBadHeartbeatIntervalIsRefusedBeforeAnythingIsRecorded() throws {
        let box = try Sandbox()
        let result = try box.run("cml-run", ["--", "true"], env: ["CML_HEARTBEAT_INTERVAL": "often"])
        #expect(result.status == 2, "\(result.stderr)")
        #expect(result.stderr.contains("CML_HEARTBEAT_INTERVAL: 'often' is not a number of seconds"), "\(result.stderr)")
        #expect(try box.runs().isEmpty)
    }
}

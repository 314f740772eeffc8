import Foundation
import Testing

@testable import CMLKit

/// `RunSync.copyLeasedRun`: a remote agent's attempt of a run, recorded in its spool, copied after what
/// the server held of the run when the attempt started, never created or ended there.
struct LeasedSyncTests {
    static func run(_ id: String, params: [Param] = []) -> Run {
        Run(id: id, name: nil, project: "default", status: .running, command: ["python", "t.py"], cwd: "/tmp", host: "h",
            user: "u", pid: 1, startedAt: Clock.now(), environment: [], code: .null, tags: [], params: params)
    }

    static func output(_ store: SQLiteStore, _ id: String) -> String {
        let reader = RunLogReader(store: store, run: id)
        var text = ""
        while let record = reader.next() { text += String(decoding: record.bytes, as: UTF8.self) }
        return text
    }

    @Test func anAttemptGoesAfterWhatTheServerHeldAndIsNeverEndedThere() throws {
        let serverBox = try TemporaryStore(), spoolBox = try TemporaryStore()
        let (server, spool) = (serverBox.store!, spoolBox.store!)
        let id = RunID.make()
        // The server's record: the queued run, with a lost first attempt's output.
        _ = try server.createRun(Self.run(id), patch: [])
        try server.logWriter(run: id).append(.stdout, time: 1, Array("attempt 1\n".utf8))
        let start = try RunSync.leasedStart(of: id, in: server)
        #expect(start.logBytes > 0 && start.artifacts == 0)

        // This attempt, in the spool: its own output from byte 0, a point, a param from its log channel.
        _ = try spool.createRun(Self.run(id), patch: [])
        try spool.logWriter(run: id).append(.stdout, time: 2, Array("attempt 2\n".utf8))
        try spool.appendMetrics(run: id, [MetricPoint(key: "loss", step: 0, value: 0.5, time: 2)], source: .log)
        try spool.addParams(run: id, [Param(key: "lr", value: .double(0.1), source: "log")])

        let sync = RunSync(from: spool, to: server)
        let first = try sync.copyLeasedRun(id, after: start)
        #expect(!first.created && first.points == 1 && first.params == 1 && first.logBytes > 0 && !first.complete)
        #expect(Self.output(server, id) == "attempt 1\nattempt 2\n")
        #expect(try server.run(id: id).metrics.first?.count == 1)
        // A second copy sends nothing.
        #expect(try sync.copyLeasedRun(id, after: start).sentNothing)

        try spool.logWriter(run: id).append(.stdout, time: 3, Array("done\n".utf8))
        try spool.finishRun(id: id, end: RunEnd(status: .completed, endedAt: 4, exitCode: 0), logBytes: 15)
        let last = try sync.copyLeasedRun(id, after: start)
        #expect(last.complete && !last.finished)
        #expect(Self.output(server, id) == "attempt 1\nattempt 2\ndone\n")
        // Its end is the agent's to record, through the lease.
        #expect(try server.run(id: id).status == .running)
    }
}

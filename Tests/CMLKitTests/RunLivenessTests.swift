import Foundation
import Glibc
import GRDB
import Testing

@testable import CMLKit

/// Issue 14: `lost` must not depend on the reading host.
struct RunLivenessTests {
    let here = ProcessPlace(host: "a", scope: "boot-1 pid:[1]")
    let now = 1_000_000.0

    private func status(_ host: String, pid: Int32? = 7, scope: String? = nil, beatAgo: Double? = nil, interval: Double = 5,
                        status: RunStatus = .running, exists: Bool = true) -> RunStatus {
        RunLiveness(status: status, host: host, pid: pid, pidScope: scope, heartbeatAt: beatAgo.map { now - $0 },
                    heartbeatInterval: beatAgo == nil ? nil : interval)
            .observedStatus(now: now, here: here, processExists: { _ in exists })
    }

    @Test func aHeartbeatOlderThanSixBeatsIsLostOnAnyHost() {
        #expect(status("b", beatAgo: 29) == .running)
        #expect(status("b", beatAgo: 31) == .lost)
        #expect(status("a", scope: here.scope, beatAgo: 31) == .lost, "even where its process seems to live")
        // Each run is judged by its own interval.
        #expect(status("b", beatAgo: 1.3, interval: 0.2) == .lost)
        #expect(status("b", beatAgo: 1.1, interval: 0.2) == .running)
    }

    @Test func aProcessGoneFromItsOwnPlaceIsLostAtOnce() {
        #expect(status("a", scope: here.scope, beatAgo: 1, exists: false) == .lost)
        #expect(status("a", scope: here.scope, beatAgo: 1, exists: true) == .running)
        // Another machine or container of the same name, or this one after a reboot: its pid means nothing here.
        #expect(status("a", scope: "boot-2 pid:[1]", beatAgo: 1, exists: false) == .running)
        #expect(status("b", scope: here.scope, beatAgo: 1, exists: false) == .running)
    }

    @Test func runsWithoutAHeartbeatKeepTheHostNameRule() {
        // Recorded before heartbeats, or queued (their agent's pid and host; leases do the rest).
        #expect(status("a", exists: false) == .lost)
        #expect(status("a", exists: true) == .running)
        #expect(status("b", exists: false) == .running)
        #expect(status("a", pid: nil, exists: false) == .running)
    }

    @Test func onlyRunningRunsAreJudged() {
        for ended in [RunStatus.completed, .failed, .aborted, .queued] {
            #expect(status("b", beatAgo: 1000, status: ended, exists: false) == ended)
        }
    }

    /// `--where status = lost`, `ls --status` and the project counts (SQL) say what `show` says (Swift).
    @Test func sqlAndRunsAgree() throws {
        let box = try TemporaryStore()
        let store = box.store!
        let gone: Int32 = Int32.max - 1  // beyond any pid_max
        let place = ProcessPlace.here
        func add(_ host: String, pid: Int32?, scope: String?, beatAgo: Double?, status: RunStatus = .running) throws -> String {
            var run = Run(id: RunID.make(), name: nil, project: "p", status: status, command: ["x"], cwd: "/", host: host,
                          user: "u", pid: pid, startedAt: Clock.now(), environment: [], code: .null, tags: [], params: [])
            run.pidScope = scope
            run.heartbeat = beatAgo.map { Heartbeat(at: Clock.now() - $0, interval: 5) }
            return try store.createRun(run, patch: []).id
        }
        let lost = [
            try add("elsewhere", pid: 1, scope: "other", beatAgo: 60),
            try add(place.host, pid: gone, scope: place.scope, beatAgo: 1),
            try add(place.host, pid: gone, scope: nil, beatAgo: nil),
        ]
        let running = [
            try add("elsewhere", pid: gone, scope: "other", beatAgo: 1),
            try add(place.host, pid: gone, scope: "another boot", beatAgo: 1),
            try add(place.host, pid: getpid(), scope: place.scope, beatAgo: 1),
            try add("elsewhere", pid: gone, scope: nil, beatAgo: nil),
        ]
        _ = try add("elsewhere", pid: 1, scope: nil, beatAgo: 60, status: .completed)
        #expect(Set(try store.runs(RunQuery(status: .lost)).map(\.id)) == Set(lost))
        #expect(Set(try store.runs(RunQuery(status: .running)).map(\.id)) == Set(running))
        let filter = try RunFilter.parse("status = lost")
        #expect(Set(try store.runs(RunQuery(filter: filter)).map(\.id)) == Set(lost))
        let all = try store.runs(RunQuery())
        #expect(Set(all.filter { $0.observedStatus == .lost }.map(\.id)) == Set(lost))
        #expect(Set(all.filter { $0.observedStatus == .running }.map(\.id)) == Set(running))
        #expect(try store.projects().first?.byStatus == ["lost": 3, "running": 4, "completed": 1])
    }

    @Test func beatsRenewTheHeartbeatAndCarryAnAbort() throws {
        let box = try TemporaryStore()
        let store = box.store!
        var run = Run(id: RunID.make(), name: nil, project: "p", status: .running, command: ["x"], cwd: "/", host: "h",
                      user: "u", pid: 1, startedAt: Clock.now(), environment: [], code: .null, tags: [], params: [])
        run.heartbeat = Heartbeat(at: Clock.now() - 100, interval: 5)
        let id = try store.createRun(run, patch: []).id
        let writer = store.heartbeatWriter(run: id)
        #expect(try writer.beat() == false)
        #expect(try store.run(id: id).heartbeat.map { Clock.now() - $0.at < 10 } == true)
        #expect(try writer.abortRequested() == false)
        try store.requestAbort(directRun: id)
        #expect(try writer.abortRequested() == true)
        #expect(try writer.beat() == true)
        #expect(try store.run(id: id).heartbeat?.abortRequested == true)
        try store.finishRun(id: id, end: RunEnd(status: .aborted, endedAt: Clock.now()), logBytes: 0)
        let ended = try store.run(id: id).heartbeat?.at
        _ = try writer.beat()
        #expect(try store.run(id: id).heartbeat?.at == ended, "an ended run's heartbeat stays as it was")
        #expect(throws: CMLError.self) { try store.requestAbort(directRun: id) }
    }

    @Test func aBeatTheStoreCannotTakeAtOnceIsSkipped() throws {
        let box = try TemporaryStore()
        let store = box.store!
        var run = Run(id: RunID.make(), name: nil, project: "p", status: .running, command: ["x"], cwd: "/", host: "h",
                      user: "u", pid: 1, startedAt: Clock.now(), environment: [], code: .null, tags: [], params: [])
        run.heartbeat = Heartbeat(at: Clock.now() - 100, interval: 5)
        let id = try store.createRun(run, patch: []).id
        let writer = store.heartbeatWriter(run: id)
        let other = try DatabaseQueue(path: box.directory + "/cml.db")
        var skipped = false
        var asked: Bool?
        try other.inTransaction(.immediate) { _ in
            skipped = (try? writer.beat()) == nil
            asked = try? writer.abortRequested()
            return .commit
        }
        #expect(skipped)
        #expect(asked == false, "reading is not held up by a writer")
        #expect(try writer.beat() == false)
        #expect(try store.run(id: id).heartbeat.map { Clock.now() - $0.at < 10 } == true)
    }
}

import Foundation

/// Uploads a remote agent's run from its spool to the server while the command runs, on a thread of its
/// own: every second, the same leased copy each time (`RunSync.copyLeasedRun`), so that the server
/// shows the run's output and points as they come. A failed copy is tried again a second later; the
/// agent uploads the rest itself once the command has ended (`copy`), then ends the lease.
final class LeasedRunUpload: @unchecked Sendable {  // `stopped` and `done` are under `condition`
    private let sync: RunSync
    private let runID: String
    /// What the server held of the run when this attempt started.
    private let earlier: RunSync.LeasedStart
    private let condition = NSCondition()
    private var stopped = false
    private var done = true

    init(from spool: SQLiteStore, to server: any Store, run id: String, after earlier: RunSync.LeasedStart) {
        sync = RunSync(from: spool, to: server)
        runID = id
        self.earlier = earlier
    }

    func start() {
        done = false
        let thread = Thread { [self] in
            condition.lock()
            while !stopped {
                condition.unlock()
                _ = try? copy()
                condition.lock()
                if !stopped { _ = condition.wait(until: Date(timeIntervalSinceNow: 1)) }
            }
            done = true
            condition.broadcast()
            condition.unlock()
        }
        thread.name = "cml-agent-upload"
        thread.start()
    }

    /// Stops the uploads of the thread, waiting for one under way: two copies at once would both send
    /// the same points.
    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        while !done { condition.wait() }
        condition.unlock()
    }

    /// Copies what the server lacks of the run.
    func copy() throws(CMLError) -> RunSync.Copy {
        try sync.copyLeasedRun(runID, after: earlier)
    }
}

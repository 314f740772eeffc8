import Foundation

/// Uploads a remote agent's run from its spool to the server while the command runs, on a thread of its
/// own: every second, the same leased copy each time (`RunSync.copyLeasedRun`), so that the server
/// shows the run's output and points as they come. A failed copy is tried again a second later; the
/// agent uploads the rest itself once the command has ended (`copy`), then ends the lease.
final class LeasedRunUpload: @unchecked Sendable {  // `ticker` is set by the agent's thread of the run only
    private let sync: RunSync
    private let runID: String
    /// What the server held of the run when this attempt started.
    private let earlier: RunSync.LeasedStart
    private var ticker: Ticker?

    init(from spool: SQLiteStore, to server: any Store, run id: String, after earlier: RunSync.LeasedStart) {
        sync = RunSync(from: spool, to: server)
        runID = id
        self.earlier = earlier
    }

    func start() {
        ticker = Ticker(interval: 1, finalTick: false, atOnce: true, name: "cml-agent-upload") { [self] _ in _ = try? copy() }
    }

    /// Stops the uploads of the thread, waiting for one under way: two copies at once would both send
    /// the same points.
    func stop() {
        ticker?.stop()
        ticker = nil
    }

    /// Copies what the server lacks of the run.
    func copy() throws(CMLError) -> RunSync.Copy {
        try sync.copyLeasedRun(runID, after: earlier)
    }
}

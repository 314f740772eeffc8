import Glibc

/// A run's console output as `cml-run log` prints it (and the web UI's live log will): collapsed to what
/// the terminal showed, or the stored bytes when `raw`; one stream or both; with `follow`, new output as it
/// comes until the run ends. A queued run whose agent died is followed into its next attempt.
public struct RunLogFollower {
    public let store: any Store
    public let runID: String
    public var stream: OutputStream?
    public var raw = false

    public init(store: any Store, runID: String, stream: OutputStream? = nil, raw: Bool = false) {
        self.store = store
        self.runID = runID
        self.stream = stream
        self.raw = raw
    }

    /// Hands the output to `write` in pieces, and `awaitingRequeue` is called once when the agent of the
    /// followed run is gone. Damage is an error after everything readable was written (a torn last record
    /// of a live or lost run is no damage).
    public func read(follow: Bool, awaitingRequeue: () -> Void = {},
                     _ write: ([UInt8]) throws(CMLError) -> Void) throws(CMLError) {
        let reader = RunLogReader(store: store, run: runID)
        var renderer = ConsoleRenderer()
        var finished = false
        var toldOfRequeue = false
        while true {
            var wrote = false
            while let record = reader.next() {
                if let stream, record.stream != stream { continue }
                try write(raw ? record.bytes : renderer.feed(record.bytes))
                wrote = true
            }
            if !follow || finished { break }
            // One more pass after the run has ended picks up its last records.
            if !wrote {
                let run = try store.run(id: runID)
                let awaitsRequeue = run.awaitsRequeue
                finished = !awaitsRequeue && run.observedStatus.isFinished
                if awaitsRequeue && !toldOfRequeue {
                    toldOfRequeue = true
                    awaitingRequeue()
                }
            }
            if !finished { usleep(200_000) }
        }
        if !raw { try write(renderer.finish()) }
        let problems = reader.problems(of: try store.run(id: runID))
        if !problems.isEmpty {
            throw CMLError("the console log of run \(runID) \(problems[0])\(problems.count > 1 ? " (and \(problems.count - 1) more damaged records)" : "")",
                           hint: "cml-run verify \(RunID.short(runID)) checks everything the run recorded", kind: .damaged)
        }
    }
}

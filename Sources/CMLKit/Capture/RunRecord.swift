/// A run's record in the store from its start to its end: a new run's, or the leased run of an agent,
/// whose writes count only while the agent holds the lease.
struct RunRecord {
    let store: SQLiteStore
    let id: String
    let lease: QueueLease?
    /// The store holding the lease when it is not `store`: a remote agent's server. The run starts
    /// there and is recorded in `store` (the server's spool); its end is recorded in `store` only, and
    /// the agent ends the lease on the server once it has uploaded the run.
    var queue: (any Store)? = nil
    let warn: @Sendable (String) -> Void

    /// Records the run as started and opens its log and metric writers; a run that cannot have them ends
    /// `failed`.
    func begin(_ run: Run, patch: [UInt8], inputs: [DatasetVersion], channel: LogChannel) throws(CMLError) -> (RunLogWriter, any MetricWriter) {
        if let lease {
            guard try (queue ?? store).startLeasedRun(run, lease: lease) else {
                channel.closeChildEnd()
                throw CMLError("run \(RunID.short(id)) was taken back from this agent before it started")
            }
            if queue != nil {
                // What a taken-back attempt of this agent left in the spool is on the server already, or lost with its lease.
                _ = try store.removeRuns([id])
                _ = try store.createRun(run, patch: [])
            }
        } else {
            _ = try store.createRun(run, patch: patch)
        }
        do {
            if !inputs.isEmpty { try (queue ?? store).recordDatasetUse(run: id, inputs) }
            return (try store.logWriter(run: id), try store.metricWriter(run: id))
        } catch {
            channel.closeChildEnd()
            try? write(.finished(RunEnd(status: .failed, endedAt: Clock.now(), error: error.message)), logBytes: 0)
            throw error
        }
    }

    /// Records how the run ended. When the store cannot take it (a full disk, a lock held too long), says
    /// so with what the command did; a new run's end is kept for the store's next open
    /// (`Store.keepEndForLater`), while an agent's run is reclaimed when its lease runs out.
    func end(_ end: LeasedRunEnd, logBytes: Int64) {
        do {
            try write(end, logBytes: logBytes)
        } catch {
            guard lease == nil, case .finished(let runEnd) = end else {
                warn("the end of run \(RunID.short(id)) was not recorded: \(error.message)")
                return
            }
            let codes = [runEnd.exitCode.map { "exit status \($0)" }, runEnd.signal.map { "signal \($0)" }].compactMap { $0 }
            let what = "run \(RunID.short(id)) \(runEnd.status.rawValue)" + (codes.isEmpty ? "" : " (\(codes.joined(separator: ", ")))")
                + ", but its end was not recorded: \(error.message)"
            do {
                try store.keepEndForLater(run: id, end: runEnd, logBytes: logBytes)
                warn(what + "; it is kept, and recorded when the store is next opened")
            } catch {
                warn(what + "; nor could it be kept for later (\(error.message)), so the run will show as lost")
            }
        }
    }

    private func write(_ end: LeasedRunEnd, logBytes: Int64) throws(CMLError) {
        if let lease, queue != nil {
            // A requeued run's end is its agent's to give the server.
            if case .finished(let end) = end { try store.finishRun(id: id, end: end, logBytes: logBytes) }
        } else if let lease {
            if try !store.endLeasedRun(lease, end, logBytes: logBytes) {
                warn("its lease was taken back from this agent; its end is not recorded here")
            }
        } else if case .finished(let end) = end {
            try store.finishRun(id: id, end: end, logBytes: logBytes)
        }
    }
}

import Glibc

/// Keeps a run recorded by cml-run alive in the store while its command runs, on a thread of its own:
/// one UPDATE every `interval` seconds renews its heartbeat (readers anywhere see it `lost` after
/// `RunLiveness.missedBeatsBeforeLost` missed beats), and one read every second in between asks whether
/// `cml-run abort` wants it stopped, which `onAbort` then does. A beat the store cannot take at once (a
/// lock held by another writer, a full disk) is skipped and tried again a second later; the run goes on.
final class RunHeartbeat: @unchecked Sendable {  // the fields below are used by the ticker's thread only
    /// Seconds between beats unless `$CML_HEARTBEAT_INTERVAL` says otherwise.
    static let defaultInterval = 5.0
    /// How soon an abort asked for through the store is seen.
    static let abortPollInterval = 1.0

    private let writer: any HeartbeatWriter
    private let interval: Double
    private let onAbort: @Sendable () -> Void
    private var lastBeat: Double
    private var abortSeen = false
    private var ticker: Ticker?

    /// `startedAt`: when the run was recorded, its first beat.
    init(writer: any HeartbeatWriter, interval: Double, startedAt: Double, onAbort: @escaping @Sendable () -> Void) {
        self.writer = writer
        self.interval = interval
        self.onAbort = onAbort
        lastBeat = startedAt
        let tick = min(interval, Self.abortPollInterval)
        ticker = Ticker(interval: tick, finalTick: false) { [self] _ in self.tick(every: tick) }
    }

    /// Stops beating; returns once the thread is done.
    func stop() {
        ticker?.stop()
    }

    private func tick(every tick: Double) {
        let now = Clock.now()
        let asked: Bool?
        // Half a tick early rather than a whole tick late: ticks come a little after their time.
        if now - lastBeat >= interval - tick / 2 {
            asked = try? writer.beat()
            if asked != nil { lastBeat = now }
        } else {
            asked = try? writer.abortRequested()
        }
        if asked == true && !abortSeen {
            abortSeen = true
            onAbort()
        }
    }

    /// `$CML_HEARTBEAT_INTERVAL` in seconds (tests use a short one), else `defaultInterval`.
    static func configuredInterval() throws(CMLError) -> Double {
        guard let value = getenv("CML_HEARTBEAT_INTERVAL").map({ String(cString: $0) }), !value.isEmpty else { return defaultInterval }
        guard let seconds = Double(value), seconds >= 0.1, seconds <= 3600 else {
            throw .usage("CML_HEARTBEAT_INTERVAL: '\(value)' is not a number of seconds from 0.1 to 3600")
        }
        return seconds
    }
}

import Foundation

/// A whole run that has ended, in one piece: its record with its end, its patch, its console log and its
/// points. `RunSync` sends a short run this way (`RunStore.recordEndedRun`), one request to a server
/// instead of asking for the run, creating it, then recording its end: what `cml-run --store URL` pays
/// after its command exits.
public struct RunBatch: Sendable, Codable {
    /// The record as the source holds it, `end` and `logBytes` included.
    public var run: Run
    public var patch: Data
    /// The console log from its start, in whole records.
    public var log: Data
    public var series: [Series]

    /// One metric's points from the start of its series.
    public struct Series: Sendable, Codable {
        public var key: String
        public var source: MetricSource
        public var points: [MetricPoint]

        public init(key: String, source: MetricSource, points: [MetricPoint]) {
            self.key = key
            self.source = source
            self.points = points
        }
    }

    /// What recording it changed: whether the run was new to the store, and whether its end was
    /// recorded now (false when the store had it already).
    public struct Outcome: Sendable, Codable, Equatable {
        public var created: Bool
        public var finished: Bool

        public init(created: Bool, finished: Bool) {
            self.created = created
            self.finished = finished
        }
    }

    public init(run: Run, patch: [UInt8], log: [UInt8], series: [Series]) {
        self.run = run
        self.patch = Data(patch)
        self.log = Data(log)
        self.series = series
    }

    /// The run `id` of `source` as one batch, when it has ended, has no artifacts (their blobs go up one
    /// by one), used and made no dataset version, and its log and points fit in one request of `sync`'s; nil otherwise.
    static func of(_ run: Run, in source: any Store, within sync: RunSync) throws(CMLError) -> RunBatch? {
        // Dataset versions it used or made go with their blobs and lineage (`copyDatasets`): step by step.
        guard run.end != nil, run.datasets.isEmpty, run.metrics.reduce(0, { $0 + $1.count }) <= Int64(sync.pointsPerBatch),
              try source.logSize(run: run.id) <= Int64(sync.logBytesPerRequest), try source.artifacts(run: run.id).isEmpty,
              try sync.versionsMade.versions(madeBy: run.id, in: source).isEmpty else {
            return nil
        }
        let log = try source.readLog(run: run.id, from: 0, limit: sync.logBytesPerRequest) ?? []
        // A record still being written would have to wait for a later copy: not a whole run yet.
        guard LogRecord.wholeRecordsLength(log[...]) == log.count else { return nil }
        var series: [Series] = []
        for summary in run.metrics {
            var points: [MetricPoint] = []
            try source.forEachMetric(run: run.id, key: summary.key) { points.append($0) }
            series.append(Series(key: summary.key, source: summary.source ?? .log, points: points))
        }
        let patch = try run.code["patch_blob"]?.stringValue.map { blob throws(CMLError) in try source.blob(blob) } ?? []
        return RunBatch(run: run, patch: patch, log: log, series: series)
    }
}

extension RunStore {
    /// Records a whole ended run as `RunSync` copies one, step by step, each step idempotent: so is the
    /// whole, and a batch sent again (its answer was lost) or sent for a run the store has part of
    /// adds only what the store lacks. A run the store holds under the same id that is another run is
    /// refused (`conflict`) with nothing written. The end goes last, so that a run shown ended has all.
    public func recordEndedRun(_ batch: RunBatch) throws(CMLError) -> RunBatch.Outcome {
        var run = batch.run
        // The code state names its patch as `createRun` records it, so that a batch sent again is the same run.
        if !batch.patch.isEmpty, case .object(var members) = run.code {
            members.removeAll { $0.0 == "patch_blob" }
            members.append(("patch_blob", .string(SHA256Hasher.hex(Array(batch.patch)))))
            run.code = .object(members)
        }
        guard let end = run.end else { throw CMLError("run \(run.id) has not ended: a batch carries an ended run", kind: .invalid) }
        let log = Array(batch.log)
        guard LogRecord.wholeRecordsLength(log[...]) == log.count else {
            throw CMLError("the log bytes for run \(run.id) are not whole records", kind: .invalid)
        }
        var created = false
        var there: Run
        do {
            there = try self.run(id: run.id)
        } catch where error.kind == .notFound {
            var fresh = run
            // Recorded as running until everything else is there.
            fresh.status = .running
            fresh.end = nil
            fresh.metrics = []
            fresh.logBytes = 0
            do {
                there = try createRun(fresh, patch: Array(batch.patch))
                created = true
            } catch where error.kind == .conflict {
                // Another copy of this batch created it just now.
                there = try self.run(id: run.id)
            }
        }
        if !created {
            try RunSync.requireSameRun(run, there, source: "the batch", target: "the store")
            try RunSync.addMissing(of: run, to: there, in: self)
        }
        for series in batch.series where !series.points.isEmpty {
            try appendMetrics(run: run.id, series.points, source: series.source, continuing: [series.key: 0])
        }
        if !log.isEmpty { try appendLog(run: run.id, at: 0, log) }
        guard there.end == nil else { return RunBatch.Outcome(created: created, finished: false) }
        try finishRun(id: run.id, end: end, logBytes: run.logBytes)
        return RunBatch.Outcome(created: created, finished: true)
    }
}

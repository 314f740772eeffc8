import CMLKit
import NIOCore
import Synchronization

/// The run records the server has read, by id, each with the revision it was read at (`RunRevisions`)
/// and the JSON that `GET /api/v1/runs/{id}` answers with: a read of a run whose revision is unchanged
/// costs the server one lookup of that revision (`ServedStore.readRun`), not a read of the run's
/// tables and the record's encoding. It holds at most `budget` bytes (counted as twice each record's
/// JSON, for the record's own copy); when full, entries are dropped in no particular order until it is a
/// quarter empty, and a dropped record is read again when next asked for.
final class RunRecordCache: Sendable {
    final class Entry: Sendable {
        let revision: Int64
        let run: Run
        let cost: Int
        /// The status a running run shows changes without a write (its heartbeat ages, its process is
        /// gone from this host): the JSON is for the status it was made with, and made again for another.
        private let shown: Mutex<(status: RunStatus, json: ByteBuffer)>

        init(run: Run, revision: Int64) {
            self.run = run
            self.revision = revision
            let status = run.observedStatus
            let json = Self.json(run, status: status)
            cost = 2 * json.readableBytes
            shown = Mutex((status, json))
        }

        /// The record as `cml-run show` prints it, with the status it shows now.
        var json: ByteBuffer {
            let status = run.observedStatus
            if let json = shown.withLock({ $0.status == status ? $0.json : nil }) { return json }
            let json = Self.json(run, status: status)
            shown.withLock { $0 = (status, json) }
            return json
        }

        private static func json(_ run: Run, status: RunStatus) -> ByteBuffer {
            var text = ""
            run.json(full: true, status: status).write(to: &text)
            text += "\n"
            return ByteBuffer(string: text)
        }
    }

    private struct State {
        var entries: [String: Entry] = [:]
        var bytes = 0
    }

    static let defaultBudget = 8 << 20
    let budget: Int
    private let state = Mutex(State())

    init(budget: Int = RunRecordCache.defaultBudget) {
        self.budget = budget
    }

    func entry(id: String) -> Entry? {
        state.withLock { $0.entries[id] }
    }

    /// Keeps `run` as read at `revision`, replacing what was kept of it; returns its entry.
    @discardableResult
    func keep(_ run: Run, revision: Int64) -> Entry {
        let entry = Entry(run: run, revision: revision)
        let budget = budget
        state.withLock { state in
            if let old = state.entries.updateValue(entry, forKey: run.id) { state.bytes -= old.cost }
            state.bytes += entry.cost
            guard state.bytes > budget else { return }
            // In the dictionary's order, which its hashing makes arbitrary.
            for (id, dropped) in state.entries {
                if state.bytes <= budget * 3 / 4 { break }
                state.entries[id] = nil
                state.bytes -= dropped.cost
            }
        }
        return entry
    }
}

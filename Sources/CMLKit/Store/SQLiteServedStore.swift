import GRDB

extension SQLiteStore: ServedStore {
    public func readRun(id: String, unlessRevision known: Int64?, presented: PresentedToken?) throws(CMLError) -> ServedRunRead {
        try read { db in
            let token = try presented.map { presented in try Self.lookUp(db, presented) }
            // Compiled once per connection: a server asks this for every read of a run.
            let revision = try Int64.fetchOne(db.cachedStatement(sql: "SELECT revision FROM run_revisions WHERE run_id = ?"), arguments: [id])
            guard let revision else { return ServedRunRead(token: token, revision: nil, run: nil) }
            if revision == known { return ServedRunRead(token: token, revision: revision, run: nil) }
            // A removed run keeps its revision row (see `RunRevisions`).
            let run = try Self.runs(db, whereSQL: "runs.id = ?", arguments: [id], limit: nil, cached: true).first
            return ServedRunRead(token: token, revision: run == nil ? nil : revision, run: run)
        }
    }
}

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

    public func updateExtra(run id: String, _ change: (JSON?) throws(CMLError) -> JSON?) throws(CMLError) {
        try write { db in
            try Self.requireRun(db, id)
            let held = try String.fetchOne(db, sql: "SELECT extra FROM runs WHERE id = ?", arguments: [id]).flatMap { try? JSON.parse($0) }
            let changed = try change(held)
            guard changed != held else { return }
            try db.execute(sql: "UPDATE runs SET extra = ? WHERE id = ?", arguments: [changed?.serialized, id])
        }
    }

    public func reopenRun(id: String) throws(CMLError) {
        try write { db in
            try Self.requireRun(db, id)
            try db.execute(sql: """
                UPDATE runs SET status = 'running', ended_at = NULL, exit_code = NULL, signal = NULL, error = NULL
                WHERE id = ? AND status != 'running'
                """, arguments: [id])
        }
    }

    public func setOrigin(run id: String, command: [String], cwd: String, code: JSON, patch: [UInt8]) throws(CMLError) {
        var code = code
        if !patch.isEmpty, case .object(var members) = code {
            members.removeAll { $0.0 == "patch_blob" }
            members.append(("patch_blob", .string(try blobs.put(patch))))
            code = .object(members)
        }
        let record = code
        try write { db in
            try Self.requireRun(db, id)
            // Under the write lock, as in `createRun`: a gc since the patch was stored may have removed it.
            if let blob = record["patch_blob"]?.stringValue {
                if try !blobs.contains(blob) { _ = try blobs.put(patch) }
                try Self.insertBlobReferences(db, run: id, [blob])
            }
            try db.execute(sql: "UPDATE runs SET command = ?, cwd = ?, code = ? WHERE id = ?",
                           arguments: [JSON.array(command.map(JSON.string)).serialized, cwd, record.serialized, id])
        }
    }
}

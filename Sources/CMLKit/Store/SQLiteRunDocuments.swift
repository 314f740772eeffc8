import GRDB

extension SQLiteStore {
    public func runDocument(run id: String, client: String) throws(CMLError) -> JSON? {
        let text = try read { db in
            try String.fetchOne(db, sql: "SELECT document FROM run_documents WHERE run_id = ? AND client = ?", arguments: [id, client])
        }
        return try text.map { text throws(CMLError) in try JSON.parse(text) }
    }

    public func saveRunDocument(run id: String, client: String, _ document: JSON) throws(CMLError) {
        let text = document.serialized
        try write { db in
            try Self.requireRun(db, id)
            try db.execute(sql: """
                INSERT INTO run_documents (run_id, client, document) VALUES (?, ?, ?)
                ON CONFLICT (run_id, client) DO UPDATE SET document = excluded.document
                """, arguments: [id, client, text])
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

import GRDB

/// Sweep and pipeline records in the store's database (`controllers`, migration 9).
extension SQLiteStore {
    public func saveController(_ record: ControllerRecord) throws(CMLError) {
        try ControllerRecords.check(record)
        try write { db in
            try db.execute(sql: """
                INSERT INTO controllers (id, kind, project, created_at, updated_at, document) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at, document = excluded.document
                """, arguments: [record.id, record.kind, record.project, record.createdAt, record.updatedAt, record.document])
        }
    }

    public func controller(kind: String, id prefix: String) throws(CMLError) -> ControllerRecord {
        let text = prefix.lowercased()
        let found: [ControllerRecord] = try read { db in
            guard RunID.isPrefix(text) else { return [] }
            return try Row.fetchAll(db, sql: "SELECT * FROM controllers WHERE kind = ? AND id >= ? AND id < ? ORDER BY id LIMIT 6",
                                    arguments: [kind, text, text + "g"]).map(Self.controllerRecord)
        }
        return try ControllerRecords.one(of: found, kind: kind, prefix: prefix)
    }

    public func controllers(kind: String) throws(CMLError) -> [ControllerRecord] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM controllers WHERE kind = ? ORDER BY created_at DESC, id DESC", arguments: [kind])
                .map(Self.controllerRecord)
        }
    }

    private static func controllerRecord(_ row: Row) -> ControllerRecord {
        ControllerRecord(kind: row["kind"], id: row["id"], project: row["project"], createdAt: row["created_at"],
                         updatedAt: row["updated_at"], document: row["document"])
    }
}

/// What every store checks of a controller record, and how a prefix lookup answers.
public enum ControllerRecords {
    public static func check(_ record: ControllerRecord) throws(CMLError) {
        guard RunID.isFull(record.id) else { throw CMLError("a \(record.kind) id must be a full id, not '\(record.id)'", kind: .invalid) }
        guard !record.kind.isEmpty, record.kind.utf8.allSatisfy({ $0 >= 0x61 && $0 <= 0x7A }) else {
            throw CMLError("a controller kind is lowercase letters, not '\(record.kind)'", kind: .invalid)
        }
        guard case .object = try JSON.parse(record.document) else {
            throw CMLError("a \(record.kind) record's document must be a JSON object", kind: .invalid)
        }
        try NameLimits.check(record.project, "project")
    }

    public static func one(of found: [ControllerRecord], kind: String, prefix: String) throws(CMLError) -> ControllerRecord {
        switch found.count {
        case 1: return found[0]
        case 0: throw CMLError("no \(kind) has the id \(prefix)", hint: "see cml-queue \(kind) ls", kind: .notFound)
        default:
            let shown = found.prefix(5).map(\.id).joined(separator: ", ") + (found.count > 5 ? ", …" : "")
            throw CMLError("\(kind) id prefix \(prefix) is ambiguous", hint: "candidates: \(shown)", kind: .ambiguous)
        }
    }
}

import GRDB
import GRDBSQLite
import Glibc

/// Dataset versions, their lineage and blob references, in the SQLite store.
extension SQLiteStore {
    public var cacheDirectory: String { location + "/cache" }

    /// Where `cml-data get` keeps its copy of a version.
    var datasetCopies: String { cacheDirectory + "/datasets" }

    public func blobBatch(workers: Int) throws(CMLError) -> BlobBatch {
        try BlobBatch(store: blobs, workers: workers)
    }

    public func blobLocation(_ id: String, refresh: Bool) throws(CMLError) -> BlobLocation {
        try blobs.location(of: id, refresh: refresh)
    }

    public func createDatasetVersion(_ draft: DatasetVersionDraft) throws(CMLError) -> DatasetVersionCommit {
        try DatasetName.check(draft.dataset)
        // In key order, the order the rows are inserted in below.
        let referenced = Set(draft.blobs).sorted()
        return try write { db in
            // Under the write lock, which removals take too: what exists now stays until we commit.
            try blobs.refreshPacks()
            let missing = try referenced.filter { digest throws(CMLError) in try !blobs.contains(digest) }
            if !missing.isEmpty { return .missingBlobs(Set(missing.map(\.hex))) }
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM dataset_versions WHERE id = ?", arguments: [draft.id]) == true {
                throw CMLError("the store holds version \(draft.id) already", kind: .conflict)
            }
            let parents = try draft.parents ?? String.fetchAll(db, sql: """
                SELECT id FROM dataset_versions WHERE dataset = ? ORDER BY number DESC LIMIT 1
                """, arguments: [draft.dataset])
            if draft.unlessUnchanged, parents.count == 1,
               let parent = try Self.versions(db, whereSQL: "id = ?", arguments: [parents[0]]).first,
               parent.dataset == draft.dataset, parent.manifest == draft.manifest,
               // A run that makes what another made gets a version of its own: the lineage of its output
               // (a pipeline's step reads `STEP.OUTPUT` by the run that made it).
               draft.run == nil || parent.run == draft.run {
                return .unchanged(parent)
            }
            try db.execute(sql: "INSERT OR IGNORE INTO datasets (name, next_number) VALUES (?, 1)", arguments: [draft.dataset])
            let next = try Int64.fetchOne(db, sql: "SELECT next_number FROM datasets WHERE name = ?", arguments: [draft.dataset])!
            let number = max(next, draft.number ?? next)
            try db.execute(sql: "UPDATE datasets SET next_number = ? WHERE name = ?", arguments: [number + 1, draft.dataset])
            let version = DatasetVersion(id: draft.id, dataset: draft.dataset, number: number, parents: parents,
                                         message: draft.message, manifest: draft.manifest, files: draft.files,
                                         size: draft.size, newBlobs: draft.newBlobs, newBytes: draft.newBytes,
                                         source: draft.source, run: draft.run, createdAt: draft.createdAt)
            try Self.insert(version, referencing: referenced, db)
            return .created(version)
        }
    }

    public func copyDatasetVersion(_ version: DatasetVersion) throws(CMLError) -> DatasetVersionCommit {
        try DatasetName.check(version.dataset)
        guard version.number > 0 else { throw CMLError.usage("version \(version.id) has number \(version.number); numbers start at 1") }
        // Before any blob is asked for: a copy that cannot be recorded sends nothing.
        if let existing = try read({ db in try Self.holding(version, db) }) { return .unchanged(existing) }
        // Its blobs are those its manifest names: the manifest first, then (once it is here) the rest.
        guard let manifestDigest = BlobDigest(hex: version.manifest) else {
            throw CMLError.usage("the manifest of version \(version.id) is not a sha256: \(version.manifest.prefix(64))")
        }
        guard try blobs.contains(manifestDigest) else { return .missingBlobs([version.manifest]) }
        let manifest = try Datasets.manifest(of: version, in: self)
        guard Int64(manifest.entries.count) == version.files, manifest.totalSize == version.size else {
            throw CMLError.usage("version \(version.id) says \(version.files) files of \(version.size) bytes; its manifest holds "
                                 + "\(manifest.entries.count) of \(manifest.totalSize)")
        }
        let referenced = Set(manifest.entries.compactMap { $0.sha256.flatMap(BlobDigest.init(hex:)) } + [manifestDigest]).sorted()
        return try write { db in
            try blobs.refreshPacks()
            let missing = try referenced.filter { digest throws(CMLError) in try !blobs.contains(digest) }
            if !missing.isEmpty { return .missingBlobs(Set(missing.map(\.hex))) }
            if let existing = try Self.holding(version, db) { return .unchanged(existing) }
            try db.execute(sql: """
                INSERT INTO datasets (name, next_number) VALUES (?, ?)
                ON CONFLICT (name) DO UPDATE SET next_number = max(next_number, excluded.next_number)
                """, arguments: [version.dataset, version.number + 1])
            try Self.insert(version, referencing: referenced, db)
            return .created(version)
        }
    }

    /// The version the store holds as `version` (same id, dataset and manifest); nil when it holds none;
    /// a `conflict` when its id or its number is another version's here.
    private static func holding(_ version: DatasetVersion, _ db: Database) throws -> DatasetVersion? {
        if let existing = try versions(db, whereSQL: "id = ?", arguments: [version.id]).first {
            guard existing.dataset == version.dataset, existing.manifest == version.manifest else {
                throw CMLError("version \(version.id) is another version there: \(existing.reference) of manifest "
                               + "\(existing.manifest.prefix(12)), not \(version.reference) of manifest \(version.manifest.prefix(12))",
                               kind: .conflict)
            }
            return existing
        }
        if let holder = try versions(db, whereSQL: "dataset = ? AND number = ?", arguments: [version.dataset, version.number]).first {
            throw CMLError("\(version.reference) is another version there: \(holder.id), not \(version.id)", kind: .conflict)
        }
        return nil
    }

    /// Inserts a version's row, its parents and its blob references (`referenced` sorted).
    private static func insert(_ version: DatasetVersion, referencing referenced: [BlobDigest], _ db: Database) throws {
        try db.execute(sql: """
            INSERT INTO dataset_versions (id, dataset, number, message, manifest, files, size, new_blobs, new_bytes,
                source, run_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: StatementArguments([
                version.id, version.dataset, version.number, version.message, version.manifest, version.files,
                version.size, version.newBlobs, version.newBytes, version.source, version.run, version.createdAt,
            ] as [(any DatabaseValueConvertible)?]))
        for (position, parent) in version.parents.enumerated() {
            try db.execute(sql: "INSERT INTO dataset_parents (version_id, position, parent_id) VALUES (?, ?, ?)",
                           arguments: [version.id, position, parent])
        }
        // In key order, after the rows of older versions: each page is written once, not once per
        // row. Bound directly: this runs once per file of the version.
        let reference = try db.cachedStatement(sql: "INSERT INTO version_blobs (blob, version_id) VALUES (?, ?)")
        let raw = reference.sqliteStatement
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        sqlite3_bind_text(raw, 2, version.id, -1, transient)
        var hex = [UInt8](repeating: 0, count: 64)
        for blob in referenced {
            hex.withUnsafeMutableBufferPointer { blob.writeHex(to: $0.baseAddress!) }
            sqlite3_bind_text(raw, 1, hex, 64, transient)
            let rc = sqlite3_step(raw)
            sqlite3_reset(raw)
            guard rc == SQLITE_DONE else {
                throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
            }
        }
        sqlite3_clear_bindings(raw)
    }

    public func datasetVersions(dataset: String?) throws(CMLError) -> [DatasetVersion] {
        try read { db in
            try Self.versions(db, whereSQL: dataset == nil ? "1" : "dataset = ?", arguments: dataset.map { [$0] } ?? [])
        }
    }

    public func datasetVersion(id: String) throws(CMLError) -> DatasetVersion? {
        try read { db in try Self.versions(db, whereSQL: "id = ?", arguments: [id]).first }
    }

    static func versions(_ db: Database, whereSQL: String, arguments: StatementArguments) throws -> [DatasetVersion] {
        let rows = try Row.fetchAll(db, sql: "SELECT * FROM dataset_versions WHERE \(whereSQL) ORDER BY created_at DESC, id DESC",
                                    arguments: arguments)
        var parents: [String: [String]] = [:]
        let lookup = try db.cachedStatement(sql: "SELECT parent_id FROM dataset_parents WHERE version_id = ? ORDER BY position")
        for row in rows {
            let id: String = row["id"]
            parents[id] = try String.fetchAll(lookup, arguments: [id])
        }
        return rows.map { row in
            DatasetVersion(id: row["id"], dataset: row["dataset"], number: row["number"], parents: parents[row["id"]] ?? [],
                           message: row["message"], manifest: row["manifest"], files: row["files"], size: row["size"],
                           newBlobs: row["new_blobs"], newBytes: row["new_bytes"], source: row["source"],
                           run: row["run_id"], createdAt: row["created_at"])
        }
    }

    public func resolveDatasetVersion(_ reference: VersionReference) throws(CMLError) -> DatasetVersion {
        let name = reference.name
        return try read { db in
            let numbers = try Int64.fetchAll(db, sql: "SELECT number FROM dataset_versions WHERE dataset = ? ORDER BY number",
                                             arguments: [name])
            if numbers.isEmpty {
                // A bare id prefix: `cml-data show 019a3f…`.
                if reference.selector == .latest, !reference.description.contains("@"), RunID.isPrefix(name),
                   let version = try Self.versionByPrefix(db, name, dataset: nil) {
                    return version
                }
                let names = try String.fetchAll(db, sql: "SELECT DISTINCT dataset FROM dataset_versions ORDER BY dataset")
                throw CMLError("no dataset named \(name)",
                               hint: names.isEmpty ? "the store has no datasets yet: cml-data snapshot DIR --name \(name)"
                                                   : "datasets: \(Self.listed(names))", kind: .notFound)
            }
            let versionList = "its versions: \(Self.listed(numbers.map(String.init)))"
            switch reference.selector {
            case .latest:
                return try Self.versions(db, whereSQL: "dataset = ? AND number = ?", arguments: [name, numbers.last!])[0]
            case .number(let number):
                guard let version = try Self.versions(db, whereSQL: "dataset = ? AND number = ?", arguments: [name, number]).first else {
                    throw CMLError("dataset \(name) has no version \(number)", hint: versionList, kind: .notFound)
                }
                return version
            case .idPrefix(let prefix):
                guard let version = try Self.versionByPrefix(db, prefix, dataset: name) else {
                    throw CMLError("dataset \(name) has no version with id \(prefix)", hint: versionList, kind: .notFound)
                }
                return version
            }
        }
    }

    private static func versionByPrefix(_ db: Database, _ prefix: String, dataset: String?) throws -> DatasetVersion? {
        let upper = prefix + "g"  // 'g' sorts after every hex digit
        var sql = "id >= ? AND id < ?"
        var arguments: [String] = [prefix, upper]
        if let dataset {
            sql += " AND dataset = ?"
            arguments.append(dataset)
        }
        let matches = try versions(db, whereSQL: sql, arguments: StatementArguments(arguments))
        if matches.count > 1 {
            let shown = matches.prefix(5).map { "\($0.reference) (\($0.id))" }.joined(separator: ", ")
            throw CMLError("version id prefix \(prefix) is ambiguous", hint: "candidates: \(shown)\(matches.count > 5 ? ", …" : "")", kind: .ambiguous)
        }
        return matches.first
    }

    /// Up to 20 items, then how many more.
    private static func listed(_ items: [String]) -> String {
        items.count <= 20 ? items.joined(separator: ", ") : items.prefix(20).joined(separator: ", ") + " and \(items.count - 20) more"
    }

    public func removeDatasetVersions(_ ids: [String]) throws(CMLError) -> BlobRemovalReport {
        var report = BlobRemovalReport(versions: ids)
        try write { db in
            var candidates = Set<String>()
            for id in ids {
                // A version's rows lie together (keyed by version first): read and deleted as one range.
                candidates.formUnion(try String.fetchAll(db, sql: "SELECT blob FROM version_blobs WHERE version_id = ?", arguments: [id]))
                try db.execute(sql: "DELETE FROM version_blobs WHERE version_id = ?", arguments: [id])
                try db.execute(sql: "DELETE FROM dataset_versions WHERE id = ?", arguments: [id])
            }
            // Deleted while this transaction holds the write lock, so no writer can reference one meanwhile.
            (report.blobs, report.bytesFreed) = try blobs.remove(try Self.unreferenced(db, candidates))
        }
        for id in ids {
            report.bytesFreed += FileSystem.removeTreeCounting(datasetCopies + "/" + id)
            unlink(datasetCopies + "/" + id + ".identity")  // see `Datasets.cachedCopy`
        }
        return report
    }

    public func collectGarbage(dryRun: Bool) throws(CMLError) -> BlobRemovalReport {
        var report = BlobRemovalReport()
        try write { db in
            let referenced = try Self.referencedBlobs(db)
            let (files, packs) = try blobs.inventory()
            var dead = Set(files.keys).subtracting(referenced)
            // A blob kept twice (a file and a pack, or two packs written at once) keeps its first copy.
            var kept = Set(files.keys).intersection(referenced)
            // Packs that lost blobs are rewritten without them, and small packs (each snapshot of a few
            // changed files leaves one) are merged, so that their number, which every lookup of a blob
            // goes through, stays near the store's size over `PackWriter.maximumSize`.
            var repacking: [(index: PackIndex, live: [PackIndex.Entry])] = []
            var freed: Int64 = 0
            for pack in packs {
                let entries = pack.entries
                var live: [PackIndex.Entry] = []
                for entry in entries {
                    let id = entry.digest.hex
                    if referenced.contains(id), kept.insert(id).inserted {
                        live.append(entry)
                    } else {
                        if !referenced.contains(id) { dead.insert(id) }
                        freed += entry.size
                    }
                }
                let small = entries.reduce(0) { $0 + $1.size } < PackWriter.maximumSize / 4
                if live.count < entries.count || small { repacking.append((pack, live)) }
            }
            // One small pack with nothing to drop would only be copied.
            if repacking.count == 1 && repacking[0].live.count == repacking[0].index.count { repacking = [] }
            report.bytesFreed += dryRun ? freed : try blobs.repack(repacking)
            report.blobs = dead.count
            for id in dead where files[id] != nil {
                report.bytesFreed += files[id]!
                if !dryRun {
                    unlink(blobs.path(of: id))
                    rmdir(FileSystem.directoryName(blobs.path(of: id)))
                }
            }
            if !dryRun { report.bytesFreed += blobs.removeAbandoned(olderThan: 3600).bytes }
            let versions = Set(try String.fetchAll(db, sql: "SELECT id FROM dataset_versions"))
            for copy in FileSystem.entryNames(datasetCopies) ?? [] where !versions.contains(copy) && RunID.isPrefix(copy) {
                report.bytesFreed += dryRun ? FileSystem.treeSize(datasetCopies + "/" + copy)
                                            : FileSystem.removeTreeCounting(datasetCopies + "/" + copy)
            }
        }
        return report
    }

    public func recordDatasetUse(run id: String, _ versions: [DatasetVersion]) throws(CMLError) {
        try write { db in
            for version in versions {
                try db.execute(sql: "INSERT OR IGNORE INTO run_inputs (run_id, version_id, dataset, number) VALUES (?, ?, ?, ?)",
                               arguments: [id, version.id, version.dataset, version.number])
            }
        }
    }

    public func runsUsing(version id: String) throws(CMLError) -> [String] {
        try read { db in try String.fetchAll(db, sql: "SELECT run_id FROM run_inputs WHERE version_id = ? ORDER BY run_id", arguments: [id]) }
    }
}

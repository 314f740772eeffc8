import GRDB

/// The numbered schema migrations. Migration N brings `PRAGMA user_version` from N-1 to N; they run once,
/// inside one IMMEDIATE transaction, so ten processes opening a brand-new store at once apply each exactly
/// once (the first takes the write lock, the others wait, then find the version current).
enum Schema {
    static let migrations: [String] = [
        // 1: runs, their params, tags, metric series (with summaries) and points.
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY NOT NULL,
            name TEXT,
            project TEXT NOT NULL,
            status TEXT NOT NULL,
            command TEXT NOT NULL,
            cwd TEXT NOT NULL,
            host TEXT NOT NULL,
            user TEXT NOT NULL,
            pid INTEGER,
            started_at REAL NOT NULL,
            ended_at REAL,
            exit_code INTEGER,
            signal INTEGER,
            cpu_user REAL,
            cpu_system REAL,
            max_rss INTEGER,
            error TEXT,
            env TEXT NOT NULL,
            code TEXT NOT NULL,
            log_bytes INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX runs_by_start ON runs(started_at);
        CREATE INDEX runs_by_project ON runs(project, started_at);
        CREATE TABLE run_tags (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            tag TEXT NOT NULL,
            PRIMARY KEY (run_id, tag)
        ) WITHOUT ROWID;
        CREATE INDEX run_tags_by_tag ON run_tags(tag);
        CREATE TABLE params (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            number REAL,
            source TEXT NOT NULL,
            PRIMARY KEY (run_id, key)
        ) WITHOUT ROWID;
        CREATE TABLE metric_series (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            count INTEGER NOT NULL,
            last REAL,
            min REAL,
            max REAL,
            last_step INTEGER NOT NULL,
            last_time REAL NOT NULL,
            UNIQUE (run_id, key)
        );
        CREATE TABLE metric_points (
            series INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            step INTEGER NOT NULL,
            value REAL,
            time REAL NOT NULL,
            PRIMARY KEY (series, seq)
        ) WITHOUT ROWID;
        """,
        // 2: artifacts (files, directories, images, notes) a run recorded, only ever added to; key indexes.
        """
        CREATE TABLE artifacts (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            step INTEGER,
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            files INTEGER NOT NULL,
            is_directory INTEGER NOT NULL,
            media_type TEXT,
            source TEXT,
            time REAL NOT NULL
        );
        CREATE INDEX artifacts_by_run ON artifacts(run_id, name);
        CREATE INDEX artifacts_by_blob ON artifacts(sha256);
        -- Which blobs each run references (its patch, its artifacts and their directories' files), so
        -- that removing runs frees exactly the blobs nothing else references.
        CREATE TABLE run_blobs (
            blob TEXT NOT NULL,
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            PRIMARY KEY (blob, run_id)
        ) WITHOUT ROWID;
        CREATE INDEX run_blobs_by_run ON run_blobs(run_id);
        INSERT OR IGNORE INTO run_blobs (blob, run_id)
            SELECT json_extract(code, '$.patch_blob'), id FROM runs WHERE json_extract(code, '$.patch_blob') IS NOT NULL;
        -- `--where lr < 0.01` and `--sort -acc` first ask whether any run has the key.
        CREATE INDEX params_by_key ON params(key);
        CREATE INDEX metric_series_by_key ON metric_series(key);
        """,
        // 3: datasets, their versions and lineage, the blobs versions reference, the versions runs used.
        """
        -- A dataset's next version number: numbers are never reused, even after its versions are removed.
        CREATE TABLE datasets (
            name TEXT PRIMARY KEY NOT NULL,
            next_number INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE dataset_versions (
            id TEXT PRIMARY KEY NOT NULL,
            dataset TEXT NOT NULL REFERENCES datasets(name),
            number INTEGER NOT NULL,
            message TEXT,
            manifest TEXT NOT NULL,
            files INTEGER NOT NULL,
            size INTEGER NOT NULL,
            new_blobs INTEGER NOT NULL,
            new_bytes INTEGER NOT NULL,
            source TEXT,
            -- Not a foreign key: the lineage keeps naming a run after it is removed.
            run_id TEXT,
            created_at REAL NOT NULL,
            UNIQUE (dataset, number)
        );
        CREATE INDEX dataset_versions_by_run ON dataset_versions(run_id);
        -- Parents may be versions this store never held (an imported version's) or removed since.
        CREATE TABLE dataset_parents (
            version_id TEXT NOT NULL REFERENCES dataset_versions(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            parent_id TEXT NOT NULL,
            PRIMARY KEY (version_id, position)
        ) WITHOUT ROWID;
        CREATE INDEX dataset_parents_by_parent ON dataset_parents(parent_id);
        -- One row per distinct blob of each version: a snapshot of 20,000 files writes 20,000 rows, so
        -- there is no second index by version; removing a version deletes its rows by key, reading which
        -- blobs it has from its manifest.
        CREATE TABLE version_blobs (
            blob TEXT NOT NULL,
            version_id TEXT NOT NULL,
            PRIMARY KEY (blob, version_id)
        ) WITHOUT ROWID;
        -- The versions a run used; kept when a version is removed, so the run still says what it read.
        CREATE TABLE run_inputs (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            version_id TEXT NOT NULL,
            dataset TEXT NOT NULL,
            number INTEGER NOT NULL,
            PRIMARY KEY (run_id, version_id)
        ) WITHOUT ROWID;
        CREATE INDEX run_inputs_by_version ON run_inputs(version_id);
        -- The one definition of a referenced blob: removing runs and versions, and gc, free the others.
        CREATE VIEW referenced_blobs AS SELECT blob FROM run_blobs UNION ALL SELECT blob FROM version_blobs;
        """,
        // 4: queues, their entries (queued runs with the spec to reproduce them, and the lease of the agent
        // running one), every start of a queued run, and the agents.
        """
        CREATE TABLE queues (
            name TEXT PRIMARY KEY NOT NULL,
            created_at REAL NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE queue_entries (
            run_id TEXT PRIMARY KEY NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            queue TEXT NOT NULL REFERENCES queues(name),
            priority INTEGER NOT NULL,
            enqueued_at REAL NOT NULL,
            spec TEXT NOT NULL,
            -- waiting (agents may take it), leased (an agent runs it), done (it ended)
            state TEXT NOT NULL,
            -- starts so far, and those that count against max_attempts (a drained start does not)
            started INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL,
            -- the agent (agents.id) holding the lease, and until when
            agent TEXT,
            lease_expires REAL,
            abort_requested INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID;
        CREATE INDEX queue_entries_waiting ON queue_entries(queue, priority DESC, enqueued_at, run_id) WHERE state = 'waiting';
        CREATE INDEX queue_entries_leased ON queue_entries(agent, lease_expires) WHERE state = 'leased';
        CREATE TABLE run_attempts (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            attempt INTEGER NOT NULL,
            agent TEXT NOT NULL,
            agent_id TEXT NOT NULL,
            host TEXT NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL,
            outcome TEXT,
            reason TEXT,
            PRIMARY KEY (run_id, attempt)
        ) WITHOUT ROWID;
        CREATE TABLE agents (
            id TEXT PRIMARY KEY NOT NULL,
            name TEXT NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            queues TEXT NOT NULL,
            slots INTEGER NOT NULL,
            gpus TEXT NOT NULL,
            state TEXT NOT NULL,
            started_at REAL NOT NULL,
            heartbeat_at REAL NOT NULL,
            lease_seconds REAL NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX agents_by_name ON agents(name);
        """,
        // 5: version_blobs keyed by version first.
        """
        -- Keyed (blob, version), each new version put one row into nearly every page of this table, so
        -- each snapshot took longer to record than the last (the 61st version of 20,000 files spent 0.4 s
        -- on it). Keyed by version, a version's rows lie together: written at the end of the table and
        -- removed as one range. Which versions still reference a blob is found by one pass over the
        -- table, which only removals and gc need (`SQLiteStore.unreferenced`, `referencedBlobs`).
        CREATE TABLE version_blobs_by_version (
            version_id TEXT NOT NULL,
            blob TEXT NOT NULL,
            PRIMARY KEY (version_id, blob)
        ) WITHOUT ROWID;
        INSERT INTO version_blobs_by_version (version_id, blob)
            SELECT version_id, blob FROM version_blobs ORDER BY version_id, blob;
        DROP VIEW referenced_blobs;
        DROP TABLE version_blobs;
        ALTER TABLE version_blobs_by_version RENAME TO version_blobs;
        """,
        // 6: where each metric series came from (`MetricSource`); NULL for series recorded before.
        """
        ALTER TABLE metric_series ADD COLUMN source TEXT;
        """,
        // 7: cml-serve's access tokens: their records and the sha256 of each secret, never the secret.
        """
        CREATE TABLE tokens (
            name TEXT PRIMARY KEY NOT NULL,
            hash TEXT NOT NULL UNIQUE,
            scope TEXT NOT NULL,
            -- a JSON array of project names; empty: every project
            projects TEXT NOT NULL,
            created_at REAL NOT NULL,
            revoked_at REAL
        ) WITHOUT ROWID;
        """,
        // 8: heartbeats of runs recorded by cml-run, so that `lost` and `cml-run abort` go through the
        // store on any host (`RunLiveness`, `RunHeartbeat`). NULL for queued runs (their agents' leases
        // say it) and for runs recorded before.
        """
        -- The last beat, and the seconds between beats its cml-run keeps: readers judge a run by its own.
        ALTER TABLE runs ADD COLUMN heartbeat_at REAL;
        ALTER TABLE runs ADD COLUMN heartbeat_interval REAL;
        -- Where its pid means something (`ProcessPlace.scope`): the kernel's boot id and pid namespace.
        ALTER TABLE runs ADD COLUMN pid_scope TEXT;
        -- `cml-run abort` of a run recorded by cml-run (a queued run's flag is its queue entry's).
        ALTER TABLE runs ADD COLUMN abort_requested INTEGER NOT NULL DEFAULT 0;
        """,
        // 9: the records of sweeps and pipelines (`ControllerRecord`): a JSON document each.
        """
        CREATE TABLE controllers (
            id TEXT PRIMARY KEY NOT NULL,
            kind TEXT NOT NULL,
            project TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            document TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX controllers_by_kind ON controllers(kind, created_at);
        """,
        // 10: a revision number per run (`RunRevisions`), so that a server keeps the records it read and
        // knows by one indexed lookup whether each is still current.
        RunRevisions.migration,
        // 11: what a run's client sent that cml has no field for (`Run.extra`): a JSON object keyed by the
        // protocol it came through (MLflow's tags, dataset inputs and logged models; the task document
        // ClearML's SDK edits); NULL when none.
        """
        ALTER TABLE runs ADD COLUMN extra TEXT;
        """,
    ]

    static func newer(_ version: Int) -> CMLError {
        CMLError("the store was written by a newer cml (schema \(version), this one knows \(migrations.count))", hint: "upgrade cml")
    }

    static func migrate(_ queue: DatabaseQueue) throws {
        let current = try queue.read { db in try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0 }
        if current == migrations.count { return }
        guard current < migrations.count else { throw newer(current) }
        try queue.writeWithoutTransaction { db in
            if try String.fetchOne(db, sql: "PRAGMA journal_mode") != "wal" {
                guard try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL") == "wal" else {
                    throw CMLError("cannot switch the store's database to WAL mode")
                }
            }
            try db.inTransaction(.immediate) {
                let version = try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
                for (index, sql) in migrations.enumerated() where index >= version {
                    try db.execute(sql: sql)
                }
                try db.execute(sql: "PRAGMA user_version = \(migrations.count)")
                return .commit
            }
        }
    }
}


/// `run_revisions`: a number per run that every write changing what the run's record shows (`Run`:
/// the run's row, its tags, params, metric summaries, dataset uses, queue entry and attempts) raises,
/// kept by triggers, so that no writer, in this process or another, can forget it. `cml-serve` keeps
/// the records it has read by (id, revision) and answers a read of one with a lookup of its revision
/// (`ServedStore.readRun`). Removing a run raises its revision too, and the row stays: a run recorded
/// again under the same id (a pull after a removal) goes on from there, never back to a number a
/// cached record of the removed one has.
enum RunRevisions {
    /// The tables whose rows the record shows, and the column naming each row's run.
    static let sources: [(table: String, run: String)] = [
        ("runs", "id"), ("run_tags", "run_id"), ("params", "run_id"), ("metric_series", "run_id"),
        ("run_inputs", "run_id"), ("queue_entries", "run_id"), ("run_attempts", "run_id"),
    ]

    static var migration: String {
        var sql = """
            CREATE TABLE run_revisions (
                run_id TEXT PRIMARY KEY NOT NULL,
                revision INTEGER NOT NULL
            ) WITHOUT ROWID;
            INSERT INTO run_revisions (run_id, revision) SELECT id, 1 FROM runs;

            """
        for (table, run) in sources {
            for (event, row) in [("INSERT", "new"), ("UPDATE", "new"), ("DELETE", "old")] {
                sql += """
                    CREATE TRIGGER \(table)_revise_on_\(event.lowercased()) AFTER \(event) ON \(table) BEGIN
                        INSERT INTO run_revisions (run_id, revision) VALUES (\(row).\(run), 1)
                            ON CONFLICT (run_id) DO UPDATE SET revision = revision + 1;
                    END;

                    """
            }
        }
        return sql
    }
}

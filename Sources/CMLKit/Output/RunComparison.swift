/// Runs side by side: one row per field, parameter, metric summary or environment variable, with each
/// run's value, for `cml-diff` (and the web UI's compare view).
public struct ComparisonRow: Sendable {
    public enum Kind: String, Sendable { case field, param, metric, env }

    public var kind: Kind
    public var key: String
    /// One value per run, in the runs' order; null where a run lacks the key.
    public var values: [JSON]

    /// Whether the runs disagree (a key some runs lack counts as a difference).
    public var differs: Bool {
        guard let first = values.first?.serialized else { return false }
        return values.dropFirst().contains { $0.serialized != first }
    }
}

public enum RunComparison {
    /// Fields worth comparing; with `all`, also those that differ between any two runs by nature.
    static func fields(all: Bool) -> [(String, (Run) -> JSON)] {
        var fields: [(String, (Run) -> JSON)] = [
            ("name", { $0.name.map(JSON.string) ?? .null }),
            ("project", { .string($0.project) }),
            ("status", { .string($0.observedStatus.rawValue) }),
            ("exit_code", { $0.end?.exitCode.map { .int(Int64($0)) } ?? .null }),
            ("command", { .string(ShellQuoting.commandLine($0.command)) }),
            ("commit", { $0.code["commit"]?.stringValue.map { .string(String($0.prefix(12))) } ?? .null }),
            ("dirty", { $0.code["dirty"] ?? .null }),
            ("host", { .string($0.host) }),
        ]
        if all {
            fields += [
                ("started", { $0.startedAt.map { .string(Clock.rfc3339($0)) } ?? .null }),
                ("duration", { $0.duration.map(JSON.double) ?? .null }),
            ]
        }
        return fields
    }

    /// Fields, then parameters, then metric summaries (`stats` of each), keys sorted within each group.
    public static func rows(_ runs: [Run], stats: [RunTerm.MetricAggregate] = [.last], all: Bool = false) -> [ComparisonRow] {
        var rows = fields(all: all).map { name, value in ComparisonRow(kind: .field, key: name, values: runs.map(value)) }
        let paramKeys = Set(runs.flatMap { $0.params.map(\.key) }).sorted()
        for key in paramKeys {
            rows.append(ComparisonRow(kind: .param, key: key, values: runs.map { RunTerm.param(key).value(of: $0) }))
        }
        let metricKeys = Set(runs.flatMap { $0.metrics.map(\.key) }).sorted()
        for key in metricKeys {
            for stat in stats {
                rows.append(ComparisonRow(kind: .metric, key: RunTerm.metric(key, stat).name,
                                          values: runs.map { RunTerm.metric(key, stat).value(of: $0) }))
            }
        }
        return all ? rows : rows.filter(\.differs)
    }

    /// `--stats` of `cml-diff` (and `stats` of the compare page): metric summaries separated by commas.
    public static func stats(parsing text: String) throws(CMLError) -> [RunTerm.MetricAggregate] {
        try text.split(separator: ",").map { name throws(CMLError) -> RunTerm.MetricAggregate in
            guard let aggregate = RunTerm.MetricAggregate(rawValue: String(name)) else {
                throw CMLError.usage("unknown metric summary '\(name)'", hint: "last, min, max, count or step")
            }
            return aggregate
        }
    }

    /// The code fields two runs' code is compared by, before their patches.
    public static let codeFields = ["remote_url", "branch", "commit", "dirty"]

    /// The unified diff of two runs' captured patches of uncommitted changes, each with its binary files
    /// as one line and the files left out of it named (`CodeSummary`), so that those compare too. Empty
    /// when they are the same; `neither` when neither run has uncommitted changes.
    public static func patchDiff(_ base: Run, _ other: Run, store: any Store) throws(CMLError) -> (unified: String, neither: Bool) {
        let patches = try [base, other].map { run throws(CMLError) -> [UInt8] in
            var patch: [UInt8] = []
            if let blob = run.code["patch_blob"]?.stringValue { patch = try store.blob(blob) }
            return CodeSummary.text(patch: patch, code: run.code)
        }
        return (try TextDiff.unified(patches[0], patches[1]), patches[0].isEmpty && patches[1].isEmpty)
    }

    /// One JSON object per row: `{"kind", "key", "values": {RUN_ID: value, …}}`.
    public static func wideRecords(_ rows: [ComparisonRow], runs: [Run]) -> [JSON] {
        rows.map { row in
            .object([("kind", .string(row.kind.rawValue)), ("key", .string(row.key)),
                     ("values", .object(zip(runs, row.values).map { ($0.id, $1) }))])
        }
    }

    /// One record per run and key, run by run: `{"run", "kind", "key", "value"}`; a key the run lacks only
    /// with `all`.
    public static func longRecords(_ rows: [ComparisonRow], runs: [Run], all: Bool) -> [(run: Run, row: ComparisonRow, value: JSON)] {
        var records: [(run: Run, row: ComparisonRow, value: JSON)] = []
        for (index, run) in runs.enumerated() {
            for row in rows where row.values[index] != .null || all { records.append((run, row, row.values[index])) }
        }
        return records
    }

    /// The unified diff of two runs' console output as `cml-run log` renders it; empty when it is the same.
    public static func logDiff(_ base: Run, _ other: Run, store: any Store) throws(CMLError) -> String {
        let logs = try [base, other].map { run throws(CMLError) -> [UInt8] in
            let reader = RunLogReader(store: store, run: run.id)
            var renderer = ConsoleRenderer()
            var text: [UInt8] = []
            while let record = reader.next() { text += renderer.feed(record.bytes) }
            return text + renderer.finish()
        }
        return try TextDiff.unified(logs[0], logs[1])
    }

    /// The environment variables, one row each; `CML_RUN_ID`, which always differs, is left out.
    public static func environmentRows(_ runs: [Run], all: Bool = false) -> [ComparisonRow] {
        let tables = runs.map { run in
            Dictionary(run.environment.filter { $0.0 != "CML_RUN_ID" }, uniquingKeysWith: { _, last in last })
        }
        let keys = Set(tables.flatMap(\.keys)).sorted()
        let rows = keys.map { key in
            ComparisonRow(kind: .env, key: key, values: tables.map { $0[key].map(JSON.string) ?? .null })
        }
        return all ? rows : rows.filter(\.differs)
    }

    /// Each command, shell-quoted, for a table cell of at most `width` characters that shows where the
    /// commands differ: whole when every one fits (or all are the same); else the arguments the runs share
    /// at the start and at the end are cut to `…`, keeping the one before the first that differs (`--lr`
    /// of `--lr 0.1`) as context.
    public static func commandExcerpts(_ commands: [[String]], width: Int) -> [String] {
        let words = commands.map { $0.map(ShellQuoting.quote) }
        let whole = words.map { $0.joined(separator: " ") }
        if Set(whole).count == 1 || whole.allSatisfy({ $0.count <= width }) {
            return whole.map { TextTable.truncate($0, to: width) }
        }
        let shortest = words.map(\.count).min() ?? 0
        func allEqual(_ word: ([String]) -> String) -> Bool { Set(words.map(word)).count == 1 }
        var prefix = 0
        while prefix < shortest, allEqual({ $0[prefix] }) { prefix += 1 }
        var suffix = 0
        while prefix + suffix < shortest, allEqual({ $0[$0.count - 1 - suffix] }) { suffix += 1 }
        let start = max(0, prefix - 1)
        return words.map { command in
            let middle = command[start..<(command.count - suffix)].joined(separator: " ")
            let excerpt = (start > 0 ? "… " : "") + middle + (suffix > 0 ? " …" : "")
            return TextTable.truncate(excerpt, to: width)
        }
    }

    /// A label per run naming what sets it apart: the parameters that differ (`lr=0.1 opt=adam`), else
    /// its name, else its short id. Labels that would still be equal get the id added.
    public static func labels(_ runs: [Run]) -> [String] {
        let differing = rows(runs).filter { $0.kind == .param }
        var labels = runs.indices.map { index -> String in
            let parts = differing.compactMap { row -> String? in
                let value = row.values[index]
                if value == .null { return nil }
                return "\(row.key)=\(value.stringValue ?? value.serialized)"
            }
            if !parts.isEmpty { return parts.joined(separator: " ") }
            return runs[index].name ?? RunID.short(runs[index].id)
        }
        if Set(labels).count < labels.count {
            labels = zip(labels, runs).map { label, run in
                label == RunID.short(run.id) ? label : "\(RunID.short(run.id)) \(label)"
            }
        }
        return labels
    }
}

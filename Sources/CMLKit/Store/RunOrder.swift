/// The order a `RunQuery` lists runs in, worked out on records in memory as `SQLiteStore` works it out in
/// SQL: each sort key in turn, runs without it last whichever the direction, numbers before text, text
/// by its bytes; then newest first. It places the runs of two stores in one listing (`RunSpool.listing`).
struct RunOrder {
    private let keys: [(term: RunTerm, descending: Bool)]

    init(_ sort: [RunSort], catalog: RunTerm.Catalog) throws(CMLError) {
        var keys: [(term: RunTerm, descending: Bool)] = []
        for key in sort { keys.append((try RunTerm.resolve(key.key, in: catalog), key.descending)) }
        self.keys = keys
    }

    /// Whether `a` is listed before `b`.
    func precedes(_ a: Run, _ b: Run) -> Bool {
        for key in keys {
            switch (Self.sortValue(key.term, a), Self.sortValue(key.term, b)) {
            case (nil, nil): continue
            case (nil, _): return false
            case (_, nil): return true
            case let (x?, y?):
                if x == y { continue }
                return key.descending ? y < x : x < y
            }
        }
        let (startA, startB) = (a.startedAt ?? 0, b.startedAt ?? 0)
        return startA != startB ? startA > startB : a.id > b.id
    }

    /// A value as SQLite orders it: NULL (nil), then numbers, then text.
    private enum SortValue: Comparable {
        case number(Double)
        case text([UInt8])

        static func < (a: SortValue, b: SortValue) -> Bool {
            switch (a, b) {
            case let (.number(x), .number(y)): x < y
            case (.number, .text): true
            case (.text, .number): false
            case let (.text(x), .text(y)): x.lexicographicallyPrecedes(y)
            }
        }
    }

    private static func sortValue(_ term: RunTerm, _ run: Run) -> SortValue? {
        // Times are numbers in the store, not the text they are shown as.
        switch term {
        case .field(.started): return run.startedAt.map(SortValue.number)
        case .field(.ended): return run.end.map { .number($0.endedAt) }
        case .field(.queued): return run.queue.map { .number($0.enqueuedAt) }
        default: break
        }
        switch term.value(of: run) {
        case .null, .object: return nil
        case .bool(let b): return .number(b ? 1 : 0)
        case .int(let i): return .number(Double(i))
        case .double(let d): return d.isNaN ? nil : .number(d)
        case .string(let s): return .text(Array(s.utf8))
        // Tags: joined by commas, as `group_concat` joins them; none is NULL.
        case .array(let items): return items.isEmpty ? nil : .text(Array(items.compactMap(\.stringValue).joined(separator: ",").utf8))
        }
    }
}

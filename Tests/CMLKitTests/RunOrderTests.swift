import Foundation
import Testing

@testable import CMLKit

/// `RunOrder` places a spool's runs among a server's: it must order runs exactly as the store's SQL does.
struct RunOrderTests {
    /// Runs with a parameter that is a number, text, a boolean or missing, a metric that is missing or
    /// NaN on some, names missing on some, and starts that tie.
    static func variedStore() throws -> TemporaryStore {
        let box = try TemporaryStore()
        let lrs: [JSON?] = [.double(0.1), .int(1), .string("auto"), nil, .bool(true), .double(-2), .string("Auto"), .double(0.1), nil, .int(0)]
        let accs: [Double?] = [0.5, nil, 0.9, 0.1, .nan, 0.5, nil, 0.7, 0.2, -1]
        let start = Clock.now() - 1000
        for index in 0..<lrs.count {
            let run = Run(id: RunID.make(), name: index % 3 == 0 ? nil : "run\(index % 4)", project: index % 2 == 0 ? "a" : "b",
                          status: .running, command: ["python", "t.py"], cwd: "/tmp", host: "h", user: "u", pid: nil,
                          startedAt: start + Double(index / 2), environment: [], code: .object([]),
                          tags: index % 4 == 0 ? [] : ["t\(index % 3)"],
                          params: lrs[index].map { [Param(key: "lr", value: $0, source: "argv")] } ?? [])
            _ = try box.store.createRun(run, patch: [])
            if let acc = accs[index] {
                let points = (0...(index % 3)).map { MetricPoint(key: "acc", step: Int64($0), value: acc, time: start) }
                try box.store.appendMetrics(run: run.id, points, source: .log)
            }
        }
        return box
    }

    @Test func ordersAsTheStoreSQLDoes() throws {
        let box = try Self.variedStore()
        let catalog = box.store.catalog()
        let all = try box.store.runs(RunQuery())
        #expect(all.count == 10)
        for sort in [[], ["acc"], ["-acc"], ["lr"], ["-lr"], ["name"], ["-name"], ["started"], ["acc.count", "-lr"], ["project", "name", "-acc"],
                     ["tag"], ["-id"], ["status"]] {
            let query = RunQuery(sort: sort.map(RunSort.init))
            let listed = try box.store.runs(query).map(\.id)
            let order = try RunOrder(query.sort, catalog: catalog)
            for shuffled in [all.reversed(), all.shuffled(), all.shuffled()] {
                #expect(shuffled.sorted(by: order.precedes).map(\.id) == listed, "\(sort)")
            }
        }
    }

    /// `offset` and `limit` page through a listing in its order (the web UI's runs page), whatever the
    /// sort and filter: pages are consecutive and together are the whole listing.
    @Test func offsetAndLimitPageThroughTheListing() throws {
        let box = try Self.variedStore()
        for sort in [[], ["acc"], ["project", "-lr"]] {
            var query = RunQuery(sort: sort.map(RunSort.init))
            query.filter = try RunFilter.parse("status = running")
            let whole = try box.store.runs(query).map(\.id)
            #expect(whole.count == 10)
            var pages: [String] = []
            for page in 0..<4 {
                query.limit = 3
                query.offset = page * 3
                pages += try box.store.runs(query).map(\.id)
            }
            #expect(pages == whole, "\(sort)")
            query.limit = nil
            query.offset = 7
            #expect(try box.store.runs(query).map(\.id) == Array(whole.dropFirst(7)), "an offset without a limit")
        }
    }

    /// Errors found when the store reads the expression (a key no run has, a value its key cannot take)
    /// point into it, as the parser's do: at the key, at a bare word, or at the comparison of quoted text.
    @Test func storeErrorsPointIntoTheExpression() throws {
        let box = try Self.variedStore()
        for (text, position) in [("acc > 0.5 and nokey = 1", 15), ("status = finished", 10), ("lr > 0 or started > 'yesterday'", 11)] {
            var query = RunQuery()
            query.filter = try RunFilter.parse(text)
            #expect(throws: CMLError.self, "\(text)") { try box.store.runs(query) }
            do { _ = try box.store.runs(query) } catch {
                #expect(error.position == position, "\(text): \(error.message)")
            }
        }
    }

    /// A spool lists its runs by the server's keys: a key only the server knows is one its runs lack.
    @Test func keysResolveInTheCatalogGiven() throws {
        let box = try TemporaryStore()
        let id = try box.makeRun()
        let server = RunTerm.Catalog(hasParam: { $0 == "lr" }, hasMetric: { $0 == "val_acc" }, allKeys: { (["lr"], ["val_acc"]) })
        #expect(throws: CMLError.self) { try box.store.runs(RunQuery(filter: try RunFilter.parse("val_acc > 0.5"))) }
        #expect(try box.store.runs(RunQuery(filter: try RunFilter.parse("val_acc > 0.5")), resolvingKeysIn: server).isEmpty)
        #expect(try box.store.runs(RunQuery(filter: try RunFilter.parse("not val_acc > 0.5")), resolvingKeysIn: server).map(\.id) == [id])
        #expect(try box.store.runs(RunQuery(sort: [RunSort("-val_acc")]), resolvingKeysIn: server).map(\.id) == [id])
    }
}

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

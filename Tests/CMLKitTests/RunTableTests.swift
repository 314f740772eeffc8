@testable import CMLKit
import Testing

private func run(_ params: [(String, JSON)], _ metrics: [(String, Double)], monitor: [String] = []) -> Run {
    func summary(_ key: String, _ value: Double, _ source: MetricSource) -> MetricSummary {
        MetricSummary(key: key, count: 1, last: value, min: value, max: value, lastStep: 0, lastTime: 0, source: source)
    }
    return Run(id: RunID.make(), name: nil, project: "p", status: .completed, command: ["train"], cwd: "/", host: "h", user: "u",
               pid: nil, startedAt: 0, environment: [], code: .null, tags: [],
               params: params.map { Param(key: $0.0, value: $0.1, source: "argv") },
               metrics: metrics.map { summary($0.0, $0.1, .console) } + monitor.map { summary($0, 1, .monitor) })
}

struct RunTableTests {
    let runs = [
        run([("lr", .double(0.1)), ("opt", .string("adam")), ("acc", .int(1))], [("acc", 0.9), ("loss", 0.3)], monitor: ["sys/cpu"]),
        run([("lr", .double(0.01)), ("opt", .string("adam"))], [("acc", 0.95), ("val_acc", 0.9)], monitor: ["sys/cpu"]),
        run([], []),
    ]

    /// Parameters that differ (a key some runs lack counts), then metrics every run with metrics has, without
    /// resource samples; required id and status, the command last and elastic.
    @Test func theDefaultColumns() {
        let layout = RunTable.defaultColumns(runs: runs, extra: [.metric("loss", .max)])
        #expect(layout.columns.map(\.name) == ["id", "name", "status", "loss.max", "params.acc", "lr", "opt", "metrics.acc", "started",
                                               "duration", "project", "exit_code", "command"])
        #expect(layout.columns[5].term == .param("lr") && layout.columns[7].term == .metric("acc", .last))
        #expect(layout.required == [0, 2] && layout.elastic == layout.columns.count - 1)
    }

    @Test func globsAndMissingKeys() throws {
        let catalog = RunTerm.Catalog(runs: runs)
        func names(_ text: String) throws -> [String] { try RunTable.columns(text, runs: runs, catalog: catalog).map(\.name) }
        #expect(try names("id,lr*,batch") == ["id", "lr", "batch"])
        #expect(try names("metrics.*") == ["metrics.acc", "loss", "sys/cpu", "val_acc"])
        #expect(try names("*acc") == ["params.acc", "metrics.acc", "val_acc"])
        #expect(try names("*acc.max,acc.max") == ["metrics.acc.max", "val_acc.max"])
        #expect(try names("params.*,opt") == ["params.acc", "lr", "opt"])
        #expect(try names("st*") == ["status", "started"])
        // A key no run has shows empty cells, named as written; one that is a parameter and a metric is
        // still an error.
        #expect(try RunTable.columns("acc.min", runs: runs, catalog: catalog).first?.term == .metric("acc", .min))
        #expect(try RunTable.columns("nothing.max", runs: runs, catalog: catalog).first?.term.value(of: runs[0]) == .null)
        #expect(throws: CMLError.self) { try RunTable.columns("acc", runs: runs, catalog: catalog) }
    }

    @Test func fittingDropsTheRightmostOptionalColumnsAndShrinksTheElasticOne() {
        let table = TextTable(headers: ["ID", "NAME", "STATUS", "LR", "CMD"],
                              rows: [["0123456789", "n", "completed", "0.1", "python train.py --lr 0.1 --epochs 10"]])
        func headers(_ width: Int) -> [String] { table.fitted(to: width, required: [0, 2], elastic: 4, minimumElastic: 10).headers }
        #expect(headers(200) == table.headers)
        let shrunk = table.fitted(to: 50, required: [0, 2], elastic: 4, minimumElastic: 10)
        #expect(shrunk.headers == table.headers && shrunk.rows[0][4] == "python train.py…")
        #expect(shrunk.render(.table).split(separator: "\n").allSatisfy { $0.count <= 50 })
        #expect(headers(35) == ["ID", "NAME", "STATUS", "LR"])
        #expect(headers(27) == ["ID", "NAME", "STATUS"])
        #expect(headers(26) == ["ID", "STATUS"])
        #expect(headers(5) == ["ID", "STATUS"])
    }
}

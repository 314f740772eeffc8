import CMLKit
import Hummingbird

/// `/api/v1/runs/{id}/chart` and `/api/v1/chart`: a metric drawn as SVG by CMLKit's chart pipeline
/// (the one `cml-diff --plot` draws with), carrying what `ChartScript` needs for hover and zoom. However
/// long the series, the answer holds about twice the plot's width in points per line.
enum ChartRoutes {
    static let routes: [ServerRoute] = [
        ServerRoute(method: .get, path: "/api/v1/runs/{id}/chart", parameters: ChartRequest.parameters, handler: run),
        ServerRoute(method: .get, path: "/api/v1/chart", parameters: ["ids"] + ChartRequest.parameters, handler: runs),
    ]

    /// One run's series of `key`.
    static func run(_ route: RouteRequest) async throws -> Response {
        let chart = try ChartRequest(route.query)
        let run = try await RunReads(route).run(try route.parameter("id"))
        try run.requireMetric(chart.key)
        return try await chart.answer(runs: [run], labels: [run.name ?? RunID.short(run.id)], store: route.store)
    }

    /// Several runs' series of `key` overlaid, labelled by what sets each run apart; runs without the
    /// metric are left out, and none having it is `not_found`.
    static func runs(_ route: RouteRequest) async throws -> Response {
        let chart = try ChartRequest(route.query)
        var references: [String] = []
        for list in route.query.strings("ids") {
            for reference in list.split(separator: ",") where !references.contains(String(reference)) {
                references.append(String(reference))
            }
        }
        guard !references.isEmpty else { throw CMLError.usage("ids is required: the runs to chart, separated by commas") }
        let reads = RunReads(route)
        var runs: [Run] = []
        for reference in references {
            let run = try await reads.run(reference)
            if !runs.contains(where: { $0.id == run.id }) { runs.append(run) }
        }
        guard runs.contains(where: { run in run.metrics.contains { $0.key == chart.key } }) else {
            throw CMLError("none of the \(runs.count) runs has a metric '\(chart.key)'", kind: .notFound)
        }
        return try await chart.answer(runs: runs, labels: RunComparison.labels(runs), store: route.store)
    }
}

/// A chart route's query: which metric, and how to draw it.
struct ChartRequest: Sendable {
    static let parameters = ["key", "width", "height", "x", "smooth", "log", "from", "to", "legend"]

    var key: String
    var width = 800
    var height = 300
    var options: ChartOptions

    init(_ query: QueryParameters) throws(CMLError) {
        guard let key = query.string("key"), !key.isEmpty else {
            throw CMLError.usage("key is required: the metric to chart")
        }
        self.key = key
        func size(_ name: String, _ range: ClosedRange<Int>) throws(CMLError) -> Int? {
            guard let value = try query.integer(name) else { return nil }
            guard range.contains(value) else {
                throw CMLError.usage("\(name) must be \(range.lowerBound) to \(range.upperBound) pixels, not \(value)")
            }
            return value
        }
        width = try size("width", 240...8000) ?? width
        height = try size("height", 160...4000) ?? height
        var unit = ChartXUnit.number
        if let name = query.string("x") {
            guard let named = ChartXUnit(axis: name) else {
                throw CMLError.usage("x must be step, time or elapsed, not '\(name.prefix(40))'")
            }
            unit = named
        }
        var smoothing = ChartSmoothing.none
        if let text = query.string("smooth") { smoothing = try ChartSmoothing(parsing: text, name: "smooth") }
        func bound(_ name: String) throws(CMLError) -> Double? {
            guard let text = query.string(name) else { return nil }
            guard let value = Double(text), value.isFinite else {
                throw CMLError.usage("\(name) must be a number (a step, or seconds as x is), not '\(text.prefix(40))'")
            }
            return value
        }
        let from = try bound("from"), to = try bound("to")
        if let from, let to, from > to {
            throw CMLError.usage("from \(query.string("from") ?? "") is after to \(query.string("to") ?? "")")
        }
        options = ChartOptions(title: key, xLabel: RunCharts.xLabel(unit), logY: try query.flag("log"),
                               smoothing: smoothing, xUnit: unit, xFrom: from, xTo: to)
        // legend=0: the page shows one legend for all its charts (the compare page).
        if query.string("legend") != nil { options.legend = try query.flag("legend") }
    }

    /// The SVG of the runs' series, read and drawn off the server's event loop.
    func answer(runs: [Run], labels: [String], store: any Store) async throws(CMLError) -> Response {
        let request = self
        let svg = try await StoreCalls.run { () throws(CMLError) in
            let series = try RunCharts.series(of: request.key, runs: runs, store: store, x: request.options.xUnit, labels: labels)
            return SVGChart.render(series, options: request.options, width: request.width, height: request.height, interactive: true)
        }
        return Response(status: .ok, headers: ChartRequest.headers, body: ResponseBody(byteBuffer: ByteBuffer(string: svg)))
    }

    /// An SVG opened on its own is a document that could run script: these forbid it any (it has none).
    static let headers: HTTPFields = [
        .contentType: "image/svg+xml; charset=utf-8",
        .cacheControl: "no-cache",
        .contentSecurityPolicy: "default-src 'none'; style-src 'unsafe-inline'",
        .xContentTypeOptions: "nosniff",
    ]
}

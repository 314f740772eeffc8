import CMLKit
import Foundation

/// The compare page's scatter: a parameter (x) against a summary of a metric (y), one dot per run, for
/// seeing a sweep at a glance. Drawn on the server as inline SVG on the chart pipeline's axes; each
/// dot's `<title>` (the browser's tooltip) names its run and values, and the dot links to the run.
/// Numeric parameters spread along a linear axis, or a log-10 one when their values span two decades
/// or more; other values (strings, mixed) sit at evenly spaced categories.
enum CompareScatter {
    static let width = 760.0, height = 420.0
    static let left = 70.0, right = 740.0, top = 16.0, bottom = 360.0

    /// The parameter and the metric summary drawn.
    struct Axes {
        var param: String
        var metric: String
        var stat: RunTerm.MetricAggregate

        static let stats: [RunTerm.MetricAggregate] = [.last, .min, .max]

        /// From `x`, `y` and `stat`; by default the first parameter whose value differs between the
        /// runs (a numeric one first) and the first metric not of the resources (`sys/`). Nil when the
        /// runs have no parameter or no metric.
        init?(_ query: QueryParameters, runs: [Run]) throws(CMLError) {
            let params = Self.params(runs), metrics = Self.metrics(runs)
            guard !params.isEmpty, !metrics.isEmpty else { return nil }
            if let x = query.string("x"), !x.isEmpty {
                guard params.contains(x) else { throw CMLError.usage("x: no run compared has a parameter '\(x.prefix(80))'") }
                param = x
            } else {
                let differing = RunComparison.rows(runs).filter { $0.kind == .param }
                let numeric = differing.first { row in row.values.allSatisfy { $0 == .null || $0.number != nil } }
                param = numeric?.key ?? differing.first?.key ?? params[0]
            }
            if let y = query.string("y"), !y.isEmpty {
                guard metrics.contains(y) else { throw CMLError.usage("y: no run compared has a metric '\(y.prefix(80))'") }
                metric = y
            } else {
                metric = metrics.first { !$0.hasPrefix("sys/") } ?? metrics[0]
            }
            if let name = query.string("stat"), !name.isEmpty {
                guard let stat = RunTerm.MetricAggregate(rawValue: name), Self.stats.contains(stat) else {
                    throw CMLError.usage("stat must be last, min or max, not '\(name.prefix(40))'")
                }
                self.stat = stat
            } else {
                stat = .last
            }
        }

        static func params(_ runs: [Run]) -> [String] { Set(runs.flatMap { $0.params.map(\.key) }).sorted() }
        static func metrics(_ runs: [Run]) -> [String] { Set(runs.flatMap { $0.metrics.map(\.key) }).sorted() }
    }

    /// The section: the form choosing the axes (carrying the rest of the view in `query`), then the plot.
    static func section(_ runs: [Run], labels: [String], axes: Axes?, query: HTML) -> HTML {
        guard let axes else {
            return "<h2 id=\"scatter\">Scatter</h2><p class=\"muted\">The runs have no parameters to plot their metrics against.</p>"
        }
        let params = Axes.params(runs).map { key -> HTML in "<option\(attribute: "selected", on: key == axes.param)>\(key)</option>" }
        let metrics = Axes.metrics(runs).map { key -> HTML in "<option\(attribute: "selected", on: key == axes.metric)>\(key)</option>" }
        let stats = Axes.stats.map { stat -> HTML in "<option\(attribute: "selected", on: stat == axes.stat)>\(stat.rawValue)</option>" }
        return """
            <h2 id="scatter">Scatter</h2>
            <form class="compare-pick" method="get" action="/compare#scatter">\(query)\
            <label for="scatter-x">parameter</label> <select id="scatter-x" name="x">\(params)</select> \
            <label for="scatter-y">metric</label> <select id="scatter-y" name="y">\(metrics)</select> \
            <label for="scatter-stat">summary</label> <select id="scatter-stat" name="stat">\(stats)</select> \
            <button type="submit">Draw</button></form>
            \(plot(runs, labels: labels, axes: axes))
            """
    }

    static func plot(_ runs: [Run], labels: [String], axes: Axes) -> HTML {
        let yTerm = RunTerm.metric(axes.metric, axes.stat)
        var dots: [(run: Run, label: String, x: JSON, y: Double)] = []
        for (run, label) in zip(runs, labels) {
            let x = RunTerm.param(axes.param).value(of: run)
            guard x != .null, let y = yTerm.value(of: run).number, y.isFinite else { continue }
            dots.append((run, label, x, y))
        }
        let notDrawn = runs.count - dots.count
        let missing: HTML = notDrawn == 0 ? .empty
            : "<p class=\"muted\">\(notDrawn) of \(runs.count) runs have no \(axes.param) or no \(yTerm.name): not drawn.</p>"
        guard !dots.isEmpty else { return missing }

        // x: numbers on a linear or log axis, else categories in their sorted order.
        let numbers = dots.compactMap { $0.x.number }.filter(\.isFinite)
        let numeric = numbers.count == dots.count
        let logX = numeric && numbers.allSatisfy { $0 > 0 } && numbers.max()! / numbers.min()! >= 100
        let categories = numeric ? [] : Array(Set(dots.map { text($0.x) })).sorted()
        let xAxis: ChartAxis
        if !numeric {
            xAxis = ChartAxis(lower: -0.5, upper: Double(categories.count) - 0.5,
                              ticks: categories.enumerated().map { ChartAxis.Tick(position: Double($0), label: String($1.prefix(16))) })
        } else if logX {
            xAxis = .logarithmic(log10(numbers.min()!)...log10(numbers.max()!), maxTicks: 8, padding: 0.05)
        } else {
            xAxis = .linear(numbers.min()!...numbers.max()!, maxTicks: 8, padding: 0.05)
        }
        let ys = dots.map(\.y)
        let yAxis = ChartAxis.linear(ys.min()!...ys.max()!, maxTicks: 7, padding: 0.05)
        func px(_ position: Double) -> String { coordinate(left + xAxis.fraction(position) * (right - left)) }
        func py(_ value: Double) -> String { coordinate(bottom - yAxis.fraction(value) * (bottom - top)) }

        let grid = xAxis.ticks.map { tick -> HTML in
            "<line class=\"grid\" x1=\"\(px(tick.position))\" x2=\"\(px(tick.position))\" y1=\"\(coordinate(top))\" y2=\"\(coordinate(bottom))\"/>"
        } + yAxis.ticks.map { tick -> HTML in
            "<line class=\"grid\" x1=\"\(coordinate(left))\" x2=\"\(coordinate(right))\" y1=\"\(py(tick.position))\" y2=\"\(py(tick.position))\"/>"
        }
        let tickLabels = xAxis.ticks.map { tick -> HTML in
            "<text x=\"\(px(tick.position))\" y=\"\(coordinate(bottom + 16))\" text-anchor=\"middle\">\(tick.label)</text>"
        } + yAxis.ticks.map { tick -> HTML in
            "<text x=\"\(coordinate(left - 6))\" y=\"\(py(tick.position))\" text-anchor=\"end\" dy=\"0.35em\">\(tick.label)</text>"
        }
        let circles = dots.map { dot -> HTML in
            let position = numeric ? (logX ? log10(dot.x.number!) : dot.x.number!) : Double(categories.firstIndex(of: text(dot.x))!)
            let name = RunID.short(dot.run.id) + (dot.run.name.map { " " + $0 } ?? "")
            let tip = "\(name): \(dot.label) · \(axes.param)=\(text(dot.x)) · \(yTerm.name)=\(formatNumber(dot.y))"
            return """
                <a href="\(Href("runs", dot.run.id))" tabindex="-1"><circle class="dot" cx="\(px(position))" cy="\(py(dot.y))" r="4.5" \
                data-run="\(dot.run.id)"><title>\(tip)</title></circle></a>
                """
        }
        let xTitle = axes.param + (logX ? " (log scale)" : "")
        return """
            <svg class="scatter" width="\(coordinate(width))" height="\(coordinate(height))" viewBox="0 0 \(coordinate(width)) \(coordinate(height))" \
            role="group" aria-label="\(yTerm.name) against \(axes.param), one dot per run">\
            <g class="grid">\(grid)</g>\
            <line class="axis" x1="\(coordinate(left))" x2="\(coordinate(left))" y1="\(coordinate(top))" y2="\(coordinate(bottom))"/>\
            <line class="axis" x1="\(coordinate(left))" x2="\(coordinate(right))" y1="\(coordinate(bottom))" y2="\(coordinate(bottom))"/>\
            <g class="ticks">\(tickLabels)</g>\
            <text class="axis-title" x="\(coordinate((left + right) / 2))" y="\(coordinate(bottom + 42))" text-anchor="middle">\(xTitle)</text>\
            <text class="axis-title" transform="translate(16,\(coordinate((top + bottom) / 2))) rotate(-90)" text-anchor="middle">\(yTerm.name)</text>\
            <g class="dots">\(circles)</g></svg>
            \(missing)
            """
    }

    static func text(_ value: JSON) -> String { ComparePage.text(value) }

    /// A coordinate to a tenth of a pixel.
    static func coordinate(_ value: Double) -> String { String(format: "%.1f", value) }
}

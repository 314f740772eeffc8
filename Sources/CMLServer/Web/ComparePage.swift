import CMLKit
import Foundation
import Hummingbird

/// `/compare?ids=a,b,c`: runs side by side. The legend names what sets each run apart (the parameters
/// that differ, as `cml-diff` labels runs); then one chart per metric with every run's series overlaid
/// (`/api/v1/chart`, drawn by the chart script), the table `cml-diff` prints (every row, those the
/// same hidden by a toggle), a scatter of a parameter against a metric summary (a sweep at a glance),
/// and the code of two of the runs compared as `cml-diff --code` does.
///
/// Ids are whole ids or unique prefixes, as `cml-diff` takes them; an unknown one is a 404 page naming it.
enum ComparePage {
    static let parameters = ["ids", "stats", "a", "b", "x", "y", "stat"]
    /// More runs than this in one view is a mistake (a pasted list of everything), not a comparison.
    static let maxRuns = 1000
    /// Past this many runs the charts leave their own legend out, which would crowd out the plot: the
    /// page's legend names every line.
    static let chartLegendRuns = 10
    /// The most lines of a code diff shown; the rest is a `cml-diff --code` away.
    static let maxDiffLines = 20_000

    static func handle(_ web: WebRequest) async throws -> Response {
        let runs = try await runs(web)
        let view = try View(web.query, runs: runs)
        guard !runs.isEmpty else {
            return web.page(WebLayout.page(title: "Compare", section: .compare, chrome: web.chrome, main: """
                <h1>Compare</h1>
                <p>Tick runs on the <a href="/">runs page</a> and press Compare, or give their ids: <code>/compare?ids=ID,ID</code>.</p>
                """))
        }
        var code: CodeView?
        if let pair = view.pair {
            let store = web.store
            code = try await StoreCalls.run { () throws(CMLError) in try CodeView(pair.0, pair.1, store: store) }
        }
        return web.page(render(runs, view: view, code: code, chrome: web.chrome))
    }

    /// The runs of `ids`, in the order given, each once; the page is an error naming the first that
    /// does not resolve.
    static func runs(_ web: WebRequest) async throws(CMLError) -> [Run] {
        var references: [String] = []
        for list in web.query.strings("ids") {
            references += list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        guard references.count <= maxRuns else {
            throw CMLError.usage("\(references.count) runs are too many to compare at once", hint: "at most \(maxRuns)")
        }
        var runs: [Run] = []
        var seen: Set<String> = []
        for reference in references {
            let run = try await web.reads.run(reference)
            if seen.insert(run.id).inserted { runs.append(run) }
        }
        return runs
    }

    /// What the query asks to see besides the runs: the metric summaries of the table, the two runs whose
    /// code is compared, and the scatter's axes.
    struct View {
        var stats: [RunTerm.MetricAggregate]
        var pair: (Run, Run)?
        var scatter: CompareScatter.Axes?

        init(_ query: QueryParameters, runs: [Run]) throws(CMLError) {
            stats = try RunComparison.stats(parsing: query.string("stats") ?? "last")
            func pick(_ name: String, default index: Int) throws(CMLError) -> Run? {
                guard let reference = query.string(name), !reference.isEmpty else { return runs.count > index ? runs[index] : nil }
                let matches = runs.filter { $0.id.hasPrefix(reference.lowercased()) }
                guard matches.count == 1 else {
                    throw matches.isEmpty ? CMLError.usage("\(name) must be one of the runs compared, not '\(reference.prefix(40))'")
                        : CMLError.usage("\(name) \(reference.prefix(40)) is ambiguous: \(matches.count) of the runs compared start so",
                                         hint: "give more of the id")
                }
                return matches[0]
            }
            if runs.count >= 2, let a = try pick("a", default: 0), let b = try pick("b", default: 1) { pair = (a, b) }
            scatter = try CompareScatter.Axes(query, runs: runs)
        }
    }

    static func render(_ runs: [Run], view: View, code: CodeView?, chrome: WebLayout.Chrome) -> HTML {
        let labels = RunComparison.labels(runs)
        let hasMetrics = runs.contains { !$0.metrics.isEmpty }
        var toc: [HTML] = ["<li><a href=\"#legend\">Runs</a></li>"]
        if hasMetrics { toc.append("<li><a href=\"#charts\">Charts</a></li>") }
        toc.append("<li><a href=\"#table\">Parameters and metrics</a></li>")
        if hasMetrics { toc.append("<li><a href=\"#scatter\">Scatter</a></li>") }
        if runs.count >= 2 { toc.append("<li><a href=\"#code\">Code</a></li>") }
        return WebLayout.page(title: "Compare \(runs.count) run\(runs.count == 1 ? "" : "s")", section: .compare, chrome: chrome,
                              scripts: hasMetrics ? [StaticAssets.chartScript] : [], main: """
            <h1>Compare \(runs.count) run\(runs.count == 1 ? "" : "s")</h1>
            <nav class="compare-sections" aria-label="Sections of this page"><ul>\(toc)</ul></nav>
            \(legend(runs, labels: labels))
            \(charts(runs))
            \(table(runs, stats: view.stats))
            \(hasMetrics ? CompareScatter.section(runs, labels: labels, axes: view.scatter, query: hidden(runs, view: view, leaving: .scatter)) : .empty)
            \(runs.count >= 2 ? codeSection(runs, view: view, code: code) : .empty)
            \(runs.count <= 20 ? "<p class=\"muted\">On the command line: <code>cml-diff \(runs.map { RunID.short($0.id) }.joined(separator: " "))</code></p>" : "" as HTML)
            """)
    }

    /// Each run with its line's colour and dash, what sets it apart (`RunComparison.labels`), and a link.
    static func legend(_ runs: [Run], labels: [String]) -> HTML {
        let items = zip(runs, labels).enumerated().map { index, pair -> HTML in
            let (run, label) = pair
            let short = RunID.short(run.id)
            let name: HTML = run.name.map { name -> HTML in name == label ? .empty : "<span class=\"muted\">\(name)</span>" } ?? .empty
            return """
                <li data-run="\(run.id)">\(swatch(index))<a href="\(Href("runs", run.id))">\(short)</a> \
                <span class="label">\(label == short ? "" : label)</span> \(name) \
                <span class="status status-\(run.observedStatus.rawValue)">\(run.observedStatus.rawValue)</span></li>
                """
        }
        return "<h2 id=\"legend\">Runs</h2><ul class=\"compare legend\">\(items)</ul>"
    }

    /// The line of colour index `index` as the charts draw it.
    static func swatch(_ index: Int) -> HTML {
        let style = SVGChart.lineStyle(index)
        let dash: HTML = style.dash.isEmpty ? .empty : " stroke-dasharray=\"\(style.dash)\""
        return """
            <svg class="swatch" width="28" height="10" viewBox="0 0 28 10" aria-hidden="true">\
            <path d="M2,5h24" fill="none" stroke="\(style.color)" stroke-width="2.5"\(dash)/></svg>
            """
    }

    /// One chart per metric any run has, grouped by the key's prefix as on a run's page, every run's
    /// series overlaid; each line's colour is the run's place in `runs`, as in the legend.
    static func charts(_ runs: [Run]) -> HTML {
        let keys = Set(runs.flatMap { $0.metrics.map(\.key) })
        guard !keys.isEmpty else { return .empty }
        let ids = runs.map(\.id).joined(separator: ",")
        let groups = Dictionary(grouping: keys) { key in key.lastIndex(of: "/").map { String(key[..<$0]) } ?? "" }
        let live = runs.contains { $0.observedStatus == .running }
        let sections = groups.keys.sorted().map { prefix -> HTML in
            let charts = groups[prefix]!.sorted().map { key -> HTML in
                var query: [(name: String, value: String)] = [("ids", ids), ("key", key)]
                if runs.count > chartLegendRuns { query.append(("legend", "0")) }
                return """
                    <figure class="chart"><figcaption>\(key)</figcaption>\
                    <div data-cml-chart="\(Href("api", "v1", "chart", query: query))"\(live ? " data-refresh=\"5\"" : "" as HTML)></div></figure>
                    """
            }
            return "<h3>\(prefix.isEmpty ? "Scalars" : prefix)</h3><div class=\"charts\">\(charts)</div>"
        }
        return "<h2 id=\"charts\">Charts</h2>\(sections)"
    }

    /// The rows `cml-diff --all` prints, from the same `RunComparison.rows`; those plain `cml-diff`
    /// leaves out are hidden while the toggle is on: the rows that are the same (class `same`), and
    /// the start and duration, which differ by nature (`all-only`). Each cell's `data-value` is the
    /// value as `cml-diff --format jsonl` writes it; a value other than the first run's is marked, as
    /// `cml-diff` highlights it.
    static func table(_ runs: [Run], stats: [RunTerm.MetricAggregate]) -> HTML {
        let rows = RunComparison.rows(runs, stats: stats, all: true)
        let plain = Set(RunComparison.rows(runs, stats: stats).map { "\($0.kind.rawValue) \($0.key)" })
        let differing = plain.count
        let headers = runs.map { run -> HTML in
            "<th scope=\"col\"><a href=\"\(Href("runs", run.id))\">\(RunID.short(run.id))</a>\(run.name.map { (name: String) -> HTML in "<br><span class=\"muted\">\(name)</span>" } ?? .empty)</th>"
        }
        let body = rows.map { row -> HTML in
            let cells = row.values.map { value -> HTML in
                let marks: HTML = value == .null ? " class=\"missing\"" : value.serialized != row.values[0].serialized ? " class=\"differs\"" : ""
                return "<td data-value=\"\(value.serialized)\"\(marks)>\(cell(value, key: row.key))</td>"
            }
            return """
                <tr class="\(plain.contains("\(row.kind.rawValue) \(row.key)") ? "differs" : row.differs ? "all-only" : "same")" data-kind="\(row.kind.rawValue)" data-key="\(row.key)">\
                <th scope="row">\(row.key)</th>\(cells)</tr>
                """
        }
        let statNames = stats.map(\.rawValue).joined(separator: ",")
        return """
            <h2 id="table">Parameters and metrics</h2>
            <p class="compare-toggle"><input type="checkbox" id="hide-same" checked> <label for="hide-same">Only what differs</label> \
            <span class="muted">(\(differing) of \(rows.count) rows differ; metric summaries: \(statNames); as <code>cml-diff</code> shows them)</span></p>
            \(differing == 0 ? "<p class=\"no-differences\">No differences: clear the toggle to see every row.</p>" : "" as HTML)
            <div class="table-wrap"><table class="runs compare-table" aria-label="Parameters and metrics of each run">\
            <thead><tr><th scope="col">key</th>\(headers)</tr></thead><tbody>\(body)</tbody></table></div>
            """
    }

    /// A value as `cml-diff`'s table shows it: numbers rounded for reading, durations as durations, a
    /// missing value empty.
    static func cell(_ value: JSON, key: String) -> String {
        guard case .double(let number) = value else { return text(value) }
        return key == "duration" ? formatDuration(number) : formatNumber(number)
    }

    /// A value as `cml-diff`'s text output writes it: a string bare, null empty, else its JSON.
    static func text(_ value: JSON) -> String {
        switch value {
        case .null: return ""
        case .string(let text): return text
        default: return value.serialized
        }
    }

    /// The fields of the query a form carries along so that it changes only its own part of the view.
    enum Part { case code, scatter }

    static func hidden(_ runs: [Run], view: View, leaving part: Part) -> HTML {
        var fields: [(String, String)] = [("ids", runs.map(\.id).joined(separator: ","))]
        if view.stats != [.last] { fields.append(("stats", view.stats.map(\.rawValue).joined(separator: ","))) }
        if part != .code, let pair = view.pair { fields += [("a", pair.0.id), ("b", pair.1.id)] }
        if part != .scatter, let axes = view.scatter { fields += [("x", axes.param), ("y", axes.metric), ("stat", axes.stat.rawValue)] }
        return fields.map { name, value -> HTML in "<input type=\"hidden\" name=\"\(name)\" value=\"\(value)\">" }.joined()
    }

    /// Two runs' code: the fields `cml-diff --code` compares, then the diff of their captured patches.
    struct CodeView {
        var fields: [(key: String, old: JSON, new: JSON)]
        var inRepository: Bool
        var commitsDiffer: Bool
        var patchDiff: String
        var neitherPatched: Bool

        init(_ base: Run, _ other: Run, store: any Store) throws(CMLError) {
            fields = RunComparison.codeFields.map { key in (key, base.code[key] ?? .null, other.code[key] ?? .null) }
            inRepository = base.code["in_repository"] == .bool(true) || other.code["in_repository"] == .bool(true)
            let commits = (base.code["commit"]?.stringValue, other.code["commit"]?.stringValue)
            commitsDiffer = commits.0 != nil && commits.1 != nil && commits.0 != commits.1
            if inRepository {
                (patchDiff, neitherPatched) = try RunComparison.patchDiff(base, other, store: store)
            } else {
                (patchDiff, neitherPatched) = ("", true)
            }
        }
    }

    static func codeSection(_ runs: [Run], view: View, code: CodeView?) -> HTML {
        guard let pair = view.pair, let code else { return .empty }
        func options(_ chosen: Run) -> HTML {
            zip(runs, RunComparison.labels(runs)).map { run, label -> HTML in
                let text = RunID.short(run.id) + (run.name.map { " " + $0 } ?? "") + (label == RunID.short(run.id) || label == run.name ? "" : " (\(label))")
                return "<option value=\"\(run.id)\"\(attribute: "selected", on: run.id == chosen.id)>\(text)</option>"
            }.joined()
        }
        let picker: HTML = runs.count == 2 ? .empty : """
            <form class="compare-pick" method="get" action="/compare#code">\(hidden(runs, view: view, leaving: .code))\
            <label for="code-a">from</label> <select id="code-a" name="a">\(options(pair.0))</select> \
            <label for="code-b">to</label> <select id="code-b" name="b">\(options(pair.1))</select> \
            <button type="submit">Compare code</button></form>
            """
        let heading: HTML = """
            <h2 id="code">Code: <a href="\(Href("runs", pair.0.id))">\(RunID.short(pair.0.id))</a> → \
            <a href="\(Href("runs", pair.1.id))">\(RunID.short(pair.1.id))</a></h2>\(picker)
            """
        guard code.inRepository else { return heading + "<p>Neither run was started in a git repository.</p>" }
        let fields = code.fields.map { key, old, new -> HTML in
            let same = old.serialized == new.serialized
            return """
                <tr class="\(same ? "same" : "differs")"><th scope="row">\(key)</th><td>\(text(old))</td>\
                <td>\(same ? "" : "→ " + text(new))</td></tr>
                """
        }
        var body = heading + "<table class=\"kv code-fields\" aria-label=\"Code of the two runs\">\(fields)</table>"
        if code.commitsDiffer {
            body += "<p class=\"muted\">The commits differ: <code>git diff \(text(code.fields[2].old)) \(text(code.fields[2].new))</code> in the repository shows what changed between them (the server reads no repository).</p>"
        }
        if code.patchDiff.isEmpty {
            body += code.neitherPatched ? "<p>No uncommitted changes in either run.</p>" : "<p>The same uncommitted changes.</p>"
        } else {
            body += "<p>Uncommitted changes, as a diff of the two captured patches:</p>" + diffBlock(code.patchDiff)
        }
        return body
    }

    /// A unified diff with a class per line, those of the run page's patch (`RunPageSections.patchLines`):
    /// `d-add`, `d-del`, `d-hunk`, `d-note` (git's `\ No newline…`) or `d-ctx`.
    static func diffBlock(_ unified: String) -> HTML {
        var lines = unified.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last == "" { lines.removeLast() }
        let shown = lines.prefix(maxDiffLines).map { line -> HTML in
            let kind: HTML = line.hasPrefix("+") ? "d-add" : line.hasPrefix("-") ? "d-del" : line.hasPrefix("@@") ? "d-hunk" : line.hasPrefix("\\") ? "d-note" : "d-ctx"
            // The newline inside the line's block: copied text keeps it, and it adds no blank line.
            return "<span class=\"\(kind)\">\(line)\n</span>"
        }
        let cut: HTML = lines.count > maxDiffLines
            ? "<p class=\"muted\">The first \(maxDiffLines) of \(lines.count) lines; <code>cml-diff --code</code> shows the whole.</p>" : .empty
        return "<pre class=\"patch\">\(shown)</pre>\(cut)"
    }
}

import CMLKit
import Hummingbird

/// A run (`/runs/{id}`): its overview (what ran, where, when, how it ended), parameters, metric
/// summaries, a chart of every metric series (grouped by the key's prefix; redrawn every 5 s while the
/// run runs), its resources, images by step, artifacts, console output (searched with `q`, followed
/// live while the run runs), code, environment, the datasets it used and its queue attempts, with a
/// table of contents. The later sections are in `RunPageSections`.
enum RunPage {
    static let routeParameters = ["q", "case"]

    static func handle(_ web: WebRequest) async throws -> Response {
        let run = try await web.reads.run(try web.parameter("id"))
        let text = web.query.string("q") ?? ""
        let query = web.query.string("q") == nil ? nil : RunConsole.Query(text: text, matchCase: try web.query.flag("case"))
        let store = web.store
        let (artifacts, console, patch) = try await StoreCalls.run { () throws(CMLError) -> ([Artifact], RunConsole, [UInt8]?) in
            let console = try RunConsole.read(store: store, run: run, query: query)
            let patch = try run.code["patch_blob"]?.stringValue.map { blob throws(CMLError) in
                CodeSummary.text(patch: try store.blob(blob), code: run.code)
            }
            return (try store.artifacts(run: run.id), console, patch)
        }
        return web.page(render(run, artifacts: artifacts, console: console, patch: patch, chrome: web.chrome))
    }

    static func render(_ run: Run, artifacts: [Artifact], console: RunConsole, patch: [UInt8]?, chrome: WebLayout.Chrome) -> HTML {
        let title = run.name ?? RunID.short(run.id)
        let live = run.observedStatus == .running
        let chart = { (key: String) -> HTML in chartFigure(run, key: key, live: live) }
        let sections: [(id: StaticString, title: StaticString, html: HTML)] = [
            ("overview", "Overview", "<h2 id=\"overview\">Overview</h2>\(overview(run))"),
            ("parameters", "Parameters", parameters(run)),
            ("metrics", "Metrics", metrics(run)),
            ("charts", "Charts", charts(run, chart: chart)),
            ("resources", "Resources", RunPageSections.resources(run, chart: chart)),
            ("images", "Images", RunPageSections.images(run, artifacts)),
            ("artifacts", "Artifacts", artifactList(artifacts)),
            ("console", "Console", RunPageSections.console(run, console)),
            ("code", "Code", RunPageSections.code(run, patch: patch)),
            ("environment", "Environment", RunPageSections.environment(run)),
            ("datasets", "Datasets", RunPageSections.datasets(run)),
            ("attempts", "Attempts", RunPageSections.attempts(run)),
        ].filter { $0.html != .empty }
        let scripts = (run.metrics.isEmpty ? [] : [StaticAssets.chartScript]) + [StaticAssets.runPageScript]
        return WebLayout.page(title: title, section: .runs, chrome: chrome, scripts: scripts, main: """
            <p><a href="/">← Runs</a></p>
            <h1>\(title) <span class="status status-\(run.observedStatus.rawValue)">\(run.observedStatus.rawValue)</span></h1>
            \(RunPageSections.contents(sections.map { ($0.id, $0.title) }))
            \(sections.map(\.html))
            """)
    }

    static func overview(_ run: Run) -> HTML {
        var rows: [(StaticString, String)] = [("Id", run.id), ("Project", run.project), ("Command", ShellQuoting.commandLine(run.command)),
                                              ("Directory", run.cwd), ("Host", run.host), ("User", run.user)]
        if let started = run.startedAt { rows.append(("Started", Clock.tableTime(started))) }
        if let end = run.end { rows.append(("Ended", Clock.tableTime(end.endedAt))) }
        if let duration = run.duration { rows.append(("Duration", formatDuration(duration))) }
        if let code = run.end?.exitCode { rows.append(("Exit code", String(code))) }
        if let signal = run.end?.signal { rows.append(("Signal", String(signal))) }
        if let error = run.end?.error { rows.append(("Error", error)) }
        if let queue = run.queue {
            rows.append(("Queue", queue.queue))
            if let agent = queue.agent { rows.append(("Agent", agent)) }
            rows.append(("Attempts", String(queue.attempts)))
        }
        if !run.tags.isEmpty { rows.append(("Tags", run.tags.joined(separator: ", "))) }
        let body = rows.map { (name, value) -> HTML in "<tr><th scope=\"row\">\(HTML(stringLiteral: name))</th><td>\(value)</td></tr>" }
        return "<table class=\"kv\" aria-label=\"Overview\">\(body)</table>"
    }

    static func parameters(_ run: Run) -> HTML {
        guard !run.params.isEmpty else { return .empty }
        let rows = run.params.map { param -> HTML in
            let value = param.value.stringValue ?? param.value.serialized
            return "<tr><th scope=\"row\">\(param.key)</th><td>\(value)</td></tr>"
        }
        return "<h2 id=\"parameters\">Parameters</h2><table class=\"kv\">\(rows)</table>"
    }

    static func metrics(_ run: Run) -> HTML {
        guard !run.metrics.isEmpty else { return .empty }
        let rows = run.metrics.map { metric -> HTML in
            """
            <tr><th scope="row">\(metric.key)</th><td class="num">\(formatNumber(metric.last))</td><td class="num">\(formatNumber(metric.min))</td>\
            <td class="num">\(formatNumber(metric.max))</td><td class="num">\(Int(metric.count))</td><td class="num">\(Int(metric.lastStep))</td></tr>
            """
        }
        return """
            <h2 id="metrics">Metrics</h2><div class="table-wrap"><table class="runs"><thead><tr><th scope="col">metric</th><th scope="col">last</th>\
            <th scope="col">min</th><th scope="col">max</th><th scope="col">points</th><th scope="col">last step</th></tr></thead>
            <tbody>\(rows)</tbody></table></div>
            """
    }

    /// One chart per series, in groups by the key's prefix (`train/loss` under `train`; a key without
    /// one under "Scalars"); the `sys/` series are the Resources section's.
    static func charts(_ run: Run, chart: (String) -> HTML) -> HTML {
        let keys = run.metrics.map(\.key).filter { !$0.hasPrefix("sys/") }
        guard !keys.isEmpty else { return .empty }
        let groups = Dictionary(grouping: keys) { key in
            key.lastIndex(of: "/").map { String(key[..<$0]) } ?? ""
        }
        let sections = groups.keys.sorted().map { prefix -> HTML in
            "<h3>\(prefix.isEmpty ? "Scalars" : prefix)</h3><div class=\"charts\">\(groups[prefix]!.sorted().map(chart))</div>"
        }
        return "<h2 id=\"charts\">Charts</h2>\(sections)"
    }

    /// A series' chart, drawn by the chart script from `/api/v1/runs/{id}/chart`; `live`: redrawn every 5 s.
    static func chartFigure(_ run: Run, key: String, live: Bool) -> HTML {
        let source = Href("api", "v1", "runs", run.id, "chart", query: [("key", key)])
        return """
            <figure class="chart"><figcaption>\(key)</figcaption>\
            <div data-cml-chart="\(source)"\(live ? " data-refresh=\"5\"" : "" as HTML)></div></figure>
            """
    }

    static func artifactList(_ artifacts: [Artifact]) -> HTML {
        guard !artifacts.isEmpty else { return .empty }
        let rows = artifacts.map { artifact -> HTML in
            let link: HTML = artifact.isDirectory ? "\(artifact.name)"
                : "<a href=\"\(Href("api", "v1", "blobs", artifact.sha256))\" download=\"\(artifact.name)\">\(artifact.name)</a>"
            return """
                <tr><td>\(link)</td><td>\(artifact.kind)</td><td class="num">\(Int(artifact.version))</td>\
                <td class="num">\(artifact.step.map { String($0) } ?? "")</td><td class="num">\(formatBytes(artifact.size))</td></tr>
                """
        }
        return """
            <h2 id="artifacts">Artifacts</h2><div class="table-wrap"><table class="runs"><thead><tr><th scope="col">name</th><th scope="col">kind</th>\
            <th scope="col">version</th><th scope="col">step</th><th scope="col">size</th></tr></thead><tbody>\(rows)</tbody></table></div>
            """
    }
}

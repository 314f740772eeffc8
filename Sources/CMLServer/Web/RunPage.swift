import CMLKit
import Hummingbird

/// A run (`/runs/{id}`): its overview (what ran, where, when, how it ended), parameters, metric
/// summaries, a chart of every metric series (grouped by the key's prefix, `sys/` resources among them;
/// redrawn every 5 s while the run runs), artifacts and the end of its console output. The code,
/// environment and the live console are later sections of this page: each is one more `HTML` part in
/// `render`.
enum RunPage {
    /// The console output shown: its last 256 KiB (the whole is a link away).
    static let consoleTail = 256 << 10

    static func handle(_ web: WebRequest) async throws -> Response {
        let run = try await web.reads.run(try web.parameter("id"))
        let store = web.store, id = run.id
        let (artifacts, console) = try await StoreCalls.run { () throws(CMLError) -> ([Artifact], String) in
            var tail: [UInt8] = []
            try RunLogFollower(store: store, runID: id).read(follow: false) { bytes throws(CMLError) in
                tail += bytes
                if tail.count > 2 * consoleTail { tail.removeFirst(tail.count - consoleTail) }
            }
            if tail.count > consoleTail { tail.removeFirst(tail.count - consoleTail) }
            return (try store.artifacts(run: id), String(decoding: tail, as: UTF8.self))
        }
        return web.page(render(run, artifacts: artifacts, console: console, chrome: web.chrome))
    }

    static func render(_ run: Run, artifacts: [Artifact], console: String, chrome: WebLayout.Chrome) -> HTML {
        let title = run.name ?? RunID.short(run.id)
        return WebLayout.page(title: title, section: .runs, chrome: chrome, scripts: run.metrics.isEmpty ? [] : [StaticAssets.chartScript], main: """
            <p><a href="/">← Runs</a></p>
            <h1>\(title) <span class="status status-\(run.observedStatus.rawValue)">\(run.observedStatus.rawValue)</span></h1>
            \(overview(run))
            \(parameters(run))
            \(metrics(run))
            \(charts(run))
            \(artifactList(artifacts))
            <h2 id="console">Console output</h2>
            \(console.isEmpty ? "<p class=\"muted\">No output.</p>" : """
                <p class="muted">Its last 256 KiB at most; <a href="\(Href("api", "v1", "runs", run.id, "log"))">the whole output as text</a>.</p>
                <pre class="console">\(console)</pre>
                """ as HTML)
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
        return "<h2>Parameters</h2><table class=\"kv\">\(rows)</table>"
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
            <h2>Metrics</h2><div class="table-wrap"><table class="runs"><thead><tr><th scope="col">metric</th><th scope="col">last</th>\
            <th scope="col">min</th><th scope="col">max</th><th scope="col">points</th><th scope="col">last step</th></tr></thead>
            <tbody>\(rows)</tbody></table></div>
            """
    }

    /// One chart per series, in groups by the key's prefix (`train/loss` under `train`; a key without
    /// one under "Scalars"), each drawn by the chart script from `/api/v1/runs/{id}/chart`.
    static func charts(_ run: Run) -> HTML {
        guard !run.metrics.isEmpty else { return .empty }
        let live = run.observedStatus == .running
        let groups = Dictionary(grouping: run.metrics.map(\.key)) { key in
            key.lastIndex(of: "/").map { String(key[..<$0]) } ?? ""
        }
        let sections = groups.keys.sorted().map { prefix -> HTML in
            let charts = groups[prefix]!.sorted().map { key -> HTML in
                let source = Href("api", "v1", "runs", run.id, "chart", query: [("key", key)])
                return """
                    <figure class="chart"><figcaption>\(key)</figcaption>\
                    <div data-cml-chart="\(source)"\(live ? " data-refresh=\"5\"" : "" as HTML)></div></figure>
                    """
            }
            return "<h3>\(prefix.isEmpty ? "Scalars" : prefix)</h3><div class=\"charts\">\(charts)</div>"
        }
        return "<h2 id=\"charts\">Charts</h2>\(sections)"
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
            <h2>Artifacts</h2><div class="table-wrap"><table class="runs"><thead><tr><th scope="col">name</th><th scope="col">kind</th>\
            <th scope="col">version</th><th scope="col">step</th><th scope="col">size</th></tr></thead><tbody>\(rows)</tbody></table></div>
            """
    }
}

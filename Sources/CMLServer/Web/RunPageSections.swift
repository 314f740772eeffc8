import CMLKit
import Foundation
import Hummingbird

/// What the run page shows of its console: the end of the output, where a live tail goes on from, and
/// the lines a search found; read from the store in one pass, holding no more than the tail and one line.
struct RunConsole: Sendable {
    /// The console output shown: its last 256 KiB (the whole is a link away).
    static let tailBytes = 256 << 10
    /// Lines a search shows; the count goes on past it.
    static let matchesShown = 1000

    struct Query: Sendable {
        var text: String
        var matchCase: Bool
    }

    var tail = ""
    /// The output is longer than `tail`.
    var cut = false
    /// The log offset after the last whole record read: where the live tail starts.
    var offset: Int64 = 0
    var lines = 0
    var query: Query?
    var matches: [ConsoleSearch.Match] = []
    var matchCount = 0
    /// What is wrong with the log, when something is (what could be read is shown).
    var problem: String?

    static func read(store: any Store, run: Run, query: Query?) throws(CMLError) -> RunConsole {
        let reader = RunLogReader(store: store, run: run.id)
        var renderer = ConsoleRenderer()
        var search = ConsoleSearch(query?.text ?? "", matchCase: query?.matchCase ?? false, keep: matchesShown)
        var console = RunConsole(query: query)
        var tail: [UInt8] = []
        func take(_ bytes: [UInt8]) {
            let text = ConsoleText.plain(bytes)
            search.feed(text)
            tail += text
            if tail.count > 2 * tailBytes {
                tail.removeFirst(tail.count - tailBytes)
                console.cut = true
            }
        }
        while let record = reader.next() { take(renderer.feed(record.bytes)) }
        take(renderer.finish())
        search.finish()
        if tail.count > tailBytes {
            tail.removeFirst(tail.count - tailBytes)
            console.cut = true
        }
        // Start at a character: no half of one at the cut.
        if console.cut { tail = Array(tail.drop { $0 & 0xC0 == 0x80 }) }
        console.tail = String(decoding: tail, as: UTF8.self)
        console.offset = reader.offset
        console.lines = search.lines
        console.matches = search.matches
        console.matchCount = search.count
        console.problem = reader.problems(of: run).first.map { "The console log \($0)." }
        return console
    }
}

/// The sections of the run page after the charts: resources, images by step, the console with its
/// search and live tail, the code, the environment, the datasets used and the queue's attempts; and
/// the page's two data routes (the live tail, the images).
enum RunPageSections {
    /// Patch text shown on the page; the whole patch is a download.
    static let patchShown = 256 << 10

    /// What a run's image may be served as: the types `cml-log image` records, and never markup that
    /// a browser would run.
    static let imageTypes: Set<String> = ["image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml"]

    /// The table of contents: a link to each section the page has.
    static func contents(_ entries: [(id: StaticString, title: StaticString)]) -> HTML {
        let items = entries.map { entry -> HTML in
            "<li><a href=\"#\(HTML(stringLiteral: entry.id))\">\(HTML(stringLiteral: entry.title))</a></li>"
        }
        return "<nav class=\"toc\" aria-label=\"On this page\"><ul>\(items)</ul></nav>"
    }

    // MARK: - Console

    static func console(_ run: Run, _ console: RunConsole) -> HTML {
        let live = !run.observedStatus.isFinished || run.awaitsRequeue
        let page = Href("runs", run.id)
        var search = HTML.empty
        if let query = console.query, !query.text.isEmpty {
            let rows = console.matches.map { match -> HTML in
                "<tr><th scope=\"row\" class=\"num\">\(match.line)</th><td><code>\(marked(match.text, query))</code></td></tr>"
            }
            let noun: HTML = console.matchCount == 1 ? "line matches" : "lines match"
            search = """
                <p role="status" id="console-matches">\(console.matchCount) \(noun) <q>\(query.text)</q>\
                \(query.matchCase ? " (case matched)" : "" as HTML) of \(console.lines)\
                \(console.matchCount > console.matches.count ? "; the first \(console.matches.count) are shown" : "").</p>
                \(rows.isEmpty ? .empty : "<div class=\"table-wrap\"><table class=\"matches\" aria-label=\"Matching lines\"><thead><tr><th scope=\"col\" class=\"num\">line</th><th scope=\"col\">text</th></tr></thead><tbody>\(rows)</tbody></table></div>" as HTML)
                """
        }
        let form: HTML = """
            <form class="console-search" method="get" action="\(page)#console" role="search">\
            <label for="console-q">Search the output</label>\
            <input type="search" id="console-q" name="q" value="\(console.query?.text ?? "")">\
            <label class="check"><input type="checkbox" name="case" value="1"\(attribute: "checked", on: console.query?.matchCase == true)> Match case</label>\
            <button type="submit">Search</button>\
            \(console.query == nil ? .empty : "<a href=\"\(page)#console\">Clear</a>" as HTML)</form>
            """
        let note: HTML = console.cut
            ? "<p class=\"muted\">Its last 256 KiB; <a href=\"\(Href("api", "v1", "runs", run.id, "log"))\">the whole output as text</a>.</p>"
            : console.tail.isEmpty && !live ? "<p class=\"muted\">No output.</p>" : .empty
        let tail: HTML = console.tail.isEmpty && !live ? .empty : live
            ? """
                <pre class="console" id="console-text" tabindex="0" aria-label="Console output" \
                data-tail="\(Href("runs", run.id, "console"))" data-from="\(String(console.offset))">\(console.tail)</pre>
                <p class="muted" id="console-live" role="status">The run is running: new output appears here.</p>
                """
            : "<pre class=\"console\" id=\"console-text\" tabindex=\"0\" aria-label=\"Console output\">\(console.tail)</pre>"
        let problem: HTML = console.problem.map { (text: String) -> HTML in "<p class=\"notice error\">\(text)</p>" } ?? .empty
        return "<h2 id=\"console\">Console output</h2>\(form)\(search)\(note)\(problem)\(tail)"
    }

    /// `text` with each occurrence of the query in `<mark>`.
    static func marked(_ text: String, _ query: RunConsole.Query) -> HTML {
        var out = HTML.empty
        var rest = text[...]
        while let range = rest.range(of: query.text, options: query.matchCase ? [] : [.caseInsensitive]) {
            out += "\(rest[..<range.lowerBound])<mark>\(rest[range])</mark>"
            rest = rest[range.upperBound...]
        }
        return out + "\(rest)"
    }

    /// `GET /runs/{id}/console?from=OFFSET`: the output after `from` (an offset the page or this route
    /// gave), at most about 1 MiB of it, as `{"text", "offset", "running"}`.
    static func tail(_ web: WebRequest) async throws -> Response {
        let run = try await web.reads.run(try web.parameter("id"))
        let from = try web.query.integer("from") ?? 0
        guard from >= 0 else { throw CMLError.usage("from must be a log offset, 0 or more, not \(from)") }
        // The record is read before the log: a run seen ended has all its output in the log already.
        let running = !run.observedStatus.isFinished || run.awaitsRequeue
        let store = web.store, id = run.id
        let (text, offset) = try await StoreCalls.run { () throws(CMLError) -> (String, Int64) in
            let reader = RunLogReader(store: store, run: id, from: Int64(from))
            var renderer = ConsoleRenderer()
            var out: [UInt8] = []
            while out.count < 1 << 20, let record = reader.next() { out += renderer.feed(record.bytes) }
            out += renderer.finish()
            return (String(decoding: ConsoleText.plain(out), as: UTF8.self), reader.offset)
        }
        let body = JSON.object([("text", .string(text)), ("offset", .int(offset)), ("running", .bool(running))])
        return Response(status: .ok, headers: [.contentType: Media.json, .cacheControl: "no-store"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: body.serialized + "\n")))
    }

    // MARK: - Code

    static func code(_ run: Run, patch: [UInt8]?) -> HTML {
        let code = run.code
        guard code["in_repository"] == .bool(true) else {
            return "<h2 id=\"code\">Code</h2><p class=\"muted\">Not run in a git repository.</p>"
        }
        var rows: [(StaticString, String)] = []
        if let commit = code["commit"]?.stringValue { rows.append(("Commit", commit)) }
        rows.append(("Branch", code["branch"]?.stringValue ?? "(detached HEAD)"))
        if let remote = code["remote_url"]?.stringValue { rows.append(("Remote", remote)) }
        if case .bool(let pushed)? = code["pushed"] { rows.append(("Pushed", pushed ? "yes" : "no: the commit is on no remote branch")) }
        rows.append(("Uncommitted changes", code["dirty"] == .bool(true) ? "yes" : "no"))
        if let root = code["root"]?.stringValue { rows.append(("Work tree", root)) }
        if let note = code["patch_note"]?.stringValue { rows.append(("Note", note)) }
        let table = rows.map { (name, value) -> HTML in "<tr><th scope=\"row\">\(HTML(stringLiteral: name))</th><td>\(value)</td></tr>" }
        var out: HTML = "<h2 id=\"code\">Code</h2><table class=\"kv\" aria-label=\"Code\">\(table)</table>"
        guard let patch, !patch.isEmpty else { return out }
        let blob = code["patch_blob"]?.stringValue ?? ""
        let download: HTML = "<a href=\"\(Href("api", "v1", "blobs", blob))\" download=\"\(RunID.short(run.id)).patch\">the whole patch</a>"
        var shown = patch
        var cut = false
        if shown.count > patchShown {
            // Cut at a line's end.
            let end = shown[..<patchShown].lastIndex(of: 0x0A).map { $0 + 1 } ?? patchShown
            shown = Array(shown[..<end])
            cut = true
        }
        out += """
            <h3>Uncommitted changes</h3>
            <p class="muted">\(cut ? "Its first \(formatBytes(Int64(shown.count))) of \(formatBytes(Int64(patch.count))); " : "")\(download) \
            (apply it with <code>git apply</code> at the commit).</p>
            <pre class="patch" tabindex="0" aria-label="Patch">\(patchLines(shown))</pre>
            """
        return out
    }

    /// Each line of a patch (`CodeSummary.text`: binary files already one line each) in a span whose
    /// class says what it is: a file's header, a hunk's, an added, a removed or a context line.
    static func patchLines(_ patch: [UInt8]) -> HTML {
        var out = HTML.empty
        var inHeader = false
        var lines = patch.split(separator: 0x0A, omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }
        for bytes in lines {
            let line = String(decoding: ConsoleText.plain(Array(bytes)), as: UTF8.self)
            let kind: HTML
            if line.hasPrefix("diff --git ") {
                inHeader = true
                kind = "d-file"
            } else if line.hasPrefix("@@") {
                inHeader = false
                kind = "d-hunk"
            } else if line.hasPrefix("binary ") {
                inHeader = false
                kind = "d-binary"
            } else if line.hasPrefix("left out: ") {
                kind = "d-note"
            } else if inHeader {
                kind = "d-meta"
            } else if line.hasPrefix("+") {
                kind = "d-add"
            } else if line.hasPrefix("-") {
                kind = "d-del"
            } else if line.hasPrefix("\\") {
                kind = "d-meta"
            } else {
                kind = "d-ctx"
            }
            // The newline inside the span: a block's last line break draws no empty line, and copied
            // text keeps its lines.
            out += "<span class=\"\(kind)\">\(line)\n</span>"
        }
        return out
    }

    // MARK: - Environment

    /// The environment as stored, secret values redacted again (a record from an older recorder, or
    /// from another store, may not have been).
    static func environment(_ run: Run) -> HTML {
        guard !run.environment.isEmpty else { return .empty }
        let variables = RunEnvironment.redact(run.environment)
        let rows = variables.map { (name, value) -> HTML in "<tr><th scope=\"row\"><code>\(name)</code></th><td><code>\(value)</code></td></tr>" }
        return """
            <h2 id="environment">Environment</h2>
            <details class="environment"><summary>\(variables.count) variables, secret values redacted</summary>\
            <table class="kv env" aria-label="Environment">\(rows)</table></details>
            """
    }

    // MARK: - Images

    static func isImage(_ artifact: Artifact) -> Bool {
        !artifact.isDirectory && imageTypes.contains(artifact.mediaType ?? "")
    }

    /// Each image name's versions by step: the last shown, a slider (with the page's script) and a
    /// list of every step to pick another.
    static func images(_ run: Run, _ artifacts: [Artifact]) -> HTML {
        let images = artifacts.filter(isImage)
        guard !images.isEmpty else { return .empty }
        var names: [String] = []
        for image in images where !names.contains(image.name) { names.append(image.name) }
        let groups = names.map { name -> HTML in
            let versions = images.filter { $0.name == name }.sorted { ($0.step ?? -1, $0.version) < ($1.step ?? -1, $1.version) }
            let last = versions[versions.count - 1]
            func label(_ image: Artifact) -> String {
                image.step.map { "step \($0)" } ?? "version \(image.version)"
            }
            let links = versions.enumerated().map { (index, image) -> HTML in
                """
                <li><a href="\(Href("runs", run.id, "images", image.sha256))" data-alt="\(name), \(label(image))"\
                \(index == versions.count - 1 ? " aria-current=\"true\"" : "" as HTML)>\(label(image))</a></li>
                """
            }
            let slider: HTML = versions.count < 2 ? .empty : """
                <label class="image-slider">Step <input type="range" min="0" max="\(versions.count - 1)" value="\(versions.count - 1)" \
                step="1" data-image-slider aria-label="Step of \(name)"></label>
                """
            return """
                <section class="image-steps"><h3>\(name)</h3>\
                <figure><img src="\(Href("runs", run.id, "images", last.sha256))" alt="\(name), \(label(last))" loading="lazy">\
                <figcaption>\(label(last))</figcaption></figure>\(slider)\
                <ol class="image-list" aria-label="Steps of \(name)">\(links)</ol></section>
                """
        }
        return "<h2 id=\"images\">Images</h2><div class=\"images\">\(groups)</div>"
    }

    /// `GET /runs/{id}/images/{sha256}`: an image the run recorded, as its type, under a policy that
    /// runs nothing (an SVG's script stays inert even when the image is opened on its own).
    static func image(_ web: WebRequest) async throws -> Response {
        let run = try await web.reads.run(try web.parameter("id"))
        let sha = try web.parameter("sha256")
        let store = web.store, id = run.id
        let (type, bytes) = try await StoreCalls.run { () throws(CMLError) -> (String, [UInt8]) in
            guard let image = try store.artifacts(run: id).first(where: { $0.sha256 == sha && isImage($0) }), let type = image.mediaType else {
                throw CMLError("run \(RunID.short(id)) has no image \(sha.prefix(80))", kind: .notFound)
            }
            return (type, try store.blob(sha))
        }
        return Response(status: .ok, headers: [
            .contentType: type, .xContentTypeOptions: "nosniff", .contentSecurityPolicy: BlobRoutes.userContentPolicy,
            .cacheControl: "private, max-age=31536000, immutable", .crossOriginResourcePolicy: "same-origin",
        ], body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    // MARK: - Resources

    /// The `sys/` series (the resource monitor's) and what the run's end recorded of its CPU and memory.
    static func resources(_ run: Run, chart: (String) -> HTML) -> HTML {
        let keys = run.metrics.map(\.key).filter { $0.hasPrefix("sys/") }.sorted()
        var rows: [(StaticString, String)] = []
        if let user = run.end?.cpuUser { rows.append(("CPU time, user", formatDuration(user))) }
        if let system = run.end?.cpuSystem { rows.append(("CPU time, system", formatDuration(system))) }
        if let rss = run.end?.maxRSS { rows.append(("Peak memory (max RSS)", formatBytes(rss))) }
        guard !keys.isEmpty || !rows.isEmpty else { return .empty }
        let table = rows.map { (name, value) -> HTML in "<tr><th scope=\"row\">\(HTML(stringLiteral: name))</th><td>\(value)</td></tr>" }
        return """
            <h2 id="resources">Resources</h2>\
            \(rows.isEmpty ? .empty : "<table class=\"kv\" aria-label=\"Resources at the end\">\(table)</table>" as HTML)\
            \(keys.isEmpty ? .empty : "<div class=\"charts\">\(keys.map(chart))</div>" as HTML)
            """
    }

    // MARK: - Datasets and attempts

    static func datasets(_ run: Run) -> HTML {
        guard !run.datasets.isEmpty else { return .empty }
        let rows = run.datasets.map { use -> HTML in
            """
            <tr><td><a href="\(Href("datasets", use.dataset))">\(use.dataset)</a></td><td class="num">\(Int(use.number))</td>\
            <td class="mono">\(RunID.short(use.id))</td></tr>
            """
        }
        return """
            <h2 id="datasets">Datasets used</h2><div class="table-wrap"><table class="runs"><thead><tr><th scope="col">dataset</th>\
            <th scope="col">version</th><th scope="col">version id</th></tr></thead><tbody>\(rows)</tbody></table></div>
            """
    }

    static func attempts(_ run: Run) -> HTML {
        guard let queue = run.queue else { return .empty }
        var facts: [(StaticString, String)] = [("Queue", queue.queue), ("Priority", String(queue.priority)),
                                              ("Queued", Clock.tableTime(queue.enqueuedAt)),
                                              ("Attempts", "\(queue.attempts) of at most \(queue.maxAttempts)")]
        if queue.abortRequested { facts.append(("Abort", "requested")) }
        let table = facts.map { (name, value) -> HTML in "<tr><th scope=\"row\">\(HTML(stringLiteral: name))</th><td>\(value)</td></tr>" }
        let rows = queue.history.map { attempt -> HTML in
            """
            <tr><td class="num">\(attempt.number)</td><td>\(attempt.agent)</td><td>\(attempt.host)</td>\
            <td>\(Clock.tableTime(attempt.startedAt))</td><td>\(attempt.endedAt.map(Clock.tableTime) ?? "")</td>\
            <td>\(attempt.outcome ?? "running")</td><td>\(attempt.reason ?? "")</td></tr>
            """
        }
        return """
            <h2 id="attempts">Queue and attempts</h2><table class="kv" aria-label="Queue">\(table)</table>\
            \(rows.isEmpty ? "<p class=\"muted\">Not started yet.</p>" : """
                <div class="table-wrap"><table class="runs" aria-label="Attempts"><thead><tr><th scope="col">attempt</th><th scope="col">agent</th>\
                <th scope="col">host</th><th scope="col">started</th><th scope="col">ended</th><th scope="col">outcome</th>\
                <th scope="col">reason</th></tr></thead><tbody>\(rows)</tbody></table></div>
                """ as HTML)
            """
    }
}

extension HTTPFields.Element.Name {
    static let crossOriginResourcePolicy = HTTPFields.Element.Name("Cross-Origin-Resource-Policy")!
}

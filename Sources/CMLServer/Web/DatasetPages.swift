import CMLKit
import Hummingbird

/// The datasets pages: every dataset (`/datasets`), one dataset's versions and lineage graph
/// (`/datasets/{name}`), a version's files (`/datasets/{name}/{version}`), and what changed between two
/// versions (`/datasets/{name}/diff`). They show what `cml-data ls`, `log`, `show` and `diff` print, read
/// through the same CMLKit code. Versions belong to no project: every token reads them; the runs they
/// name are shown only when the token sees the run's project, as the API's `runs-using` answers.
enum DatasetPages {
    /// Files a version page lists at once.
    static let filesPerPage = 1000
    /// Changes a diff page lists at once (the summary counts all).
    static let changesShown = 1000

    // MARK: - /datasets

    static func list(_ web: WebRequest) async throws -> Response {
        let store = web.store
        let versions = try await StoreCalls.run { () throws(CMLError) in try store.datasetVersions(dataset: nil) }
        var order: [String] = []
        var byDataset: [String: [DatasetVersion]] = [:]
        for version in versions {
            if byDataset[version.dataset] == nil { order.append(version.dataset) }
            byDataset[version.dataset, default: []].append(version)
        }
        let latestOf = byDataset.mapValues { all in all.max { $0.number < $1.number }! }
        let runs = try await visibleRuns(latestOf.values.compactMap(\.run), web)
        let rows = order.sorted().map { name -> HTML in
            let all = byDataset[name]!, latest = latestOf[name]!
            return """
                <tr data-dataset="\(name)"><td><a href="\(Href("datasets", name))">\(name)</a></td>\
                <td><a href="\(Href("datasets", name, String(latest.number)))">\(latest.reference)</a></td>\
                <td class="num">\(all.count)</td><td class="num">\(formatCount(latest.files))</td>\
                <td class="num">\(formatBytes(latest.size))</td><td>\(time(latest.createdAt))</td>\
                <td>\(runLink(latest.run, runs))</td><td>\(latest.message ?? "")</td></tr>
                """
        }
        let body: HTML = order.isEmpty
            ? "<p class=\"muted\">No datasets yet: <code>cml-data snapshot DIR --name NAME</code> records one.</p>"
            : """
                <div class="table-wrap"><table class="runs datasets"><caption class="visually-hidden">Datasets, each with its latest version</caption>
                <thead><tr><th scope="col">Dataset</th><th scope="col">Latest</th><th scope="col" class="num">Versions</th>\
                <th scope="col" class="num">Files</th><th scope="col" class="num">Size</th><th scope="col">Created</th>\
                <th scope="col">Run</th><th scope="col">Message</th></tr></thead>
                <tbody>\(rows)</tbody></table></div>
                """
        return web.page(WebLayout.page(title: "Datasets", section: .datasets, chrome: web.chrome, main: """
            <h1>Datasets</h1>
            \(body)
            """))
    }

    // MARK: - /datasets/{name}

    static func dataset(_ web: WebRequest) async throws -> Response {
        let name = try datasetName(web)
        let store = web.store
        let (versions, graph) = try await StoreCalls.run { () throws(CMLError) -> ([DatasetVersion], Lineage.Graph) in
            let versions = try store.datasetVersions(dataset: name)
            guard !versions.isEmpty else { throw noDataset(name) }
            return (versions, try Lineage.graph(of: name, in: store))
        }
        let runs = try await visibleRuns(graph.runs + versions.compactMap(\.run), web)
        let rows = versions.map { version -> HTML in
            let used = (graph.usedBy[version.id] ?? []).filter { runs[$0] != nil }
            return """
                <tr data-version="\(version.id)"><td class="mono"><a href="\(Href("datasets", name, String(version.number)))">\(RunID.short(version.id))</a></td>\
                <td><a href="\(Href("datasets", name, String(version.number)))">\(version.reference)</a></td>\
                <td class="num">\(formatCount(version.files))</td><td class="num">\(formatBytes(version.size))</td>\
                <td class="num">\(formatBytes(version.newBytes))</td><td>\(time(version.createdAt))</td>\
                <td>\(runLink(version.run, runs))</td><td>\(version.message ?? "")</td>\
                <td>\(version.parents.map { versionLink($0, in: graph) }.joined(separator: ", "))</td>\
                <td>\(used.map { runLink($0, runs) }.joined(separator: ", "))</td></tr>
                """
        }
        let latest = versions.max { $0.number < $1.number }!
        let parentOfLatest = latest.parents.compactMap { id in versions.first { $0.id == id } }.first
        return web.page(WebLayout.page(title: name, section: .datasets, chrome: web.chrome, main: """
            <p><a href="/datasets">← Datasets</a></p>
            <h1>\(name)</h1>
            <h2 id="versions">Versions</h2>
            <div class="table-wrap"><table class="runs versions"><caption class="visually-hidden">Versions of \(name), newest first</caption>
            <thead><tr><th scope="col">Id</th><th scope="col">Version</th><th scope="col" class="num">Files</th><th scope="col" class="num">Size</th>\
            <th scope="col" class="num">New</th><th scope="col">Created</th><th scope="col">Made by</th><th scope="col">Message</th>\
            <th scope="col">Parents</th><th scope="col">Used by</th></tr></thead>
            <tbody>\(rows)</tbody></table></div>
            \(diffForm(name, versions: versions, from: parentOfLatest ?? versions.last!, to: latest))
            <h2 id="lineage">Lineage</h2>
            <p class="muted">Versions (boxes) from parent to child, with the runs (round boxes) that made them and that used them.\
            \(graph.truncated ? " Only the newest versions are drawn." as HTML : .empty)</p>
            \(LineageGraph.svg(graph, dataset: name, runs: runs))
            """))
    }

    /// Two versions to compare: a GET form, so the diff is a link.
    static func diffForm(_ name: String, versions: [DatasetVersion], from: DatasetVersion, to: DatasetVersion) -> HTML {
        func options(_ chosen: DatasetVersion) -> HTML {
            versions.map { version -> HTML in
                "<option value=\"\(String(version.number))\"\(attribute: "selected", on: version.id == chosen.id)>\(version.reference)</option>"
            }.joined()
        }
        return """
            <h2 id="diff">Compare two versions</h2>
            <form class="query" method="get" action="\(Href("datasets", name, "diff"))">
            <div><label for="diff-from">From</label><select id="diff-from" name="from">\(options(from))</select></div>
            <div><label for="diff-to">To</label><select id="diff-to" name="to">\(options(to))</select></div>
            <div><button type="submit" class="primary">Show the changes</button></div>
            </form>
            """
    }

    // MARK: - /datasets/{name}/{version}

    static func version(_ web: WebRequest) async throws -> Response {
        let name = try datasetName(web)
        let reference = try VersionReference(name + "@" + (try web.parameter("version")))
        let page = try web.query.integer("page") ?? 1
        guard page >= 1 else { throw CMLError.usage("page must be 1 or more") }
        let store = web.store
        let (version, manifest, used, parents) = try await StoreCalls.run {
            () throws(CMLError) -> (DatasetVersion, Manifest, [String], Lineage.Graph) in
            let version = try store.resolveDatasetVersion(reference)
            var parents = Lineage.Graph()
            for id in version.parents {
                if let parent = try store.datasetVersion(id: id) { parents.versions.append(parent) }
            }
            return (version, try Datasets.manifest(of: version, in: store), try store.runsUsing(version: version.id), parents)
        }
        let runs = try await visibleRuns(used + [version.run].compactMap { $0 }, web)
        let total = manifest.entries.count
        let first = (page - 1) * filesPerPage
        let shown = first < total ? manifest.entries[first..<min(total, first + filesPerPage)] : []
        // A project-bound token is not served blobs only a dataset version references.
        let downloads = web.access.projects == nil
        let rows = shown.map { entry -> HTML in
            let path: HTML = if let link = entry.linkTarget {
                "\(entry.path) <span class=\"muted\">→ \(link)</span>"
            } else if downloads, let sha = entry.sha256 {
                "<a href=\"\(Href("api", "v1", "blobs", sha))\" download=\"\(FileSystem.baseName(entry.path))\">\(entry.path)</a>"
            } else {
                "\(entry.path)"
            }
            return """
                <tr data-path="\(entry.path)"><td class="mono">\(ManifestEntry.modeText(entry.mode))</td><td class="num">\(String(entry.size))</td>\
                <td class="num">\(formatBytes(entry.size))</td><td class="mono">\(entry.sha256.map { String($0.prefix(16)) } ?? "link")</td><td>\(path)</td></tr>
                """
        }
        let overview: [(StaticString, HTML)] = [
            ("Id", "<span class=\"mono\">\(version.id)</span>"),
            ("Created", "\(time(version.createdAt))"),
            ("Files", "\(formatCount(version.files))"),
            ("Size", "\(formatBytes(version.size)) (\(String(version.size)) bytes)"),
            ("New in the store", "\(formatBytes(version.newBytes)) in \(formatCount(version.newBlobs)) blobs"),
            ("Message", "\(version.message ?? "")"),
            ("Source", "\(version.source ?? "")"),
            ("Parents", version.parents.map { versionLink($0, in: parents) }.joined(separator: ", ")),
            ("Made by", runLink(version.run, runs)),
            ("Used by", used.filter { runs[$0] != nil }.map { runLink($0, runs) }.joined(separator: ", ")),
        ]
        let pages = (total + filesPerPage - 1) / filesPerPage
        var pager = HTML.empty
        if pages > 1 {
            let here = Href("datasets", name, String(version.number))
            pager = """
                <nav class="pager" aria-label="Pages of files">\
                \(page > 1 ? "<a href=\"\(here.adding("page", String(page - 1)))\" rel=\"prev\">← Previous</a>" as HTML : .empty)\
                <span>Page \(page) of \(pages)</span>\
                \(page < pages ? "<a href=\"\(here.adding("page", String(page + 1)))\" rel=\"next\">Next →</a>" as HTML : .empty)</nav>
                """
        }
        let range: HTML = shown.isEmpty ? "No files on this page." : "Files \(formatCount(Int64(first + 1)))–\(formatCount(Int64(first + shown.count))) of \(formatCount(Int64(total)))."
        return web.page(WebLayout.page(title: version.reference, section: .datasets, chrome: web.chrome, main: """
            <p><a href="/datasets">← Datasets</a> · <a href="\(Href("datasets", name))">\(name)</a></p>
            <h1>\(version.reference)</h1>
            <table class="kv"><tbody>\(overview.filter { $0.1 != .empty }.map { row -> HTML in "<tr><th scope=\"row\">\(HTML(stringLiteral: row.0))</th><td>\(row.1)</td></tr>" })</tbody></table>
            <h2 id="files">Files</h2>
            <p class="muted" id="file-count">\(range)\(downloads ? " A file's name downloads it." as HTML : .empty)</p>
            \(pager)
            <div class="table-wrap"><table class="runs files"><caption class="visually-hidden">Files of \(version.reference)</caption>
            <thead><tr><th scope="col">Mode</th><th scope="col" class="num">Bytes</th><th scope="col" class="num">Size</th><th scope="col">SHA-256</th><th scope="col">Path</th></tr></thead>
            <tbody>\(rows)</tbody></table></div>
            \(pager)
            """))
    }

    // MARK: - /datasets/{name}/diff

    static func diff(_ web: WebRequest) async throws -> Response {
        let name = try datasetName(web)
        let store = web.store
        let fromText = web.query.string("from"), toText = web.query.string("to")
        let (from, to, changes, versions) = try await StoreCalls.run {
            () throws(CMLError) -> (DatasetVersion, DatasetVersion, [ManifestChange], [DatasetVersion]) in
            let versions = try store.datasetVersions(dataset: name)
            guard let latest = versions.max(by: { $0.number < $1.number }) else { throw noDataset(name) }
            var to = latest
            if let toText { to = try store.resolveDatasetVersion(try reference(toText, in: name)) }
            // Without `from`: the first parent of `to` that is a version of this dataset, else `to` itself.
            var from = to.parents.compactMap { id in versions.first { $0.id == id } }.first ?? to
            if let fromText { from = try store.resolveDatasetVersion(try reference(fromText, in: name)) }
            let changes = ManifestDiff.changes(from: try Datasets.manifest(of: from, in: store), to: try Datasets.manifest(of: to, in: store))
            return (from, to, changes, versions)
        }
        let summary = ManifestChange.Kind.allCases.map { kind -> HTML in
            let matching = changes.filter { $0.kind == kind }
            return "<tr data-change=\"\(kind.rawValue)\"><th scope=\"row\">\(kind.rawValue)</th><td class=\"num\">\(formatCount(Int64(matching.count)))</td><td class=\"num\">\(formatBytes(matching.reduce(0) { $0 + $1.size }))</td></tr>"
        }
        let rows = changes.prefix(changesShown).map { change -> HTML in
            let old = change.old.map { formatBytes($0.size) } ?? ""
            return """
                <tr data-change="\(change.kind.rawValue)"><td class="change change-\(change.kind.rawValue)">\(change.kind.rawValue)</td>\
                <td>\(change.from.map { (from: String) -> HTML in "\(from) → " } ?? .empty)\(change.path)</td>\
                <td class="num">\(change.kind == .modified ? old : "")</td><td class="num">\(formatBytes(change.size))</td></tr>
                """
        }
        let more: HTML = changes.count > changesShown
            ? "<p class=\"muted\">… and \(formatCount(Int64(changes.count - changesShown))) more (<code>cml-data diff \(from.reference) \(to.reference) --format jsonl</code> lists all).</p>"
            : .empty
        let list: HTML = changes.isEmpty
            ? "<p id=\"same\">\(from.reference) and \(to.reference) hold the same files.</p>"
            : """
                <div class="table-wrap"><table class="runs changes"><caption class="visually-hidden">Changed files</caption>
                <thead><tr><th scope="col">Change</th><th scope="col">Path</th><th scope="col" class="num">Was</th><th scope="col" class="num">Size</th></tr></thead>
                <tbody>\(rows)</tbody></table></div>
                \(more)
                """
        return web.page(WebLayout.page(title: "\(from.reference) → \(to.reference)", section: .datasets, chrome: web.chrome, main: """
            <p><a href="/datasets">← Datasets</a> · <a href="\(Href("datasets", name))">\(name)</a></p>
            <h1>\(from.reference) → \(to.reference)</h1>
            \(diffForm(name, versions: versions, from: versions.first { $0.id == from.id } ?? from, to: versions.first { $0.id == to.id } ?? to))
            <h2 id="summary">Summary</h2>
            <table class="kv summary"><thead><tr><th scope="col">Change</th><th scope="col" class="num">Files</th><th scope="col" class="num">Bytes</th></tr></thead>
            <tbody>\(summary)</tbody></table>
            <h2 id="changes">Changes</h2>
            \(list)
            """))
    }

    /// `3`, `latest` or an id prefix: a version of `name`; `other@3`: a version of another dataset.
    static func reference(_ text: String, in name: String) throws(CMLError) -> VersionReference {
        try VersionReference(text.contains("@") ? text : name + "@" + text)
    }

    // MARK: - Shared

    static func datasetName(_ web: WebRequest) throws(CMLError) -> String {
        let name = try web.parameter("name")
        try DatasetName.check(name)
        return name
    }

    static func noDataset(_ name: String) -> CMLError {
        CMLError("no dataset \(name)", hint: "cml-data ls lists them", kind: .notFound)
    }

    /// The runs of `ids` the token may see, by id (one read each; a run removed since is left out).
    static func visibleRuns(_ ids: [String], _ web: WebRequest) async throws(CMLError) -> [String: Run] {
        let store = web.store, access = web.access, wanted = Array(Set(ids))
        return try await StoreCalls.run { () -> [String: Run] in
            var found: [String: Run] = [:]
            for id in wanted {
                if let run = try? store.run(id: id), access.sees(project: run.project) { found[id] = run }
            }
            return found
        }
    }

    /// A link to a run the token sees; its short id as text for one it does not (or one removed).
    static func runLink(_ id: String?, _ runs: [String: Run]) -> HTML {
        guard let id else { return .empty }
        guard let run = runs[id] else { return "<span class=\"mono muted\">\(RunID.short(id))</span>" }
        return "<a class=\"mono\" href=\"\(Href("runs", id))\" title=\"\(run.name ?? run.id)\">\(RunID.short(id))</a>"
    }

    static func versionLink(_ id: String, in graph: Lineage.Graph) -> HTML {
        guard let version = graph.versions.first(where: { $0.id == id }) else {
            return "<span class=\"mono muted\" title=\"not in this store\">\(RunID.short(id))</span>"
        }
        return "<a href=\"\(Href("datasets", version.dataset, String(version.number)))\">\(version.reference)</a>"
    }

    static func time(_ seconds: Double) -> HTML {
        "<time datetime=\"\(Clock.rfc3339(seconds))\">\(Clock.tableTime(seconds))</time>"
    }
}

import CMLKit
import Foundation
import Hummingbird

/// What the runs page shows, all of it in its URL (`/runs?where=acc>0.9&sort=-acc&columns=lr,acc`), so
/// that a view is a link to paste. The names are `cml-run ls`'s options.
struct RunsView: Sendable, Equatable {
    static let parameters = ["where", "sort", "columns", "project", "status", "tag", "group", "page", "per"]
    static let pageSizes = [25, 50, 100, 250, 1000]
    static let defaultPageSize = 50

    var filter: String?
    /// Sort keys, `-KEY` for descending.
    var sort: [String] = []
    /// Column names or globs; none: the columns `cml-run ls` picks.
    var columns: [String] = []
    var project: String?
    var status: String?
    var tags: [String] = []
    /// Runs grouped under their project (the default), or one list.
    var grouped = true
    /// From 1.
    var page = 1
    var perPage = defaultPageSize

    init() {}

    init(_ query: QueryParameters) throws(CMLError) {
        func list(_ name: String) -> [String] {
            query.strings(name).flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        filter = query.string("where").flatMap { $0.trimmingCharacters(in: .whitespaces).isEmpty ? nil : $0 }
        sort = list("sort")
        columns = list("columns")
        project = query.string("project").flatMap { $0.isEmpty ? nil : $0 }
        status = query.string("status").flatMap { $0.isEmpty ? nil : $0 }
        tags = query.strings("tag").filter { !$0.isEmpty }
        switch query.string("group") ?? "project" {
        case "project": grouped = true
        case "none": grouped = false
        case let other: throw CMLError.usage("group must be project or none, not '\(other.prefix(40))'")
        }
        page = try query.integer("page") ?? 1
        perPage = try query.integer("per") ?? Self.defaultPageSize
        guard page >= 1 else { throw CMLError.usage("page must be 1 or more") }
        guard (1...1000).contains(perPage) else { throw CMLError.usage("per must be from 1 to 1000 runs a page") }
    }

    /// This view as a link, with what differs from the defaults only.
    var href: Href {
        var query: [(name: String, value: String)] = []
        if let filter { query.append(("where", filter)) }
        if !sort.isEmpty { query.append(("sort", sort.joined(separator: ","))) }
        if !columns.isEmpty { query.append(("columns", columns.joined(separator: ","))) }
        if let project { query.append(("project", project)) }
        if let status { query.append(("status", status)) }
        for tag in tags { query.append(("tag", tag)) }
        if !grouped { query.append(("group", "none")) }
        if page > 1 { query.append(("page", String(page))) }
        if perPage != Self.defaultPageSize { query.append(("per", String(perPage))) }
        return Href("runs", query: query)
    }

    func with(_ change: (inout RunsView) -> Void) -> RunsView {
        var copy = self
        change(&copy)
        return copy
    }

    /// The order the store lists in: by project first when grouped, so a group is never split.
    var storeSort: [String] {
        grouped && sort.first.map({ $0.trimmingCharacters(in: CharacterSet(charactersIn: "-")) }) != "project" ? ["project"] + sort : sort
    }
}

/// One page of runs, and what the page needs to show them.
struct RunsListing: Sendable {
    var runs: [Run] = []
    /// Whether a next page has runs.
    var hasMore = false
    var columns: [RunColumn] = []
    /// The keys the column picker offers.
    var fields: [String] = RunTerm.RunField.allCases.map(\.rawValue) + ["tags"]
    var params: [String] = []
    var metrics: [String] = []
    var projects: [String] = []
    /// What was wrong with the query (a bad filter, an unknown sort key): shown above an empty table.
    var error: CMLError?
}

/// The runs page (`/` and `/runs`): the table `cml-run ls` prints, with the same query language and
/// the same cells (`RunTable`), one page at a time, grouped by project, its running rows updated live.
enum RunsPage {
    static func handle(_ web: WebRequest) async throws -> Response {
        let view = try RunsView(web.query)
        let listing = try await list(view, store: web.store, access: web.access)
        let html = render(view, listing, chrome: web.chrome, canWrite: web.access.scope.allows(.write))
        return web.page(html, status: listing.error == nil ? .ok : .badRequest)
    }

    /// Reads one page of `view`: the query is `cml-run ls`'s (`RunQuery.parse`), listed by the store in
    /// SQL with a limit and an offset, so a page of a store of any size costs what its rows do. An
    /// invalid query is returned as the listing's error, to be shown beside the filter.
    static func list(_ view: RunsView, store: any Store, access: RequestAccess) async throws(CMLError) -> RunsListing {
        try await StoreCalls.run { () throws(CMLError) -> RunsListing in
            var listing = RunsListing()
            listing.projects = try store.projects().map(\.name).filter(access.sees(project:))
            let catalog = try store.catalog()
            do throws(CMLError) {
                var query = try RunQuery.parse(project: view.project, status: view.status, tags: view.tags, since: nil, filter: view.filter,
                                               sort: view.storeSort, limit: view.perPage + 1)
                query.offset = (view.page - 1) * view.perPage
                query.projects = access.projects
                var runs = try store.runs(query)
                listing.hasMore = runs.count > view.perPage
                if listing.hasMore { runs.removeLast() }
                listing.runs = runs
                if view.columns.isEmpty {
                    var extra: [RunTerm] = []
                    for name in view.sort.map({ RunSort($0).key }) + (query.filter?.keys.map(\.0) ?? []) {
                        if let term = try? RunTerm.resolve(name, in: catalog), !extra.contains(term) { extra.append(term) }
                    }
                    listing.columns = RunTable.defaultColumns(runs: runs, extra: extra).columns
                        .filter { !(view.grouped && $0.term == .field(.project)) }
                } else {
                    listing.columns = try RunTable.columns(view.columns.joined(separator: ","), runs: runs, catalog: catalog)
                }
            } catch where error.kind == .invalid || error.kind == .notFound {
                listing.error = error
            }
            // A token bound to projects is offered the keys of its own runs only.
            if access.projects == nil {
                (listing.params, listing.metrics) = try catalog.allKeys()
            } else {
                listing.params = Array(Set(listing.runs.flatMap { $0.params.map(\.key) })).sorted()
                listing.metrics = Array(Set(listing.runs.flatMap { $0.metrics.map(\.key) })).sorted()
            }
            return listing
        }
    }

    /// The text of one cell, here and in the live updates: what `cml-run ls` shows on a terminal.
    static func cellText(_ term: RunTerm, of run: Run) -> String {
        RunTable.cell(term, of: run, format: .table)
    }

    static func render(_ view: RunsView, _ listing: RunsListing, chrome: WebLayout.Chrome, canWrite: Bool) -> HTML {
        WebLayout.page(title: "Runs", section: .runs, chrome: chrome, main: """
            <h1>Runs</h1>
            \(queryForm(view, listing))
            \(listing.error.map { filterError($0, expression: view.filter) } ?? .empty)
            \(listing.error == nil ? columnPicker(view, listing) + table(view, listing, chrome: chrome, canWrite: canWrite) : .empty)
            """)
    }

    /// The filter, status, project, tag, grouping and page size: a GET form, so the result is a URL.
    static func queryForm(_ view: RunsView, _ listing: RunsListing) -> HTML {
        let statuses = ([""] + RunStatus.allCases.map(\.rawValue)).map { status -> HTML in
            "<option value=\"\(status)\"\(attribute: "selected", on: (view.status ?? "") == status)>\(status.isEmpty ? "any" : status)</option>"
        }
        let projects = ([""] + listing.projects).map { project -> HTML in
            "<option value=\"\(project)\"\(attribute: "selected", on: (view.project ?? "") == project)>\(project.isEmpty ? "all" : project)</option>"
        }
        let sizes = RunsView.pageSizes.map { size -> HTML in
            "<option\(attribute: "selected", on: view.perPage == size)>\(size)</option>"
        }
        var hidden: [HTML] = []
        if !view.sort.isEmpty { hidden.append("<input type=\"hidden\" name=\"sort\" value=\"\(view.sort.joined(separator: ","))\">") }
        if !view.columns.isEmpty { hidden.append("<input type=\"hidden\" name=\"columns\" value=\"\(view.columns.joined(separator: ","))\">") }
        return """
            <form class="query" method="get" action="/runs" role="search">
            <div class="grow"><label for="where">Filter (as cml-run ls --where)</label>\
            <input type="text" id="where" name="where" value="\(view.filter ?? "")" placeholder="acc > 0.9 and lr <= 0.01 and status = completed" spellcheck="false" autocomplete="off"></div>
            <div><label for="status">Status</label><select id="status" name="status">\(statuses)</select></div>
            <div><label for="project">Project</label><select id="project" name="project">\(projects)</select></div>
            <div><label for="tag">Tag</label><input type="text" id="tag" name="tag" value="\(view.tags.first ?? "")" size="10"></div>
            <div><label for="group">Group by</label><select id="group" name="group">\
            <option value="project"\(attribute: "selected", on: view.grouped)>project</option>\
            <option value="none"\(attribute: "selected", on: !view.grouped)>nothing</option></select></div>
            <div><label for="per">Per page</label><select id="per" name="per">\(sizes)</select></div>
            \(hidden)<div><button type="submit" class="primary">Apply</button></div>
            </form>
            """
    }

    /// A bad filter: the message, and the expression with the character it is about marked, and a caret
    /// under it.
    static func filterError(_ error: CMLError, expression: String?) -> HTML {
        var shown: HTML = .empty
        if let position = error.position, let text = expression {
            let characters = Array(text)
            let at = min(max(position - 1, 0), characters.count)
            let before = String(characters[..<at])
            let marked = at < characters.count ? String(characters[at]) : " "
            let after = at < characters.count ? String(characters[(at + 1)...]) : ""
            let caret = String(repeating: " ", count: at) + "^"
            shown = """
                <pre class="filter-where" aria-label="the filter, the error marked">\(before)<mark>\(marked)</mark>\(after)
                <span class="caret">\(caret)</span></pre>
                """
        }
        return """
            <div class="filter-error" role="alert"><p class="message">\(error.message)</p>\(shown)\
            \(error.hint.map { (hint: String) -> HTML in "<p class=\"muted\">\(hint)</p>" } ?? .empty)</div>
            """
    }

    /// The columns to show: a checkbox per field, parameter and metric, and a field for anything else
    /// (`acc.max`, globs such as `lr*`).
    static func columnPicker(_ view: RunsView, _ listing: RunsListing) -> HTML {
        let shown = Set(listing.columns.map(\.name))
        let both = Set(listing.params).intersection(listing.metrics)
        var offered: [String] = []
        func boxes(_ legend: StaticString, _ names: [String]) -> HTML {
            guard !names.isEmpty else { return .empty }
            offered += names
            let items = names.map { name -> HTML in
                let id = "col-" + Self.identifier(name)
                return "<label for=\"\(id)\"><input type=\"checkbox\" id=\"\(id)\" name=\"columns\" value=\"\(name)\"\(attribute: "checked", on: shown.contains(name))> \(name)</label>"
            }
            return "<fieldset><legend>\(HTML(stringLiteral: legend))</legend><div class=\"choices\">\(items)</div></fieldset>"
        }
        let fields = boxes("Fields", listing.fields)
        let params = boxes("Parameters", listing.params.map { both.contains($0) ? "params." + $0 : $0 })
        let metrics = boxes("Metrics (last value)", listing.metrics.map { both.contains($0) ? "metrics." + $0 : $0 })
        let others = listing.columns.map(\.name).filter { !offered.contains($0) }
        var hidden: [HTML] = []
        for (name, value) in view.with({ $0.columns = []; $0.page = 1 }).href.query {
            hidden.append("<input type=\"hidden\" name=\"\(name)\" value=\"\(value)\">")
        }
        return """
            <details class="columns"><summary>Columns</summary>
            <form method="get" action="/runs">\(hidden)\(fields)\(params)\(metrics)
            <div class="field"><label for="more-columns">More columns, comma-separated (acc.max, loss.min, lr*, val_*.max)</label>\
            <input type="text" id="more-columns" name="columns" value="\(others.joined(separator: ","))" size="50" spellcheck="false"></div>
            <div class="actions"><button type="submit" class="primary">Show these columns</button> <a href="\(view.with { $0.columns = [] }.href)">Default columns</a></div>
            </form></details>
            """
    }

    /// The table in the actions form: a checkbox per run, sortable headers, a row per run under its
    /// project's heading, and the pager.
    static func table(_ view: RunsView, _ listing: RunsListing, chrome: WebLayout.Chrome, canWrite: Bool) -> HTML {
        let columns = listing.columns
        let headers = columns.map { column -> HTML in
            let current = view.sort.first.map(RunSort.init)
            let sorted = current?.key == column.name
            let next = sorted && current?.descending == false ? "-" + column.name : column.name
            let order: HTML = !sorted ? "" : current!.descending ? " aria-sort=\"descending\"" : " aria-sort=\"ascending\""
            let href = view.with { $0.sort = [next]; $0.page = 1 }.href
            // Numbers are right-aligned, their heading with them.
            let numeric = listing.runs.contains { run in
                switch column.term.value(of: run) { case .int, .double: true; default: false }
            }
            let type: HTML = numeric ? " class=\"num\"" : ""
            return "<th scope=\"col\" data-key=\"\(column.name)\"\(type)\(order)><a href=\"\(href)\" title=\"Sort by \(column.name)\">\(column.name)</a></th>"
        }
        var body: [HTML] = []
        var group: String?
        for (index, run) in listing.runs.enumerated() {
            if view.grouped && run.project != group {
                group = run.project
                let count = listing.runs[index...].prefix { $0.project == run.project }.count
                body.append("""
                    <tr class="group"><th colspan="\(columns.count + 1)" scope="colgroup"><span>\(run.project)</span> · \(count) run\(count == 1 ? "" : "s")\(listing.hasMore || view.page > 1 ? " on this page" : "")</th></tr>
                    """)
            }
            body.append(row(run, columns: columns))
        }
        if listing.runs.isEmpty {
            body.append("<tr><td colspan=\"\(columns.count + 1)\" class=\"muted\">\(listing.error == nil ? "No runs match." : "")</td></tr>")
        }
        let first = (view.page - 1) * view.perPage + 1
        let range: HTML = listing.runs.isEmpty ? "" : "Runs \(first)–\(first + listing.runs.count - 1)"
        let previous: HTML = view.page > 1 ? "<a href=\"\(view.with { $0.page -= 1 }.href)\" rel=\"prev\">← Previous</a>" : ""
        let next: HTML = listing.hasMore ? "<a href=\"\(view.with { $0.page += 1 }.href)\" rel=\"next\">Next →</a>" : ""
        let writes: HTML = !canWrite ? "" : """
            <label for="action-tag">Tag</label><input type="text" id="action-tag" name="tag" size="12">\
            <button type="submit" name="action" value="tag">Add tag</button>\
            <button type="submit" name="action" value="untag">Remove tag</button>\
            <button type="submit" name="action" value="abort">Abort</button>\
            <button type="submit" name="action" value="delete" class="danger">Delete…</button>
            """
        return """
            <form method="post" action="/runs/actions" id="actions">
            <input type="hidden" name="csrf" value="\(chrome.csrf)"><input type="hidden" name="return" value="\(view.href)">
            <div class="actions" role="group" aria-label="Selected runs">\(writes)<button type="submit" name="action" value="compare">Compare</button></div>
            <div class="table-wrap"><table class="runs" data-live="/runs/live">
            <thead><tr><th class="select" scope="col"><input type="checkbox" data-select-all aria-label="Select every run on this page"></th>\(headers)</tr></thead>
            <tbody>
            \(body.joined(separator: "\n"))
            </tbody></table></div>
            </form>
            <nav class="pager" aria-label="Pages">\(previous)<span>\(range)</span>\(next)</nav>
            """
    }

    static func row(_ run: Run, columns: [RunColumn]) -> HTML {
        let label = run.name ?? RunID.short(run.id)
        let cells = columns.map { column -> HTML in
            let text = cellText(column.term, of: run)
            switch column.term {
            case .field(.id), .field(.name):
                return "<td data-col><a href=\"\(Href("runs", run.id))\">\(text)</a></td>"
            case .field(.status):
                return "<td data-col class=\"status status-\(text)\">\(text)</td>"
            case .field(.command):
                return "<td data-col class=\"mono\" title=\"\(ShellQuoting.commandLine(run.command))\">\(text)</td>"
            default:
                switch column.term.value(of: run) {
                case .int, .double: return "<td data-col class=\"num\">\(text)</td>"
                default: return "<td data-col>\(text)</td>"
                }
            }
        }
        return """
            <tr data-run="\(run.id)" data-status="\(run.observedStatus.rawValue)">\
            <td class="select"><input type="checkbox" name="id" value="\(run.id)" aria-label="Select run \(label)"></td>\(cells)</tr>
            """
    }

    /// A name as an HTML id: letters and digits kept, anything else as its code.
    static func identifier(_ name: String) -> String {
        name.unicodeScalars.map { scalar in
            (scalar.properties.isAlphabetic && scalar.isASCII) || ("0"..."9").contains(scalar) ? String(scalar) : "_\(scalar.value)_"
        }.joined()
    }

    /// `GET /runs/live?id=…&column=…`: the cells of these runs, for the page's script to update their
    /// rows: `{"runs": [{"id", "status", "cells": [text…]}]}`, in the order of the columns named. A run
    /// gone, or of a project the token may not see, is left out.
    static func live(_ web: WebRequest) async throws -> Response {
        let ids = Array(web.query.strings("id").prefix(500))
        let names = web.query.strings("column")
        let store = web.store, access = web.access
        let records = try await StoreCalls.run { () throws(CMLError) -> [JSON] in
            var runs: [Run] = []
            for id in ids {
                guard let run = try? store.run(id: id), access.sees(project: run.project) else { continue }
                runs.append(run)
            }
            let catalog = try store.catalog()
            let terms = try names.map { name throws(CMLError) in
                try RunTerm.lookup(name, in: catalog) ?? .param(name)
            }
            return runs.map { run in
                .object([("id", .string(run.id)), ("status", .string(run.observedStatus.rawValue)),
                         ("cells", .array(terms.map { .string(cellText($0, of: run)) }))])
            }
        }
        return Response(status: .ok, headers: [.contentType: Media.json, .cacheControl: "no-store"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: JSON.object([("runs", .array(records))]).serialized + "\n")))
    }
}

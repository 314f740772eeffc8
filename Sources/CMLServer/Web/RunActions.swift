import CMLKit
import Foundation
import Hummingbird

/// `POST /runs/actions`: what the runs page's buttons do to the runs ticked, as `cml-run tag`, `abort`
/// and `rm` do it. Changes need scope `write` and, for a project-bound token, runs of its projects;
/// deleting asks first on a page of its own. Each ends back on the page it came from (`return`), with
/// a notice of what was done.
enum RunActions {
    static let fields = ["id", "action", "tag", "return", "confirm"]

    static func handle(_ web: WebRequest) async throws -> Response {
        let back = LoginPage.localPath(web.query.string("return"))
        let ids = Array(Set(web.query.strings("id"))).sorted()
        let action = web.query.string("action") ?? ""
        guard !ids.isEmpty else { return done(web, "Select runs first: tick their boxes.", back: back) }
        let reads = web.reads
        var runs: [Run] = []
        for id in ids { runs.append(try await reads.run(id)) }
        if action == "compare" {
            return WebRoutes.redirect(to: Href("compare", query: [("ids", runs.map(\.id).joined(separator: ","))]))
        }
        try web.requireWriteScope()
        for run in runs { try web.access.requireWrite(project: run.project) }
        let store = web.store, chosen = runs
        switch action {
        case "tag", "untag":
            let tag = (web.query.string("tag") ?? "").trimmingCharacters(in: .whitespaces)
            // Checked as `cml-run tag` checks it.
            try NameLimits.check(tag, "tag")
            guard !tag.isEmpty, !tag.unicodeScalars.contains(where: { $0.value < 0x20 }) else {
                throw CMLError.usage("a tag is non-empty text", hint: "type it in the Tag field")
            }
            let adding = action == "tag"
            try await StoreCalls.run { () throws(CMLError) in
                for run in chosen {
                    if adding { try store.addTags(run: run.id, [tag]) } else { try store.removeTags(run: run.id, [tag]) }
                }
            }
            return done(web, "\(adding ? "Tagged" : "Untagged") \(count(runs)) \(adding ? "with" : "from") \(tag).", back: back)
        case "abort":
            let notes = try await StoreCalls.run { () -> [String] in
                chosen.map { run in
                    do throws(CMLError) {
                        _ = try RunAbort.abort(run.id, store: store)
                        return "\(RunID.short(run.id)): stopping"
                    } catch {
                        return "\(RunID.short(run.id)): \(error.message)"
                    }
                }
            }
            return done(web, "Abort: " + notes.joined(separator: "; ") + ".", back: back)
        case "delete":
            if let running = runs.first(where: { $0.observedStatus == .running }) {
                throw CMLError("run \(RunID.short(running.id)) is still running", hint: "abort it first", kind: .conflict)
            }
            guard web.query.string("confirm") == "1" else { return web.page(confirmDeletion(runs, back: back, chrome: web.chrome)) }
            let report = try await StoreCalls.run { () throws(CMLError) in try store.removeRuns(chosen.map(\.id)) }
            return done(web, "Deleted \(count(runs)), freeing \(formatBytes(report.bytesFreed)).", back: back)
        default:
            throw CMLError.usage("unknown action '\(action.prefix(40))'", hint: "one of compare, tag, untag, abort, delete")
        }
    }

    private static func count(_ runs: [Run]) -> String { "\(runs.count) run\(runs.count == 1 ? "" : "s")" }

    private static func done(_ web: WebRequest, _ notice: String, back: String) -> Response {
        if let session = web.session { web.sessions.leave(notice, for: session) }
        return Response(status: .seeOther, headers: [.location: back, .cacheControl: "no-store"])
    }

    /// The page that asks before deleting: the runs listed, and a form that sends them again with
    /// `confirm=1`.
    static func confirmDeletion(_ runs: [Run], back: String, chrome: WebLayout.Chrome) -> HTML {
        let items = runs.map { run -> HTML in
            "<li><input type=\"hidden\" name=\"id\" value=\"\(run.id)\"><a href=\"\(Href("runs", run.id))\">\(RunID.short(run.id))</a> \(run.name ?? "") <span class=\"muted\">(\(run.project), \(run.observedStatus.rawValue))</span></li>"
        }
        return WebLayout.page(title: "Delete runs", section: .runs, chrome: chrome, main: """
            <h1>Delete \(count(runs))?</h1>
            <p>Their output, metrics and artifacts go with them, and the blobs only they used are freed. This cannot be undone.</p>
            <form method="post" action="/runs/actions">
            <input type="hidden" name="csrf" value="\(chrome.csrf)"><input type="hidden" name="return" value="\(back)">
            <input type="hidden" name="action" value="delete"><input type="hidden" name="confirm" value="1">
            <ul>\(items)</ul>
            <div class="actions"><button type="submit" class="danger">Delete \(count(runs))</button> <a href="\(back)">Cancel</a></div>
            </form>
            """)
    }
}

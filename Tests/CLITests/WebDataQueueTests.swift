import CMLKit
import Foundation
import Glibc
import Testing
@testable import CMLServer

/// The datasets and queues pages through curl, against a real cml-serve on stores the built commands
/// fill: what they show is what `cml-data` and `cml-queue` print for the same store, and the queues
/// page's buttons change the queue as the commands then show, only with the session's CSRF token and
/// scope `write`.
struct WebDataQueueTests {
    static let script = "<script>window.__pwned=1</script>"

    /// The `<tr …>` of `body` whose opening tag holds `marker`, to its `</tr>`.
    static func row(_ body: String, _ marker: String) -> String? {
        guard let start = body.range(of: "<tr " + marker) else { return nil }
        guard let end = body.range(of: "</tr>", range: start.upperBound..<body.endIndex) else { return nil }
        return String(body[start.lowerBound..<end.upperBound])
    }

    static func escaped(_ text: String) -> String { HTML(text: text).description }

    // MARK: - Datasets

    @Test func datasetPagesShowWhatCMLDataPrints() throws {
        let box = try Sandbox()
        let data = box.work + "/data"
        try box.write(data + "/a.txt", "alpha\n")
        try box.write(data + "/b.txt", "bravo\n")
        try box.write(data + "/" + Self.script + ".txt", "tricky name\n")
        try box.write(data + "/old.txt", "moves\n")
        #expect(try box.run("cml-data", ["snapshot", data, "--name", "mnist", "-m", Self.script]).status == 0)
        try box.write(data + "/a.txt", "alpha, longer now\n")
        try FileManager.default.removeItem(atPath: data + "/b.txt")
        try box.write(data + "/c.txt", "charlie\n")
        try FileManager.default.moveItem(atPath: data + "/old.txt", toPath: data + "/new.txt")
        #expect(try box.run("cml-data", ["snapshot", data, "--name", "mnist", "-m", "second"]).status == 0)
        // A run that reads mnist@2 and makes feats@1 from it.
        let cmlData = binDirectory + "/cml-data"
        try box.write(box.work + "/out/f.txt", "features\n")
        let made = try box.run("cml-run", ["--name", "featurize", "--", "sh", "-c",
                                           "'\(cmlData)' get mnist@2 >/dev/null && '\(cmlData)' snapshot out --name feats --parent mnist@2"])
        #expect(made.status == 0, "\(made.stderr)")
        let versions = try box.run("cml-data", ["ls", "--format", "jsonl"]).jsonLines
        func version(_ reference: String) throws -> [String: Any] {
            let parts = reference.split(separator: "@")
            return try #require(versions.first { $0["dataset"] as? String == String(parts[0]) && ($0["version"] as? Int).map(String.init) == String(parts[1]) })
        }
        let m1 = try version("mnist@1"), m2 = try version("mnist@2"), f1 = try version("feats@1")
        let id = { (v: [String: Any]) in v["id"] as! String }
        let runID = try #require(f1["run"] as? String)
        let server = try ServerUnderTest(box)

        // Every dataset, with its latest version's numbers as cml-data ls prints them.
        let list = try box.web(server.url + "/datasets")
        #expect(list.status == 200)
        let mnistRow = try #require(Self.row(list.body, "data-dataset=\"mnist\""))
        #expect(mnistRow.contains(">mnist@2</a>") && mnistRow.contains("<td class=\"num\">2</td>"), "\(mnistRow)")
        #expect(mnistRow.contains("<td class=\"num\">\(formatCount(Int64(m2["files"] as! Int)))</td><td class=\"num\">\(formatBytes(Int64(m2["size"] as! Int)))</td>"), "\(mnistRow)")
        let featsRow = try #require(Self.row(list.body, "data-dataset=\"feats\""))
        #expect(featsRow.contains("href=\"/runs/\(runID)\""), "the run that made it is linked")
        #expect(list.body.contains("aria-current=\"page\">Datasets</a>"))

        // A dataset: its versions as cml-data ls NAME lists them, with parents and the runs that used them.
        let page = try box.web(server.url + "/datasets/mnist")
        #expect(page.status == 200)
        for v in [m1, m2] {
            let cells = try #require(Self.row(page.body, "data-version=\"\(id(v))\""))
            #expect(cells.contains("<td class=\"num\">\(formatCount(Int64(v["files"] as! Int)))</td><td class=\"num\">\(formatBytes(Int64(v["size"] as! Int)))</td>"))
            #expect(cells.contains("<td class=\"num\">\(formatBytes(Int64(v["new_bytes"] as! Int)))</td>"))
        }
        let second = try #require(Self.row(page.body, "data-version=\"\(id(m2))\""))
        #expect(second.contains(">mnist@1</a>") && second.contains("href=\"/runs/\(runID)\""), "parent and user: \(second)")
        #expect(try #require(Self.row(page.body, "data-version=\"\(id(m1))\"")).contains("<td>\(Self.escaped(Self.script))</td>"))
        #expect(!page.body.contains(Self.script))
        // The lineage graph: every version a node, the run between the version it used and the one it made.
        #expect(page.body.contains("<svg class=\"lineage\""))
        for v in [m1, m2, f1] { #expect(page.body.contains("data-node=\"v:\(id(v))\""), "\(v)") }
        #expect(page.body.contains("data-node=\"r:\(runID)\""))
        for (from, to) in [("v:" + id(m1), "v:" + id(m2)), ("v:" + id(m2), "v:" + id(f1)), ("v:" + id(m2), "r:" + runID), ("r:" + runID, "v:" + id(f1))] {
            #expect(page.body.contains("data-from=\"\(from)\" data-to=\"\(to)\""), "edge \(from) → \(to)")
        }
        #expect(page.body.components(separatedBy: "<path class=\"edge ").count - 1 == 4, "no other edge")
        #expect(page.body.contains("mnist@1 (\(id(m1))): \(Self.escaped(Self.script))</title>"), "the message in the node's title, escaped")

        // A version's files as cml-data show lists them, each a download of its blob.
        let files = try box.run("cml-data", ["show", "mnist@2", "--format", "jsonl"]).jsonLines
        let shown = try box.web(server.url + "/datasets/mnist/2")
        #expect(shown.status == 200)
        #expect(shown.body.components(separatedBy: "<tr data-path=").count - 1 == files.count)
        for file in files {
            let path = file["path"] as! String, sha = file["sha256"] as! String
            let cells = try #require(Self.row(shown.body, "data-path=\"\(Self.escaped(path))\""), "\(path)")
            #expect(cells.contains("<td class=\"num\">\(file["size"] as! Int)</td>") && cells.contains(">\(sha.prefix(16))</td>"))
            #expect(cells.contains("href=\"/api/v1/blobs/\(sha)\""))
        }
        let a = try #require(files.first { $0["path"] as? String == "a.txt" })
        #expect(try box.web(server.url + "/api/v1/blobs/\(a["sha256"] as! String)").body == "alpha, longer now\n")
        #expect(shown.body.contains(">\(Self.escaped(Self.script)).txt</a>") && !shown.body.contains(Self.script))
        #expect(try box.web(server.url + "/datasets/mnist/" + id(m2).prefix(12)).body.contains("<h1>mnist@2</h1>"), "an id prefix names it too")

        // The diff: the changes cml-data diff lists, with a summary per kind.
        let changes = try box.run("cml-data", ["diff", "mnist@1", "mnist@2", "--format", "jsonl"]).jsonLines
        #expect(Set(changes.map { $0["change"] as! String }) == ["added", "removed", "modified", "renamed"])
        let diff = try box.web(server.url + "/datasets/mnist/diff?from=1&to=2")
        #expect(diff.status == 200 && diff.body.contains("<h1>mnist@1 → mnist@2</h1>"))
        let listed = diff.body.components(separatedBy: "<tr data-change=\"").dropFirst().compactMap { part -> String? in
            part.contains("<td class=\"change") ? String(part.prefix { $0 != "\"" }) : nil
        }
        #expect(listed == changes.map { $0["change"] as! String }, "\(listed)")
        for change in changes {
            let path = Self.escaped(change["path"] as! String)
            let text = (change["from"] as? String).map { Self.escaped($0) + " → " + path } ?? path
            #expect(diff.body.contains("<td>\(text)</td><td class=\"num\">"), "\(change)")
        }
        let summary = try #require(Self.row(diff.body, "data-change=\"added\"><th"))
        #expect(summary.contains("<td class=\"num\">1</td>"), "\(summary)")
        #expect(try box.web(server.url + "/datasets/mnist/diff?from=2&to=2").body.contains("mnist@2 and mnist@2 hold the same files."))
        #expect(try box.web(server.url + "/datasets/mnist/diff").body.contains("<h1>mnist@1 → mnist@2</h1>"), "latest against its parent")

        // What does not exist is a 404 page; a bad name a 400.
        #expect(try box.web(server.url + "/datasets/nope").status == 404)
        #expect(try box.web(server.url + "/datasets/mnist/9").status == 404)
        #expect(try box.web(server.url + "/datasets/mnist/diff?from=9").status == 404)
        #expect(try box.web(server.url + "/datasets/%3Cx%3E").status == 400)

        // A token bound to another project reads the versions, but not the run, nor blobs only versions hold.
        let created = try box.run("cml-serve", ["token", "create", "--name", "other", "--scope", "read", "--project", "elsewhere"])
        let token = try #require(created.jsonLines.first?["token"] as? String)
        let login = try #require(try box.web(server.url + "/login", jar: "bound").csrf)
        #expect(try box.web(server.url + "/login", ["--data-urlencode", "token=\(token)", "-d", "csrf=\(login)"], jar: "bound").status == 303)
        let bound = try box.web(server.url + "/datasets/mnist", jar: "bound")
        #expect(bound.status == 200 && bound.body.contains("data-node=\"v:\(id(f1))\""))
        #expect(!bound.body.contains("/runs/\(runID)") && !bound.body.contains("data-node=\"r:"), "the run is not shown")
        let boundFiles = try box.web(server.url + "/datasets/mnist/2", jar: "bound")
        #expect(boundFiles.status == 200 && boundFiles.body.contains("<tr data-path=\"a.txt\"") && !boundFiles.body.contains("/api/v1/blobs/"))
    }

    /// A version of many files is listed a thousand at a time, with the count.
    @Test func aLargeVersionIsListedAPageAtATime() throws {
        let box = try Sandbox()
        let data = box.work + "/many"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        for index in 0..<2100 { try Data("\(index)\n".utf8).write(to: URL(fileURLWithPath: data + String(format: "/f%05d", index))) }
        #expect(try box.run("cml-data", ["snapshot", data, "--name", "many"]).status == 0)
        let server = try ServerUnderTest(box)
        let first = try box.web(server.url + "/datasets/many/1")
        #expect(first.body.contains("Files 1–1,000 of 2,100.") && first.body.contains("Page 1 of 3"))
        #expect(first.body.components(separatedBy: "<tr data-path=").count - 1 == 1000)
        let last = try box.web(server.url + "/datasets/many/1?page=3")
        #expect(last.body.contains("Files 2,001–2,100 of 2,100.") && last.body.contains("data-path=\"f02099\""))
        #expect(last.body.components(separatedBy: "<tr data-path=").count - 1 == 100)
        #expect(try box.web(server.url + "/datasets/many/1?page=0").status == 400)
    }

    // MARK: - Queues

    @Test func theQueuesPageShowsWhatCMLQueuePrintsAndItsButtonsChangeTheQueue() throws {
        let q = try QueueBox()
        let box = q.box
        let waiting = try q.add(["python3", "train.py", "--lr", "0.1"], queue: "gpu", options: ["--name", Self.script, "--priority", "5"])
        let other = try q.add(["python3", "train.py", "--lr", "0.2"], queue: "gpu")
        let long = try q.add(["python3", "train.py", "--sleep", "60"], queue: "busy")
        #expect(try box.run("cml-agent", ["--queue", "cpu", "--create", "--until-empty", "--workdir", box.root + "/agent-cpu"]).status == 0)
        let agentName = "\"><img src=x onerror=\"window.__pwned=2\">"
        let agent = try q.agent(agentName, queue: "busy")
        defer { kill(agent.pid, SIGKILL) }
        #expect(try q.wait(long, for: "running"), "\(q.describe(long))")
        let server = try ServerUnderTest(box)

        var page = try box.web(server.url + "/queues")
        #expect(page.status == 200 && page.body.contains("aria-current=\"page\">Queues</a>"))
        // Each queue's numbers as cml-queue stats prints them.
        let stats = try box.run("cml-queue", ["stats", "--format", "jsonl"]).jsonLines
        #expect(stats.map { $0["queue"] as! String } == ["busy", "cpu", "gpu"])
        for stat in stats {
            let cells = try #require(Self.row(page.body, "data-queue=\"\(stat["queue"] as! String)\""))
            for key in ["depth", "running", "agents"] {
                #expect(cells.contains("data-col=\"\(key)\">\(stat[key] as! Int)</td>"), "\(key) of \(cells)")
            }
        }
        // The same numbers for the page's script, which keeps them current.
        #expect(page.body.contains(StaticAssets.queueScript.href.description) && page.body.contains("data-live=\"/queues/live\""))
        let live = try box.web(server.url + "/queues/live")
        #expect(live.status == 200 && live.header("content-type")?.hasPrefix("application/json") == true)
        let liveQueues = (try JSONSerialization.jsonObject(with: Data(live.body.utf8)) as? [String: Any])?["queues"] as? [[String: Any]] ?? []
        #expect(liveQueues.map { $0["queue"] as? String } == stats.map { $0["queue"] as? String })
        for (entry, stat) in zip(liveQueues, stats) {
            let cells = entry["cells"] as? [String: String] ?? [:]
            #expect(["depth", "running", "agents"].map { cells[$0] } == ["depth", "running", "agents"].map { String(stat[$0] as! Int) }, "\(entry)")
        }
        // The runs on each queue, as cml-queue ls lists them: the run links to its page.
        let queued = try box.run("cml-queue", ["ls", "--format", "jsonl"]).jsonLines
        #expect(Set(queued.map { $0["id"] as! String }) == [waiting, other, long])
        let first = try #require(Self.row(page.body, "data-run=\"\(waiting)\""))
        #expect(first.contains("href=\"/runs/\(waiting)\"") && first.contains("<td>\(Self.escaped(Self.script))</td>"))
        #expect(first.contains("<td class=\"num\">5</td>") && first.contains("status-queued"))
        let running = try #require(Self.row(page.body, "data-run=\"\(long)\""))
        #expect(running.contains("status-running") && running.contains("<td>\(Self.escaped(agentName))</td>"))
        // The agent, as cml-agent ls lists it, alive.
        let listedAgent = try #require(try q.agents().first { $0["name"] as? String == agentName })
        let agentRow = try #require(Self.row(page.body, "data-agent=\"\(listedAgent["agent_id"] as! String)\""))
        #expect(agentRow.contains("<th scope=\"row\">\(Self.escaped(agentName))</th>") && agentRow.contains("alive\">busy</span>"))
        #expect(agentRow.contains("href=\"/runs/\(long)\"") && agentRow.contains(" ago</time>"))
        #expect(!page.body.contains(Self.script) && !page.body.contains(agentName))

        let csrf = try #require(page.csrf)
        func act(_ fields: String, _ options: [String] = [], jar: String = "jar") throws -> String {
            let reply = try box.web(server.url + "/queues/actions", options + ["-d", fields + "&csrf=\(csrf)"], jar: jar)
            #expect(reply.status == 303 && reply.header("location") == "/queues", "\(reply.status) \(reply.body)")
            let next = try box.web(server.url + "/queues", jar: jar)
            return next.body.components(separatedBy: "<div class=\"notice\" role=\"status\">").dropFirst().first?.components(separatedBy: "</div>").first ?? ""
        }
        func queueOf(_ id: String) throws -> String? {
            try box.run("cml-queue", ["ls", "--format", "jsonl"]).jsonLines.first { $0["id"] as? String == id }?["queue"] as? String
        }

        // Without the session's CSRF token nothing is done.
        #expect(try box.web(server.url + "/queues/actions", ["-d", "id=\(waiting)&action=move&queue=cpu"]).status == 403)
        #expect(try queueOf(waiting) == "gpu")
        // Move: as cml-queue mv; an unknown queue and a running run are refused, changing nothing.
        #expect(try act("id=\(waiting)&action=move&queue=nope") == Self.escaped("Nothing was done: unknown queue 'nope' (queues: busy, cpu, gpu)."))
        #expect(try act("id=\(long)&action=move&queue=cpu").contains("is running on an agent"))
        #expect(try queueOf(waiting) == "gpu" && queueOf(long) == "busy")
        #expect(try act("id=\(waiting)&action=move&queue=cpu") == "Moved run \(RunID.short(waiting)) to cpu.")
        #expect(try box.run("cml-queue", ["ls", "cpu", "--format", "jsonl"]).jsonLines.map { $0["id"] as! String } == [waiting])
        // Requeue is for runs that ended.
        #expect(try act("id=\(other)&action=requeue").contains("Nothing was done: run \(RunID.short(other)) has not ended (queued)"))
        // Abort: a waiting run ends aborted; a running one is stopped by its agent.
        #expect(try act("id=\(other)&action=abort") == "Aborted run \(RunID.short(other)): it was waiting, and will not run.")
        #expect(try q.status(other) == "aborted")
        #expect(try act("id=\(long)&action=abort") == "Asked agent \(Self.escaped(agentName)) to stop run \(RunID.short(long)).")
        #expect(try q.wait(long, for: "aborted"), "\(q.describe(long))")
        #expect(try act("id=\(other)&action=abort").contains("has already ended (aborted)"))
        // Requeue an ended run: a copy on its own queue (or another), as cml-run clone | cml-queue add.
        page = try box.web(server.url + "/queues")
        #expect(try #require(Self.row(page.body, "data-run=\"\(long)\"")).contains("value=\"requeue\""), "listed as ended")
        let requeued = try act("id=\(other)&action=requeue")
        #expect(requeued.hasPrefix("Queued run \(RunID.short(other)) again on gpu as run "), "\(requeued)")
        let copies = try box.run("cml-queue", ["ls", "gpu", "--format", "jsonl"]).jsonLines
        #expect(copies.count == 1 && copies.first?["id"] as? String != other)
        let copy = try box.show(try #require(copies.first?["id"] as? String))
        #expect((copy["command"] as? [String])?.suffix(2) == ["--lr", "0.2"], "\(copy)")
        #expect(try act("id=\(other)&action=requeue&queue=nope").contains("unknown queue &#39;nope&#39;"))
        #expect(try box.run("cml-queue", ["ls", "--format", "jsonl"]).jsonLines.count == 2, "nothing more was queued")

        // A read-scoped token sees the page without buttons, and is refused an action; nothing changes.
        let created = try box.run("cml-serve", ["token", "create", "--name", "reader", "--scope", "read"])
        let token = try #require(created.jsonLines.first?["token"] as? String)
        let login = try #require(try box.web(server.url + "/login", jar: "reader").csrf)
        #expect(try box.web(server.url + "/login", ["--data-urlencode", "token=\(token)", "-d", "csrf=\(login)"], jar: "reader").status == 303)
        let readPage = try box.web(server.url + "/queues", jar: "reader")
        #expect(readPage.status == 200 && !readPage.body.contains("/queues/actions") && readPage.body.contains(">\(RunID.short(waiting))</a>"))
        let readerCSRF = try #require(readPage.csrf)
        let refused = try box.web(server.url + "/queues/actions", ["-d", "id=\(waiting)&action=move&queue=gpu&csrf=\(readerCSRF)"], jar: "reader")
        #expect(refused.status == 303)
        #expect(try box.web(server.url + "/queues", jar: "reader").body.contains("Nothing was done: the token&#39;s scope read does not allow changing runs"))
        #expect(try queueOf(waiting) == "cpu")
    }

    /// Tests/Browser/data_queue.py: the datasets and queues pages in headless Chromium, against the
    /// built cml-serve; its screenshots go to .build/test-output/browser-data-queue.
    @Test func theDatasetAndQueuePagesInARealBrowser() throws {
        let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let output = package + "/.build/test-output/browser-data-queue"
        let result = try shell("python3 Tests/Browser/data_queue.py --bin '\(binDirectory)' --out '\(output)'", cwd: package)
        #expect(result.status == 0, "\(result.out)\(result.stderr)")
    }
}

@testable import CMLKit
import Foundation
import Testing
@testable import CMLServer

/// The run page's later sections through curl: console search and live tail, code, environment,
/// images, resources, datasets and attempts, each holding user text that must arrive escaped.
struct WebRunPageTests {
    static let script = WebTests.script
    static let image = #""><img src=x onerror="window.__pwned=2">"#

    /// A git repository in the sandbox's work directory, its tracked file then changed, a binary file
    /// changed and a file whose name is markup added: the patch the run captures.
    static func changedRepository(_ box: Sandbox) throws {
        let setup = """
            git init -q -b main && git config user.email t@t && git config user.name t && git remote add origin https://example.com/r.git && \
            printf 'a\\nb\\nc\\n' > train.py && head -c 3000 /dev/zero > model.bin && git add -A && git commit -qm init && \
            printf 'a\\nc\\nnew <script>x</script>\\n' > train.py && head -c 4000 /dev/urandom > model.bin && \
            echo hi > '<script>evil.txt'
            """
        let made = try shell(setup, cwd: box.work)
        #expect(made.status == 0, "\(made.stderr)")
    }

    @Test func everySectionIsThereWithItsTextEscaped() throws {
        let box = try Sandbox()
        try Self.changedRepository(box)
        // A dataset the run uses, kept outside the repository.
        try box.write(box.root + "/raw/labels.csv", "a,1\n")
        #expect(try box.run("cml-data", ["snapshot", box.root + "/raw", "--name", "raw", "-m", "download"]).status == 0)
        try box.write(box.root + "/plot.svg", #"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>window.__pwned=3</script><rect width="10" height="10"/></svg>"#)
        let log = binDirectory + "/cml-log"
        let script = """
            echo 'hello \(Self.script)'; printf '\\377\\376\\000\\033[31mred\\033[0m\\n'; \
            '\(log)' image '\(box.root)/plot.svg' --name '\(Self.image)' --step 1 >/dev/null && \
            '\(log)' image '\(box.root)/plot.svg' --name '\(Self.image)' --step 2 >/dev/null
            """
        let ran = try box.run("cml-run", ["--name", "page", "--data", "raw@1", "--", "sh", "-c", script],
                              env: ["EVIL": Self.script, "API_TOKEN": "hunter2-secret"])
        #expect(ran.status == 0, "\(ran.stderr)")
        let server = try ServerUnderTest(box)
        let record = try box.show("page")
        let id = try #require(record["id"] as? String)
        let page = try box.web(server.url + "/runs/" + id)
        #expect(page.status == 200)
        let body = page.body
        #expect(!body.contains(Self.script) && !body.contains("<img src=x"), "no user markup is markup")

        // The contents link every section the page has.
        for anchor in ["overview", "console", "code", "environment", "images", "artifacts", "datasets", "resources"] {
            #expect(body.contains("<a href=\"#\(anchor)\">") && body.contains("<h2 id=\"\(anchor)\">"), "\(anchor)")
        }
        #expect(!body.contains("href=\"#attempts\""), "a run that never was queued has no attempts")

        // The console: markup as text, terminal colours gone, binary bytes shown as U+FFFD.
        #expect(body.contains("hello &lt;script&gt;window.__pwned=1&lt;/script&gt;"))
        #expect(body.contains("\u{FFFD}\u{FFFD}\u{FFFD}red\n"), "binary output and colours")
        #expect(!body.contains("\u{1B}"))

        // The code: commit, branch, remote, dirty; the patch's lines in classes; the binary file one line.
        let commit = try shell("git rev-parse HEAD", cwd: box.work).out.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(body.contains("<td>\(commit)</td>") && body.contains("<td>main</td>") && body.contains("<td>https://example.com/r.git</td>"))
        #expect(body.contains("<tr><th scope=\"row\">Uncommitted changes</th><td>yes</td></tr>"))
        #expect(body.contains("<span class=\"d-file\">diff --git a/train.py b/train.py\n</span>"))
        #expect(body.contains("<span class=\"d-meta\">--- a/train.py\n</span>") && body.contains("<span class=\"d-meta\">+++ b/train.py\n</span>"))
        #expect(body.contains("<span class=\"d-hunk\">@@ -1,3 +1,3 @@\n</span>"))
        #expect(body.contains("<span class=\"d-del\">-b\n</span>"))
        #expect(body.contains("<span class=\"d-add\">+new &lt;script&gt;x&lt;/script&gt;\n</span>"))
        #expect(body.contains("<span class=\"d-ctx\"> a\n</span>"))
        let binary = body.components(separatedBy: "<span class=\"d-binary\">").dropFirst().map { $0.prefix { $0 != "<" } }
        #expect(binary.count == 1 && binary[0].hasPrefix("binary model.bin: 3,000 → 4,000 bytes"), "\(binary)")
        #expect(!body.contains("GIT binary patch"))
        #expect(body.contains("diff --git a/&lt;script&gt;evil.txt b/&lt;script&gt;evil.txt"))
        let patchBlob = try #require((record["code"] as? [String: Any])?["patch_blob"] as? String)
        #expect(body.contains("<a href=\"/api/v1/blobs/\(patchBlob)\" download=\"\(RunID.short(id)).patch\">"))

        // The environment: sorted, collapsed, its secret redacted, its markup text.
        #expect(body.contains("<details class=\"environment\"><summary>"))
        #expect(body.contains("<tr><th scope=\"row\"><code>EVIL</code></th><td><code>&lt;script&gt;window.__pwned=1&lt;/script&gt;</code></td></tr>"))
        #expect(body.contains("<code>API_TOKEN</code></th><td><code>&lt;redacted&gt;</code>") && !body.contains("hunter2"))
        let names = body.components(separatedBy: "<tr><th scope=\"row\"><code>").dropFirst().map { String($0.prefix { $0 != "<" }) }
        #expect(names == names.sorted() && names.count > 3, "\(names)")

        // The images: by step, from the image route, named as text.
        let svg = try #require(try box.run("cml-run", ["artifacts", id, "--format", "jsonl"]).jsonLines.last?["sha256"] as? String)
        let imageURL = "/runs/\(id)/images/\(svg)"
        #expect(body.contains("<img src=\"\(imageURL)\" alt=\"&quot;&gt;&lt;img src=x onerror=&quot;window.__pwned=2&quot;&gt;, step 2\""))
        #expect(body.contains("max=\"1\" value=\"1\" step=\"1\" data-image-slider"))
        #expect(body.contains(">step 1</a></li>") && body.contains(">step 2</a></li>"))
        let served = try box.web(server.url + imageURL)
        #expect(served.status == 200 && served.header("content-type") == "image/svg+xml")
        #expect(served.header("x-content-type-options") == "nosniff")
        let policy = try #require(served.header("content-security-policy"))
        #expect(policy.contains("sandbox") && policy.contains("default-src 'none'") && !policy.contains("script-src"))
        // Only an image of this run: its patch, through the image route, is not one.
        #expect(try box.web(server.url + "/runs/\(id)/images/\(patchBlob)").status == 404)
        // The raw blob route downloads, and runs nothing either.
        let blob = try box.web(server.url + "/api/v1/blobs/" + svg)
        #expect(blob.status == 200 && blob.header("content-type") == "application/octet-stream")
        #expect(blob.header("content-disposition") == "attachment" && blob.header("x-content-type-options") == "nosniff")
        #expect(blob.header("content-security-policy")?.contains("sandbox") == true)

        // Resources at the end, and the dataset used, linked to its page.
        #expect(body.contains("<th scope=\"row\">Peak memory (max RSS)</th>"))
        #expect(body.contains("<a href=\"/datasets/raw\">raw</a></td><td class=\"num\">1</td>"))
    }

    @Test func searchFindsTheLinesWithTheirNumbersInALogLongerThanTheTail() throws {
        let box = try Sandbox()
        let ran = try box.run("cml-run", ["--name", "long", "--", "sh", "-c", "seq 1 100000; echo 'a Needle here'; echo 'one more needle'"])
        #expect(ran.status == 0, "\(ran.stderr)")
        let server = try ServerUnderTest(box)
        let id = try #require(try box.show("long")["id"] as? String)
        let plain = try box.web(server.url + "/runs/" + id)
        #expect(plain.body.contains("Its last 256 KiB") && !plain.body.contains("console-matches"))

        let folded = try box.web(server.url + "/runs/\(id)?q=needle")
        #expect(folded.status == 200)
        #expect(folded.body.contains("<p role=\"status\" id=\"console-matches\">2 lines match <q>needle</q> of 100002.</p>"), "\(folded.body)")
        #expect(folded.body.contains("<tr><th scope=\"row\" class=\"num\">100001</th><td><code>a <mark>Needle</mark> here</code></td></tr>"))
        #expect(folded.body.contains("<tr><th scope=\"row\" class=\"num\">100002</th><td><code>one more <mark>needle</mark></code></td></tr>"))

        let cased = try box.web(server.url + "/runs/\(id)?q=Needle&case=1")
        #expect(cased.body.contains("1 line match <q>Needle</q> (case matched) of 100002.") || cased.body.contains("1 line matches <q>Needle</q> (case matched) of 100002."))
        #expect(!cased.body.contains("num\">100002<") && cased.body.contains("name=\"case\" value=\"1\" checked"))

        // A line near the start, long out of the tail, by its number.
        let early = try box.web(server.url + "/runs/\(id)?q=12345")
        #expect(early.body.contains("1 line matches <q>12345</q> of 100002.") && early.body.contains("num\">12345</th><td><code><mark>12345</mark></code>"))
        let many = try box.web(server.url + "/runs/\(id)?q=1")
        #expect(many.body.contains("; the first 1000 are shown."))

        // The query is text: shown, never markup.
        let evil = try box.web(server.url + "/runs/\(id)?q=" + encoded(Self.script))
        #expect(evil.status == 200 && evil.body.contains("value=\"&lt;script&gt;window.__pwned=1&lt;/script&gt;\"") && !evil.body.contains(Self.script))
        #expect(evil.body.contains("0 lines match"))
        #expect(try box.web(server.url + "/runs/\(id)?case=maybe&q=x").status == 400)
    }

    /// A patch over 256 KiB is shown up to a line's end before that, with the whole a download.
    @Test func aLargePatchIsCutAtALineWithTheWholeADownload() throws {
        let box = try Sandbox()
        #expect(try shell("git init -q -b main && git config user.email t@t && git config user.name t && echo a > big.txt && git add -A && git commit -qm init && seq 1 100000 > big.txt", cwd: box.work).status == 0)
        #expect(try box.run("cml-run", ["--name", "big", "--", "true"]).status == 0)
        let server = try ServerUnderTest(box)
        let record = try box.show("big")
        let id = try #require(record["id"] as? String)
        let blob = try #require((record["code"] as? [String: Any])?["patch_blob"] as? String)
        let body = try box.web(server.url + "/runs/" + id).body
        #expect(body.contains("Its first 262 KB of 689 KB; ") && body.contains("<a href=\"/api/v1/blobs/\(blob)\" download="))
        let patch = try #require(body.components(separatedBy: "<pre class=\"patch\"").dropFirst().first?.components(separatedBy: "</pre>").first)
        let added = patch.components(separatedBy: "<span class=\"d-add\">+").dropFirst().map { $0.prefix { $0 != "\n" } }
        #expect(added.count > 30_000 && added.count < 50_000 && added.enumerated().allSatisfy { Int($1) == $0 + 1 }, "whole lines, in order")
        #expect(!body.contains(">+100000\n<"))
    }

    /// The live tail's route gives what follows the offset the page was read to, and says when the run
    /// ended.
    @Test func theLiveTailGoesOnFromWhereThePageEnded() throws {
        let box = try Sandbox()
        let running = try box.start("cml-run", ["--name", "live", "--", "sh", "-c", "echo first; while [ ! -f go ]; do sleep 0.1; done; echo 'second <x>'"])
        defer { if !running.hasExited { kill(running.pid, SIGKILL) } }
        let server = try ServerUnderTest(box)
        var page = WebReply(status: 0, headers: [], body: "")
        #expect(try waitUntil(timeout: 20) {
            guard let id = try box.runs().first?["id"] as? String else { return false }
            page = try box.web(server.url + "/runs/" + id)
            return page.body.contains("first\n</pre>")
        })
        let id = try #require(try box.runs().first?["id"] as? String)
        let range = try #require(page.body.range(of: #"data-tail="/runs/[0-9a-f]+/console" data-from="[0-9]+""#, options: .regularExpression))
        let offset = String(page.body[range].split(separator: "\"")[3])
        #expect(page.body.contains("id=\"console-live\""))
        let before = try box.web(server.url + "/runs/\(id)/console?from=\(offset)")
        #expect(before.status == 200 && before.header("content-type") == "application/json")
        #expect(before.body == #"{"text":"","offset":\#(offset),"running":true}"# + "\n")
        try box.write("go", "")
        #expect(try running.wait().status == 0)
        let after = try box.web(server.url + "/runs/\(id)/console?from=\(offset)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(after.body.utf8)) as? [String: Any])
        #expect(json["text"] as? String == "second <x>\n" && json["running"] as? Bool == false)
        let whole = try box.web(server.url + "/runs/\(id)/console?from=0")
        #expect(whole.body.contains(#""text":"first\nsecond <x>\n""#))
        #expect(try box.web(server.url + "/runs/\(id)/console?from=-1").status == 400)
        #expect(try box.web(server.url + "/runs/ffff/console").status == 404)
        // Once ended, the page has no live tail.
        #expect(!(try box.web(server.url + "/runs/" + id)).body.contains("data-tail"))
    }

    /// The page's data routes read as the page does: a token bound to another project gets 404 for the
    /// run's console and images, exactly as for a run that does not exist; one of its project reads them.
    @Test func theConsoleAndImageRoutesKeepToTheTokensProjects() throws {
        let box = try Sandbox()
        try Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 1, 2, 3]).write(to: URL(fileURLWithPath: box.work + "/plot.png"))
        let log = binDirectory + "/cml-log"
        #expect(try box.run("cml-run", ["--project", "secret", "--", "sh", "-c", "echo hidden; '\(log)' image plot.png >/dev/null"]).status == 0)
        let id = try #require(try box.runs().first?["id"] as? String)
        let sha = try #require(try box.run("cml-run", ["artifacts", id, "--format", "jsonl"]).jsonLines.first?["sha256"] as? String)
        let other = try ServeAuthTests.create(box, "other", projects: ["public"])
        let own = try ServeAuthTests.create(box, "own", projects: ["secret"])
        let server = try ServerUnderTest(box)
        for path in ["/runs/\(id)/console?from=0", "/runs/\(id)/images/\(sha)"] {
            let refused = try box.web(server.url + path, ["-H", "Authorization: Bearer " + other])
            #expect(refused.status == 404 && !refused.body.contains("hidden"), "\(path)")
            let read = try box.web(server.url + path, ["-H", "Authorization: Bearer " + own])
            #expect(read.status == 200, "\(path)")
        }
        #expect(try box.web(server.url + "/runs/\(id)/images/\(sha)").status == 401)
        let page = try box.web(server.url + "/runs/\(id)/images/\(sha)", ["-H", "Authorization: Bearer " + own])
        #expect(page.header("content-type") == "image/png" && page.header("content-length") == "11")
    }

    /// A queued run's attempts, each with its agent and how it ended; names are text.
    @Test func attemptsAreListedWithTheirAgents() {
        var run = Run(id: "0192f3a4aaaa", name: nil, project: "p", status: .failed, command: ["true"], cwd: "/", host: "h", user: "u",
                      pid: nil, startedAt: 1_700_000_000, environment: [], code: .object([]), tags: [], params: [])
        run.queue = QueueEntryInfo(queue: WebTests.script, priority: 0, enqueuedAt: 1_700_000_000, attempts: 2, maxAttempts: 3,
                                   abortRequested: false, history: [
                                       RunAttempt(number: 1, agent: Self.image, host: "gpu1", startedAt: 1_700_000_010, endedAt: 1_700_000_020,
                                                  outcome: "lost", reason: "agent gone"),
                                       RunAttempt(number: 2, agent: "a2", host: "gpu2", startedAt: 1_700_000_030, endedAt: nil, outcome: nil, reason: nil),
                                   ])
        let html = RunPageSections.attempts(run).description
        #expect(html.contains("<td>&lt;script&gt;window.__pwned=1&lt;/script&gt;</td>") && html.contains("<td>2 of at most 3</td>"))
        #expect(html.contains("<td class=\"num\">1</td><td>&quot;&gt;&lt;img src=x onerror=&quot;window.__pwned=2&quot;&gt;</td><td>gpu1</td>"))
        #expect(html.contains("<td>lost</td><td>agent gone</td>") && html.contains("<td>running</td>"))
    }

    @Test func aRunPageInARealBrowser() throws {
        let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let output = package + "/.build/test-output/run-page"
        let result = try shell("python3 Tests/Browser/run_page.py --bin '\(binDirectory)' --out '\(output)'", cwd: package)
        #expect(result.status == 0, "\(result.out)\(result.stderr)")
    }
}

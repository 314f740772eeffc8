import CMLKit
import Foundation
import Testing

/// The compare page (`/compare?ids=…`) through curl against the built cml-serve, checked against what
/// the built `cml-diff` prints for the same runs.
struct WebComparePageTests {
    /// Runs of `sh` with parameters `lr` and `batch` (and `seed`, the same for all), each printing
    /// `acc` and `loss`; their ids in the order made.
    private func sweep(_ box: Sandbox, _ settings: [(lr: String, batch: String, acc: String)]) throws -> [String] {
        for (index, setting) in settings.enumerated() {
            let result = try box.run("cml-run", ["--name", "r\(index)", "--param", "lr=\(setting.lr)", "--param", "batch=\(setting.batch)",
                                                 "--param", "seed=1", "--monitor-interval", "0", "--",
                                                 "sh", "-c", "echo 'acc: \(setting.acc)'; echo 'loss: 0.5'"])
            #expect(result.status == 0, "\(result.stderr)")
        }
        return try box.runs().compactMap { $0["id"] as? String }.reversed()
    }

    /// Attribute values as the page writes them, unescaped.
    private static func unescaped(_ text: some StringProtocol) -> String {
        var text = String(text)
        for (entity, character) in [("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&#39;", "'"), ("&amp;", "&")] {
            text = text.replacingOccurrences(of: entity, with: character)
        }
        return text
    }

    /// The table's rows: whether plain `cml-diff` shows them (class `differs`, not `same` or `all-only`), kind, key and each cell's `data-value` parsed as JSON.
    private static func tableRows(_ page: String) throws -> [(differs: Bool, kind: String, key: String, values: [Any])] {
        let pattern = try NSRegularExpression(pattern: #"<tr class="(same|all-only|differs)" data-kind="([a-z]+)" data-key="([^"]*)">(.*?)</tr>"#)
        let cell = try NSRegularExpression(pattern: #"<td data-value="([^"]*)""#)
        let text = page as NSString
        return try pattern.matches(in: page, range: NSRange(location: 0, length: text.length)).map { match in
            let cells = text.substring(with: match.range(at: 4))
            let values = try cell.matches(in: cells, range: NSRange(location: 0, length: (cells as NSString).length)).map { found in
                try JSONSerialization.jsonObject(with: Data(unescaped((cells as NSString).substring(with: found.range(at: 1))).utf8),
                                                 options: .fragmentsAllowed)
            }
            return (text.substring(with: match.range(at: 1)) == "differs", text.substring(with: match.range(at: 2)),
                    unescaped(text.substring(with: match.range(at: 3))), values)
        }
    }

    /// Two parsed JSON values are the same when they serialize the same.
    private static func same(_ a: Any, _ b: Any) -> Bool {
        func text(_ value: Any) -> String? {
            (try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys])).map { String(decoding: $0, as: UTF8.self) }
        }
        return text(a) != nil && text(a) == text(b)
    }

    @Test func theLegendNamesWhatDiffersAndTheTableHoldsWhatCmlDiffPrints() throws {
        let box = try Sandbox()
        let ids = try sweep(box, [("0.1", "64", "0.5"), ("0.01", "64", "0.75"), ("0.1", "32", "0.5")])
        let server = try ServerUnderTest(box)
        // Prefixes are accepted as cml-diff takes them, and a run named twice is compared once.
        let page = try box.web(server.url + "/compare?ids=" + ids.map { String($0.prefix(16)) }.joined(separator: ",") + "," + ids[0])
        #expect(page.status == 200)
        let legend = page.body.components(separatedBy: "<li data-run=\"").dropFirst().map { $0.prefix { $0 != "\"" } }
        #expect(legend == ids.map { Substring($0) })
        for label in ["batch=64 lr=0.1", "batch=64 lr=0.01", "batch=32 lr=0.1"] {
            #expect(page.body.contains("<span class=\"label\">\(label)</span>"), "legend label \(label)")
        }
        #expect(!page.body.contains("seed=1"), "the same parameter is no label")

        // Every row cml-diff --all prints, with the same values; those plain cml-diff prints are those marked as differing.
        let rows = try Self.tableRows(page.body)
        for (flags, expectDiffering) in [(["--all"], false), ([], true)] {
            let printed = try box.run("cml-diff", ids + flags + ["--format", "jsonl"])
            #expect(printed.status == 0, "\(printed.stderr)")
            let shown = expectDiffering ? rows.filter(\.differs) : rows
            #expect(printed.jsonLines.count == shown.count, "cml-diff \(flags): \(printed.out)")
            for (line, row) in zip(printed.jsonLines, shown) {
                #expect(line["kind"] as? String == row.kind && line["key"] as? String == row.key)
                let values = try #require(line["values"] as? [String: Any])
                for (index, id) in ids.enumerated() {
                    #expect(Self.same(values[id] ?? NSNull(), row.values[index]), "\(row.key) of run \(index)")
                }
            }
        }
        #expect(rows.map(\.key).contains("seed") && !rows.first { $0.key == "seed" }!.differs)
        #expect(page.body.contains("<tr class=\"all-only\" data-kind=\"field\" data-key=\"started\">"), "differs by nature, only with --all")
        #expect(rows.first { $0.key == "acc" }?.differs == true && rows.first { $0.key == "loss" }?.differs == false)
        // The toggle that hides the rows that are the same, and the values as cml-diff's table shows them.
        #expect(page.body.contains("<input type=\"checkbox\" id=\"hide-same\" checked> <label for=\"hide-same\">Only what differs</label>"))
        #expect(page.body.contains("<td data-value=\"0.75\" class=\"differs\">0.75</td>"))

        // Metric summaries as cml-diff --stats takes them.
        let stats = try box.web(server.url + "/compare?stats=last,max&ids=" + ids.joined(separator: ","))
        #expect(try Self.tableRows(stats.body).map(\.key) == (try box.run("cml-diff", ids + ["--all", "--stats", "last,max"])).jsonLines.compactMap { $0["key"] as? String })
        #expect(try box.web(server.url + "/compare?stats=median&ids=" + ids.joined(separator: ",")).status == 400)

        // One overlaid chart per metric, its lines coloured in the legend's order.
        let sources = page.body.components(separatedBy: "data-cml-chart=\"").dropFirst().map { Self.unescaped($0.prefix { $0 != "\"" }) }
        #expect(sources == ["acc", "loss"].map { "/api/v1/chart?ids=\(ids.joined(separator: ","))&key=\($0)" })
        let chart = try box.web(server.url + (try #require(sources.first)))
        #expect(chart.status == 200 && chart.body.components(separatedBy: "<path class=\"series\"").count - 1 == 3)
        #expect(chart.body.contains(">batch=64 lr=0.01</text>"), "a few runs' chart has its own legend too")
        for (index, id) in ids.enumerated() {
            let color = SVGChart.lineStyle(index).color
            #expect(chart.body.contains("stroke=\"\(color)\""), "line \(index) of \(id)")
            #expect(page.body.contains("<li data-run=\"\(id)\"><svg class=\"swatch\" width=\"28\" height=\"10\" viewBox=\"0 0 28 10\" aria-hidden=\"true\"><path d=\"M2,5h24\" fill=\"none\" stroke=\"\(color)\""))
        }
    }

    @Test func unknownRunsAreA404PageNamingThem() throws {
        let box = try Sandbox()
        let ids = try sweep(box, [("0.1", "64", "0.5"), ("0.2", "64", "0.5")])
        let server = try ServerUnderTest(box)
        let missing = try box.web(server.url + "/compare?ids=\(ids[0]),ffff")
        #expect(missing.status == 404 && missing.header("content-type") == "text/html; charset=utf-8")
        #expect(missing.body.contains("no run with id ffff"))
        let named = try box.web(server.url + "/compare?ids=" + encoded("<b>nope"))
        #expect(named.status == 404 && named.body.contains("no run is named &#39;&lt;b&gt;nope&#39;"))
        let notAmong = try box.web(server.url + "/compare?ids=\(ids[0]),\(ids[1])&a=beef")
        #expect(notAmong.status == 400 && notAmong.body.contains("a must be one of the runs compared, not &#39;beef&#39;"))
        let empty = try box.web(server.url + "/compare")
        #expect(empty.status == 200 && empty.body.contains("Tick runs on the"))
    }

    /// A token for some projects compares only their runs: another project's run is not found.
    @Test func aTokensProjectsBoundWhatItCompares() throws {
        let box = try Sandbox()
        for project in ["mine", "theirs"] {
            #expect(try box.run("cml-run", ["--project", project, "--name", project, "--", "sh", "-c", "echo acc: 0.5"]).status == 0)
        }
        let created = try box.run("cml-serve", ["token", "create", "--name", "web", "--scope", "read", "--project", "mine"])
        let token = try #require(created.jsonLines.first?["token"] as? String)
        let mine = try #require(try box.show("mine")["id"] as? String), theirs = try #require(try box.show("theirs")["id"] as? String)
        let server = try ServerUnderTest(box)
        let bearer = ["-H", "Authorization: Bearer \(token)"]
        #expect(try box.web(server.url + "/compare?ids=\(mine)", bearer).status == 200)
        let hidden = try box.web(server.url + "/compare?ids=\(mine),\(theirs)", bearer)
        #expect(hidden.status == 404 && hidden.body.contains("no run with id \(theirs)"))
        #expect(try box.web(server.url + "/api/v1/chart?key=acc&ids=\(mine),\(theirs)", bearer).status == 404)
    }

    /// Two runs in a git repository with different uncommitted edits: the page shows what
    /// `cml-diff --code` does, each line of the patches' diff with the class of its kind.
    @Test func theCodeOfTwoRunsIsDiffedWithAClassPerLine() throws {
        let box = try Sandbox()
        let setup = "git init -q -b main && printf 'print(\"acc: 0.9\")\\n' > train.py && git add -A && git commit -qm init"
        #expect(try shell(setup, cwd: box.work).status == 0)
        for (lr, extra) in [("0.1", "print('loss: 0.5')"), ("0.01", "print('<script>window.__pwned=1</script>')")] {
            try box.write("train.py", "import sys\nprint('acc: 0.9')\n\(extra)\nprint('done')\n")
            let result = try box.run("cml-run", ["--monitor-interval", "0", "--", "python3", "train.py", "--lr", lr],
                                     env: ["GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org"])
            #expect(result.status == 0, "\(result.stderr)")
        }
        let ids: [String] = try box.runs().compactMap { $0["id"] as? String }.reversed()
        let server = try ServerUnderTest(box)
        let page = try box.web(server.url + "/compare?ids=" + ids.joined(separator: ","))
        #expect(page.status == 200)
        let printed = try box.run("cml-diff", ids + ["--code"]).out
        let diff = try #require(printed.components(separatedBy: "uncommitted changes, as a diff of the two captured patches:\n").last)
        let block = try #require(page.body.components(separatedBy: "<pre class=\"patch\">").last?.components(separatedBy: "</pre>").first)
        let spans = block.components(separatedBy: "</span>").filter { !$0.isEmpty }
        let lines = diff.components(separatedBy: "\n").filter { !$0.isEmpty }
        #expect(spans.count == lines.count, "\(block)")
        for (span, line) in zip(spans, lines) {
            let kind = line.hasPrefix("+") ? "d-add" : line.hasPrefix("-") ? "d-del" : line.hasPrefix("@@") ? "d-hunk" : "d-ctx"
            #expect(span == "<span class=\"\(kind)\">\(markupEscaped(line))\n")
        }
        #expect(page.body.contains("<span class=\"d-del\">-+print(&#39;loss: 0.5&#39;)\n</span>"))
        #expect(page.body.contains("<span class=\"d-add\">++print(&#39;&lt;script&gt;window.__pwned=1&lt;/script&gt;&#39;)\n</span>"))
        #expect(!page.body.contains("<script>window"))
        #expect(page.body.contains("<tr class=\"same\"><th scope=\"row\">branch</th><td>main</td><td></td></tr>"))
        // With more than two runs, selects pick the two; the pair is in the query. Commits that differ
        // are named with the git command that shows what changed; the server reads no repository.
        #expect(try shell("git commit -qam two", cwd: box.work).status == 0)
        #expect(try box.run("cml-run", ["--", "true"]).status == 0)
        let third = try #require(try box.runs().first?["id"] as? String)
        let three = try box.web(server.url + "/compare?ids=\(ids[0]),\(ids[1]),\(third)&a=\(third.prefix(16))&b=\(ids[1])")
        #expect(three.status == 200 && three.body.contains("<select id=\"code-a\" name=\"a\">"))
        #expect(three.body.contains("<option value=\"\(third)\" selected>"))
        let ambiguous = try box.web(server.url + "/compare?ids=\(ids[0]),\(ids[1]),\(third)&a=\(third.prefix(1))")
        #expect(ambiguous.status == 400 && ambiguous.body.contains("a \(third.prefix(1)) is ambiguous: 3 of the runs compared start so"))
        #expect(three.body.contains("<a href=\"/runs/\(third)\">\(RunID.short(third))</a> → <a href=\"/runs/\(ids[1])\">"))
        let commits = try [third, ids[1]].map { try #require((try box.show($0)["code"] as? [String: Any])?["commit"] as? String) }
        #expect(commits[0] != commits[1])
        #expect(three.body.contains("<code>git diff \(commits[0]) \(commits[1])</code> in the repository shows what changed"))
    }

    /// A sweep of 200 runs: the page, each overlaid chart with a line per run, and the scatter with a
    /// dot per run that has the metric; a parameter spanning decades is on a log axis.
    @Test func twoHundredRunsCompare() throws {
        let box = try Sandbox()
        let count = 200
        // Made eight at a time: the store takes concurrent writers.
        for batch in stride(from: 0, to: count, by: 8) {
            let started = try (batch..<min(count, batch + 8)).map { index in
                let lr = String(format: "%.6g", 1e-4 * pow(10, Double(index % 4)))
                let metric = index == 0 ? "echo 'loss: 1'" : "echo 'acc: \(Double(index) / Double(count))'; echo 'loss: 1'"
                return try box.start("cml-run", ["--name", "s\(index)", "--param", "lr=\(lr)", "--param", "run_number=\(index)",
                                                 "--monitor-interval", "0", "--", "sh", "-c", metric])
            }
            for run in started {
                let result = try run.wait()
                #expect(result.status == 0, "\(result.stderr)")
            }
        }
        let listed = try box.runs()
        let ids = listed.compactMap { $0["id"] as? String }
        #expect(ids.count == count)
        let server = try ServerUnderTest(box)
        let page = try box.web(server.url + "/compare?ids=" + ids.joined(separator: ","))
        #expect(page.status == 200)
        #expect(page.body.components(separatedBy: "<li data-run=").count - 1 == count)
        let sources = page.body.components(separatedBy: "data-cml-chart=\"").dropFirst().map { Self.unescaped($0.prefix { $0 != "\"" }) }
        try #require(sources.count == 2)
        #expect(sources.allSatisfy { $0.contains("&legend=0") })
        let loss = try box.web(server.url + sources[1])
        #expect(loss.status == 200 && loss.body.components(separatedBy: "<path class=\"series\"").count - 1 == count)
        #expect(!loss.body.contains("run_number=7</text>"), "past ten runs the page's legend alone names the lines")
        let acc = try box.web(server.url + sources[0])
        #expect(acc.body.components(separatedBy: "<path class=\"series\"").count - 1 == count - 1, "the run without acc has no line")
        // The scatter: lr against acc by default (run_number differs too, but lr comes first), one dot per run with acc.
        let dots = page.body.components(separatedBy: "<circle class=\"dot\"").count - 1
        #expect(dots == count - 1)
        #expect(page.body.contains("1 of \(count) runs have no lr or no acc: not drawn."))
        #expect(page.body.contains(">lr (log scale)</text>"))
        let named = try #require(listed.first { $0["name"] as? String == "s7" }?["id"] as? String)
        #expect(page.body.contains("<title>\(RunID.short(named)) s7: lr=0.1 run_number=7 · lr=0.1 · acc=0.035</title>"), "a dot's tooltip names its run")
        let byIndex = try box.web(server.url + "/compare?x=run_number&y=loss&stat=max&ids=" + ids.joined(separator: ","))
        #expect(byIndex.status == 200 && byIndex.body.components(separatedBy: "<circle class=\"dot\"").count - 1 == count)
        #expect(!byIndex.body.contains("(log scale)"), "run_number from 0 is on a linear axis")
        #expect(try box.web(server.url + "/compare?x=nope&ids=" + ids.joined(separator: ",")).status == 400)
    }

    /// Tests/Browser/compare_page.py: the compare page in headless Chromium; screenshots in
    /// .build/test-output/browser-compare.
    @Test func theComparePageInARealBrowser() throws {
        let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let output = package + "/.build/test-output/browser-compare"
        let result = try shell("python3 Tests/Browser/compare_page.py --bin '\(binDirectory)' --out '\(output)'", cwd: package)
        #expect(result.status == 0, "\(result.out)\(result.stderr)")
    }
}

import Foundation
import Testing
@testable import CMLServer

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// The chart routes of a real `cml-serve`, over runs recorded by the real `cml-run`.
struct ChartServeTests {
    /// A chart as an XML parser reads it: the root's attributes, each line's path, and the texts.
    struct ParsedChart {
        var root: [String: String] = [:]
        var lines: [[String: String]] = []
        var texts: [String] = []

        /// Each line's drawn points: `px,py,step,value,time[,smoothed]` split into fields.
        var points: [[[Substring]]] {
            lines.map { line in
                (line["data-points"] ?? "").split(separator: " ").map { $0.split(separator: ",", omittingEmptySubsequences: false) }
            }
        }

        /// Each line's path, split into its subpaths (`M…`).
        var subpaths: [[Substring]] { lines.map { ($0["d"] ?? "").split(separator: "M") } }

        var domain: [Double] { (root["data-x-domain"] ?? "").split(separator: " ").compactMap { Double($0) } }
        var plot: [Double] { (root["data-plot"] ?? "").split(separator: " ").compactMap { Double($0) } }
    }

    private final class Reader: NSObject, XMLParserDelegate {
        var chart = ParsedChart()
        private var inText = false

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            if name == "svg" { chart.root = attributes }
            if name == "path" && attributes["class"] == "series" { chart.lines.append(attributes) }
            inText = name == "text" || name == "title"
            if inText { chart.texts.append("") }
        }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            inText = false
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            if inText { chart.texts[chart.texts.count - 1] += string }
        }
    }

    static func parse(_ reply: HTTPReply) throws -> ParsedChart {
        #expect(reply.status == 200, "\(reply.text.prefix(300))")
        #expect(reply.headers["content-type"] == "image/svg+xml; charset=utf-8")
        let parser = XMLParser(data: reply.body)
        let reader = Reader()
        parser.delegate = reader
        try #require(parser.parse(), "not well-formed XML: \(parser.parserError.map(String.init(describing:)) ?? "")")
        return reader.chart
    }

    /// `cml-run` recording `lines` JSON lines that awk writes to the log channel: `body` is awk code
    /// printing one line for `i`.
    static func record(_ box: Sandbox, name: String, lines: Int, body: String, args: [String] = []) throws {
        let program = "gen-\(name.filter { $0.isLetter || $0.isNumber }).awk"
        try box.write(program, "BEGIN { for (i = 0; i < \(lines); i++) { \(body) } }\n")
        let result = try box.run("cml-run", ["--name", name, "--monitor-interval", "0"] + args
                                    + ["--", "sh", "-c", "awk -f \(program) >&$CML_LOG_FD"])
        #expect(result.status == 0, "\(result.stderr)")
    }

    /// Awk printing ten metrics, m0 … m9, for step i.
    static let tenMetrics: String = {
        var body = #"printf "{\"step\": %d"#
        for metric in 0..<10 { body += #", \"m\#(metric)\": %f"# }
        body += #"}\n", i"#
        for metric in 0..<10 { body += ", sin(i / \(1000 + metric * 100)) + \(metric)" }
        return body
    }()

    static func milliseconds(_ duration: Duration) -> Int {
        Int(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)
    }

    @Test func aMillionPointsAreDownsampledSplitAtGapsAndZoomedForReal() async throws {
        let box = try Sandbox()
        // 1,000,000 points of loss, NaN at 50,000, 150,000 … 950,000: ten gaps, eleven pieces of line.
        try Self.record(box, name: "big", lines: 1_000_000, body: #"""
            if (i % 100000 == 50000) printf "{\"step\": %d, \"loss\": \"nan\"}\n", i; \
            else printf "{\"step\": %d, \"loss\": %.6f}\n", i, 1 / (i + 1) + 0.001 * sin(i / 1000)
            """#)
        let server = try ServerUnderTest(box)
        let chart = server.url + "/api/v1/runs/big/chart?key=loss"

        let clock = ContinuousClock()
        var whole = HTTPReply(status: 0, headers: [:], body: Data())
        let elapsed = try await clock.measure { whole = try await HTTPReply.send(chart + "&width=800&height=300") }
        print("chart timing: 1,000,000 points, one chart: \(Self.milliseconds(elapsed)) ms, \(whole.body.count) bytes")
        let parsed = try Self.parse(whole)
        #expect(whole.headers["content-security-policy"]?.contains("default-src 'none'") == true)
        try #require(parsed.lines.count == 1)
        let plotWidth = parsed.plot[2] - parsed.plot[0]
        let drawn = try #require(parsed.points.first)
        #expect(drawn.count <= Int(plotWidth) * 2 && drawn.count > 1_000, "\(drawn.count) points for \(plotWidth) px")
        // Every drawn point is in the path, and the NaNs cut it into eleven subpaths.
        #expect(parsed.subpaths[0].count == 11)
        #expect(parsed.subpaths[0].reduce(0) { $0 + $1.split(separator: " ").count } == drawn.count)
        #expect(parsed.texts.contains("10 NaN/infinite values not shown"))
        #expect(drawn.first?[2] == "0" && drawn.last?[2] == "999999")
        #expect(drawn.allSatisfy { $0.count == 5 && Double($0[3])!.isFinite })

        // A zoom on steps: every point of the range, and only those.
        let zoomed = try Self.parse(try await HTTPReply.send(chart + "&from=200000&to=200400"))
        #expect(zoomed.points[0].map { Int($0[2])! } == Array(200_000...200_400))
        #expect(zoomed.domain == [200_000, 200_400])

        // A zoom on wall-clock time, between two drawn points' times.
        let times = drawn.compactMap { Double($0[4]) }.sorted()
        let (from, to) = (times[times.count / 3], times[times.count / 2])
        let byTime = try Self.parse(try await HTTPReply.send(chart + "&x=time&from=\(from)&to=\(to)"))
        #expect(byTime.root["data-x-unit"] == "time")
        let zoomedTimes = byTime.points[0].compactMap { Double($0[4]) }
        #expect(!zoomedTimes.isEmpty && zoomedTimes.allSatisfy { $0 >= from - 0.0005 && $0 <= to + 0.0005 })

        // Smoothing and the log scale, as notes; the smoothed value rides along.
        let smoothed = try Self.parse(try await HTTPReply.send(chart + "&smooth=0.6&log=1"))
        #expect(smoothed.texts.contains { $0.contains("smoothed: exponential moving average, weight 0.6") })
        #expect(smoothed.points[0].allSatisfy { $0.count == 6 })

        for (query, message) in [
            ("", "key is required"),
            ("?key=loss&width=10", "width must be 240 to 8000 pixels, not 10"),
            ("?key=loss&x=epoch", "x must be step, time or elapsed, not 'epoch'"),
            ("?key=loss&from=5&to=1", "from 5 is after to 1"),
            ("?key=loss&from=abc", "from must be a number"),
            ("?key=loss&smooth=2.5", "smooth of 1 or more is a whole number of points, not '2.5'"),
            ("?key=loss&colour=red", "unknown query parameter 'colour'"),
        ] {
            let reply = try await HTTPReply.send(server.url + "/api/v1/runs/big/chart" + query)
            #expect(reply.status == 400 && (reply.json["error"] as? String ?? "").contains(message), "\(query): \(reply.text)")
        }
        let unknown = try await HTTPReply.send(server.url + "/api/v1/runs/big/chart?key=acc")
        #expect(unknown.status == 404 && unknown.json["hint"] as? String == "it has: loss", "\(unknown.text)")
    }

    @Test func runsOverlaidWithALegendAndEveryNameEscaped() async throws {
        let box = try Sandbox()
        let key = "<script>window.__pwned=1</script>"
        let awk = #"printf "{\"step\": %d, \"<script>window.__pwned=1</script>\": %f}\n", i, "#
        try Self.record(box, name: "a", lines: 300, body: awk + "1 / (i + 1)", args: ["--param", "lr=0.1"])
        try Self.record(box, name: "<img src=x onerror=alert(1)>", lines: 300, body: awk + "2 / (i + 1)", args: ["--param", "lr=0.5"])
        try Self.record(box, name: "other", lines: 10, body: #"printf "{\"step\": %d, \"acc\": 0.5}\n", i"#)
        let server = try ServerUnderTest(box)
        // In the order recorded: a, the one named <img …>, other.
        let ids = Array(try box.runs().compactMap { $0["id"] as? String }.reversed())
        try #require(ids.count == 3)

        let reply = try await HTTPReply.send(server.url + "/api/v1/chart?ids=\(ids.joined(separator: ","))&key=\(encoded(key))")
        let overlaid = try Self.parse(reply)
        #expect(overlaid.lines.count == 2, "the run without the metric is left out")
        #expect(overlaid.texts.contains("lr=0.1") && overlaid.texts.contains("lr=0.5"), "\(overlaid.texts)")
        #expect(Set(overlaid.lines.compactMap { $0["stroke"] }).count == 2)
        // The key is the title, as text: no element of the SVG is a script or has a handler.
        #expect(overlaid.texts.contains(key))
        #expect(!reply.text.contains("<script") && !reply.text.contains("<img"))
        #expect(reply.text.contains("&lt;script&gt;window.__pwned=1&lt;/script&gt;"))

        // One run's chart is labelled with its name, escaped.
        let named = try await HTTPReply.send(server.url + "/api/v1/runs/\(ids[1])/chart?key=\(encoded(key))")
        #expect(try Self.parse(named).texts.contains("<img src=x onerror=alert(1)>"))
        #expect(!named.text.contains("<img"))

        // A run keeps its colour in every chart of the same runs: the third's, where it alone has the metric.
        let third = try Self.parse(try await HTTPReply.send(server.url + "/api/v1/chart?ids=\(ids.joined(separator: ","))&key=acc"))
        #expect(third.lines.map { $0["stroke"] } == ["#009E73"])

        let none = try await HTTPReply.send(server.url + "/api/v1/chart?ids=\(ids[0])&key=loss")
        #expect(none.status == 404 && (none.json["error"] as? String) == "none of the 1 runs has a metric 'loss'", "\(none.text)")
        let noIDs = try await HTTPReply.send(server.url + "/api/v1/chart?key=loss")
        #expect(noIDs.status == 400)
        let missing = try await HTTPReply.send(server.url + "/api/v1/chart?ids=\(ids[1]),ffffffff&key=\(encoded(key))")
        #expect(missing.status == 404)
    }

    @Test func chartsNeedATokenWhenTheServerHasOnes() async throws {
        let box = try Sandbox()
        try Self.record(box, name: "a", lines: 10, body: #"printf "{\"step\": %d, \"loss\": 1}\n", i"#)
        let token = try ServeAuthTests.create(box, "ci")
        let server = try ServerUnderTest(box)
        for chart in ["/api/v1/runs/a/chart?key=loss", "/api/v1/chart?ids=a&key=loss"] {
            #expect(try await HTTPReply.send(server.url + chart).status == 401)
            #expect(try await HTTPReply.send(server.url + chart, headers: ServeAuthTests.bearer(token)).status == 200)
        }
        // The script holds nothing to protect.
        let script = try await HTTPReply.send(server.url + StaticAssets.chartScript.href.description)
        #expect(script.status == 200 && script.headers["content-type"] == "text/javascript; charset=utf-8")
        #expect(script.text.contains("data-cml-chart"))
    }

    /// The chart script in headless Chromium (Tests/Browser/chart_browser.py says what it checks), on a
    /// run of 200,000 points and two runs overlaid under a key that holds a `<script>`. Its screenshots
    /// are kept in .build/test-output/chart-browser.
    @Test func theChartScriptInABrowser() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            try #require(FileManager.default.isExecutableFile(atPath: tool), "\(tool) is missing: scripts/test installs chromium and chromium-driver")
        }
        let box = try Sandbox()
        try Self.record(box, name: "long", lines: 200_000, body: #"printf "{\"step\": %d, \"loss\": %f}\n", i, 1 / (i / 1000 + 1) + 0.05 * sin(i / 300)"#)
        let key = "<script>window.__pwned=1</script>"
        let awk = #"printf "{\"step\": %d, \"<script>window.__pwned=1</script>\": %f}\n", i, "#
        try Self.record(box, name: "a", lines: 500, body: awk + "1 / (i + 1)", args: ["--param", "lr=0.1"])
        try Self.record(box, name: "b", lines: 500, body: awk + "2 / (i + 1)", args: ["--param", "lr=0.5"])
        try Self.record(box, name: "ten", lines: 100_000, body: Self.tenMetrics)
        let server = try ServerUnderTest(box)
        let output = root.appendingPathComponent(".build/test-output/chart-browser").path
        // The python3 on PATH: the one selenium was installed for.
        let result = try box.run("/usr/bin/env", [
            "python3", root.appendingPathComponent("Tests/Browser/chart_browser.py").path, server.url, StaticAssets.chartScript.href.description,
            "/api/v1/runs/long/chart?key=loss", "/api/v1/chart?ids=a,b&key=\(encoded(key))", key, output,
            "/api/v1/runs/ten/chart?key=m",
        ])
        #expect(result.status == 0, "\(result.out)\(result.stderr)")
        print("chart browser checks (screenshots in \(output)):\n\(result.out)")
    }

    /// Reports (never asserts) how long charts take: one of 100,000 points, and the ten charts of a
    /// run with 10 metrics × 100,000 points, one after another and all at once as a page asks.
    @Test func timingsOfLongSeries() async throws {
        let box = try Sandbox()
        try Self.record(box, name: "ten", lines: 100_000, body: Self.tenMetrics)
        let server = try ServerUnderTest(box)
        let base = server.url + "/api/v1/runs/ten/chart?width=800&height=300&key=m"
        let clock = ContinuousClock()
        let first = try Self.parse(try await HTTPReply.send(base + "0"))
        #expect(first.points[0].count <= 1_600 && first.points[0].count > 1_000)

        let one = try await clock.measure { _ = try await HTTPReply.send(base + "1") }
        let sequential = try await clock.measure {
            for metric in 0..<10 {
                let reply = try await HTTPReply.send(base + "\(metric)")
                #expect(reply.status == 200)
            }
        }
        let concurrent = try await clock.measure {
            try await withThrowingTaskGroup(of: Int.self) { group in
                for metric in 0..<10 { group.addTask { try await HTTPReply.send(base + "\(metric)&smooth=0.6").status } }
                for try await status in group { #expect(status == 200) }
            }
        }
        print("chart timing: 100,000 points, one chart: \(Self.milliseconds(one)) ms")
        print("chart timing: 10 metrics x 100,000 points, one after another: \(Self.milliseconds(sequential)) ms")
        print("chart timing: 10 metrics x 100,000 points, all at once (smoothed): \(Self.milliseconds(concurrent)) ms")
    }
}

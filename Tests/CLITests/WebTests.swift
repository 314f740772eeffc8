import CMLKit
import Foundation
import Testing
@testable import CMLServer

/// One exchange with curl, as a browser would have it: redirects not followed, cookies in a jar.
struct WebReply {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: String

    func header(_ name: String) -> String? { headers.first { $0.name == name.lowercased() }?.value }

    /// The CSRF token of the page's first form.
    var csrf: String? {
        guard let range = body.range(of: #"name="csrf" value="[0-9a-f]{64}""#, options: .regularExpression) else { return nil }
        return String(body[range].dropLast().suffix(64))
    }
}

extension Sandbox {
    /// `curl` with `options`, its cookies kept in the sandbox's jar.
    func web(_ url: String, _ options: [String] = [], jar: String = "jar") throws -> WebReply {
        let result = try run("/usr/bin/curl", ["-s", "-i", "-c", root + "/" + jar, "-b", root + "/" + jar] + options + [url])
        let text = result.out
        guard let split = text.range(of: "\r\n\r\n") else { throw ServeTestError("curl \(url): \(text) \(result.stderr)") }
        let head = text[..<split.lowerBound].split(separator: "\r\n")
        let status = Int(head.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
        let headers = head.dropFirst().compactMap { line -> (String, String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (line[..<colon].lowercased(), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        return WebReply(status: status, headers: headers, body: String(text[split.upperBound...]))
    }
}

struct WebTests {
    static let script = "<script>window.__pwned=1</script>"

    @Test func pagesAreHTMLUnderAPolicyThatRunsOnlyTheServersOwnFiles() throws {
        let box = try Sandbox()
        #expect(try box.run("cml-run", ["--name", Self.script, "--", "sh", "-c", "echo acc: 0.5"]).status == 0)
        let server = try ServerUnderTest(box)
        let page = try box.web(server.url + "/")
        #expect(page.status == 200)
        #expect(page.header("content-type") == "text/html; charset=utf-8")
        let policy = try #require(page.header("content-security-policy"))
        #expect(policy.contains("script-src 'self'") && policy.contains("style-src 'self'") && policy.contains("default-src 'none'"))
        #expect(!policy.contains("unsafe"))
        #expect(page.header("x-content-type-options") == "nosniff")
        #expect(page.header("cache-control") == "no-store")
        let cookie = try #require(page.header("set-cookie"))
        #expect(cookie.hasPrefix("cml_session=") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && !cookie.contains("Secure"))
        // The run's name is text: escaped, in the table and in the row's label.
        #expect(page.body.contains("&lt;script&gt;window.__pwned=1&lt;/script&gt;"))
        #expect(!page.body.contains(Self.script))
        #expect(!page.body.contains("<script>"), "no inline script at all")
        // The stylesheet and the script: named by their content's hash, cached for a year.
        for suffix in ["css", "js"] {
            let range = try #require(page.body.range(of: #"/static/cml\.[0-9a-f]{12}\."# + suffix, options: .regularExpression))
            let path = String(page.body[range])
            let asset = try box.web(server.url + path)
            #expect(asset.status == 200)
            #expect(asset.header("content-type")?.hasPrefix(suffix == "css" ? "text/css" : "text/javascript") == true)
            #expect(asset.header("cache-control") == "public, max-age=31536000, immutable")
            #expect(path.contains("." + SHA256Hasher.hex(Array(asset.body.utf8)).prefix(12) + "."), "\(path) names its content")
        }
        #expect(try box.web(server.url + "/static/cml.000000000000.css").status == 404)
        // The run's page, and an unknown one.
        let id = try #require(try box.runs().first?["id"] as? String)
        let runPage = try box.web(server.url + "/runs/" + id)
        #expect(runPage.status == 200 && runPage.body.contains("<title>&lt;script&gt;window.__pwned=1&lt;/script&gt; · cml</title>"))
        let missing = try box.web(server.url + "/runs/ffff")
        #expect(missing.status == 404 && missing.header("content-type") == "text/html; charset=utf-8")
        #expect(missing.body.contains("no run with id ffff"))
        // A mistyped address: a page for a browser, JSON for the API and for clients that ask for no HTML.
        let html = ["-H", "Accept: text/html,application/xhtml+xml,*/*;q=0.8"]
        let typo = try box.web(server.url + "/rnus?where=<b>", html)
        #expect(typo.status == 404 && typo.header("content-type") == "text/html; charset=utf-8" && typo.body.contains("there is no page /rnus"), "\(typo.body)")
        #expect(typo.header("content-security-policy")?.contains("script-src 'self'") == true)
        for (path, options) in [("/rnus", [String]()), ("/api/v1/nope", html)] {
            let json = try box.web(server.url + path, options)
            #expect(json.status == 404 && json.header("content-type") == "application/json" && json.body.contains(#""kind":"not_found""#), "\(path): \(json.body)")
        }
    }

    /// A run's page draws every series: one chart element per metric, grouped by the key's prefix, its
    /// source the run's chart route with the key encoded, and the chart script loaded (only there).
    @Test func aRunPageHasAChartOfEverySeriesGroupedByPrefix() throws {
        let box = try Sandbox()
        let keys = ["train/loss", "train/acc", "val/acc", "lr", "<b>&x"]
        let lines = keys.map { #"{"step": 1, "\#($0)": 0.5}"# }.joined(separator: "\n")
        #expect(try box.run("cml-run", ["--name", "charted", "--", "sh", "-c", "printf '\(lines)\\n'"]).status == 0)
        #expect(try box.run("cml-run", ["--name", "plain", "--", "true"]).status == 0)
        let server = try ServerUnderTest(box)
        let id = try #require(try box.show("charted")["id"] as? String)
        let page = try box.web(server.url + "/runs/" + id)
        #expect(page.status == 200)
        let sources = page.body.components(separatedBy: "data-cml-chart=\"").dropFirst().map { $0.prefix { $0 != "\"" } }
        #expect(sources == ["/api/v1/runs/\(id)/chart?key=%3Cb%3E%26x",
                            "/api/v1/runs/\(id)/chart?key=lr",
                            "/api/v1/runs/\(id)/chart?key=train/acc", "/api/v1/runs/\(id)/chart?key=train/loss",
                            "/api/v1/runs/\(id)/chart?key=val/acc"].map { Substring($0) }, "\(sources)")
        let groups = page.body.components(separatedBy: "<h3>").dropFirst().map { $0.prefix { $0 != "<" } }
        #expect(groups == ["Scalars", "train", "val"], "\(groups)")
        #expect(page.body.contains("<figcaption>&lt;b&gt;&amp;x</figcaption>"))
        #expect(page.body.contains(StaticAssets.chartScript.href.description))
        for source in sources {
            let chart = try box.web(server.url + String(source))
            #expect(chart.status == 200 && chart.body.contains("<svg"), "\(source)")
        }
        let script = try box.web(server.url + StaticAssets.chartScript.href.description)
        #expect(script.status == 200 && script.header("cache-control") == "public, max-age=31536000, immutable")
        let plainID = try #require(try box.show("plain")["id"] as? String)
        let plain = try box.web(server.url + "/runs/" + plainID)
        #expect(plain.status == 200 && !plain.body.contains("data-cml-chart") && !plain.body.contains("cml-chart."))
    }

    /// A bad filter is shown on the page, its character marked, with status 400.
    @Test func aBadFilterIsShownWhereItIsWrong() throws {
        let box = try Sandbox()
        #expect(try box.run("cml-run", ["--", "sh", "-c", "echo acc: 0.5"]).status == 0)
        let server = try ServerUnderTest(box)
        let page = try box.web(server.url + "/runs?where=" + encoded("acc >> 1"))
        #expect(page.status == 400)
        #expect(page.body.contains("expected a value after &gt;, found &#39;&gt;&#39; at character 6"))
        #expect(page.body.contains("acc &gt;<mark>&gt;</mark> 1"))
        #expect(page.body.contains("<span class=\"caret\">     ^</span>"))
        let good = try box.web(server.url + "/runs?where=" + encoded("acc > 0.4") + "&columns=id,acc")
        #expect(good.status == 200 && good.body.contains("<td data-col class=\"num\">0.5</td>"))
        #expect(try box.web(server.url + "/runs?where=" + encoded("acc > 0.6")).body.contains("No runs match."))
    }

    @Test func aStoreWithTokensAsksPagesForALoginAndItsSessionStandsForTheToken() throws {
        let box = try Sandbox()
        #expect(try box.run("cml-run", ["--name", "mine", "--", "sh", "-c", "echo acc: 0.5"]).status == 0)
        let created = try box.run("cml-serve", ["token", "create", "--name", "web", "--scope", "write"])
        let token = try #require(created.jsonLines.first?["token"] as? String)
        let server = try ServerUnderTest(box)
        let asked = try box.web(server.url + "/runs?where=" + encoded("acc > 0"))
        #expect(asked.status == 303)
        #expect(asked.header("location") == "/login?next=/runs%3Fwhere%3Dacc%2520%253E%25200")
        let form = try box.web(server.url + "/login?next=/runs")
        #expect(form.status == 200 && form.body.contains("<input type=\"password\" id=\"token\" name=\"token\""))
        // The session the first page opened (the browser's until it logs in).
        let before = try #require(asked.header("set-cookie"))
        #expect(form.header("set-cookie") == nil, "the same session shows the form")
        let csrf = try #require(form.csrf)
        let wrong = try box.web(server.url + "/login", ["--data-urlencode", "token=cml_wrong", "-d", "next=/runs&csrf=\(csrf)"])
        #expect(wrong.status == 401 && wrong.body.contains("This server does not know that token."))
        let noCSRF = try box.web(server.url + "/login", ["--data-urlencode", "token=\(token)", "-d", "next=/runs"])
        #expect(noCSRF.status == 403)
        let loggedIn = try box.web(server.url + "/login", ["--data-urlencode", "token=\(token)", "-d", "next=/runs&csrf=\(csrf)"])
        #expect(loggedIn.status == 303 && loggedIn.header("location") == "/runs")
        let after = try #require(loggedIn.header("set-cookie"))
        #expect(after.contains("HttpOnly") && after.contains("SameSite=Strict"))
        #expect(after.prefix(76) != before.prefix(76), "logging in makes a new session id")
        #expect(!after.contains(token), "the cookie holds no token")
        let runs = try box.web(server.url + "/runs")
        #expect(runs.status == 200 && runs.body.contains("token web"))
        // The session stands for the token on the API's reads, not on its writes.
        #expect(try box.web(server.url + "/api/v1/runs").status == 200)
        let id = try #require(try box.runs().first?["id"] as? String)
        let write = try box.web(server.url + "/api/v1/store/runs/\(id)/tags", ["-X", "POST", "-d", #"{"add":["x"],"remove":[]}"#])
        #expect(write.status == 401)
        #expect(try box.show(id)["tags"] as? [String] == [])
        // Revoking the token ends its sessions at once.
        #expect(try box.run("cml-serve", ["token", "revoke", "web"]).status == 0)
        #expect(try box.web(server.url + "/runs").status == 303)
        #expect(try box.web(server.url + "/api/v1/runs").status == 401)
    }

    @Test func logOutForgetsTheSession() throws {
        let box = try Sandbox()
        let created = try box.run("cml-serve", ["token", "create", "--name", "web", "--scope", "read"])
        let token = try #require(created.jsonLines.first?["token"] as? String)
        let server = try ServerUnderTest(box)
        let csrf = try #require(try box.web(server.url + "/login").csrf)
        #expect(try box.web(server.url + "/login", ["--data-urlencode", "token=\(token)", "-d", "csrf=\(csrf)"]).status == 303)
        // The session's cookie, kept apart: after logging out, the server no longer knows it.
        try FileManager.default.copyItem(atPath: box.root + "/jar", toPath: box.root + "/copy")
        let page = try box.web(server.url + "/")
        #expect(page.status == 200)
        let out = try box.web(server.url + "/logout", ["-d", "csrf=\(try #require(page.csrf))"])
        #expect(out.status == 303 && out.header("location") == "/login" && out.header("set-cookie")?.contains("Max-Age=0") == true)
        #expect(try box.web(server.url + "/", jar: "copy").status == 303)
    }

    @Test func pagePostsNeedTheSessionsCSRFTokenAndComeFromThisServer() throws {
        let box = try Sandbox()
        #expect(try box.run("cml-run", ["--name", "target", "--", "true"]).status == 0)
        let id = try #require(try box.runs().first?["id"] as? String)
        let server = try ServerUnderTest(box)
        let csrf = try #require(try box.web(server.url + "/").csrf)
        let fields = "id=\(id)&action=tag&tag=forged&return=/"
        #expect(try box.web(server.url + "/runs/actions", ["-d", fields]).status == 403)
        #expect(try box.web(server.url + "/runs/actions", ["-d", fields + "&csrf=" + String(repeating: "0", count: 64)]).status == 403)
        let foreign = try box.web(server.url + "/runs/actions", ["-H", "Origin: http://evil.example", "-d", fields + "&csrf=\(csrf)"])
        #expect(foreign.status == 403 && foreign.body.contains("a form from http://evil.example may not post to this server"))
        let crossSite = try box.web(server.url + "/runs/actions", ["-H", "Sec-Fetch-Site: cross-site", "-d", fields + "&csrf=\(csrf)"])
        #expect(crossSite.status == 403)
        #expect(try box.web(server.url + "/runs/actions", ["-d", fields + "&csrf=\(csrf)"], jar: "other").status == 403, "another browser's token")
        #expect(try box.show(id)["tags"] as? [String] == [])
        let origin = server.url
        let done = try box.web(server.url + "/runs/actions", ["-H", "Origin: \(origin)", "-d", fields.replacingOccurrences(of: "forged", with: "kept") + "&csrf=\(csrf)"])
        #expect(done.status == 303 && done.header("location") == "/")
        #expect(try box.show(id)["tags"] as? [String] == ["kept"])
        #expect(try box.web(server.url + "/").body.contains("Tagged 1 run with kept."), "the next page says what was done")
    }

    @Test func redirectsAfterALoginStayOnThisServer() {
        for local in ["/", "/runs?where=acc%3E0.9", "/runs/0123"] { #expect(LoginPage.localPath(local) == local) }
        for foreign in [nil, "", "//evil.example", "https://evil.example", "/\\evil.example", "runs", "/a b", "/\tx"] {
            #expect(LoginPage.localPath(foreign) == "/", "\(String(describing: foreign))")
        }
    }

    @Test func htmlEscapesEveryInterpolatedTextAndLinksEncodeTheirParts() {
        let text = #"<script>alert("x")</script>' & more"#
        let html: HTML = "<td title=\"\(text)\">\(text)</td>"
        #expect(html.description == #"<td title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39; &amp; more">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39; &amp; more</td>"#)
        let inner: HTML = "<b>\(text)</b>"
        #expect(("<p>\(inner)</p>" as HTML).description == "<p>" + inner.description + "</p>", "HTML is not escaped twice")
        #expect(HTML(text: "a<b").description == "a&lt;b")
        let link = Href("runs", "a/b c?", query: [("where", "acc>0.9 & x=1 #2"), ("sort", "-acc,lr")])
        #expect(link.description == "/runs/a%2Fb%20c%3F?where=acc%3E0.9%20%26%20x%3D1%20%232&sort=-acc,lr")
        #expect(("<a href=\"\(Href("x", query: [("q", "\"><")]))\">" as HTML).description == "<a href=\"/x?q=%22%3E%3C\">")
    }

    @Test func sessionSecretsAreComparedWhole() {
        #expect(WebSessions.constantTimeEqual(Array("abc".utf8), Array("abc".utf8)))
        #expect(!WebSessions.constantTimeEqual(Array("abc".utf8), Array("abd".utf8)))
        #expect(!WebSessions.constantTimeEqual(Array("abc".utf8), Array("ab".utf8)))
        #expect(WebSessions.cookie("cml_session", in: ["a=1; cml_session=xyz; b=2"]) == "xyz")
        #expect(WebSessions.cookie("cml_session", in: ["a=1", "cml_session=xyz"]) == "xyz")
        #expect(WebSessions.cookie("cml_session", in: ["not_cml_session=xyz"]) == nil)
        #expect(WebSessions.randomHex() != WebSessions.randomHex() && WebSessions.randomHex().count == 64)
    }

    /// Requests without a cookie open sessions, a page of another site's too: however many, they push
    /// out only the oldest such sessions, never one logged in with a token.
    @Test func aFloodOfSessionsWithoutALoginNeverPushesOutOneLoggedIn() {
        let sessions = WebSessions(capacity: 3)
        let loggedIn = (0..<3).map { _ in sessions.open(tokenHash: "hash") }
        let flood = (0..<5000).map { _ in sessions.open(tokenHash: nil) }
        #expect(loggedIn.allSatisfy { sessions.session(id: $0.id)?.tokenHash == "hash" })
        #expect(flood.filter { sessions.session(id: $0.id) != nil }.map(\.id) == flood.suffix(3).map(\.id))
        // A fourth login pushes out the least recently used of the logged-in ones.
        _ = sessions.session(id: loggedIn[0].id)
        _ = sessions.session(id: loggedIn[2].id)
        let fourth = sessions.open(tokenHash: "hash")
        #expect(sessions.session(id: loggedIn[1].id) == nil)
        #expect([loggedIn[0], loggedIn[2], fourth].allSatisfy { sessions.session(id: $0.id) != nil })
        // Closing frees a place; logging in replaces the anonymous session.
        sessions.close(fourth)
        #expect(sessions.session(id: fourth.id) == nil)
        let anonymous = sessions.open(tokenHash: nil)
        _ = sessions.open(tokenHash: "hash", replacing: anonymous)
        #expect(sessions.session(id: anonymous.id) == nil)
        #expect([loggedIn[0], loggedIn[2]].allSatisfy { sessions.session(id: $0.id) != nil })
    }

    /// Tests/Browser/web_ui.py: headless Chromium against the built cml-serve on stores the built
    /// commands fill, checking what a person sees; its screenshots go to .build/test-output/browser.
    @Test func theWebUIInARealBrowser() throws {
        let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let output = package + "/.build/test-output/browser"
        let result = try shell("python3 Tests/Browser/web_ui.py --bin '\(binDirectory)' --out '\(output)'", cwd: package)
        #expect(result.status == 0, "\(result.out)\(result.stderr)")
    }
}

import Foundation
import Testing
import CMLKit
@testable import CMLServer

/// `cml-serve token …` and the server's token checks, through the built executables.
struct ServeAuthTests {
    /// Creates a token with the built command; returns its secret.
    static func create(_ box: Sandbox, _ name: String, scope: String = "read", projects: [String] = []) throws -> String {
        let created = try box.run("cml-serve", ["token", "create", "--name", name, "--scope", scope] + projects.flatMap { ["--project", $0] })
        #expect(created.status == 0, "\(created.stderr)")
        let line = try #require(created.jsonLines.first)
        #expect(created.out.split(separator: "\n").count == 1)
        #expect(line["name"] as? String == name && line["scope"] as? String == scope && line["projects"] as? [String] == projects)
        return try #require(line["token"] as? String)
    }

    static func bearer(_ token: String) -> [String: String] { ["Authorization": "Bearer " + token] }

    @Test func requestsNeedAGoodTokenOnceTheStoreHasOne() async throws {
        let (box, trained, _, _, _) = try ServeTests.populatedStore()
        let server = try ServerUnderTest(box)
        let runs = server.url + "/api/v1/runs"
        // No token yet: loopback serves without one, as before.
        #expect(try await HTTPReply.send(runs).status == 200)

        let token = try Self.create(box, "laptop")
        #expect(token.hasPrefix("cml_") && token.count >= 40)
        for headers in [[:], Self.bearer("cml_" + String(repeating: "A", count: 43)), ["Authorization": "Basic dXNlcjpwYXNz"],
                        Self.bearer(String(token.dropLast()))] {
            for path in [runs, runs + "/" + trained, server.url + "/api/v1/projects"] {
                let reply = try await HTTPReply.send(path, headers: headers)
                #expect(reply.status == 401, "\(path) \(headers): \(reply.text)")
                #expect(reply.headers["www-authenticate"]?.hasPrefix("Bearer") == true)
                #expect(reply.json["kind"] as? String == "unauthenticated", "\(reply.text)")
                #expect(!reply.text.contains(token.prefix(12)))
            }
        }
        let good = try await HTTPReply.send(runs, headers: Self.bearer(token))
        let listed = try box.run("cml-run", ["ls", "--format", "jsonl"]).stdout
        #expect(good.status == 200 && good.body == listed)
        // The scheme is case-insensitive.
        #expect(try await HTTPReply.send(runs, headers: ["Authorization": "bearer " + token]).status == 200)
        // /healthz stays open.
        #expect(try await HTTPReply.send(server.url + "/healthz").status == 200)

        // Revoked while the server runs: refused from the next request on; another token still works.
        let other = try Self.create(box, "ci", scope: "admin")
        #expect(try box.run("cml-serve", ["token", "revoke", "laptop"]).status == 0)
        let revoked = try await HTTPReply.send(runs, headers: Self.bearer(token))
        #expect(revoked.status == 401 && revoked.json["error"] as? String == "the token was revoked", "\(revoked.text)")
        #expect(try await HTTPReply.send(runs, headers: Self.bearer(other)).status == 200)
        // Revoking every token does not open the server again.
        #expect(try box.run("cml-serve", ["token", "revoke", "ci"]).status == 0)
        #expect(try await HTTPReply.send(runs).status == 401)

        // Tokens never reach the server's log.
        let stopped = try server.stop()
        #expect(stopped.status == 0)
        #expect(!stopped.stderr.contains(token) && !stopped.stderr.contains(other) && !stopped.out.contains(token), "\(stopped.stderr)")
    }

    @Test func aProjectBoundTokenSeesOnlyItsProjects() async throws {
        let (box, trained, failed, stored, _) = try ServeTests.populatedStore()
        let sha = try #require(try box.run("cml-run", ["artifacts", stored, "--format", "jsonl"]).jsonLines.first?["sha256"] as? String)
        let server = try ServerUnderTest(box)
        let api = server.url + "/api/v1"
        let other = Self.bearer(try Self.create(box, "other-only", projects: ["other"]))
        let both = Self.bearer(try Self.create(box, "both", projects: ["other", "default"]))
        let all = Self.bearer(try Self.create(box, "all"))

        let listed = try await HTTPReply.send(api + "/runs", headers: other)
        let cli = try box.run("cml-run", ["ls", "--project", "other", "--format", "jsonl"]).stdout
        #expect(listed.status == 200 && listed.body == cli)
        #expect(listed.text.split(separator: "\n").count == 1 && listed.text.contains(failed))
        // Asking for another project is answered with no runs, not with them.
        let asked = try await HTTPReply.send(api + "/runs?project=default", headers: other)
        #expect(asked.status == 200 && asked.body.isEmpty)
        #expect(try await HTTPReply.send(api + "/runs", headers: both).text.split(separator: "\n").count == 3)
        #expect(try await HTTPReply.send(api + "/runs?limit=1&sort=started", headers: other).text.contains(failed))

        let projects = try await HTTPReply.send(api + "/projects", headers: other)
        #expect(projects.status == 200 && projects.text.split(separator: "\n").count == 1 && projects.text.contains("\"other\""))
        #expect(try await HTTPReply.send(api + "/projects", headers: all).text.split(separator: "\n").count == 2)

        #expect(try await HTTPReply.send(api + "/runs/\(failed)", headers: other).status == 200)
        #expect(try await HTTPReply.send(api + "/runs/\(failed)/log", headers: other).status == 200)
        // Another project's run is answered exactly as a run that does not exist.
        for path in ["/runs/\(trained)", "/runs/baseline", "/runs/\(trained)/metrics", "/runs/\(trained)/metrics?key=loss",
                     "/runs/\(trained)/log", "/runs/\(stored)/artifacts", "/blobs/\(sha)"] {
            let hidden = try await HTTPReply.send(api + path, headers: other)
            #expect(hidden.status == 404 && hidden.json["kind"] as? String == "not_found", "\(path): \(hidden.text)")
            #expect(try await HTTPReply.send(api + path, headers: all).status == 200, "\(path)")
            #expect(try await HTTPReply.send(api + path, headers: both).status == 200, "\(path)")
        }
        let hidden = try await HTTPReply.send(api + "/runs/\(trained)", headers: other)
        let absent = try await HTTPReply.send(api + "/runs/" + String(trained.prefix(8)) + String(repeating: "f", count: 24), headers: other)
        #expect(hidden.json["hint"] as? String == absent.json["hint"] as? String && absent.status == 404)
        #expect(try await HTTPReply.send(api + "/blobs/\(sha)", method: "HEAD", headers: other).status == 404)
        _ = try server.stop()
    }

    @Test func theStoreKeepsOnlyTheHashAndLsNeverShowsEither() throws {
        let box = try Sandbox()
        let token = try Self.create(box, "laptop", scope: "write", projects: ["vision"])
        let hash = TokenSecret.hash(token)
        var files = try FileManager.default.subpathsOfDirectory(atPath: box.store).map { box.store + "/" + $0 }
        files = files.filter { (try? FileManager.default.attributesOfItem(atPath: $0)[.type] as? FileAttributeType) == .typeRegular }
        let contents = try files.map { try Data(contentsOf: URL(fileURLWithPath: $0)) }
        #expect(contents.contains { $0.range(of: Data(hash.utf8)) != nil }, "the scan must find the hash, or it proves nothing")
        #expect(!contents.contains { $0.range(of: Data(token.utf8)) != nil }, "the token is in the store")
        #expect(!contents.contains { $0.range(of: Data(token.dropFirst(4).prefix(20).utf8)) != nil })

        for format in ["jsonl", "json", "table", "csv"] {
            let listed = try box.run("cml-serve", ["token", "ls", "--format", format])
            #expect(listed.status == 0 && listed.out.contains("laptop"), "\(format): \(listed.stderr)")
            #expect(!listed.out.contains(token.dropFirst(4).prefix(16)) && !listed.out.contains(hash.prefix(16)), "\(format)")
        }
        let line = try #require(try box.run("cml-serve", ["token", "ls"]).jsonLines.first)
        #expect(line["name"] as? String == "laptop" && line["scope"] as? String == "write" && line["projects"] as? [String] == ["vision"])
        #expect(line["revoked_at"] is NSNull)
        #expect(try box.run("cml-serve", ["token", "revoke", "laptop"]).status == 0)
        #expect(try box.run("cml-serve", ["token", "ls"]).jsonLines.first?["revoked_at"] is String)
        // Each token is new.
        #expect(try Self.create(box, "second") != token)
    }

    @Test func badTokenCommandsAreOneLineAndChangeNothing() throws {
        let box = try Sandbox()
        _ = try Self.create(box, "laptop")
        let before = try box.run("cml-serve", ["token", "ls"]).out
        for (args, status, message) in [
            (["create", "--name", "x", "--scope", "root"], 2, "cml-serve: error: unknown scope 'root' (one of read, write, agent, admin)"),
            (["create", "--name", "", "--scope", "read"], 2, "cml-serve: error: a token's --name must not be empty"),
            (["create", "--name", "a b", "--scope", "read"], 2, "cml-serve: error: token name 'a b' is not 1 to 64 letters, digits, '.', '_' or '-'"),
            (["create", "--name", "x", "--scope", "read", "--project", ""], 2, "cml-serve: error: --project must not be empty"),
            (["create", "--name", "laptop", "--scope", "admin"], 1, "cml-serve: error: there is a token named 'laptop' already (pick another name; see cml-serve token ls)"),
            (["revoke", "desktop"], 1, "cml-serve: error: no token is named 'desktop' (see cml-serve token ls)"),
        ] {
            let result = try box.run("cml-serve", ["token"] + args)
            #expect(result.status == Int32(status), "\(args): \(result.stderr)")
            #expect(result.stderr == message + "\n", "\(args)")
            #expect(result.out.isEmpty, "\(args)")
            #expect(try box.run("cml-serve", ["token", "ls"]).out == before, "\(args) changed the tokens")
        }
        #expect(try box.run("cml-serve", ["token", "revoke", "laptop"]).status == 0)
        let revokedList = try box.run("cml-serve", ["token", "ls"]).out
        let again = try box.run("cml-serve", ["token", "revoke", "laptop"])
        #expect(again.status == 1 && again.stderr.hasPrefix("cml-serve: error: the token 'laptop' was revoked already, at "), "\(again.stderr)")
        #expect(try box.run("cml-serve", ["token", "ls"]).out == revokedList)
    }

    @Test func listeningBeyondLoopbackNeedsATokenOrInsecure() async throws {
        let box = try Sandbox()
        let refused = try box.run("cml-serve", ["--listen", "0.0.0.0:0"])
        #expect(refused.status == 2 && refused.stderr.contains("the store has no token"), "\(refused.stderr)")
        let token = try Self.create(box, "team")
        let server = try ServerUnderTest(box, ["--listen", "0.0.0.0:0"])
        let port = try #require(server.url.split(separator: ":").last)
        #expect(try await HTTPReply.send("http://127.0.0.1:\(port)/api/v1/runs").status == 401)
        #expect(try await HTTPReply.send("http://127.0.0.1:\(port)/api/v1/runs", headers: Self.bearer(token)).status == 200)
        #expect(try server.stop().status == 0)
        // Only revoked tokens: as good as none.
        #expect(try box.run("cml-serve", ["token", "revoke", "team"]).status == 0)
        #expect(try box.run("cml-serve", ["--listen", "0.0.0.0:0"]).status == 2)
    }

    /// DNS rebinding: a page of evil.example, its name pointed at 127.0.0.1, is same-origin with a
    /// token-less store. Its browser names evil.example in `Host`; the server answers that with 403 and
    /// nothing read or written, while its address and `localhost` work, and `--insecure` or a token lift it.
    @Test func aStoreWithoutTokensAnswersOnlyRequestsThatNameItByAddress() throws {
        let (box, trained, _, _, _) = try ServeTests.populatedStore()
        let server = try ServerUnderTest(box)
        let port = try #require(server.url.split(separator: ":").last)
        let rebound = "evil.example:\(port)"
        for path in ["/api/v1/runs", "/", "/runs/\(trained)", "/api/v1/runs/\(trained)/log"] {
            let reply = try box.web(server.url + path, ["-H", "Host: " + rebound])
            #expect(reply.status == 403, "\(path): \(reply.status) \(reply.body)")
            #expect(reply.body.contains("not evil.example") && !reply.body.contains(trained), "\(reply.body)")
        }
        let tag = ["-X", "POST", "-H", "Content-Type: application/json", "--data", #"{"add": ["pwned"], "remove": []}"#]
        let post = try box.web(server.url + "/api/v1/store/runs/\(trained)/tags", ["-H", "Host: " + rebound] + tag)
        #expect(post.status == 403, "\(post.body)")
        #expect(try box.run("cml-run", ["show", trained]).out.contains("\"pwned\"") == false)
        #expect(try box.web(server.url + "/api/v1/store/runs/\(trained)/tags", tag).status / 100 == 2)
        #expect(try box.run("cml-run", ["show", trained]).out.contains("\"pwned\""))
        for host in ["127.0.0.1:\(port)", "localhost:\(port)", "LOCALHOST:\(port)", "app.localhost:\(port)", "[::1]:\(port)", "127.0.0.1"] {
            #expect(try box.web(server.url + "/api/v1/runs", ["-H", "Host: " + host]).status == 200, "\(host)")
        }
        // The static files and /healthz carry nothing of the store.
        #expect(try box.web(server.url + "/healthz", ["-H", "Host: " + rebound]).status == 200)
        #expect(try server.stop().status == 0)

        let insecure = try ServerUnderTest(box, ["--listen", "127.0.0.1:0", "--insecure"])
        #expect(try box.web(insecure.url + "/api/v1/runs", ["-H", "Host: cml.lan:8080"]).status == 200)
        #expect(try insecure.stop().status == 0)

        let token = try Self.create(box, "team")
        let named = try ServerUnderTest(box)
        #expect(try box.web(named.url + "/api/v1/runs", ["-H", "Host: cml.example.com", "-H", "Authorization: Bearer " + token]).status == 200)
        #expect(try named.stop().status == 0)
    }

    @Test func onlyAddressesAndLocalhostNameAServerWithoutDNS() {
        for host in ["127.0.0.1", "127.0.0.1:8080", "10.1.2.3:80", "[::1]:8080", "[::1]", "localhost", "Localhost:1", "a.localhost:2"] {
            #expect(Authorizer.namesAnAddress(host), "\(host)")
        }
        for host in ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "localhost.evil.example", "[::1", "1.2.3", "::1", ""] {
            #expect(!Authorizer.namesAnAddress(host), "\(host)")
        }
    }

    @Test func scopesAllowWhatTheScopesBeforeThemAllow() throws {
        #expect(TokenScope.allCases == [.read, .write, .agent, .admin])
        for scope in TokenScope.allCases { #expect(scope.allows(.read)) }
        #expect(!TokenScope.read.allows(.write) && !TokenScope.write.allows(.agent) && !TokenScope.agent.allows(.admin))
        #expect(TokenScope.admin.allows(.agent) && TokenScope.agent.allows(.write))
    }
}

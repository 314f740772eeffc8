import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Glibc
import Testing
import CMLKit
@testable import CMLServer

/// A built `cml-serve` on a free loopback port, serving a sandbox's store.
final class ServerUnderTest {
    let process: RunningCommand
    let url: String

    /// `scheme`: what the first line must say it serves (https with --tls-cert).
    init(_ box: Sandbox, _ args: [String] = ["--listen", "127.0.0.1:0"], env: [String: String] = [:], scheme: String = "http") throws {
        let started = try box.start("cml-serve", args, env: env)
        process = started
        // The first line says where it listens: port 0 let the system choose.
        _ = waitUntil(timeout: 20) { started.stdoutSoFar.contains("\n") || started.hasExited }
        let line = started.stdoutSoFar.split(separator: "\n").first.map(String.init) ?? ""
        guard line.hasPrefix("cml-serve: serving \(box.store) on \(scheme)://"), let at = line.range(of: " on ") else {
            kill(started.pid, SIGKILL)
            throw ServeTestError("cml-serve did not say where it listens: \(line) \(started.stderrSoFar)")
        }
        url = String(line[at.upperBound...])
    }

    deinit {
        if !process.hasExited { kill(process.pid, SIGKILL) }
    }

    /// Stops it as systemd does; returns how it exited.
    func stop() throws -> CommandResult {
        kill(process.pid, SIGTERM)
        return try process.wait()
    }
}

struct ServeTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// One HTTP exchange, without caching (blobs are sent as immutable).
struct HTTPReply {
    var status: Int
    var headers: [String: String]
    var body: Data
    var text: String { String(decoding: body, as: UTF8.self) }
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:] }

    static let session: URLSession = {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.urlCache = nil
        configuration.requestCachePolicy = .reloadIgnoringLocalAndRemoteCacheData
        return URLSession(configuration: configuration)
    }()

    static func send(_ url: String, method: String = "GET", headers: [String: String] = [:], body: Data? = nil) async throws -> HTTPReply {
        var request = URLRequest(url: try #require(URL(string: url)))
        request.httpMethod = method
        request.httpBody = body
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        let (body, response) = try await session.data(for: request)
        let http = try #require(response as? HTTPURLResponse)
        var fields: [String: String] = [:]
        for (name, value) in http.allHeaderFields { fields[String(describing: name).lowercased()] = String(describing: value) }
        return HTTPReply(status: http.statusCode, headers: fields, body: body)
    }
}

/// Percent-encodes a query value (spaces, `>`, `&`, `+`).
func encoded(_ value: String) -> String {
    value.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? value
}

struct ServeTests {
    /// A store with three real runs: metrics and a name; a failed one in another project writing to
    /// stderr and binary bytes before a carriage return; one with a tag and a file artifact of several MiB.
    static func populatedStore() throws -> (box: Sandbox, trained: String, failed: String, stored: String, artifact: [UInt8]) {
        let box = try Sandbox()
        try box.write("train.py", """
            for epoch in range(4):
                print(f"epoch {epoch} loss: {1 / (epoch + 1):.4f} acc: {epoch / 10:.2f}")
            """)
        #expect(try box.run("cml-run", ["--name", "baseline", "--", "python3", "train.py", "--lr", "0.1"]).status == 0)
        let failing = try box.run("cml-run", ["--project", "other", "--", "sh", "-c",
                                              "printf '\\377\\376\\000bin\\rstep 2\\n'; echo oops >&2; exit 3"])
        #expect(failing.status == 3)
        // 3 MiB and a bit: more than one chunk of the blob reader, not a multiple of it.
        var artifact = [UInt8](repeating: 0, count: 3 * 1024 * 1024 + 12345)
        for index in artifact.indices { artifact[index] = UInt8(truncatingIfNeeded: index &* 2654435761 >> 13) }
        try Data(artifact).write(to: URL(fileURLWithPath: box.work + "/model.bin"))
        #expect(try box.run("cml-run", ["--tag", "keep", "--", "sh", "-c", "\(binDirectory)/cml-log artifact model.bin"]).status == 0)
        let ids = try box.runs().compactMap { $0["id"] as? String }
        try #require(ids.count == 3)
        return (box, ids[2], ids[1], ids[0], artifact)
    }

    @Test func everyRouteAnswersWhatTheCommandPrints() async throws {
        let (box, trained, failed, stored, _) = try Self.populatedStore()
        let server = try ServerUnderTest(box)
        let api = server.url + "/api/v1"

        func same(_ path: String, _ command: [String], type: String = "application/x-ndjson") async throws {
            let cli = try box.run("cml-run", command)
            #expect(cli.status == 0, "\(command): \(cli.stderr)")
            let reply = try await HTTPReply.send(api + path)
            #expect(reply.status == 200, "\(path): \(reply.text)")
            #expect(reply.headers["content-type"] == type, "\(path)")
            #expect(reply.body == cli.stdout, "\(path)")
            #expect(!cli.out.isEmpty, "\(command) printed nothing: the comparison would prove nothing")
        }

        try await same("/runs", ["ls", "--format", "jsonl"])
        try await same("/runs?where=\(encoded("acc > 0.1 and lr = 0.1"))&sort=-acc&limit=1",
                       ["ls", "--where", "acc > 0.1 and lr = 0.1", "--sort", "-acc", "--limit", "1", "--format", "jsonl"])
        try await same("/runs?project=other&status=failed&since=1d", ["ls", "--project", "other", "--status", "failed", "--since", "1d", "--format", "jsonl"])
        try await same("/runs?tag=keep", ["ls", "--tag", "keep", "--format", "jsonl"])
        // + is a space, as forms encode it; %2B a plus.
        try await same("/runs?where=acc+%3E%3D+0.3&sort=started", ["ls", "--where", "acc >= 0.3", "--sort", "started", "--format", "jsonl"])
        let listed = try await HTTPReply.send(api + "/runs")
        #expect(listed.text.split(separator: "\n").count == 3)

        try await same("/runs/\(trained)", ["show", trained], type: "application/json")
        try await same("/runs/\(trained.prefix(20))", ["show", trained], type: "application/json")
        try await same("/runs/baseline", ["show", trained], type: "application/json")
        try await same("/runs/\(trained)/metrics", ["metrics", trained])
        try await same("/runs/\(trained)/metrics?key=loss", ["metrics", trained, "--key", "loss"])
        try await same("/runs/\(failed)/log", ["log", failed], type: "text/plain; charset=utf-8")
        try await same("/runs/\(failed)/log?raw=1", ["log", "--raw", failed], type: "text/plain; charset=utf-8")
        try await same("/runs/\(failed)/log?stream=stderr", ["log", "--stream", "stderr", failed], type: "text/plain; charset=utf-8")
        try await same("/runs/\(failed)/log?follow=1", ["log", "--follow", failed], type: "text/plain; charset=utf-8")
        let raw = try await HTTPReply.send(api + "/runs/\(failed)/log?raw=1")
        let rendered = try await HTTPReply.send(api + "/runs/\(failed)/log")
        // Bytes before a carriage return are stored (binary output is kept whole) but not shown.
        #expect(raw.body.contains(0x0D) && !rendered.body.contains(0x0D) && raw.body.count > rendered.body.count,
                "raw and rendered logs must differ here")
        try await same("/runs/\(stored)/artifacts", ["artifacts", stored, "--format", "jsonl"])
        try await same("/projects", ["projects", "--format", "jsonl"])

        let health = try await HTTPReply.send(server.url + "/healthz")
        #expect(health.status == 200 && health.text == "ok\n")

        let stopped = try server.stop()
        #expect(stopped.status == 0, "\(stopped.stderr)")
    }

    /// The server keeps the records it has read, by run and revision (`RunRecordCache`): a write by
    /// another process to any part of a record is in the next answer, a status that changed with no
    /// write too (a killed cml-run's run is lost), and a removed run is gone.
    @Test func aKeptRecordIsAnsweredAsTheRunIsNow() async throws {
        let box = try Sandbox()
        #expect(try box.run("cml-run", ["--name", "first", "--", "true"]).status == 0)
        // Long enough never to end by itself, however slow a loaded machine makes this test: it is killed.
        let running = try box.start("cml-run", ["--", "sh", "-c", "echo $$; exec sleep 600"])
        #expect(waitUntil { running.stdoutSoFar.hasSuffix("\n") })
        let command = try #require(Int32(running.stdoutSoFar.trimmingCharacters(in: .whitespacesAndNewlines)))
        let ids = try box.runs().compactMap { $0["id"] as? String }
        try #require(ids.count == 2)
        let (killed, ended) = (ids[0], ids[1])
        let server = try ServerUnderTest(box)

        func answered(_ id: String) async throws -> HTTPReply { try await HTTPReply.send(server.url + "/api/v1/runs/\(id)") }
        func answersAsShown(_ id: String, after change: String) async throws {
            let shown = try box.run("cml-run", ["show", id])
            #expect(shown.status == 0, "\(shown.stderr)")
            let reply = try await answered(id)
            #expect(reply.status == 200 && reply.body == shown.stdout, "after \(change): \(reply.text) \(shown.out)")
        }

        // (Not compared with `cml-run show` while it runs: a heartbeat may come between the two.)
        #expect(try await answered(killed).json["status"] as? String == "running")
        // cml-run records nothing more: its status changes only as seen from here, where its process is gone.
        kill(running.pid, SIGKILL)
        kill(command, SIGKILL)
        _ = try running.wait()
        let reply = try await answered(killed)
        #expect(reply.json["status"] as? String == "lost", "\(reply.status) \(reply.text)")
        try await answersAsShown(killed, after: "the kill")

        try await answersAsShown(ended, after: "nothing")
        let changes: [(String, [String])] = [
            ("cml-run", ["tag", ended, "+best"]), ("cml-run", ["rename", ended, "second"]),
            ("cml-log", ["--run", ended, "param", "opt", "adam"]), ("cml-log", ["--run", ended, "scalar", "acc", "0.9"]),
        ]
        for (tool, arguments) in changes {
            let result = try box.run(tool, arguments)
            #expect(result.status == 0, "\(arguments): \(result.stderr)")
            try await answersAsShown(ended, after: "\(tool) \(arguments)")
        }
        #expect(try await answered(ended).json["tags"] as? [String] == ["best"])
        // A writer that is no cml at all.
        let foreign = try shell("sqlite3 -cmd '.timeout 10000' '\(box.store)/cml.db' \"UPDATE runs SET user = 'someone' WHERE id = '\(ended)'\"",
                                cwd: box.work)
        #expect(foreign.status == 0, "\(foreign.stderr)")
        #expect(try await answered(ended).json["user"] as? String == "someone")
        try await answersAsShown(ended, after: "sqlite3")

        #expect(try box.run("cml-run", ["rm", "--yes", ended]).status == 0)
        #expect(try await answered(ended).status == 404)
        #expect(try await answered("second").status == 404)
    }

    @Test func blobsAreServedWholeOrByRangeAndVerified() async throws {
        let (box, _, _, stored, artifact) = try Self.populatedStore()
        let sha = try #require(try box.run("cml-run", ["artifacts", stored, "--format", "jsonl"]).jsonLines.first?["sha256"] as? String)
        let server = try ServerUnderTest(box)
        let blob = server.url + "/api/v1/blobs/" + sha

        let whole = try await HTTPReply.send(blob)
        #expect(whole.status == 200)
        #expect(whole.body == Data(artifact))
        #expect(whole.headers["etag"] == "\"\(sha)\"" && whole.headers["accept-ranges"] == "bytes")

        let head = try await HTTPReply.send(blob, method: "HEAD")
        #expect(head.status == 200 && head.body.isEmpty)
        #expect(head.headers["content-length"] == String(artifact.count))

        let size = artifact.count
        for (range, first, last) in [("bytes=1000-2999999", 1000, 2_999_999), ("bytes=3000000-", 3_000_000, size - 1),
                                     ("bytes=-10", size - 10, size - 1), ("bytes=5-5", 5, 5),
                                     ("bytes=100-\(size * 2)", 100, size - 1)] {
            let part = try await HTTPReply.send(blob, headers: ["Range": range])
            #expect(part.status == 206, "\(range)")
            #expect(part.headers["content-range"] == "bytes \(first)-\(last)/\(size)", "\(range)")
            #expect(part.body == Data(artifact[first...last]), "\(range)")
        }
        let outside = try await HTTPReply.send(blob, headers: ["Range": "bytes=\(size)-"])
        #expect(outside.status == 416 && outside.headers["content-range"] == "bytes */\(size)")
        // Several ranges are not served as multipart: the whole blob comes, as the RFC allows.
        let several = try await HTTPReply.send(blob, headers: ["Range": "bytes=0-1,5-6"])
        #expect(several.status == 200 && several.body == Data(artifact))

        // Anything but 64 lowercase hex digits is no blob, wherever it points.
        for path in [sha.uppercased(), String(sha.dropLast()), sha + "0", "..%2F..%2Fcml.db", "..%2Fcml.db",
                     String(repeating: "g", count: 64), String(sha.dropLast(2)) + "%2F"] {
            let reply = try await HTTPReply.send(server.url + "/api/v1/blobs/" + path)
            #expect(reply.status == 404, "\(path)")
            #expect(reply.json["kind"] as? String == "not_found", "\(path): \(reply.text)")
        }
        let absent = try await HTTPReply.send(server.url + "/api/v1/blobs/" + String(repeating: "0", count: 64))
        #expect(absent.status == 404 && absent.json["kind"] as? String == "not_found" && !absent.text.contains(box.store))

        // A damaged blob never reaches a client whole, not even a range of it: its connection closes
        // short of the Content-Length.
        let path = box.store + "/objects/" + sha.prefix(2) + "/" + sha.dropFirst(2)
        chmod(path, 0o644)
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seek(toOffset: 2_000_000)
        try handle.write(contentsOf: Data([artifact[2_000_000] ^ 0xff]))
        try handle.close()
        for headers in [[:], ["Range": "bytes=0-99"]] {
            let damaged = try? await HTTPReply.send(blob, headers: headers)
            #expect(damaged == nil || damaged!.body.count < (headers.isEmpty ? size : 100), "\(headers)")
        }
        // The client only sees a closed connection: the server's log says why.
        let stopped = try server.stop()
        #expect(stopped.stderr.contains("cml-serve: error: blob \(sha) is damaged"), "\(stopped.stderr)")
    }

    /// Clients that go away mid-download stop their readers; the server serves on.
    @Test func abandonedDownloadsLeaveTheServerServing() async throws {
        let (box, _, _, stored, artifact) = try Self.populatedStore()
        let sha = try #require(try box.run("cml-run", ["artifacts", stored, "--format", "jsonl"]).jsonLines.first?["sha256"] as? String)
        let server = try ServerUnderTest(box)
        let portText = try #require(server.url.split(separator: ":").last)
        let port = try #require(UInt16(portText))
        for path in ["/api/v1/blobs/\(sha)", "/api/v1/runs/\(stored)/log?follow=1"] {
            for _ in 0..<3 {
                let first = try abandonAfterFirstBytes(port: port, path: path)
                #expect(first.hasPrefix("HTTP/1.1 200"), "\(path): \(first)")
            }
        }
        let whole = try await HTTPReply.send(server.url + "/api/v1/blobs/" + sha)
        #expect(whole.status == 200 && whole.body == Data(artifact))
        #expect(!server.process.hasExited)
        let stopped = try server.stop()
        #expect(stopped.status == 0, "\(stopped.stderr)")
        #expect(stopped.stderr.isEmpty, "\(stopped.stderr)")
    }

    /// Sends a GET over a socket of its own, reads the first bytes of the answer and closes.
    func abandonAfterFirstBytes(port: UInt16, path: String) throws -> String {
        let fd = try LoopbackSocket.connect(port: port)
        defer { close(fd) }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        try #require(write(fd, request, request.count) == request.count)
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = read(fd, &buffer, buffer.count)
        return String(decoding: buffer.prefix(max(0, count)), as: UTF8.self)
    }

    @Test func errorsAreOneJSONObjectWithTheirKindAndStatus() async throws {
        let (box, trained, _, _, _) = try Self.populatedStore()
        let server = try ServerUnderTest(box)
        let api = server.url + "/api/v1"
        for (path, status, kind) in [
            ("/runs/ffffffff", 404, "not_found"),
            ("/runs/nosuchname", 404, "not_found"),
            ("/runs/ffffffff/log", 404, "not_found"),
            ("/runs/ffffffff/metrics", 404, "not_found"),
            ("/runs/ffffffff/artifacts", 404, "not_found"),
            ("/runs/0", 400, "ambiguous"),  // every id of this century starts with 0
            ("/runs/\(trained)/metrics?key=nosuchmetric", 404, "not_found"),
            ("/runs?where=\(encoded("acc >"))", 400, "invalid"),
            ("/runs?where=\(encoded("nosuchkey > 1"))", 400, "invalid"),
            ("/runs?status=finished", 400, "invalid"),
            ("/runs?limit=ten", 400, "invalid"),
            ("/runs?limit=-1", 400, "invalid"),
            ("/runs?since=yesterday", 400, "invalid"),
            ("/runs?staus=failed", 400, "invalid"),
            ("/runs/\(trained)/log?stream=stdin", 400, "invalid"),
            ("/runs/\(trained)/log?raw=maybe", 400, "invalid"),
            ("/nosuchroute", 404, "not_found"),
        ] {
            let reply = try await HTTPReply.send(api + path)
            #expect(reply.status == status, "\(path): \(reply.text)")
            #expect(reply.headers["content-type"] == "application/json", "\(path)")
            #expect(reply.json["kind"] as? String == kind, "\(path): \(reply.text)")
            #expect((reply.json["error"] as? String)?.isEmpty == false, "\(path)")
            #expect(reply.text.hasSuffix("}\n") && reply.text.split(separator: "\n").count == 1, "\(path)")
        }
        // The where error names the problem as the command does.
        let bad = try await HTTPReply.send(api + "/runs?where=\(encoded("acc >"))")
        let cli = try box.run("cml-run", ["ls", "--where", "acc >"])
        let message = try #require(bad.json["error"] as? String)
        #expect(cli.stderr.contains(message))
        _ = try server.stop()
    }

    @Test func theListenAddressIsCheckedAndLoopbackUnlessInsecure() async throws {
        let box = try Sandbox()
        let refused = try box.run("cml-serve", ["--listen", "0.0.0.0:0"])
        #expect(refused.status == 2)
        #expect(refused.stderr.hasPrefix("cml-serve: error: --listen 0.0.0.0:0 reaches beyond this machine, and the store has no token: create one with cml-serve token create, or use --insecure"),
                "\(refused.stderr)")
        #expect(refused.out.isEmpty)
        for bad in ["8080", "localhost", "127.0.0.1:99999", "[::1:80"] {
            let result = try box.run("cml-serve", ["--listen", bad])
            #expect(result.status == 2 && result.stderr.contains("is not HOST:PORT"), "\(bad): \(result.stderr)")
        }
        let server = try ServerUnderTest(box, ["--listen", "0.0.0.0:0", "--insecure"])
        let port = try #require(server.url.split(separator: ":").last)
        let health = try await HTTPReply.send("http://127.0.0.1:\(port)/healthz")
        #expect(health.status == 200)
        let taken = try box.run("cml-serve", ["--listen", "127.0.0.1:\(port)"])
        #expect(taken.status == 1)
        #expect(taken.stderr == "cml-serve: error: cannot listen on http://127.0.0.1:\(port): Address already in use (another server listens there: pick another --listen)\n",
                "\(taken.stderr)")
        #expect(try server.stop().status == 0)
    }

    @Test func readyReachesTheNotifySocketOnceItListens() async throws {
        let box = try Sandbox()
        let notify = try SystemdTests.NotifySocket(path: box.root + "/notify")
        let server = try ServerUnderTest(box, env: ["NOTIFY_SOCKET": notify.path])
        let messages = try #require(notify.receive(until: "READY=1", timeout: 10))
        #expect(messages.last == "READY=1\nSTATUS=serving \(box.store) on \(server.url)")
        #expect(try server.stop().status == 0)
    }

    @Test func theUnitFilePassesSystemdAnalyzeVerify() throws {
        let unit = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("contrib/systemd/cml-serve.service").path
        let text = try String(contentsOfFile: unit, encoding: .utf8)
        #expect(text.contains("Type=notify") && text.contains("--listen 127.0.0.1:8080"))
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze") else { return }
        let box = try Sandbox()
        try box.write(box.root + "/cml-serve.service", text.replacingOccurrences(of: "/usr/local/bin/cml-serve", with: binDirectory + "/cml-serve"))
        let verified = try shell("SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no \(box.root)/cml-serve.service", cwd: box.root)
        #expect(verified.status == 0, "\(verified.out)\(verified.stderr)")
        #expect(!verified.stderr.contains("cml-serve"), "\(verified.stderr)")
    }

    /// docs/http-api.md documents exactly the routes the router serves (`### METHOD PATH` headings), the
    /// web UI's pages, MLflow's and ClearML's routes included, and under each heading every query parameter (a form's field) the
    /// route takes.
    @Test func theHTTPAPIDocumentsEveryRouteAndNoOther() throws {
        let doc = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/http-api.md").path
        let text = try String(contentsOfFile: doc, encoding: .utf8)
        var sections: [String: String] = [:]
        var current: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("#") {
                current = nil
                let words = line.split(separator: " ")
                if line.hasPrefix("### "), words.count == 3, ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"].contains(words[1]) {
                    let route = "\(words[1]) \(words[2].trimmingCharacters(in: CharacterSet(charactersIn: "`")))"
                    #expect(sections[route] == nil, "\(route) is documented twice")
                    sections[route] = ""
                    current = route
                }
            } else if let current {
                sections[current, default: ""] += line + "\n"
            }
        }
        let routes = ServerRoutes.all + WebRoutes.all.map(\.serverRoute) + MLflowRoutes.all + ClearMLRoutes.all.map(\.serverRoute)
        let served = Set(routes.map { "\($0.method) \($0.path)" })
        #expect(served.count == routes.count, "a route is served twice")
        #expect(served.subtracting(sections.keys).sorted() == [], "served but not documented")
        #expect(Set(sections.keys).subtracting(served).sorted() == [], "documented but not served")
        for route in routes {
            let section = sections["\(route.method) \(route.path)"] ?? ""
            for parameter in route.parameters {
                #expect(section.contains("`\(parameter)`"), "\(route.method) \(route.path) does not document \(parameter)")
            }
            #expect(section.contains("curl "), "\(route.method) \(route.path) has no curl example")
        }
    }

    /// The application the executable runs, built and run in this process, as the web UI's tests will.
    @Test func buildApplicationServesInProcess() async throws {
        let box = try Sandbox()
        #expect(try box.run("cml-run", ["--name", "here", "--", "sh", "-c", "echo loss: 0.5"]).status == 0)
        let store = try SQLiteStore(directory: box.store, access: .reading)
        let (bound, announce) = AsyncStream.makeStream(of: ListenAddress.self)
        let application = buildApplication(store: store, configuration: ServerConfiguration(
            listen: ListenAddress(host: "127.0.0.1", port: 0)) { address in announce.yield(address) })
        let serving = Task { try await application.run() }
        var addresses = bound.makeAsyncIterator()
        let address = try #require(await addresses.next())
        #expect(address.port != 0)
        let reply = try await HTTPReply.send(address.url + "/api/v1/runs/here")
        #expect(reply.status == 200)
        #expect(reply.body == (try box.run("cml-run", ["show", "here"]).stdout))
        serving.cancel()
        try await serving.value
    }

    @Test func rangeHeadersMeanWhatRFC9110Says() {
        #expect(ByteRange.parse("bytes=0-9", size: 100) == .part(0...9))
        #expect(ByteRange.parse("bytes=90-", size: 100) == .part(90...99))
        #expect(ByteRange.parse("bytes=90-500", size: 100) == .part(90...99))
        #expect(ByteRange.parse("bytes=-10", size: 100) == .part(90...99))
        #expect(ByteRange.parse("bytes=-500", size: 100) == .part(0...99))
        #expect(ByteRange.parse("bytes=100-", size: 100) == .unsatisfiable)
        #expect(ByteRange.parse("bytes=-0", size: 100) == .unsatisfiable)
        #expect(ByteRange.parse("bytes=0-", size: 0) == .unsatisfiable)
        for ignored in ["bytes=9-0", "bytes=a-b", "bytes=1-2,4-5", "items=0-1", "bytes=", "bytes=--1", "bytes=+1-2"] {
            #expect(ByteRange.parse(ignored, size: 100) == .whole, "\(ignored)")
        }
    }

    @Test func listenAddressesAndWhoCanReachThem() throws {
        #expect(try ListenAddress(parsing: "127.0.0.1:8080") == ListenAddress(host: "127.0.0.1", port: 8080))
        #expect(try ListenAddress(parsing: "[::1]:0") == ListenAddress(host: "::1", port: 0))
        #expect(try ListenAddress(parsing: "[::1]:80").url == "http://[::1]:80")
        for loopback in ["127.0.0.1:1", "127.1.2.3:1", "localhost:1", "[::1]:1"] {
            #expect(try ListenAddress(parsing: loopback).isLoopback, "\(loopback)")
        }
        for beyond in ["0.0.0.0:1", "192.168.1.2:1", "[::]:1", "example.org:1", "127.0.0.1.example.org:1", "1127.0.0.1:1"] {
            #expect(try !ListenAddress(parsing: beyond).isLoopback, "\(beyond)")
        }
    }
}

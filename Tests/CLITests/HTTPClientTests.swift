import CMLKit
import Foundation
import Glibc
import Testing

/// `HTTPClient` (libevent for plain http://, libcurl for https and streamed answers, both loaded at run
/// time) against real servers on loopback: the built `cml-serve`, and a small python3 server for what
/// cml-serve does not do (uploads, gzip, answers that never come, a proxy's error page, TLS).
struct HTTPClientTests {
    @Test func libcurlLoads() throws {
        try HTTPClient.load(for: "https://127.0.0.1/")
    }

    @Test func libeventLoads() throws {
        try HTTPClient.load(for: "http://127.0.0.1/")
    }

    /// Each library is loaded once per process, so a process of its own (this test bundle again) runs the
    /// tests above with `CML_LIBCURL` or `CML_LIBEVENT` naming a library that does not exist.
    @Test(arguments: [("CML_LIBCURL", "libcurl", "libcurlLoads"), ("CML_LIBEVENT", "libevent", "libeventLoads")])
    func aLibraryThatCannotLoadIsNamed(variable: String, library: String, test: String) throws {
        let box = try Sandbox()
        let bundle = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let child = try box.run(bundle, ["--testing-library", "swift-testing", "--filter", "HTTPClientTests/\(test)"],
                                env: [variable: "\(library)-nowhere.so"])
        #expect(child.status != 0)
        #expect((child.out + child.stderr).contains(
            "cannot load \(library)-nowhere.so (named by \(variable)): \(library)-nowhere.so: cannot open shared object file"),
            "\(child.out) \(child.stderr)")
    }

    @Test func getsWhatTheCommandsPrint() throws {
        let (box, trained, _, _, _) = try ServeTests.populatedStore()
        let server = try ServerUnderTest(box)
        let client = HTTPClient()
        let listed = try client.send(HTTPRequest(server.url + "/api/v1/runs"))
        #expect(listed.status == 200 && listed.headers["content-type"] == "application/x-ndjson")
        #expect(listed.body == Array(try box.run("cml-run", ["ls", "--format", "jsonl"]).stdout))
        let shown = try client.send(HTTPRequest(server.url + "/api/v1/runs/" + trained))
        #expect(shown.status == 200 && shown.cmlError == nil)
        #expect(shown.body == Array(try box.run("cml-run", ["show", trained]).stdout))
    }

    @Test func serverErrorsComeBackAsTheyWereThrown() throws {
        let (box, trained, _, _, _) = try ServeTests.populatedStore()
        let server = try ServerUnderTest(box)
        let client = HTTPClient()

        let missing = try client.send(HTTPRequest(server.url + "/api/v1/runs/ffffffff"))
        let notFound = try #require(missing.cmlError)
        #expect(missing.status == 404 && notFound.kind == .notFound && notFound.exitCode == 1)
        // The same line the command prints for a local store.
        let localMissing = try box.run("cml-run", ["show", "ffffffff"])
        #expect(localMissing.status == 1 && localMissing.stderr == "cml-run: error: \(notFound)\n", "\(localMissing.stderr) \(notFound)")
        #expect(notFound.hint != nil)

        // A usage error on the server is one here too: the same line and exit status as the command's.
        let bad = try #require(try client.send(HTTPRequest(server.url + "/api/v1/runs?where=" + encoded("acc >"))).cmlError)
        let localBad = try box.run("cml-run", ["ls", "--where", "acc >"])
        #expect(bad.kind == .invalid && bad.exitCode == localBad.status && localBad.stderr == "cml-run: error: \(bad)\n",
                "\(bad) \(localBad.stderr)")

        // Once the store has a token, a request without one is unauthenticated; with it, answered.
        let token = try ServeAuthTests.create(box, "laptop")
        let anonymous = try client.send(HTTPRequest(server.url + "/api/v1/runs/" + trained))
        #expect(anonymous.status == 401 && anonymous.cmlError?.kind == .unauthenticated, "\(String(decoding: anonymous.body, as: UTF8.self))")
        var request = HTTPRequest(server.url + "/api/v1/runs/" + trained)
        request.authorize(bearer: token)
        let authorized = try client.send(request)
        let local = try box.run("cml-run", ["show", trained]).stdout
        #expect(authorized.status == 200 && authorized.body == Array(local))
    }

    @Test func blobsStreamWholeOrByRange() throws {
        let (box, _, _, stored, artifact) = try ServeTests.populatedStore()
        let sha = try #require(try box.run("cml-run", ["artifacts", stored, "--format", "jsonl"]).jsonLines.first?["sha256"] as? String)
        let server = try ServerUnderTest(box)
        let blob = server.url + "/api/v1/blobs/" + sha
        let client = HTTPClient()

        let head = try client.send(HTTPRequest(blob, method: "HEAD"))
        #expect(head.status == 200 && head.body.isEmpty && head.headers["content-length"] == String(artifact.count))

        var received: [UInt8] = []
        var chunks = 0
        let part = try client.send(HTTPRequest(blob, headers: [("Range", "bytes=1000-2999999")])) { bytes throws(CMLError) in
            received += bytes
            chunks += 1
        }
        #expect(part.status == 206 && part.headers["content-range"] == "bytes 1000-2999999/\(artifact.count)")
        #expect(part.body.isEmpty && chunks > 1)
        #expect(received == Array(artifact[1000...2_999_999]))

        // A callback that throws ends the download with its own error; the client serves on.
        var calls = 0
        do {
            _ = try client.send(HTTPRequest(blob)) { _ throws(CMLError) in
                calls += 1
                throw CMLError("disk full here")
            }
            Issue.record("the callback's error was not thrown")
        } catch {
            #expect(error.message == "disk full here" && calls == 1)
        }
        #expect(try client.send(HTTPRequest(blob)).body == artifact)

        // An error answer is not handed to the callback: it comes back to be read.
        let absent = try client.send(HTTPRequest(server.url + "/api/v1/blobs/" + String(repeating: "0", count: 64))) { _ throws(CMLError) in
            Issue.record("an error body reached the callback")
        }
        #expect(absent.status == 404 && absent.cmlError?.kind == .notFound)
    }

    /// The run prints its second line only once the client holds its first, so the test passes only if
    /// bytes arrive while the answer is still open (as `cml-run log -f` against a server needs).
    @Test func aFollowedLogArrivesAsItIsWritten() throws {
        let box = try Sandbox()
        let running = try box.start("cml-run", ["--", "sh", "-c", """
            echo first; i=0; while [ ! -e go ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
            if [ -e go ]; then echo second; else echo gave up; fi
            """])
        var id = ""
        #expect(waitUntil(timeout: 20) { id = (try? box.runs().first?["id"] as? String) ?? ""; return !id.isEmpty })
        let server = try ServerUnderTest(box)
        let client = HTTPClient()
        var received: [UInt8] = []
        let followed = try client.send(HTTPRequest(server.url + "/api/v1/runs/\(id)/log?follow=1", idleTimeout: nil)) { bytes throws(CMLError) in
            received += bytes
            if String(decoding: received, as: UTF8.self).contains("first\n") {
                _ = FileManager.default.createFile(atPath: box.work + "/go", contents: nil)
            }
        }
        #expect(followed.status == 200)
        #expect(String(decoding: received, as: UTF8.self) == "first\nsecond\n")
        #expect(try running.wait().status == 0)
    }

    @Test func bodiesAreSentFromMemoryOrStreamedFromAFile() throws {
        let box = try Sandbox()
        let server = try FixtureServer(box)
        let client = HTTPClient()
        // 5 MiB and a bit, read from the file as it is sent.
        var contents = [UInt8](repeating: 0, count: 5 * 1024 * 1024 + 7)
        for index in contents.indices { contents[index] = UInt8(truncatingIfNeeded: index &* 2654435761 >> 11) }
        let path = box.work + "/blob.bin"
        try Data(contents).write(to: URL(fileURLWithPath: path))

        let put = try client.send(HTTPRequest(server.url + "/upload", method: "PUT", body: .file(path: path))).json
        #expect(put["method"] as? String == "PUT" && put["length"] as? Int == contents.count)
        #expect(put["sha256"] as? String == SHA256Hasher.hex(contents))
        // Neither libcurl's form type nor its `Expect: 100-continue` wait.
        #expect(put["content_type"] is NSNull && put["expect"] is NSNull, "\(put)")

        let json = Array(#"{"id": 1}"#.utf8)
        let post = try client.send(HTTPRequest(server.url + "/upload", method: "POST", headers: [("Content-Type", "application/json")],
                                               body: .bytes(json))).json
        #expect(post["method"] as? String == "POST" && post["length"] as? Int == json.count)
        #expect(post["sha256"] as? String == SHA256Hasher.hex(json) && post["content_type"] as? String == "application/json")
        let empty = try client.send(HTTPRequest(server.url + "/upload", method: "POST")).json
        #expect(empty["length"] as? Int == 0, "\(empty)")
        let deleted = try client.send(HTTPRequest(server.url + "/upload", method: "delete")).json
        #expect(deleted["method"] as? String == "DELETE" && deleted["length"] as? Int == 0, "\(deleted)")
        let odd = try #require(failure { () throws(CMLError) in try client.send(HTTPRequest(server.url + "/upload", method: "GET /x")) })
        #expect(odd.kind == .invalid && odd.message == "\"GET /x\" is not an HTTP method", "\(odd)")

        do {
            _ = try client.send(HTTPRequest(server.url + "/upload", method: "PUT", body: .file(path: box.work + "/absent.bin")))
            Issue.record("a missing file was sent")
        } catch {
            #expect(error.message == "cannot read \(box.work)/absent.bin: No such file or directory")
        }
    }

    @Test func unreachableServersAreUnavailable() throws {
        let client = HTTPClient()
        // A port that is bound but not listening refuses connections, and no other process can take it.
        let (socket, port) = try boundPort()
        defer { close(socket) }
        let url = "http://127.0.0.1:\(port)/api/v1/runs"
        let refused = try #require(failure { () throws(CMLError) in try client.send(HTTPRequest(url)) })
        #expect(refused.kind == .unavailable && refused.message == "cannot reach \(url): Connection refused", "\(refused)")
        // Streamed, through libcurl: its words.
        let refusedStream = try #require(failure { () throws(CMLError) in try client.send(HTTPRequest(url)) { _ throws(CMLError) in } })
        #expect(refusedStream.kind == .unavailable && refusedStream.message == "cannot reach \(url): Couldn't connect to server",
                "\(refusedStream)")
        // A password in the URL is not shown.
        let withUser = try #require(failure { () throws(CMLError) in try client.send(HTTPRequest("http://me:s3cret@127.0.0.1:\(port)/x")) })
        #expect(withUser.message == "cannot reach http://127.0.0.1:\(port)/x: Connection refused", "\(withUser)")

        let unknown = try #require(failure { () throws(CMLError) in try client.send(HTTPRequest("http://no-such-host.invalid/api/v1/runs")) })
        #expect(unknown.kind == .unavailable && unknown.message.hasPrefix("cannot reach http://no-such-host.invalid/api/v1/runs: "), "\(unknown)")

        let notHTTP = try #require(failure { () throws(CMLError) in try client.send(HTTPRequest("ftp://127.0.0.1/x")) })
        #expect(notHTTP.kind == .invalid && notHTTP.exitCode == 2 && notHTTP.message.hasPrefix("ftp://127.0.0.1/x is not an http or https URL"))
    }

    @Test func silentServersTimeOut() throws {
        let box = try Sandbox()
        let server = try FixtureServer(box)
        let client = HTTPClient()
        // Accepted and read, never answered: within the whole exchange's limit, and within the idle limit.
        let hung = try #require(failure { () throws(CMLError) in try client.send(HTTPRequest(server.url + "/hang", timeout: 1)) })
        #expect(hung.kind == .unavailable && hung.message == "cannot reach \(server.url)/hang: timed out", "\(hung)")
        let quiet = try #require(failure { () throws(CMLError) in try client.send(HTTPRequest(server.url + "/hang", idleTimeout: 1)) })
        #expect(quiet.kind == .unavailable && quiet.message == "cannot reach \(server.url)/hang: timed out", "\(quiet)")
        // A body that stops coming, with no limit on the whole exchange: whole, and streamed (libcurl).
        let stalledWhole = try #require(failure { () throws(CMLError) in try client.send(HTTPRequest(server.url + "/stall", idleTimeout: 1)) })
        #expect(stalledWhole.kind == .unavailable && stalledWhole.message == "lost the connection to \(server.url)/stall: timed out",
                "\(stalledWhole)")
        let stalled = try #require(failure { () throws(CMLError) in
            try client.send(HTTPRequest(server.url + "/stall", idleTimeout: 1)) { _ throws(CMLError) in }
        })
        #expect(stalled.kind == .unavailable && stalled.message == "lost the connection to \(server.url)/stall: Timeout was reached",
                "\(stalled)")
        // A connection closed short of the Content-Length.
        let short = try #require(failure { () throws(CMLError) in try client.send(HTTPRequest(server.url + "/close-early")) })
        #expect(short.kind == .unavailable && short.message.hasPrefix("lost the connection to \(server.url)/close-early: "), "\(short)")
        // The client serves on after each.
        #expect(try client.send(HTTPRequest(server.url + "/headers")).status == 200)
    }

    /// A kept connection the server closes: found closed before the next request, which goes on a new
    /// one; or closed as a request arrives, unanswered: sent again when that is harmless, else an error
    /// (the server may have done it).
    @Test func aKeptConnectionTheServerClosesIsReplaced() throws {
        let box = try Sandbox()
        let server = try FixtureServer(box)
        let client = HTTPClient()
        #expect(try client.send(HTTPRequest(server.url + "/close-after")).status == 200)
        #expect(try client.send(HTTPRequest(server.url + "/headers")).status == 200)
        #expect(String(decoding: try client.send(HTTPRequest(server.url + "/connections")).body, as: UTF8.self) == "2")

        #expect(try client.send(HTTPRequest(server.url + "/drop-next")).status == 200)
        let resent = try client.send(HTTPRequest(server.url + "/upload", method: "POST", body: .bytes(Array("once".utf8)))).json
        #expect(resent["length"] as? Int == 4)
        #expect(String(decoding: try client.send(HTTPRequest(server.url + "/dropped")).body, as: UTF8.self) == "1")

        #expect(try client.send(HTTPRequest(server.url + "/drop-next")).status == 200)
        var once = HTTPRequest(server.url + "/upload", method: "POST", body: .bytes(Array("once".utf8)))
        once.resendable = false
        let lost = try #require(failure { () throws(CMLError) in try client.send(once) })
        #expect(lost.kind == .unavailable && lost.message == "cannot reach \(server.url)/upload: the connection closed", "\(lost)")
        #expect(String(decoding: try client.send(HTTPRequest(server.url + "/dropped")).body, as: UTF8.self) == "2")
    }

    @Test func oneConnectionServesManyRequests() throws {
        let box = try Sandbox()
        let fixture = try FixtureServer(box)
        let client = HTTPClient()
        for _ in 0..<200 { #expect(try client.send(HTTPRequest(fixture.url + "/headers")).status == 200) }
        #expect(String(decoding: try client.send(HTTPRequest(fixture.url + "/connections")).body, as: UTF8.self) == "1")

        let (served, trained, _, _, _) = try ServeTests.populatedStore()
        let server = try ServerUnderTest(served)
        let expected = Array(try served.run("cml-run", ["show", trained]).stdout)
        for _ in 0..<200 {
            let shown = try client.send(HTTPRequest(server.url + "/api/v1/runs/" + trained))
            #expect(shown.status == 200 && shown.body == expected)
        }
    }

    @Test func compressedAnswersAreAskedForAndDecoded() throws {
        let box = try Sandbox()
        let server = try FixtureServer(box)
        let client = HTTPClient()
        let answer = try client.send(HTTPRequest(server.url + "/gzip"))
        #expect(answer.headers["content-encoding"] == "gzip")
        #expect(answer.body == Array(String(repeating: "loss: 0.25 acc: 0.9\n", count: 2000).utf8))
        #expect((try client.send(HTTPRequest(server.url + "/headers")).json["accept-encoding"] as? String)?.contains("gzip") == true)
    }

    @Test func headersAndErrorPagesOfOtherServers() throws {
        let box = try Sandbox()
        let server = try FixtureServer(box)
        let client = HTTPClient()
        var request = HTTPRequest(server.url + "/headers", headers: [("X-Trace", "a b")])
        request.authorize(bearer: "cml_secret")
        let echoed = try client.send(request).json
        #expect(echoed["authorization"] as? String == "Bearer cml_secret" && echoed["x-trace"] as? String == "a b")

        let injected = try #require(failure { () throws(CMLError) in
            try client.send(HTTPRequest(server.url + "/headers", headers: [("X-Trace", "a\r\nX-Admin: 1")]))
        })
        #expect(injected.kind == .invalid && injected.message.contains("line break"), "\(injected)")

        // A proxy's page, not cml-serve's JSON: the kind its status implies, and its first line.
        let proxied = try client.send(HTTPRequest(server.url + "/proxy-error"))
        let error = try #require(proxied.cmlError)
        #expect(proxied.status == 502 && error.kind == .unavailable)
        #expect(error.message == "\(server.url)/proxy-error answered HTTP 502: Bad Gateway: the upstream closed", "\(error)")
    }

    @Test func httpsTrustsTheCertificateNamedForIt() throws {
        let box = try Sandbox()
        let made = try box.run("/usr/bin/env", ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                                "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=localhost",
                                                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        try #require(made.status == 0, "\(made.stderr)")
        let server = try FixtureServer(box, certificate: box.work + "/cert.pem", key: box.work + "/key.pem")
        #expect(server.url.hasPrefix("https://"))

        let untrusted = try #require(failure { () throws(CMLError) in try HTTPClient(caFile: nil).send(HTTPRequest(server.url + "/headers")) })
        #expect(untrusted.message.hasPrefix("cannot trust \(server.url)/headers: ") && untrusted.hint?.contains("CML_CA_FILE") == true,
                "\(untrusted)")
        let trusted = try HTTPClient(caFile: box.work + "/cert.pem").send(HTTPRequest(server.url + "/headers"))
        #expect(trusted.status == 200)
    }

    /// A socket bound to a free loopback port, not listening: connecting to it is refused.
    func boundPort() throws -> (Int32, UInt16) {
        try LoopbackSocket.bound()
    }
}

/// The error `body` throws, nil when it throws none.
func failure(_ body: () throws(CMLError) -> HTTPResponse) -> CMLError? {
    do {
        _ = try body()
        return nil
    } catch {
        return error
    }
}

extension HTTPResponse {
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any]) ?? [:] }
}

/// A python3 HTTP/1.1 server (keep-alive) on a free loopback port, optionally over TLS.
final class FixtureServer {
    let process: RunningCommand
    let url: String

    init(_ box: Sandbox, certificate: String? = nil, key: String? = nil) throws {
        try box.write("fixture_server.py", Self.script)
        let started = try box.start("/usr/bin/env", ["python3", "fixture_server.py"] + [certificate, key].compactMap { $0 })
        process = started
        _ = waitUntil(timeout: 20) { started.stdoutSoFar.contains("\n") || started.hasExited }
        guard let line = started.stdoutSoFar.split(separator: "\n").first, line.hasPrefix("http") else {
            kill(started.pid, SIGKILL)
            throw ServeTestError("the fixture server did not start: \(started.stderrSoFar)")
        }
        url = String(line)
    }

    deinit {
        kill(process.pid, SIGKILL)
        _ = try? process.wait()
    }

    static let script = #"""
        import gzip, hashlib, http.server, json, ssl, sys, threading, time

        connections = 0
        counting = threading.Lock()
        # /drop-next: the next request that arrives is read whole, then its connection closed unanswered.
        drop_next = False
        dropped = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                global connections
                with counting:
                    connections += 1
                super().setup()

            def log_message(self, *args):
                pass

            def head(self, status, length, headers=()):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(length))
                self.end_headers()

            def reply(self, status, body, headers=()):
                self.head(status, len(body), headers)
                self.wfile.write(body)

            def dropped_unanswered(self):
                global drop_next, dropped
                with counting:
                    if not drop_next:
                        return False
                    drop_next = False
                    dropped += 1
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.close_connection = True
                return True

            def do_GET(self):
                global drop_next
                if self.dropped_unanswered():
                    return
                if self.path == "/connections":
                    self.reply(200, str(connections).encode())
                elif self.path == "/headers":
                    echoed = {name.lower(): value for name, value in self.headers.items()}
                    self.reply(200, json.dumps(echoed).encode(), [("Content-Type", "application/json")])
                elif self.path == "/gzip":
                    text = b"loss: 0.25 acc: 0.9\n" * 2000
                    if "gzip" in self.headers.get("Accept-Encoding", ""):
                        self.reply(200, gzip.compress(text), [("Content-Encoding", "gzip")])
                    else:
                        self.reply(200, text)
                elif self.path == "/proxy-error":
                    self.reply(502, b"Bad Gateway: the upstream closed\n<p>details</p>\n", [("Content-Type", "text/plain")])
                elif self.path == "/hang":
                    time.sleep(120)
                elif self.path == "/stall":
                    self.head(200, 1000)
                    self.wfile.write(b"0123456789")
                    self.wfile.flush()
                    time.sleep(120)
                elif self.path == "/close-after":
                    self.reply(200, b"closing")
                    self.close_connection = True
                elif self.path == "/drop-next":
                    with counting:
                        drop_next = True
                    self.reply(200, b"armed")
                elif self.path == "/dropped":
                    self.reply(200, str(dropped).encode())
                elif self.path == "/close-early":
                    self.head(200, 1000)
                    self.wfile.write(b"0123456789")
                    self.close_connection = True
                else:
                    self.reply(404, b"no such fixture\n")

            def do_PUT(self):
                if self.dropped_unanswered():
                    return
                length = int(self.headers.get("Content-Length", "0"))
                digest, left = hashlib.sha256(), length
                while left:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    digest.update(chunk)
                    left -= len(chunk)
                answer = {"method": self.command, "length": length - left, "sha256": digest.hexdigest(),
                          "content_type": self.headers.get("Content-Type"), "expect": self.headers.get("Expect")}
                self.reply(200, json.dumps(answer).encode(), [("Content-Type", "application/json")])

            do_POST = do_DELETE = do_PUT

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        scheme = "http"
        if len(sys.argv) > 2:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(sys.argv[1], sys.argv[2])
            server.socket = context.wrap_socket(server.socket, server_side=True)
            scheme = "https"
        print(f"{scheme}://127.0.0.1:{server.server_address[1]}", flush=True)
        server.serve_forever()
        """#
}

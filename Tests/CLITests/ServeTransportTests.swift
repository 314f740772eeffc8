import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Glibc
import Testing
import CMLKit
@testable import CMLServer

/// cml-serve's connections: https, timeouts for clients that stall, compression.
struct ServeTransportTests {
    /// A self-signed certificate for 127.0.0.1, made by the openssl command in the box's work directory.
    static func certificate(in box: Sandbox, name: String = "cert") throws -> (certificate: String, key: String) {
        let certificate = box.work + "/\(name).pem"
        let key = box.work + "/\(name)-key.pem"
        let made = try box.run("/usr/bin/env", ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                                "-nodes", "-keyout", key, "-out", certificate, "-days", "2", "-subj", "/CN=127.0.0.1",
                                                "-addext", "subjectAltName=IP:127.0.0.1"])
        try #require(made.status == 0, "\(made.stderr)")
        return (certificate, key)
    }

    @Test func httpsServesTheStoreToClientsThatTrustItsCertificate() async throws {
        let (box, trained, _, _, _) = try ServeTests.populatedStore()
        let (certificate, key) = try Self.certificate(in: box)
        let server = try ServerUnderTest(box, ["--listen", "127.0.0.1:0", "--tls-cert", certificate, "--tls-key", key], scheme: "https")
        #expect(server.url.hasPrefix("https://127.0.0.1:"))

        let local = try box.run("cml-run", ["ls", "--format", "jsonl"])
        let remote = try box.run("cml-run", ["ls", "--format", "jsonl", "--store", server.url], env: ["CML_CA_FILE": certificate])
        #expect(remote.status == 0, "\(remote.stderr)")
        #expect(remote.stdout == local.stdout && local.jsonLines.count == 3)
        let shown = try box.run("cml-run", ["show", trained, "--store", server.url], env: ["CML_CA_FILE": certificate])
        let shownHere = try box.run("cml-run", ["show", trained])
        #expect(shown.status == 0 && shown.stdout == shownHere.stdout, "\(shown.stderr)")

        // A client that does not know the certificate says which check failed.
        let untrusted = try box.run("cml-run", ["ls", "--store", server.url], env: ["CML_CA_FILE": ""])
        #expect(untrusted.status == 1 && untrusted.out.isEmpty)
        #expect(untrusted.stderr.hasPrefix("cml-run: error: cannot trust \(server.url)/") && untrusted.stderr.contains("self-signed certificate")
                && untrusted.stderr.contains("CML_CA_FILE") && untrusted.stderr.split(separator: "\n").count == 1, "\(untrusted.stderr)")

        // Plain HTTP to the https port is answered, in the JSON of every error, with what to change.
        let plainURL = server.url.replacingOccurrences(of: "https://", with: "http://")
        let plain = try box.run("cml-run", ["ls", "--store", plainURL])
        #expect(plain.status == 2 && plain.out.isEmpty)
        #expect(plain.stderr == "cml-run: error: this server speaks https only (use https:// in the URL)\n", "\(plain.stderr)")
        let page = try await HTTPReply.send(plainURL + "/healthz")
        #expect(page.status == 400 && page.json["kind"] as? String == "invalid" && page.headers["connection"] == "close")

        // The server serves on, quietly.
        let again = try box.run("cml-run", ["ls", "--format", "jsonl", "--store", server.url], env: ["CML_CA_FILE": certificate])
        #expect(again.status == 0 && again.stdout == local.stdout, "\(again.stderr)")
        let stopped = try server.stop()
        #expect(stopped.status == 0 && stopped.stderr.isEmpty, "\(stopped.stderr)")
    }

    @Test func aWrongCertificateOrKeyIsNamedBeforeListening() throws {
        let box = try Sandbox()
        let (certificate, key) = try Self.certificate(in: box)
        let (_, otherKey) = try Self.certificate(in: box, name: "other")
        try box.write("garbage.pem", "not a certificate\n")
        let absent = box.work + "/absent.pem"
        for (certificateFile, keyFile, expected) in [
            (absent, key, "--tls-cert: cannot read \(absent): No such file or directory"),
            (certificate, absent, "--tls-key: cannot read \(absent): No such file or directory"),
            (box.work, key, "--tls-cert: cannot read \(box.work): Is a directory"),
            (box.work + "/garbage.pem", key, "--tls-cert: \(box.work)/garbage.pem holds no PEM certificate (a file that begins -----BEGIN CERTIFICATE-----)"),
            (certificate, certificate, "--tls-key: \(certificate) holds no PEM private key, or an encrypted one (a file that begins -----BEGIN PRIVATE KEY-----, without a passphrase)"),
            (certificate, otherKey, "--tls-key: \(otherKey) is not the key of the certificate in \(certificate)"),
        ] {
            let result = try box.run("cml-serve", ["--listen", "127.0.0.1:0", "--tls-cert", certificateFile, "--tls-key", keyFile])
            #expect(result.status == 1 && result.out.isEmpty, "\(expected): \(result.out)")
            #expect(result.stderr == "cml-serve: error: \(expected)\n")
        }
        let alone = try box.run("cml-serve", ["--listen", "127.0.0.1:0", "--tls-cert", certificate])
        #expect(alone.status == 2 && alone.stderr.hasPrefix("cml-serve: error: --tls-cert and --tls-key go together"), "\(alone.stderr)")
        // https does not stand for a token: beyond loopback a store without one is still refused.
        let open = try box.run("cml-serve", ["--listen", "0.0.0.0:0", "--tls-cert", certificate, "--tls-key", key])
        #expect(open.status == 2 && open.stderr.contains("reaches beyond this machine, and the store has no token"), "\(open.stderr)")
        // CML_STORE set to a server (as the README's tour leaves it) is not a store to serve.
        let remote = try box.run("cml-serve", ["--listen", "127.0.0.1:0"], env: ["CML_STORE": "http://127.0.0.1:9"])
        #expect(remote.status == 1 && remote.stderr == "cml-serve: error: cml-serve serves a store directory, and the store is "
                + "http://127.0.0.1:9 (from CML_STORE) (pass --store DIR; without it, ~/.cml when CML_STORE is unset)\n", "\(remote.stderr)")
        for bad in ["0", "-1", "soon", "nan", "1e30"] {
            let result = try box.run("cml-serve", ["--listen", "127.0.0.1:0", "--idle-timeout", bad])
            #expect(result.status == 2 && result.stderr.hasPrefix("cml-serve: error: "), "\(bad): \(result.stderr)")
        }
    }

    /// A client that sends nothing, half a request head, or part of a body is cut off after the idle
    /// timeout, as is a kept-alive connection left unused; others are served meanwhile.
    @Test func silentConnectionsAreClosedAfterTheIdleTimeout() async throws {
        let box = try Sandbox()
        // A blob the store does not hold, so that the server reads its body.
        let sha = String(repeating: "ab", count: 32)
        for tls in [false, true] {
            var args = ["--listen", "127.0.0.1:0", "--idle-timeout", "1"]
            if tls {
                let (certificate, key) = try Self.certificate(in: box)
                args += ["--tls-cert", certificate, "--tls-key", key]
            }
            let server = try ServerUnderTest(box, args, scheme: tls ? "https" : "http")
            let port = try #require(server.url.split(separator: ":").last.flatMap { UInt16($0) })

            let silent = try RawConnection(port: port)
            let halfHead = try RawConnection(port: port)
            let stalledBody = try RawConnection(port: port)
            let keptAlive = try RawConnection(port: port)
            if !tls {
                try halfHead.send("GET /api/v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                try stalledBody.send("PUT /api/v1/blobs/\(sha) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n0123456789")
                try keptAlive.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            }
            let health = try await HTTPReply.send("http://127.0.0.1:\(port)/healthz")
            #expect(health.status == (tls ? 400 : 200))

            // Closed by the server: the read ends instead of reaching its own limit.
            #expect(silent.readUntilClosed() == "", "tls \(tls)")
            if !tls {
                #expect(halfHead.readUntilClosed() == "")
                #expect(stalledBody.readUntilClosed() == "")
                let answered = try #require(keptAlive.readUntilClosed())
                #expect(answered.hasPrefix("HTTP/1.1 200") && answered.hasSuffix("ok\n"), "\(answered)")
            }
            #expect(!server.process.hasExited)
            let stopped = try server.stop()
            #expect(stopped.status == 0, "\(stopped.stderr)")
            #expect(stopped.stderr.isEmpty, "\(stopped.stderr)")
        }
    }

    /// The timeout waits on requests, not on answers: a followed log of a run that stays quiet for
    /// several timeouts receives what the run prints next, and its end.
    @Test func aQuietFollowOutlastsTheIdleTimeout() throws {
        let box = try Sandbox()
        let server = try ServerUnderTest(box, ["--listen", "127.0.0.1:0", "--idle-timeout", "1"])
        let run = try box.start("cml-run", ["--", "sh", "-c", "echo early; sleep 4; echo late"])
        var id: String?
        #expect(try waitUntil(timeout: 20) {
            id = try box.run("cml-run", ["ls", "--format", "jsonl"]).jsonLines.first?["id"] as? String
            return id != nil
        })
        let followed = try box.run("cml-run", ["log", "--follow", try #require(id), "--store", server.url])
        #expect(followed.status == 0, "\(followed.stderr)")
        #expect(followed.out == "early\nlate\n")
        #expect(try run.wait().status == 0)
        #expect(try server.stop().status == 0)
    }

    /// Answers of 1 KiB or more are gzipped when the client asks (libcurl, as every command does, asks
    /// and decodes), sent as they are when it does not; blobs never are.
    @Test func answersAreGzippedOnlyWhenTheClientAsks() throws {
        let (box, _, _, stored, artifact) = try ServeTests.populatedStore()
        let long = try box.run("cml-run", ["--name", "long", "--", "python3", "-c",
                                           "for i in range(3000): print(f'step {i} loss: {1 / (i + 1):.5f} acc: {i / 3000:.4f}')"])
        #expect(long.status == 0)
        let sha = try #require(try box.run("cml-run", ["artifacts", stored, "--format", "jsonl"]).jsonLines.first?["sha256"] as? String)
        let server = try ServerUnderTest(box)
        let port = try #require(server.url.split(separator: ":").last.flatMap { UInt16($0) })
        let client = HTTPClient()
        for (path, command) in [("/api/v1/runs/long/log", ["log", "long"]), ("/api/v1/runs/long/metrics", ["metrics", "long"]),
                                ("/api/v1/runs", ["ls", "--format", "jsonl"])] {
            let printed = try box.run("cml-run", command).stdout
            try #require(printed.count >= 1024)
            let asked = try client.send(HTTPRequest(server.url + path))
            #expect(asked.status == 200 && asked.headers["content-encoding"] == "gzip" && asked.headers["vary"] == "Accept-Encoding", "\(path)")
            #expect(asked.body == Array(printed), "\(path)")

            let plain = try RawConnection(port: port)
            try plain.send("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            let answer = try #require(plain.readUntilClosed()).lowercased()
            let head = answer.components(separatedBy: "\r\n\r\n").first ?? ""
            #expect(head.hasPrefix("http/1.1 200") && !head.contains("content-encoding") && head.contains("vary: accept-encoding"), "\(head)")
            let firstLine = String(decoding: printed.prefix { $0 != 0x0A }, as: UTF8.self).lowercased()
            #expect(answer.contains(firstLine), "\(path)")
        }
        // Small whole answers (streams are compressed whatever their length), blobs and their ranges go as
        // they are, asked or not.
        let small = try client.send(HTTPRequest(server.url + "/api/v1/projects"))
        #expect(small.status == 200 && small.body.count < 1024 && small.headers["content-encoding"] == nil)
        let blob = try client.send(HTTPRequest(server.url + "/api/v1/blobs/" + sha))
        #expect(blob.status == 200 && blob.headers["content-encoding"] == nil && blob.body == artifact)
        let range = try client.send(HTTPRequest(server.url + "/api/v1/blobs/" + sha, headers: [("Range", "bytes=100-5000")]))
        #expect(range.status == 206 && range.headers["content-encoding"] == nil && range.body == Array(artifact[100...5000]))
        #expect(try server.stop().status == 0)
    }

    /// A followed log is compressed chunk by chunk and flushed: the run prints its second line only once
    /// the client has decoded its first.
    @Test func aGzippedFollowArrivesAsItIsWritten() throws {
        let box = try Sandbox()
        let running = try box.start("cml-run", ["--", "sh", "-c", """
            echo first; i=0; while [ ! -e go ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
            if [ -e go ]; then echo second; else echo gave up; fi
            """])
        var id = ""
        #expect(waitUntil(timeout: 20) { id = (try? box.runs().first?["id"] as? String) ?? ""; return !id.isEmpty })
        let server = try ServerUnderTest(box)
        var received: [UInt8] = []
        let followed = try HTTPClient().send(HTTPRequest(server.url + "/api/v1/runs/\(id)/log?follow=1", idleTimeout: nil)) { bytes throws(CMLError) in
            received += bytes
            if String(decoding: received, as: UTF8.self).contains("first\n") {
                _ = FileManager.default.createFile(atPath: box.work + "/go", contents: nil)
            }
        }
        #expect(followed.status == 200 && followed.headers["content-encoding"] == "gzip")
        #expect(String(decoding: received, as: UTF8.self) == "first\nsecond\n")
        #expect(try running.wait().status == 0)
    }

    @Test func acceptEncodingIsReadAsRFC9110Says() {
        for accepted in ["gzip", "GZIP", "gzip, deflate, br", "br;q=1.0, gzip;q=0.5", "*", "x-gzip", "identity, *;q=0.1", "gzip ; q=1"] {
            #expect(Gzip.isAccepted(by: accepted), "\(accepted)")
        }
        for refused in ["", "identity", "br, zstd", "gzip;q=0", "gzip;q=0.000", "*;q=0", "*, gzip;q=0", "gzipped"] {
            #expect(!Gzip.isAccepted(by: refused), "\(refused)")
        }
    }
}

/// A TCP connection to a loopback port, for what HTTP clients never do: send half a request, then wait.
final class RawConnection {
    let fd: Int32

    init(port: UInt16) throws {
        fd = try LoopbackSocket.connect(port: port)
        // A server that never closes the connection: the read gives up after this long.
        var limit = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        try #require(write(fd, bytes, bytes.count) == bytes.count)
    }

    /// What the server sent until it closed the connection; nil when it kept it open past the read limit.
    func readUntilClosed() -> String? {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count > 0 {
                received += buffer[0..<count]
            } else if count == 0 || errno == ECONNRESET {
                return String(decoding: received, as: UTF8.self)
            } else if errno != EINTR {
                return nil
            }
        }
    }
}

import CCurl
import CEvent
import Foundation
import Glibc

/// One HTTP request for `HTTPClient`.
public struct HTTPRequest: Sendable {
    /// What follows the head.
    public enum Body: Sendable {
        case bytes([UInt8])
        /// A file's contents, read as they are sent: a blob of many GB never sits in memory.
        case file(path: String)
    }

    public var method: String
    public var url: String
    public var headers: [(name: String, value: String)]
    public var body: Body?
    /// Seconds the whole exchange may take; nil: no limit (a download of many GB, a followed log).
    public var timeout: Double?
    /// Seconds to connect, TLS handshake included.
    public var connectTimeout: Double
    /// Seconds without a byte moving after which the exchange ends (whole seconds, at least 1); nil: no
    /// limit, for a followed log that may stay quiet.
    public var idleTimeout: Double?
    /// Whether libcurl may send it again on a fresh connection when a kept one closes before any answer.
    /// Not a request that does twice what it does once (appending points): the server may have done it
    /// before the connection closed, so the caller asks what arrived instead.
    public var resendable = true

    public init(_ url: String, method: String = "GET", headers: [(name: String, value: String)] = [], body: Body? = nil,
                timeout: Double? = nil, connectTimeout: Double = 10, idleTimeout: Double? = 60) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.connectTimeout = connectTimeout
        self.idleTimeout = idleTimeout
    }

    /// Sends `token` as `Authorization: Bearer TOKEN`, as `cml-serve` expects.
    public mutating func authorize(bearer token: String) {
        headers.append((name: "Authorization", value: "Bearer " + token))
    }
}

/// An answer: its status, its headers (names lowercased; a repeated header's values joined by ", "),
/// and its body (empty after a streamed success, whose body went to the callback).
public struct HTTPResponse: Sendable {
    /// The URL asked for (what error messages name).
    public var url: String
    public var status: Int
    public var headers: [String: String]
    public var body: [UInt8]

    public init(url: String, status: Int, headers: [String: String] = [:], body: [UInt8] = []) {
        self.url = url
        self.status = status
        self.headers = headers
        self.body = body
    }

    public var isSuccess: Bool { (200..<300).contains(status) }

    /// The error a non-2xx answer stands for, nil for a success. `cml-serve`'s errors
    /// (`{"error": …, "hint": …, "kind": …}`) come back as they were thrown on the server; any other body
    /// (a proxy's page) gets the kind its status implies and a message naming the status.
    public var cmlError: CMLError? {
        if isSuccess { return nil }
        var bytes = body
        if let json = try? JSON.parse(bytes: &bytes), let message = json["error"]?.stringValue {
            let kind = json["kind"]?.stringValue.flatMap(CMLError.Kind.init(rawValue:)) ?? Self.kind(forStatus: status)
            // An invalid request is what a usage error is on the server, and ends a command the same way.
            return CMLError(message, hint: json["hint"]?.stringValue, exitCode: kind == .invalid ? 2 : 1, kind: kind)
        }
        var message = "\(HTTPClient.printable(url)) answered HTTP \(status)"
        // A proxy's page says more in its first line than the status alone.
        if let line = String(decoding: body.prefix(200), as: UTF8.self).split(whereSeparator: \.isNewline).first {
            let text = line.trimmingCharacters(in: .whitespaces)
            if !text.isEmpty { message += ": " + text }
        }
        let kind = Self.kind(forStatus: status)
        return CMLError(message, exitCode: kind == .invalid ? 2 : 1, kind: kind)
    }

    /// What a status means to a client that got no error JSON with it.
    static func kind(forStatus status: Int) -> CMLError.Kind {
        switch status {
        case 400, 413: .invalid
        case 401: .unauthenticated
        case 403: .refused
        case 404: .notFound
        case 409: .conflict
        case 429: .busy
        // A proxy in front of cml-serve that cannot reach it, or a server that cannot serve now.
        case 502, 503, 504: .unavailable
        default: .failed
        }
    }
}

/// A synchronous HTTP client over two libraries, each loaded on first use: executables link nothing for
/// it, and a command against a local store loads neither.
///
/// - Plain http:// requests whose answer is taken whole go through libevent's evhttp (see `CEvent`),
///   which loads in about 0.2 ms: `cml-run` against a server pays the load at every start.
/// - https, and answers streamed to a callback (blobs, followed logs, metric streams), go through libcurl
///   (see `CCurl`), which loads in several milliseconds with its TLS, compression and IDN libraries.
///
/// One client keeps one connection of each open between requests (keep-alive), with curl's TLS
/// sessions. It is not for sharing between threads: make one per thread.
///
/// Answers are asked for compressed (evhttp: gzip; libcurl: whatever it can decode) and come back
/// decoded. https uses the system's CA certificates, or the file in `$CML_CA_FILE` (a server's
/// self-signed certificate, or the CA that signed it). Redirects are not followed: a store's API has
/// none, and following one would carry the token elsewhere.
public final class HTTPClient {
    /// libcurl's handle, made at the first request that needs it.
    private var curlHandle: UnsafeMutableRawPointer?
    private var handle: UnsafeMutableRawPointer { curlHandle! }
    /// libcurl's own account of a failure, more precise than its code's (which certificate check failed).
    private let errorDetail = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE))
    /// The kept evhttp connection, to the host and port of the last plain-http request.
    private var plainConnection: EventHTTPConnection?
    /// The certificates https servers are checked against; nil: the system's.
    public let caFile: String?

    public init(caFile: String? = getenv("CML_CA_FILE").map { String(cString: $0) }) {
        self.caFile = caFile.flatMap { $0.isEmpty ? nil : $0 }
    }

    deinit {
        if let curlHandle { cml_curl_easy_cleanup(curlHandle) }
        errorDetail.deallocate()
    }

    /// Loads the library requests to `url` go through, so that a missing one is said before the first
    /// request: libevent for http://, libcurl for anything else.
    public static func load(for url: String) throws(CMLError) {
        if PlainURL(url) != nil { try EventHTTPConnection.load() } else { try loadCurl() }
    }

    private static func loadCurl() throws(CMLError) {
        if let failure = cml_curl_load() { throw CMLError(String(cString: failure)) }
    }

    /// Sends `request` and returns the whole answer, whatever its status (see `HTTPResponse.cmlError`).
    /// A failure to reach the server, or a connection lost or timed out, throws a `CMLError` of kind
    /// `unavailable`.
    public func send(_ request: HTTPRequest) throws(CMLError) -> HTTPResponse {
        if let plain = PlainURL(request.url), let method = EventHTTPConnection.method(try Self.checkedMethod(request, shown: plain.shown)) {
            return try sendPlain(request, to: plain, method: method)
        }
        let exchange = Exchange(deliver: nil)
        try perform(request, exchange)
        return HTTPResponse(url: request.url, status: exchange.status, headers: exchange.headers, body: exchange.body)
    }

    /// `request` through evhttp, on the kept connection when it still serves, else on a new one. A
    /// request that failed before any answer on a kept connection (closed by the server as it was sent)
    /// goes once more on a new one when it is `resendable`.
    private func sendPlain(_ request: HTTPRequest, to url: PlainURL, method: cml_event_method) throws(CMLError) -> HTTPResponse {
        let headers = [(name: "Host", value: url.hostHeader), (name: "Accept-Encoding", value: "gzip")] + request.headers
        // A request that carries a body says how long it is, even when it is empty (as libcurl's path does).
        let body = request.body ?? (["GET", "HEAD", "DELETE", "OPTIONS"].contains(request.method.uppercased()) ? nil : .bytes([]))
        var file: Int32?
        if case .file(let path)? = body { file = try Exchange.openForSending(path) }
        defer { if let file { close(file) } }
        while true {
            if let kept = plainConnection, !(kept.host == url.host && kept.port == url.port && kept.isUsable) { plainConnection = nil }
            let connection: EventHTTPConnection
            if let kept = plainConnection {
                connection = kept
            } else {
                connection = try EventHTTPConnection(host: url.host, port: url.port, connectTimeout: request.connectTimeout, shown: url.shown)
                plainConnection = connection
            }
            let reused = connection.used
            do throws(EventHTTPConnection.Failure) {
                return try connection.exchange(method: method, target: url.target, headers: headers, body: body, file: file,
                                               idleTimeout: request.idleTimeout, timeout: request.timeout, url: request.url)
            } catch {
                plainConnection = nil
                if reused, !error.answered, request.resendable { continue }
                throw CMLError("\(error.answered ? "lost the connection to" : "cannot reach") \(url.shown): \(error.reason)", kind: .unavailable)
            }
        }
    }

    /// Sends `request` and hands a successful (2xx) answer's body to `onBody` as its bytes arrive: a
    /// download too large for memory, or a stream that stays open (a followed log). Returns the head; the
    /// body of an answer that is not a success is not handed over but returned, so that `cmlError` can
    /// read it. An error thrown by `onBody` ends the exchange and is rethrown.
    public func send(_ request: HTTPRequest, onBody: ([UInt8]) throws(CMLError) -> Void) throws(CMLError) -> HTTPResponse {
        try withoutActuallyEscaping(onBody) { (deliver) throws(CMLError) -> HTTPResponse in
            let exchange = Exchange(deliver: deliver)
            try perform(request, exchange)
            return HTTPResponse(url: request.url, status: exchange.status, headers: exchange.headers, body: exchange.body)
        }
    }

    /// A URL as messages show it: without the user and password it may carry.
    static func printable(_ url: String) -> String {
        guard let scheme = url.range(of: "://") else { return url }
        let rest = url[scheme.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        guard let at = rest[..<authorityEnd].lastIndex(of: "@") else { return url }
        return String(url[..<scheme.upperBound]) + String(rest[rest.index(after: at)...])
    }

    private func perform(_ request: HTTPRequest, _ exchange: Exchange) throws(CMLError) {
        let shown = Self.printable(request.url)
        let method = try Self.checkedMethod(request, shown: shown)
        // A request that carries a body says how long it is, even when it is empty.
        if let body = request.body ?? (["GET", "HEAD", "DELETE", "OPTIONS"].contains(method) ? nil : .bytes([])) {
            try exchange.prepareUpload(body)
        }
        defer { exchange.closeUpload() }

        if curlHandle == nil {
            try Self.loadCurl()
            guard let made = cml_curl_easy_init() else { throw CMLError("cannot start a libcurl session") }
            curlHandle = made
        }
        cml_curl_easy_reset(handle)
        setTransferOptions(request)
        let headers = request.headers.map { "\($0.name): \($0.value)" } + setMethod(method, request: request, exchange: exchange)
        var list: UnsafeMutablePointer<curl_slist>?
        for header in headers { list = cml_curl_slist_append(list, header) }
        defer { cml_curl_slist_free_all(list) }
        setPointer(CURLOPT_HTTPHEADER, list)
        setReceivers(exchange)

        let code = withExtendedLifetime(exchange) { cml_curl_easy_perform(handle) }
        if let failure = exchange.failure { throw failure }
        guard code == CURLE_OK else {
            throw Self.error(code, url: shown, answered: exchange.status != 0, detail: String(cString: errorDetail))
        }
        var status = 0
        cml_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        exchange.status = status
    }

    /// The request's method, uppercased, once it and the headers are known to make a well-formed head.
    private static func checkedMethod(_ request: HTTPRequest, shown: String) throws(CMLError) -> String {
        // Scalars, not characters: "\r\n" is one Character, equal to neither "\r" nor "\n".
        for (name, value) in request.headers where name.isEmpty || (name + value).unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" }) {
            throw CMLError("the header \(name.debugDescription) for \(shown) holds a line break or has no name", kind: .invalid)
        }
        let method = request.method.uppercased()
        guard !method.isEmpty, method.allSatisfy({ $0.isASCII && $0.isLetter }) else {
            throw CMLError("\(request.method.debugDescription) is not an HTTP method", kind: .invalid)
        }
        return method
    }

    private func setTransferOptions(_ request: HTTPRequest) {
        setString(CURLOPT_URL, request.url)
        setString(CURLOPT_PROTOCOLS_STR, "http,https")
        errorDetail[0] = 0
        cml_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, errorDetail)
        // No signals: libcurl would otherwise use SIGALRM for DNS timeouts, which threads cannot share.
        setLong(CURLOPT_NOSIGNAL, 1)
        setLong(CURLOPT_TCP_KEEPALIVE, 1)
        setString(CURLOPT_ACCEPT_ENCODING, "")
        setLong(CURLOPT_BUFFERSIZE, 256 * 1024)
        setLong(CURLOPT_CONNECTTIMEOUT_MS, Self.milliseconds(request.connectTimeout))
        if let timeout = request.timeout { setLong(CURLOPT_TIMEOUT_MS, Self.milliseconds(timeout)) }
        if let idle = request.idleTimeout {
            // Less than a byte a second for that long: nothing moves.
            setLong(CURLOPT_LOW_SPEED_LIMIT, 1)
            setLong(CURLOPT_LOW_SPEED_TIME, max(1, Int(idle.rounded(.up))))
        }
        if let caFile { setString(CURLOPT_CAINFO, caFile) }
    }

    /// Sets the method and the body's source; returns the headers that go with them.
    private func setMethod(_ method: String, request: HTTPRequest, exchange: Exchange) -> [String] {
        guard let size = exchange.uploadSize else {
            if method == "HEAD" { setLong(CURLOPT_NOBODY, 1) } else if method != "GET" { setString(CURLOPT_CUSTOMREQUEST, method) }
            return []
        }
        setLong(CURLOPT_POST, 1)
        if method != "POST" { setString(CURLOPT_CUSTOMREQUEST, method) }
        cml_curl_setopt_off(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(size))
        cml_curl_setopt_transfer_callback(handle, CURLOPT_READFUNCTION) { buffer, size, count, context in
            Unmanaged<Exchange>.fromOpaque(context!).takeUnretainedValue().readUpload(into: buffer!, capacity: size * count)
        }
        setPointer(CURLOPT_READDATA, exchange)
        // A body may have to be sent again on a fresh connection, when a kept one turns out closed. Without
        // this callback libcurl cannot rewind it, and fails the request (CURLE_SEND_FAIL_REWIND) instead.
        guard request.resendable else { return headers(for: request) }
        cml_curl_setopt_seek_callback(handle) { context, offset, origin in
            guard origin == SEEK_SET else { return CURL_SEEKFUNC_CANTSEEK }
            return Unmanaged<Exchange>.fromOpaque(context!).takeUnretainedValue().rewindUpload(to: Int(offset))
                ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_FAIL
        }
        setPointer(CURLOPT_SEEKDATA, exchange)
        return headers(for: request)
    }

    /// The headers that go with a body.
    private func headers(for request: HTTPRequest) -> [String] {
        // cml-serve never answers `Expect: 100-continue`, so libcurl would wait a second before each large
        // body; an early error answer still stops the upload.
        var headers = ["Expect:"]
        // Else libcurl calls a POST body a form.
        if !request.headers.contains(where: { $0.name.lowercased() == "content-type" }) { headers.append("Content-Type:") }
        return headers
    }

    /// The callbacks that take the answer's head and body into `exchange`.
    private func setReceivers(_ exchange: Exchange) {
        cml_curl_setopt_transfer_callback(handle, CURLOPT_HEADERFUNCTION) { data, size, count, context in
            let length = size * count
            Unmanaged<Exchange>.fromOpaque(context!).takeUnretainedValue()
                .receiveHeader(UnsafeRawBufferPointer(start: data, count: length))
            return length
        }
        setPointer(CURLOPT_HEADERDATA, exchange)
        cml_curl_setopt_transfer_callback(handle, CURLOPT_WRITEFUNCTION) { data, size, count, context in
            let length = size * count
            let taken = Unmanaged<Exchange>.fromOpaque(context!).takeUnretainedValue()
                .receiveBody(UnsafeRawBufferPointer(start: data, count: length))
            return taken ? length : 0
        }
        setPointer(CURLOPT_WRITEDATA, exchange)
    }

    /// What a failed transfer means to the caller.
    private static func error(_ code: CURLcode, url: String, answered: Bool, detail: String) -> CMLError {
        let reason = String(cString: cml_curl_easy_strerror(code))
        switch code {
        case CURLE_COULDNT_RESOLVE_PROXY, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_CONNECT, CURLE_OPERATION_TIMEDOUT,
             CURLE_SEND_ERROR, CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE, CURLE_HTTP2, CURLE_HTTP2_STREAM:
            return CMLError("\(answered ? "lost the connection to" : "cannot reach") \(url): \(reason)", kind: .unavailable)
        case CURLE_SEND_FAIL_REWIND:
            // Only a request that is not `resendable` gets here.
            return CMLError("lost the connection to \(url) before its answer", hint: "not sent again: it may have arrived",
                            kind: .unavailable)
        case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL:
            return CMLError("\(url) is not an http or https URL: \(reason)", exitCode: 2)
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE:
            // "SSL certificate problem: self-signed certificate", where the code says only "not OK".
            return CMLError("cannot trust \(url): \(detail.isEmpty ? reason : detail)",
                            hint: "for a server with a certificate of its own, name it (or its CA) in CML_CA_FILE")
        default:
            return CMLError("request to \(url) failed: \(reason)")
        }
    }

    private static func milliseconds(_ seconds: Double) -> Int { max(1, Int((seconds * 1000).rounded(.up))) }

    private func setLong(_ option: CURLoption, _ value: Int) { cml_curl_setopt_long(handle, option, value) }

    /// libcurl copies strings, so the pointer need not outlive the call.
    private func setString(_ option: CURLoption, _ value: String) { cml_curl_setopt_pointer(handle, option, value) }

    private func setPointer(_ option: CURLoption, _ value: UnsafeMutablePointer<curl_slist>?) {
        cml_curl_setopt_pointer(handle, option, value)
    }

    /// The exchange stays alive through `perform` (`withExtendedLifetime`), as the callbacks need.
    private func setPointer(_ option: CURLoption, _ exchange: Exchange) {
        cml_curl_setopt_pointer(handle, option, Unmanaged.passUnretained(exchange).toOpaque())
    }
}

/// An http:// URL taken apart for evhttp; nil for any other scheme, or a URL libcurl is left to refuse.
struct PlainURL {
    /// The name or address to connect to (an IPv6 address without its brackets).
    var host: String
    var port: Int
    /// What the Host header says: the authority without its user and password.
    var hostHeader: String
    /// The path and query, as the request line carries them.
    var target: String
    /// The URL as messages show it (`HTTPClient.printable`).
    var shown: String

    init?(_ url: String) {
        guard url.count > 7, url.prefix(7).lowercased() == "http://" else { return nil }
        let rest = url.dropFirst(7)
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        var authority = rest[..<authorityEnd]
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        var target = String(rest[authorityEnd...])
        if let fragment = target.firstIndex(of: "#") { target = String(target[..<fragment]) }
        if !target.hasPrefix("/") { target = "/" + target }
        guard !target.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F }) else { return nil }
        var host = authority, port = 80
        if let colon = authority.lastIndex(of: ":"), !authority[colon...].contains("]") {
            guard let number = Int(authority[authority.index(after: colon)...]), (1...65535).contains(number) else { return nil }
            host = authority[..<colon]
            port = number
        }
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard !host.isEmpty, !host.contains(where: { $0 == "[" || $0 == "]" || $0 == "@" || $0.isWhitespace }) else { return nil }
        self.host = String(host)
        self.port = port
        hostHeader = String(authority)
        self.target = target
        shown = HTTPClient.printable(url)
    }
}

/// One exchange's state, which libcurl's callbacks reach through their user data pointer.
final class Exchange {
    let deliver: (([UInt8]) throws(CMLError) -> Void)?
    var status = 0
    var headers: [String: String] = [:]
    var body: [UInt8] = []
    /// Why a callback stopped the transfer: thrown instead of libcurl's code.
    var failure: CMLError?
    private var upload: Upload?

    private enum Upload {
        case bytes([UInt8], offset: Int)
        case file(descriptor: Int32, path: String)
    }

    init(deliver: (([UInt8]) throws(CMLError) -> Void)?) {
        self.deliver = deliver
    }

    var uploadSize: Int? {
        switch upload {
        case .bytes(let bytes, _):
            return bytes.count
        case .file(let descriptor, _):
            var info = stat()
            fstat(descriptor, &info)
            return Int(info.st_size)
        case nil:
            return nil
        }
    }

    func prepareUpload(_ body: HTTPRequest.Body) throws(CMLError) {
        switch body {
        case .bytes(let bytes):
            upload = .bytes(bytes, offset: 0)
        case .file(let path):
            upload = .file(descriptor: try Self.openForSending(path), path: path)
        }
    }

    /// A file to send as a body, opened for reading once it is known to be a regular file.
    static func openForSending(_ path: String) throws(CMLError) -> Int32 {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw FileSystem.error("cannot read", path) }
        var info = stat()
        guard fstat(descriptor, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            close(descriptor)
            throw CMLError("cannot send \(path): not a regular file", kind: .invalid)
        }
        return descriptor
    }

    func closeUpload() {
        if case .file(let descriptor, _) = upload { close(descriptor) }
        upload = nil
    }

    /// libcurl's read callback: up to `capacity` bytes of the body, 0 at its end.
    func readUpload(into buffer: UnsafeMutablePointer<CChar>, capacity: Int) -> Int {
        switch upload {
        case .bytes(let bytes, let offset):
            let count = min(capacity, bytes.count - offset)
            bytes.withUnsafeBytes { UnsafeMutableRawPointer(buffer).copyMemory(from: $0.baseAddress! + offset, byteCount: count) }
            upload = .bytes(bytes, offset: offset + count)
            return count
        case .file(let descriptor, let path):
            while true {
                let count = read(descriptor, buffer, capacity)
                if count >= 0 { return count }
                if errno == EINTR { continue }
                failure = FileSystem.error("cannot read", path)
                return Int(CURL_READFUNC_ABORT)
            }
        case nil:
            return 0
        }
    }

    func rewindUpload(to offset: Int) -> Bool {
        switch upload {
        case .bytes(let bytes, _):
            guard offset <= bytes.count else { return false }
            upload = .bytes(bytes, offset: offset)
            return true
        case .file(let descriptor, _):
            return lseek(descriptor, off_t(offset), SEEK_SET) == off_t(offset)
        case nil:
            return offset == 0
        }
    }

    /// One line of the head. A status line starts a new head (after a `100 Continue`).
    func receiveHeader(_ line: UnsafeRawBufferPointer) {
        let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if text.hasPrefix("HTTP/") {
            let parts = text.split(separator: " ", maxSplits: 2)
            status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            headers = [:]
        } else if let colon = text.firstIndex(of: ":") {
            let name = text[..<colon].lowercased()
            let value = text[text.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers[name] = headers[name].map { $0 + ", " + value } ?? value
        }
    }

    /// libcurl's write callback: false stops the transfer.
    func receiveBody(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let deliver, (200..<300).contains(status) else {
            body.append(contentsOf: bytes)
            return true
        }
        do {
            try deliver(Array(bytes))
            return true
        } catch {
            failure = error
            return false
        }
    }
}

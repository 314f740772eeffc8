import CEvent
import CZlib
import Foundation
import Glibc

/// One kept connection to a plain-http server through libevent's evhttp (see `CEvent`): what `HTTPClient`
/// uses for http:// requests whose answers it takes whole, because libevent loads in a fraction of the
/// milliseconds libcurl takes, and `cml-run` against a server pays that at every start.
final class EventHTTPConnection {
    let host: String
    let port: Int
    private let handle: OpaquePointer
    /// Whether a request was sent on it: a failure on a kept connection may only mean the server closed it.
    private(set) var used = false

    /// Loads libevent once per process; a library that cannot load is named.
    static func load() throws(CMLError) {
        if let failure = cml_event_load() { throw CMLError(String(cString: failure)) }
    }

    /// A connection made at the first exchange, to the first of the host's addresses that accepts within
    /// `connectTimeout` seconds. A name that does not resolve is the `unavailable` error naming `shown`.
    init(host: String, port: Int, connectTimeout: Double, shown: String) throws(CMLError) {
        try Self.load()
        var reason = [CChar](repeating: 0, count: 256)
        guard let handle = cml_event_connect(host, Int32(port), connectTimeout, &reason, reason.count) else {
            throw CMLError("cannot reach \(shown): \(reason.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })", kind: .unavailable)
        }
        self.host = host
        self.port = port
        self.handle = handle
    }

    deinit { cml_event_close(handle) }

    /// Still open and quiet since its last answer.
    var isUsable: Bool { cml_event_usable(handle) != 0 }

    /// The method's evhttp constant; nil for one evhttp cannot send.
    static func method(_ name: String) -> cml_event_method? {
        switch name {
        case "GET": CML_EVENT_GET
        case "POST": CML_EVENT_POST
        case "PUT": CML_EVENT_PUT
        case "DELETE": CML_EVENT_DELETE
        case "HEAD": CML_EVENT_HEAD
        case "PATCH": CML_EVENT_PATCH
        case "OPTIONS": CML_EVENT_OPTIONS
        default: nil
        }
    }

    /// What an exchange that did not end with a whole answer came to.
    struct Failure: Error {
        var reason: String
        /// The answer's head had arrived.
        var answered: Bool
    }

    /// Sends one request and returns its answer, the body decoded when it came gzipped. A `.file` body is
    /// sent from `file`, the caller's descriptor of it (`Exchange.openForSending`).
    func exchange(method: cml_event_method, target: String, headers: [(name: String, value: String)], body: HTTPRequest.Body?,
                  file: Int32?, idleTimeout: Double?, timeout: Double?, url: String) throws(Failure) -> HTTPResponse {
        used = true
        final class Received {
            var headers: [String: String] = [:]
            var body: [UInt8] = []
        }
        let received = Received()
        let names = headers.map { UnsafePointer(strdup($0.name)) }, values = headers.map { UnsafePointer(strdup($0.value)) }
        defer { (names + values).forEach { free(UnsafeMutablePointer(mutating: $0)) } }
        var bytes: [UInt8] = []
        if case .bytes(let content)? = body { bytes = content }
        var exchange = cml_event_exchange()
        exchange.method = method
        exchange.header_count = Int32(headers.count)
        exchange.body_file = file ?? -1
        exchange.has_body = body == nil ? 0 : 1
        if let file {
            var info = stat()
            fstat(file, &info)
            exchange.body_length = Int(info.st_size)
        } else {
            exchange.body_length = bytes.count
        }
        exchange.idle_timeout = idleTimeout ?? 0
        exchange.total_timeout = timeout ?? 0
        exchange.on_header = { context, name, value in
            let received = Unmanaged<Received>.fromOpaque(context!).takeUnretainedValue()
            let key = String(cString: name!).lowercased(), text = String(cString: value!)
            received.headers[key] = received.headers[key].map { $0 + ", " + text } ?? text
        }
        exchange.on_body = { context, bytes, count in
            Unmanaged<Received>.fromOpaque(context!).takeUnretainedValue().body
                .append(contentsOf: UnsafeRawBufferPointer(start: bytes, count: count))
        }
        exchange.context = Unmanaged.passUnretained(received).toOpaque()
        let sent = withExtendedLifetime(received) {
            target.withCString { target in
                names.withUnsafeBufferPointer { names in
                    values.withUnsafeBufferPointer { values in
                        bytes.withUnsafeBytes { content in
                            exchange.target = target
                            exchange.body = content.baseAddress
                            exchange.header_names = names.baseAddress
                            exchange.header_values = values.baseAddress
                            return cml_event_exchange(handle, &exchange)
                        }
                    }
                }
            }
        }
        guard sent == 0 else { throw Failure(reason: Self.reason(exchange), answered: exchange.answered != 0) }
        var answer = HTTPResponse(url: url, status: Int(exchange.status), headers: received.headers, body: received.body)
        if answer.headers["content-encoding"]?.lowercased() == "gzip" {
            guard let decoded = Self.gunzip(answer.body) else {
                throw Failure(reason: "its gzip answer does not decode", answered: true)
            }
            answer.body = decoded
        }
        return answer
    }

    private static func reason(_ exchange: cml_event_exchange) -> String {
        switch exchange.failure {
        case CML_EVENT_CONNECT_FAILED: String(cString: strerror(exchange.error_number))
        case CML_EVENT_TIMEOUT: "timed out"
        case CML_EVENT_MALFORMED: "the answer is not HTTP"
        case CML_EVENT_SEND_ERROR: exchange.error_number == 0 ? "cannot send" : String(cString: strerror(exchange.error_number))
        default: "the connection closed"
        }
    }

    /// `bytes` inflated from gzip; nil when they are not whole gzip.
    static func gunzip(_ bytes: [UInt8]) -> [UInt8]? {
        var stream = z_stream()
        // 15 + 16: a gzip wrapper, the largest window.
        guard inflateInit2_(&stream, 15 + 16, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return nil }
        defer { inflateEnd(&stream) }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 256 * 1024)
        var status = Z_OK
        var input = bytes
        input.withUnsafeMutableBufferPointer { input in
            stream.next_in = input.baseAddress
            stream.avail_in = uInt(input.count)
            while status == Z_OK {
                chunk.withUnsafeMutableBufferPointer { buffer in
                    stream.next_out = buffer.baseAddress
                    stream.avail_out = uInt(buffer.count)
                    status = inflate(&stream, Z_NO_FLUSH)
                    output.append(contentsOf: buffer[..<(buffer.count - Int(stream.avail_out))])
                }
            }
        }
        return status == Z_STREAM_END ? output : nil
    }
}

import Foundation
import Glibc

/// A store served by `cml-serve` (`--store http://HOST:PORT`): each method is one request of the store
/// API (docs/http-api.md), records in `WireCodec`'s form, errors back as the `CMLError` the server threw.
/// The token comes from `$CML_TOKEN` or a file (`--token-file`).
public final class HTTPStore: Store, @unchecked Sendable {  // its state is the client pool, under a lock
    public let location: String
    private let token: String?
    private let lock = NSLock()
    /// Clients not in use: each keeps its connection open, and a thread takes one for each request.
    private var idle: [HTTPClient] = []

    public init(url: String, token: String?) throws(CMLError) {
        var base = url
        while base.hasSuffix("/") { base.removeLast() }
        location = base
        self.token = token
        // Loads the HTTP library now, so that a missing one is said at once rather than at the first request.
        try HTTPClient.load(for: base)
        idle.append(HTTPClient())
    }

    /// The token for `url`: from `tokenFile` when given, else `$CML_TOKEN`; nil when neither is set.
    public static func token(file tokenFile: String?) throws(CMLError) -> String? {
        if let tokenFile {
            let text = String(decoding: try FileSystem.readAll(tokenFile), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !text.isEmpty else { throw CMLError("the token file \(tokenFile) is empty", kind: .invalid) }
            return text
        }
        guard let value = getenv("CML_TOKEN"), value.pointee != 0 else { return nil }
        return String(cString: value)
    }

    // MARK: Requests

    func withClient<T>(_ body: (HTTPClient) throws(CMLError) -> T) throws(CMLError) -> T {
        lock.lock()
        let taken = idle.popLast()
        lock.unlock()
        let client: HTTPClient
        if let taken { client = taken } else { client = HTTPClient() }
        defer {
            lock.lock()
            idle.append(client)
            lock.unlock()
        }
        return try body(client)
    }

    func request(_ method: String, _ path: String, query: [(String, String)] = [], body: HTTPRequest.Body? = nil,
                         type: String? = nil) -> HTTPRequest {
        var url = location + path
        if !query.isEmpty { url += "?" + query.map { "\(Self.escape($0.0))=\(Self.escape($0.1))" }.joined(separator: "&") }
        var request = HTTPRequest(url, method: method, body: body)
        if let type { request.headers.append((name: "Content-Type", value: type)) }
        if let token { request.authorize(bearer: token) }
        return request
    }

    /// Sends the request; the answer when it is a success, else the error it stands for.
    @discardableResult
    func send(_ request: HTTPRequest) throws(CMLError) -> HTTPResponse {
        let response = try withClient { client throws(CMLError) in try client.send(request) }
        if let error = response.cmlError { throw error }
        return response
    }

    /// A store call whose answer is a record.
    func call<Result: Decodable>(_ method: String, _ path: String, query: [(String, String)] = [],
                                         as type: Result.Type) throws(CMLError) -> Result {
        let response = try send(request(method, path, query: query))
        return try WireCodec.decode(type, from: response.body, what: "the answer to \(method) \(path)")
    }

    func call<Result: Decodable>(_ method: String, _ path: String, query: [(String, String)] = [],
                                         sending record: some Encodable, as type: Result.Type) throws(CMLError) -> Result {
        let response = try send(request(method, path, query: query, body: .bytes(try WireCodec.encode(record)), type: "application/json"))
        return try WireCodec.decode(type, from: response.body, what: "the answer to \(method) \(path)")
    }

    /// A store call that answers nothing.
    func post(_ path: String, query: [(String, String)] = [], sending record: some Encodable) throws(CMLError) {
        try send(request("POST", path, query: query, body: .bytes(try WireCodec.encode(record)), type: "application/json"))
    }

    static func escape(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .urlUnreservedCharacters) ?? text
    }

    static func runPath(_ id: String, _ rest: String = "") -> String {
        "/api/v1/store/runs/" + escape(id) + rest
    }

    // MARK: Runs

    public func createRun(_ run: Run, patch: [UInt8]) throws(CMLError) -> Run {
        try call("POST", "/api/v1/store/runs", sending: RemoteRecords.CreatedRun(run: run, patch: Data(patch)), as: Run.self)
    }

    public func finishRun(id: String, end: RunEnd, logBytes: Int64) throws(CMLError) {
        try post(Self.runPath(id, "/finish"), sending: RemoteRecords.FinishedRun(end: end, logBytes: logBytes))
    }

    public func recordEndedRun(_ batch: RunBatch) throws(CMLError) -> RunBatch.Outcome {
        try call("POST", Self.runPath(batch.run.id, "/batch"), sending: batch, as: RunBatch.Outcome.self)
    }

    public func addParams(run id: String, _ params: [Param]) throws(CMLError) {
        try post(Self.runPath(id, "/params"), sending: params)
    }

    public func addTags(run id: String, _ tags: [String]) throws(CMLError) {
        try post(Self.runPath(id, "/tags"), sending: RemoteRecords.TagChange(add: tags, remove: []))
    }

    public func removeTags(run id: String, _ tags: [String]) throws(CMLError) {
        try post(Self.runPath(id, "/tags"), sending: RemoteRecords.TagChange(add: [], remove: tags))
    }

    public func rename(run id: String, to name: String?) throws(CMLError) {
        try post(Self.runPath(id, "/name"), sending: RemoteRecords.RunName(name: name))
    }

    public func removeRuns(_ ids: [String]) throws(CMLError) -> RemovalReport {
        try call("POST", "/api/v1/store/runs/remove", sending: ids, as: RemovalReport.self)
    }

    public func projects() throws(CMLError) -> [ProjectSummary] {
        try call("GET", "/api/v1/store/projects", as: [ProjectSummary].self)
    }

    public func resolveRunID(_ prefix: String) throws(CMLError) -> String {
        try call("GET", "/api/v1/store/resolve", query: [("run", prefix)], as: String.self)
    }

    public func run(id: String) throws(CMLError) -> Run {
        try call("GET", Self.runPath(id), as: Run.self)
    }

    public func runs(_ query: RunQuery) throws(CMLError) -> [Run] {
        try call("POST", "/api/v1/store/runs/query", sending: query, as: [Run].self)
    }

    public func catalog() throws(CMLError) -> RunTerm.Catalog {
        let keys = try call("GET", "/api/v1/store/catalog", as: RemoteRecords.CatalogKeys.self)
        let params = Set(keys.params), metrics = Set(keys.metrics)
        return RunTerm.Catalog(hasParam: { params.contains($0) }, hasMetric: { metrics.contains($0) },
                               allKeys: { (keys.params, keys.metrics) })
    }

    public func appendMetrics(run id: String, _ points: [MetricPoint], source: MetricSource,
                              continuing positions: [String: Int64]?) throws(CMLError) {
        if points.isEmpty { return }
        // Without positions a batch is appended as sent, so libcurl must never send it twice; with them
        // (`RunSync`'s) a second copy is skipped by the store.
        let from = (positions ?? [:]).sorted { $0.key < $1.key }.map { ("from", "\($0.key):\($0.value)") }
        var request = request("POST", Self.runPath(id, "/metrics"), query: [("source", source.rawValue)] + from,
                              body: .bytes(WireCodec.encodePoints(points)), type: "application/json")
        request.resendable = positions != nil
        try send(request)
    }

    public func forEachMetric(run id: String, key: String?, _ body: (MetricPoint) throws(CMLError) -> Void) throws(CMLError) {
        let request = request("GET", Self.runPath(id, "/metrics"), query: key.map { [("key", $0)] } ?? [])
        var pending: [UInt8] = []
        let response = try withClient { client throws(CMLError) in
            try client.send(request) { chunk throws(CMLError) in
                pending += chunk
                var start = 0
                while let newline = pending[start...].firstIndex(of: 10) {
                    try body(try WireCodec.decodePoint(pending[start..<newline], what: "a point of run \(id)"))
                    start = newline + 1
                }
                pending.removeFirst(start)
            }
        }
        if let error = response.cmlError { throw error }
        guard pending.isEmpty else { throw CMLError("the points of run \(id) ended inside a line", kind: .unavailable) }
    }

    public func readLog(run id: String, from offset: Int64, limit: Int) throws(CMLError) -> [UInt8]? {
        let response = try send(request("GET", Self.runPath(id, "/log"), query: [("offset", String(offset)), ("limit", String(limit))]))
        return response.status == 204 ? nil : response.body
    }

    public func logSize(run id: String) throws(CMLError) -> Int64 {
        try call("GET", Self.runPath(id, "/log/size"), as: Int64.self)
    }

    @discardableResult
    public func appendLog(run id: String, at offset: Int64, _ records: [UInt8]) throws(CMLError) -> Int64 {
        let response = try send(request("POST", Self.runPath(id, "/log"), query: [("offset", String(offset))], body: .bytes(records),
                                        type: "application/octet-stream"))
        return try WireCodec.decode(Int64.self, from: response.body, what: "the answer to a log upload")
    }

    @discardableResult
    public func addArtifact(_ artifact: Artifact) throws(CMLError) -> Artifact {
        // Each call adds a version: never sent twice by libcurl (`RunSync` counts what arrived).
        let path = Self.runPath(artifact.run, "/artifacts")
        var request = request("POST", path, body: .bytes(try WireCodec.encode(artifact)), type: "application/json")
        request.resendable = false
        return try WireCodec.decode(Artifact.self, from: try send(request).body, what: "the answer to POST \(path)")
    }

    public func artifacts(run id: String) throws(CMLError) -> [Artifact] {
        try call("GET", Self.runPath(id, "/artifacts"), as: [Artifact].self)
    }

    public func heartbeatWriter(run id: String) -> any HeartbeatWriter {
        RemoteHeartbeat(store: self, run: id)
    }

    public func requestAbort(directRun id: String) throws(CMLError) {
        try send(request("POST", Self.runPath(id, "/abort")))
    }

    // MARK: Blobs

    private static func blobPath(_ id: String) -> String { "/api/v1/blobs/" + id }

    public func blob(_ id: String) throws(CMLError) -> [UInt8] {
        var bytes: [UInt8] = []
        try readBlob(id) { chunk throws(CMLError) in bytes.append(contentsOf: chunk) }
        return bytes
    }

    public func putBlob(file path: String) throws(CMLError) -> (id: String, size: Int64) {
        // Hashed here first: the server stores the content only under the hash it was sent for.
        let (id, size) = try SHA256Hasher.hashFile(path)
        if !hasBlob(id) { try send(request("PUT", Self.blobPath(id), body: .file(path: path), type: "application/octet-stream")) }
        return (id, size)
    }

    public func putBlob(_ bytes: [UInt8]) throws(CMLError) -> String {
        let id = SHA256Hasher.hex(bytes)
        try send(request("PUT", Self.blobPath(id), body: .bytes(bytes), type: "application/octet-stream"))
        return id
    }

    public func readBlob(_ id: String, _ body: (UnsafeRawBufferPointer) throws(CMLError) -> Void) throws(CMLError) {
        var hasher = SHA256Hasher()
        let request = request("GET", Self.blobPath(id))
        let response = try withClient { client throws(CMLError) in
            try client.send(request) { chunk throws(CMLError) in
                hasher.update(chunk)
                var failure: CMLError?
                chunk.withUnsafeBytes { bytes in
                    do throws(CMLError) { try body(bytes) } catch { failure = error }
                }
                if let failure { throw failure }
            }
        }
        if let error = response.cmlError { throw error }
        // The server checks the hash too, and cuts the body short when it fails; this is the check on
        // what arrived.
        let received = hasher.finalizeHex()
        guard received == id else { throw CMLError("blob \(id) arrived as \(received)", kind: .damaged) }
    }

    public func hasBlob(_ id: String) -> Bool {
        (try? blobSize(id)) != nil
    }

    public func blobSize(_ id: String) throws(CMLError) -> Int64 {
        let response = try send(request("HEAD", Self.blobPath(id)))
        guard let size = response.headers["content-length"].flatMap(Int64.init) else {
            throw CMLError("\(location) did not say the size of blob \(id)", kind: .failed)
        }
        return size
    }

    public func projects(referencingBlob blob: String) throws(CMLError) -> [String] {
        try call("GET", "/api/v1/store/blobs/\(blob)/projects", as: [String].self)
    }
}

extension CharacterSet {
    /// RFC 3986's unreserved characters: everything else in a query value or path segment is escaped.
    static let urlUnreservedCharacters = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
}

/// A run's heartbeat kept on the server: each beat one request, which answers whether an abort was asked.
final class RemoteHeartbeat: HeartbeatWriter {
    private let store: HTTPStore
    private let runID: String

    init(store: HTTPStore, run id: String) {
        self.store = store
        self.runID = id
    }

    func beat() throws(CMLError) -> Bool {
        try store.call("POST", HTTPStore.runPath(runID, "/heartbeat"), sending: [String](), as: Bool.self)
    }

    func abortRequested() throws(CMLError) -> Bool {
        try store.call("GET", HTTPStore.runPath(runID, "/abort"), as: Bool.self)
    }
}

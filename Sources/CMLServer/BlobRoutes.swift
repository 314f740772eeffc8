import CMLKit
import Foundation
import Hummingbird

/// `/api/v1/blobs/{sha256}`: a blob's bytes, verified against their hash as they are read, whole or a
/// range of them (`Range: bytes=…`, as resumed downloads ask).
enum BlobRoutes {
    static func head(_ route: RouteRequest) async throws -> Response {
        let id = try blobID(route)
        let size = try await BlobReads(route).size(id)
        var headers = headers(id)
        headers[.contentLength] = String(size)
        return Response(status: .ok, headers: headers)
    }

    static func get(_ route: RouteRequest) async throws -> Response {
        let id = try blobID(route)
        let reads = BlobReads(route)
        let size = try await reads.size(id)
        var headers = headers(id)
        var range: ClosedRange<Int64>?
        switch route.request.headers[.range].map({ ByteRange.parse($0, size: size) }) {
        case nil, .whole?:
            break
        case .unsatisfiable?:
            headers[.contentRange] = "bytes */\(size)"
            return CMLError("the range \(route.request.headers[.range] ?? "") is outside blob \(id) of \(size) bytes",
                            kind: .invalid).response(status: .rangeNotSatisfiable, headers: headers)
        case .part(let part)?:
            range = part
            headers[.contentRange] = "bytes \(part.lowerBound)-\(part.upperBound)/\(size)"
        }
        let length = range.map { $0.upperBound - $0.lowerBound + 1 } ?? size
        let only = range
        let body = StoreCalls.stream(contentLength: Int(length)) { send throws(CMLError) in
            try reads.read(id, range: only, send)
        }
        return Response(status: range == nil ? .ok : .partialContent, headers: headers, body: body)
    }

    /// Stores the body as blob `sha256`, once its content is known to have that hash: the body goes to a
    /// file as it arrives (a blob of many GB never sits in memory), hashed on the way; a body whose hash
    /// differs is refused (400) and nothing is stored.
    static func put(_ route: RouteRequest) async throws -> Response {
        let id = try blobID(route)
        let store = route.store
        if store.hasBlob(id) {
            // Already there: the upload is not read (the client may stop sending).
            return Response(status: .noContent)
        }
        var hasher = SHA256Hasher()
        let temporary = try await UploadFile.receive(route.request.body, purpose: "upload") { hasher.update($0) }
        defer { unlink(temporary) }
        let received = hasher.finalizeHex()
        guard received == id else {
            throw CMLError("the body's sha256 is \(received), not \(id)", hint: "the upload was cut or changed on the way", kind: .invalid)
        }
        _ = try await StoreCalls.run { () throws(CMLError) in try store.putBlob(file: temporary) }
        return Response(status: .created)
    }

    /// The id in the path, when it is one: anything but 64 lowercase hex digits names no blob, and is
    /// answered without looking at the store (no path the client makes up reaches the filesystem).
    static func blobID(_ route: RouteRequest) throws(CMLError) -> String {
        let id = route.context.parameters.get("sha256") ?? ""
        guard id.utf8.count == 64, id.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
            throw CMLError("no blob \(id.prefix(80))", hint: "a blob is named by the sha256 of its content, 64 lowercase hex digits",
                           kind: .notFound)
        }
        return id
    }

    /// What user content (a blob, a run's image) is served under: nothing it holds runs, loads or
    /// navigates, as an `<img>` or opened on its own (`sandbox` also gives it an origin of its own).
    static let userContentPolicy = "default-src 'none'; style-src 'unsafe-inline'; sandbox"

    private static func headers(_ id: String) -> HTTPFields {
        // A blob never changes: its hash is its strong ETag. It is user content: a browser downloads it
        // and runs nothing in it, whatever it holds (an HTML file, an SVG with a script).
        [.contentType: Media.bytes, .acceptRanges: "bytes", .eTag: "\"\(id)\"", .cacheControl: "public, max-age=31536000, immutable",
         .xContentTypeOptions: "nosniff", .contentSecurityPolicy: userContentPolicy, .contentDisposition: "attachment"]
    }
}

/// A `Range` header's meaning for a body of `size` bytes (RFC 9110 §14). One range of bytes is served;
/// several ranges, another unit or a malformed header are ignored (the whole body is sent), as the RFC
/// allows.
enum ByteRange: Equatable {
    case whole
    case part(ClosedRange<Int64>)
    case unsatisfiable

    static func parse(_ header: String, size: Int64) -> ByteRange {
        guard header.hasPrefix("bytes="), !header.contains(",") else { return .whole }
        let spec = header.dropFirst("bytes=".count).trimmingCharacters(in: .whitespaces)
        guard let dash = spec.firstIndex(of: "-") else { return .whole }
        let first = spec[..<dash], last = spec[spec.index(after: dash)...]
        let digits: (Substring) -> Int64? = { text in
            text.isEmpty || !text.utf8.allSatisfy({ (48...57).contains($0) }) ? nil : Int64(text)
        }
        if first.isEmpty {
            // The last N bytes.
            guard let count = digits(last) else { return .whole }
            guard count > 0, size > 0 else { return .unsatisfiable }
            return .part(max(0, size - count)...(size - 1))
        }
        guard let start = digits(first) else { return .whole }
        var end = size - 1
        if !last.isEmpty {
            guard let given = digits(last), given >= start else { return .whole }
            end = min(given, size - 1)
        }
        return start < size ? .part(start...end) : .unsatisfiable
    }
}

/// Everything the blob routes ask of the store, in one place (see `RunReads`).
struct BlobReads: Sendable {
    let store: any Store
    let access: RequestAccess

    init(_ route: RouteRequest) {
        store = route.store
        access = route.access
    }

    /// The blob's size, once it is known the request may read it: a project-bound token reads only the
    /// blobs that runs of its projects reference; any other blob is answered as absent.
    func size(_ id: String) async throws(CMLError) -> Int64 {
        let store = store, access = access
        do {
            return try await StoreCalls.run { () throws(CMLError) in
                if access.projects != nil, try !store.projects(referencingBlob: id).contains(where: access.sees) {
                    throw CMLError("no blob \(id)", kind: .notFound)
                }
                return try store.blobSize(id)
            }
        } catch where error.kind == .notFound {
            throw CMLError("no blob \(id)", kind: .notFound)  // without the store's path on the server
        }
    }

    /// Streams the blob, or the bytes of `range`. The whole blob is read and hashed either way, and the
    /// last piece is sent only once the hash matched: a damaged blob never reaches a client whole (its
    /// connection closes short of the Content-Length).
    func read(_ id: String, range: ClosedRange<Int64>?, _ send: (ByteBuffer) throws(CMLError) -> Void) throws(CMLError) {
        var position: Int64 = 0
        var held: ByteBuffer?
        try store.readBlob(id) { chunk throws(CMLError) in
            let start = position
            position += Int64(chunk.count)
            let from = max(range?.lowerBound ?? 0, start)
            let to = min((range?.upperBound ?? Int64.max - 1) + 1, position)
            guard from < to else { return }
            if let held { try send(held) }
            var piece = ByteBuffer()
            piece.writeBytes(UnsafeRawBufferPointer(rebasing: chunk[Int(from - start)..<Int(to - start)]))
            held = piece
        }
        if let held { try send(held) }
    }
}

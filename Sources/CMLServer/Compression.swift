import CompressNIO
import Hummingbird

/// gzip for answers of 1 KiB or more, or of a length not known in advance (streams), when the request's
/// `Accept-Encoding` takes it. A stream is compressed chunk by chunk, each flushed, so a client following
/// a log decodes every line as soon as it is sent. Blobs go as they are: clients address their bytes by
/// range (resumed downloads), and checkpoints and archives hardly compress.
struct GzipMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        guard request.method != .head, Gzip.suits(response) else { return response }
        response.headers[values: .vary].append("Accept-Encoding")
        guard Gzip.isAccepted(by: request.headers[values: .acceptEncoding].joined(separator: ",")) else { return response }
        response.headers[.contentEncoding] = "gzip"
        response.body = response.body.gzipped()
        return response
    }
}

enum Gzip {
    static let minimumSize = 1024

    /// A whole answer (not a range, not a blob), 1 KiB or more or of a length not known in advance.
    static func suits(_ response: Response) -> Bool {
        response.status == .ok && !response.headers.contains(.contentEncoding) && !response.headers.contains(.acceptRanges)
            && (response.body.contentLength ?? minimumSize) >= minimumSize
    }

    /// Whether an `Accept-Encoding` value (RFC 9110, 12.5.3) takes gzip: named, or `*`, with a weight
    /// above 0; gzip named outweighs `*`.
    static func isAccepted(by acceptEncoding: String) -> Bool {
        var named: Bool?
        var any: Bool?
        for item in acceptEncoding.split(separator: ",") {
            let parts = item.split(separator: ";").map { $0.filter { $0 != " " && $0 != "\t" }.lowercased() }
            guard let coding = parts.first else { continue }
            let weight = parts.dropFirst().first { $0.hasPrefix("q=") }.flatMap { Double($0.dropFirst(2)) } ?? 1
            switch coding {
            case "gzip", "x-gzip": named = weight > 0
            case "*": any = weight > 0
            default: break
            }
        }
        return named ?? any ?? false
    }
}

extension ResponseBody {
    /// The same bytes, gzipped as they are written.
    func gzipped() -> ResponseBody {
        let body = self
        return ResponseBody { writer in
            // Level 1, the fastest: JSON lines and logs are repetitive enough to shrink well with it,
            // and a server answering many clients spends less of its cores on them.
            let compressor = try ZlibCompressor(algorithm: .gzip, configuration: .init(compressionLevel: .fastestCompression))
            try await body.write(GzipBodyWriter(parent: writer, compressor: compressor))
        }
    }
}

/// Compresses each write and flushes it (a sync flush: the client can decode everything sent so far).
struct GzipBodyWriter: ResponseBodyWriter {
    var parent: any ResponseBodyWriter
    let compressor: ZlibCompressor

    mutating func write(_ buffer: ByteBuffer) async throws {
        guard buffer.readableBytes > 0 else { return }
        var input = buffer
        try await parent.write(try input.compressStream(with: compressor, flush: .sync))
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {
        var nothing = ByteBuffer()
        try await parent.write(try nothing.compressStream(with: compressor, flush: .finish))
        try await parent.finish(trailingHeaders)
    }
}

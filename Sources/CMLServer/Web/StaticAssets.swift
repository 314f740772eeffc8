import CMLKit
import Hummingbird

/// The web UI's own stylesheet and script, compiled into `cml-serve`: nothing is fetched from elsewhere.
/// Each is served at a path holding a hash of its content (`/static/cml.1a2b3c4d5e6f.css`), cached by
/// browsers for a year: a new build changes the path, so no one ever sees a stale copy.
struct StaticAsset: Sendable {
    /// `cml.HASH.css`.
    let file: String
    let type: String
    let bytes: [UInt8]

    init(stem: String, suffix: String, type: String, content: String) {
        bytes = Array(content.utf8)
        file = "\(stem).\(SHA256Hasher.hex(bytes).prefix(12)).\(suffix)"
        self.type = type
    }

    var href: Href { Href("static", file) }
}

enum StaticAssets {
    static let stylesheet = StaticAsset(stem: "cml", suffix: "css", type: "text/css; charset=utf-8", content: WebStyle.css)
    static let script = StaticAsset(stem: "cml", suffix: "js", type: "text/javascript; charset=utf-8", content: WebScript.js)
    /// Turns each element with `data-cml-chart` into an interactive chart (`ChartScript`).
    static let chartScript = StaticAsset(stem: "cml-chart", suffix: "js", type: "text/javascript; charset=utf-8", content: ChartScript.source)
    /// The run page's live console and image sliders (`RunPageScript`).
    static let runPageScript = StaticAsset(stem: "cml-run", suffix: "js", type: "text/javascript; charset=utf-8", content: RunPageScript.js)
    /// Keeps the queues page's numbers current (`QueueScript`).
    static let queueScript = StaticAsset(stem: "cml-queues", suffix: "js", type: "text/javascript; charset=utf-8", content: QueueScript.source)
    static let all = [stylesheet, script, chartScript, runPageScript, queueScript]

    static func serve(_ file: String) throws(CMLError) -> Response {
        guard let asset = all.first(where: { $0.file == file }) else {
            throw CMLError("no static file \(file.prefix(80))", hint: "its name changes with each build: reload the page", kind: .notFound)
        }
        return Response(status: .ok, headers: [.contentType: asset.type, .cacheControl: "public, max-age=31536000, immutable",
                                               .xContentTypeOptions: "nosniff"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: asset.bytes)))
    }
}

extension HTTPFields.Element.Name {
    static let xContentTypeOptions = HTTPFields.Element.Name("X-Content-Type-Options")!
    static let contentSecurityPolicy = HTTPFields.Element.Name("Content-Security-Policy")!
    static let referrerPolicy = HTTPFields.Element.Name("Referrer-Policy")!
    static let xFrameOptions = HTTPFields.Element.Name("X-Frame-Options")!
    static let secFetchSite = HTTPFields.Element.Name("Sec-Fetch-Site")!
}

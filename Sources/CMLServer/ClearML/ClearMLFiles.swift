import CMLKit
import Foundation
import Hummingbird

/// ClearML's file server at `/clearml-files`: the SDK uploads each file as a one-part multipart POST
/// whose part is named by the file's path, `<project>/<task name>.<task id>/artifacts/<key>/<file>`
/// (models and debug samples under other folders of the task's). The file becomes an artifact of the
/// run the path names (`<key>` its name, the rest of the path for other folders), its path kept as the
/// artifact's source, by which `GET /clearml-files/<path>` finds it again. The body goes to a file as
/// it arrives: an artifact of many GB never sits in memory.
enum ClearMLFiles {
    static let prefix = "/clearml-files"
    /// The most a part's headers may take before its content starts.
    static let maxPartHeader = 64 << 10

    static func upload(_ request: Request, store: any ServedStore, login: ClearMLLogin) async throws -> Response {
        let access = try await login.access(request, needing: .write)
        guard let type = request.headers[.contentType], let boundary = boundary(type) else {
            throw CMLError.usage("an upload is multipart/form-data with one file")
        }
        let temporary = FileSystem.temporaryDirectory + "/cml-serve-clearml-" + RunID.make()
        let fd = open(temporary, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileSystem.error("cannot store an upload in", temporary) }
        defer { unlink(temporary) }
        var path: String?
        do {
            defer { close(fd) }
            var head: [UInt8] = []
            for try await buffer in request.body {
                if path != nil {
                    try buffer.withUnsafeReadableBytes { bytes throws(CMLError) in try FileSystem.writeAll(fd, bytes, path: temporary) }
                    continue
                }
                head += buffer.readableBytesView
                guard let end = head.firstRange(of: Array("\r\n\r\n".utf8)) else {
                    if head.count > maxPartHeader { throw CMLError.usage("the upload's part has no end to its headers") }
                    continue
                }
                path = try partName(String(decoding: head[..<end.lowerBound], as: UTF8.self))
                try FileSystem.writeAll(fd, Array(head[end.upperBound...]), path: temporary)
            }
            guard path != nil else { throw CMLError.usage("the upload has no file part") }
            try cutClosingBoundary(fd, boundary: boundary, path: temporary)
        }
        let filePath = path!.hasPrefix("/") ? String(path!.dropFirst()) : path!
        let (run, name, kind) = try await StoreCalls.run { () throws(CMLError) in
            let (run, name, kind) = try owner(of: filePath, store: store)
            try access.requireWrite(project: run.project)
            return (run, name, kind)
        }
        try NameLimits.check(name, "artifact name")
        _ = try await StoreCalls.run { () throws(CMLError) in
            let (sha256, size) = try store.putBlob(file: temporary)
            return try store.addArtifact(Artifact(run: run.id, name: name, kind: kind, step: nil, sha256: sha256, size: size, files: 1,
                                                  isDirectory: false, mediaType: nil, source: prefix + "/" + filePath, time: Clock.now()))
        }
        return Response.whole(JSON.object([(filePath, .string(prefix + "/" + filePath))]).serialized, type: Media.json)
    }

    static func download(_ request: Request, context: BasicRequestContext, store: any ServedStore, login: ClearMLLogin) async throws -> Response {
        let access = try await login.access(request, needing: .read)
        let filePath = context.parameters.getCatchAll().joined(separator: "/")
        let decoded = filePath.removingPercentEncoding ?? filePath
        let artifact = try await StoreCalls.run { () throws(CMLError) in
            let (run, _, _) = try owner(of: decoded, store: store)
            guard access.sees(project: run.project),
                  let artifact = try store.artifacts(run: run.id).last(where: { $0.source == prefix + "/" + decoded }) else {
                throw CMLError("no file \(decoded.prefix(200))", kind: .notFound)
            }
            return artifact
        }
        let body = StoreCalls.stream(contentLength: Int(artifact.size)) { send throws(CMLError) in
            try store.readBlob(artifact.sha256) { chunk throws(CMLError) in try send(ByteBuffer(bytes: chunk)) }
        }
        return Response(status: .ok, headers: [.contentType: Media.bytes, .contentSecurityPolicy: BlobRoutes.userContentPolicy,
                                               .xContentTypeOptions: "nosniff", .contentDisposition: "attachment"], body: body)
    }

    /// The run a file's path names (the folder `<task name>.<run id>`), the artifact's name and kind.
    static func owner(of path: String, store: any Store) throws(CMLError) -> (Run, String, String) {
        let parts = path.split(separator: "/").map(String.init)
        for (index, part) in parts.enumerated() {
            guard let dot = part.lastIndex(of: ".") else { continue }
            let id = String(part[part.index(after: dot)...])
            guard id.count == 32, id.allSatisfy(\.isHexDigit), let run = try? store.run(id: id) else { continue }
            let rest = Array(parts[(index + 1)...])
            if rest.count >= 3, rest[0] == "artifacts" { return (run, rest[1], "artifact") }
            guard !rest.isEmpty else { break }
            return (run, rest.joined(separator: "/"), rest[0] == "models" ? "model" : "file")
        }
        throw CMLError("the file \(path.prefix(200)) is not in a task's folder (<project>/<task name>.<task id>/…)", kind: .notFound)
    }

    private static func boundary(_ contentType: String) -> String? {
        guard contentType.lowercased().hasPrefix("multipart/form-data") else { return nil }
        for parameter in contentType.split(separator: ";").dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if pair.count == 2, pair[0].lowercased() == "boundary" { return pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
        }
        return nil
    }

    /// The part's name from its headers (`Content-Disposition: form-data; name="…"; filename="…"`).
    private static func partName(_ headers: String) throws(CMLError) -> String {
        for line in headers.split(separator: "\r\n") where line.lowercased().hasPrefix("content-disposition:") {
            for key in ["filename=\"", "name=\""] {
                guard let start = line.range(of: key) else { continue }
                let rest = line[start.upperBound...]
                guard let end = rest.firstIndex(of: "\"") else { continue }
                let name = String(rest[..<end])
                if !name.isEmpty { return name }
            }
        }
        throw CMLError.usage("the upload's part has no name")
    }

    /// Cuts `\r\n--boundary--` (and the line end after it) from the end of the file: what is left is the
    /// part's content.
    private static func cutClosingBoundary(_ fd: Int32, boundary: String, path: String) throws(CMLError) {
        let closing = Array("\r\n--\(boundary)--".utf8)
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileSystem.error("cannot read", path) }
        let size = Int(st.st_size)
        let tailLength = min(size, closing.count + 4)
        var tail = [UInt8](repeating: 0, count: tailLength)
        guard tail.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, tailLength, off_t(size - tailLength)) }) == tailLength,
              let found = tail.lastRange(of: closing) else {
            throw CMLError.usage("the upload does not end with its closing boundary (cut short?)")
        }
        guard ftruncate(fd, off_t(size - tailLength + found.lowerBound)) == 0 else { throw FileSystem.error("cannot cut", path) }
    }
}

extension Array where Element == UInt8 {
    func lastRange(of pattern: [UInt8]) -> Range<Int>? {
        guard count >= pattern.count else { return nil }
        for start in stride(from: count - pattern.count, through: 0, by: -1) where self[start..<(start + pattern.count)].elementsEqual(pattern) {
            return start..<(start + pattern.count)
        }
        return nil
    }
}

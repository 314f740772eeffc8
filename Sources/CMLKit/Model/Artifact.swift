/// A file, directory, image or note that a run recorded (`cml-log artifact|image|text`). Its content is in
/// the blob store: the file's own blob, or for a directory the blob of its manifest. Records are only
/// added, never replaced: logging `model.pt` every epoch keeps every version, numbered from 1 in the order
/// recorded, and `cml-run get` fetches the latest unless a step or a version is named.
public struct Artifact: Sendable, Codable, Equatable {
    public var run: String
    public var name: String
    /// What it is to the user: `model`, `image`, `text`, `data`…; `artifact` when nothing was said.
    public var kind: String
    public var step: Int64?
    /// sha256 of the file, or of the directory's manifest.
    public var sha256: String
    public var size: Int64
    public var files: Int64
    public var isDirectory: Bool
    /// `image/png` and the like for images and text; nil for other files.
    public var mediaType: String?
    /// The path it was stored from, as given (absolute).
    public var source: String?
    public var time: Double
    /// Its number among the run's artifacts of the same name, from 1 in the order recorded.
    public var version = 1

    public init(run: String, name: String, kind: String, step: Int64?, sha256: String, size: Int64, files: Int64,
                isDirectory: Bool, mediaType: String?, source: String?, time: Double) {
        self.run = run
        self.name = name
        self.kind = kind
        self.step = step
        self.sha256 = sha256
        self.size = size
        self.files = files
        self.isDirectory = isDirectory
        self.mediaType = mediaType
        self.source = source
        self.time = time
    }

    public var json: JSON {
        var members: [(String, JSON)] = [("run", .string(run)), ("name", .string(name)), ("version", .int(Int64(version))),
                                         ("kind", .string(kind))]
        if let step { members.append(("step", .int(step))) }
        members += [("type", .string(isDirectory ? "directory" : "file")), ("size", .int(size))]
        if isDirectory { members.append(("files", .int(files))) }
        members.append(("sha256", .string(sha256)))
        if let mediaType { members.append(("media_type", .string(mediaType))) }
        if let source { members.append(("source", .string(source))) }
        members.append(("time", .string(Clock.rfc3339(time))))
        return .object(members)
    }
}

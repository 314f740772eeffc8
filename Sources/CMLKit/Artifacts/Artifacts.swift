import Glibc

/// Recording a run's artifacts (files, directories, images, notes) into the blob store, and fetching
/// them back. What `cml-log artifact|image|text` and `cml-run artifacts|get` share.
public enum Artifacts {
    /// Stores the file or directory at `path` (a symbolic link given here is followed; links inside a
    /// directory are kept as links). Everything is checked before anything is stored: a missing or
    /// unreadable path, or one that is not an image when `image` is asked for, stores nothing.
    public static func record(path: String, name: String?, kind: String?, step: Int64?, image: Bool = false,
                              run: String, in store: any Store, warn: (String) -> Void) throws(CMLError) -> Artifact {
        let absolute = FileSystem.absolutePath(path)
        var st = stat()
        guard stat(absolute, &st) == 0 else { throw FileSystem.error("cannot read", path) }
        let name = try checkedName(name ?? FileSystem.baseName(absolute), what: "artifact name")
        let kind = try checkedName(kind ?? (image ? "image" : "artifact"), what: "kind")
        let time = Clock.now()

        switch st.st_mode & S_IFMT {
        case S_IFREG:
            guard access(absolute, R_OK) == 0 else { throw FileSystem.error("cannot read", path) }
            let mediaType = try imageType(of: absolute)
            if image && mediaType == nil {
                throw CMLError("\(path) is not an image (PNG, JPEG, GIF, WebP or SVG)")
            }
            let (id, size) = try store.putBlob(file: absolute)
            let artifact = Artifact(run: run, name: name, kind: kind, step: step, sha256: id, size: size, files: 1,
                                    isDirectory: false, mediaType: mediaType, source: absolute, time: time)
            return try store.addArtifact(artifact)
        case S_IFDIR:
            if image { throw CMLError("\(path) is a directory, not an image") }
            // A server's directory is stored in its spool here first, then sent what the server lacks.
            let local: SQLiteStore
            if let store = store as? SQLiteStore { local = store } else { local = try RunSpool(for: store.location).open() }
            let tree = try DirectoryIngest.store(absolute, into: local, jobs: ParallelWork.availableCPUs, cache: StatCache(),
                                                 reader: "cml-log", skipUnreadable: false, skipOption: nil, outsideLinks: .warn,
                                                 progressLabel: "cml-log: storing", warn: warn)
            if !(store is SQLiteStore) {
                var copy = RunSync.Copy(id: run)
                try RunSync(from: local, to: store).copyTree(tree.manifestID, into: &copy)
            }
            let artifact = Artifact(run: run, name: name, kind: kind, step: step, sha256: tree.manifestID,
                                    size: tree.manifest.totalSize, files: Int64(tree.manifest.entries.count), isDirectory: true,
                                    mediaType: nil, source: absolute, time: time)
            return try store.addArtifact(artifact)
        default:
            throw CMLError("\(path) is not a regular file or directory")
        }
    }

    /// Stores a note (`cml-log text`).
    public static func recordText(_ text: String, name: String?, step: Int64?, run: String,
                                  in store: any Store) throws(CMLError) -> Artifact {
        let bytes = Array(text.utf8)
        let artifact = Artifact(run: run, name: try checkedName(name ?? "text", what: "artifact name"), kind: "text",
                                step: step, sha256: try store.putBlob(bytes), size: Int64(bytes.count), files: 1,
                                isDirectory: false, mediaType: "text/plain; charset=utf-8", source: nil, time: Clock.now())
        return try store.addArtifact(artifact)
    }

    /// The artifact called `name`: its `version` or the one at `step` when given, else the one recorded last.
    public static func select(_ artifacts: [Artifact], name: String, step: Int64?, version: Int? = nil) throws(CMLError) -> Artifact {
        let named = artifacts.filter { $0.name == name }
        guard !named.isEmpty else {
            let names = Set(artifacts.map(\.name)).sorted()
            throw CMLError("the run has no artifact named \(name)",
                           hint: names.isEmpty ? "it recorded no artifacts" : "it has: \(names.joined(separator: ", "))")
        }
        if let version {
            guard step == nil else { throw .usage("give --step or --version, not both") }
            guard let match = named.first(where: { $0.version == version }) else {
                throw CMLError("artifact \(name) has no version \(version)", hint: "its versions: 1 to \(named.count)")
            }
            return match
        }
        guard let step else { return named.last! }
        guard let match = named.last(where: { $0.step == step }) else {
            let steps = named.compactMap(\.step).map(String.init).joined(separator: ", ")
            throw CMLError("artifact \(name) has no step \(step)", hint: (steps.isEmpty ? "it was recorded without steps" : "its steps: \(steps)")
                           + "; every version is reachable with --version 1 to \(named.count)")
        }
        return match
    }

    /// Writes `artifact` to `destination` (default: its name's last part in the working directory; inside
    /// it when that is an existing directory, as `cp` does) and returns the path written. The content is
    /// written under a temporary name, verified against its hash, and only then renamed into place, so
    /// a failure leaves nothing behind. An existing file or directory is replaced only with `force`.
    public static func fetch(_ artifact: Artifact, from store: any Store, to destination: String?,
                             force: Bool) throws(CMLError) -> String {
        var target = FileSystem.absolutePath(destination ?? FileSystem.baseName(artifact.name))
        if destination != nil, FileSystem.isDirectory(target) {
            target += "/" + FileSystem.baseName(artifact.name)
        }
        try Materializer.checkDestination(target, replace: force)
        let temporary = Materializer.temporaryPath(for: target)
        do throws(CMLError) {
            if let local = store as? SQLiteStore {
                try fetchLocal(artifact, from: local, to: temporary)
            } else if artifact.isDirectory {
                // A server's tree comes into its spool here (what the spool lacks), and is written from there.
                let spool = try RunSpool(for: store.location).open()
                var copy = RunSync.Copy(id: artifact.run)
                try RunSync(from: store, to: spool).copyTree(artifact.sha256, into: &copy)
                try fetchLocal(artifact, from: spool, to: temporary)
            } else {
                // Through the store, hashed as it comes (readBlob checks it) into the temporary file.
                let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
                guard fd >= 0 else { throw FileSystem.error("cannot create", temporary) }
                defer { close(fd) }
                try store.readBlob(artifact.sha256) { chunk throws(CMLError) in try FileSystem.writeAll(fd, chunk, path: temporary) }
            }
            try Materializer.place(temporary, at: target, replace: force)
        } catch {
            FileSystem.removeTree(temporary)
            throw error
        }
        return target
    }

    /// From a store directory: blobs are copied without reading them through (see `Materializer`).
    private static func fetchLocal(_ artifact: Artifact, from store: SQLiteStore, to temporary: String) throws(CMLError) {
        if artifact.isDirectory {
            var manifestBytes: [UInt8] = []
            try store.readBlob(artifact.sha256) { chunk throws(CMLError) in manifestBytes += chunk }
            _ = try Materializer.write(try Manifest(decoding: manifestBytes), from: store, into: temporary,
                                       options: Materializer.Options())
        } else {
            _ = try Materializer.writeFile(artifact.sha256, size: artifact.size, mode: 0o644, to: temporary, from: store)
        }
    }

    /// Streams a file artifact's content to `body` (for `cml-run get ID NAME -`).
    public static func stream(_ artifact: Artifact, from store: any Store,
                              _ body: (UnsafeRawBufferPointer) throws(CMLError) -> Void) throws(CMLError) {
        guard !artifact.isDirectory else {
            throw CMLError("\(artifact.name) is a directory and cannot be written to stdout", hint: "name a destination")
        }
        try store.readBlob(artifact.sha256, body)
    }

    static func checkedName(_ name: String, what: String) throws(CMLError) -> String {
        if name.isEmpty { throw CMLError("the \(what) is empty") }
        try NameLimits.check(name, what)
        if name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            throw CMLError("the \(what) \(JSON.string(name).serialized) holds a control character")
        }
        return name
    }

    /// The media type of an image file, told by its first bytes; nil when it is not one.
    static func imageType(of path: String) throws(CMLError) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystem.error("cannot read", path) }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: 512)
        let n = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        head.removeSubrange(n...)
        func starts(_ magic: [UInt8], at offset: Int = 0) -> Bool {
            head.count >= offset + magic.count && Array(head[offset..<offset + magic.count]) == magic
        }
        if starts([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return "image/png" }
        if starts([0xFF, 0xD8, 0xFF]) { return "image/jpeg" }
        if starts(Array("GIF87a".utf8)) || starts(Array("GIF89a".utf8)) { return "image/gif" }
        if starts(Array("RIFF".utf8)) && starts(Array("WEBP".utf8), at: 8) { return "image/webp" }
        let text = String(decoding: head, as: UTF8.self)
        if text.contains("<svg") { return "image/svg+xml" }
        return nil
    }
}

/// One version of a dataset: a manifest (path, size, mode, sha256 or link target per file) in the blob
/// store, its place in the lineage (parents, the run that made it), and what storing it cost.
public struct DatasetVersion: Sendable, Codable, Equatable {
    public var id: String
    public var dataset: String
    /// 1, 2, 3 … per dataset, in the order versions were recorded; never reused.
    public var number: Int64
    /// Versions it derives from (of this dataset or another), in the order given.
    public var parents: [String]
    public var message: String?
    /// sha256 of the manifest blob.
    public var manifest: String
    public var files: Int64
    public var size: Int64
    /// Blobs and bytes that recording it added to the store (content the store did not hold yet).
    public var newBlobs: Int64
    public var newBytes: Int64
    /// The directory it was taken from, or the archive it was imported from.
    public var source: String?
    /// The run that made it (a snapshot inside `cml-run`).
    public var run: String?
    public var createdAt: Double

    public init(id: String, dataset: String, number: Int64, parents: [String], message: String?, manifest: String,
                files: Int64, size: Int64, newBlobs: Int64, newBytes: Int64, source: String?, run: String?,
                createdAt: Double) {
        self.id = id
        self.dataset = dataset
        self.number = number
        self.parents = parents
        self.message = message
        self.manifest = manifest
        self.files = files
        self.size = size
        self.newBlobs = newBlobs
        self.newBytes = newBytes
        self.source = source
        self.run = run
        self.createdAt = createdAt
    }

    /// `NAME@N`, how users name it.
    public var reference: String { "\(dataset)@\(number)" }

    public var json: JSON {
        .object([
            ("id", .string(id)), ("dataset", .string(dataset)), ("version", .int(number)),
            ("parents", .array(parents.map(JSON.string))), ("message", message.map(JSON.string) ?? .null),
            ("files", .int(files)), ("size", .int(size)), ("new_blobs", .int(newBlobs)), ("new_bytes", .int(newBytes)),
            ("manifest", .string(manifest)), ("source", source.map(JSON.string) ?? .null),
            ("run", run.map(JSON.string) ?? .null), ("created_at", .string(Clock.rfc3339(createdAt))),
        ])
    }
}

/// A version about to be recorded.
public struct DatasetVersionDraft: Sendable, Codable {
    public var id: String
    public var dataset: String
    /// nil: the dataset's latest version when it is recorded (none for its first).
    public var parents: [String]?
    public var message: String?
    public var manifest: String
    public var files: Int64
    public var size: Int64
    public var newBlobs: Int64
    public var newBytes: Int64
    public var source: String?
    public var run: String?
    public var createdAt: Double
    /// Every blob the version references: its manifest and the content of its files (in any order,
    /// repeats allowed).
    public var blobs: [BlobDigest]
    /// The number to give it (an import keeps the one it had), unless the dataset has had that number or
    /// a later one already (numbers are never reused); nil: the dataset's next number.
    public var number: Int64?
    /// Record nothing when its only parent, of the same dataset, has the same manifest (and, for a
    /// snapshot inside a run, was made by that run): the store answers `.unchanged` with that version (a
    /// snapshot of a directory that did not change).
    public var unlessUnchanged: Bool

    public init(id: String, dataset: String, parents: [String]?, message: String?, manifest: String, files: Int64,
                size: Int64, newBlobs: Int64, newBytes: Int64, source: String?, run: String?, createdAt: Double,
                blobs: [BlobDigest], number: Int64? = nil, unlessUnchanged: Bool = false) {
        self.number = number
        self.unlessUnchanged = unlessUnchanged
        self.id = id
        self.dataset = dataset
        self.parents = parents
        self.message = message
        self.manifest = manifest
        self.files = files
        self.size = size
        self.newBlobs = newBlobs
        self.newBytes = newBytes
        self.source = source
        self.run = run
        self.createdAt = createdAt
        self.blobs = blobs
    }
}

/// What recording a version came to.
public enum DatasetVersionCommit: Sendable, Codable {
    case created(DatasetVersion)
    /// Nothing was recorded: the draft asked `unlessUnchanged`, and this version, its only parent, holds
    /// the same manifest.
    case unchanged(DatasetVersion)
    /// Blobs it references that the store lacks at the moment of recording (a `cml-data gc` or `rm` in
    /// another process freed them after the snapshot found them): store them again, then retry.
    case missingBlobs(Set<String>)
}

/// A dataset version a run used (`cml-run --data NAME@VER`, or `cml-data get|checkout` inside a run).
public struct DatasetUse: Sendable, Codable, Equatable {
    public var dataset: String
    public var number: Int64
    public var id: String

    public init(dataset: String, number: Int64, id: String) {
        self.dataset = dataset
        self.number = number
        self.id = id
    }

    public var json: JSON {
        .object([("dataset", .string(dataset)), ("version", .int(number)), ("id", .string(id))])
    }
}

/// What removing versions or collecting garbage freed.
public struct BlobRemovalReport: Sendable, Codable, Equatable {
    public var versions: [String]
    public var blobs: Int
    /// Bytes of blobs deleted and of packs rewritten without them, of leftovers of interrupted writers,
    /// and of `cml-data get` copies of removed versions.
    public var bytesFreed: Int64

    public init(versions: [String] = [], blobs: Int = 0, bytesFreed: Int64 = 0) {
        self.versions = versions
        self.blobs = blobs
        self.bytesFreed = bytesFreed
    }
}

public enum DatasetName {
    /// Letters, digits, `.`, `_` and `-`, not starting with `.` or `-`: safe in `NAME@VER`, in file names
    /// and in `CML_DATA_NAME`.
    public static func check(_ name: String) throws(CMLError) {
        let allowed = name.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x2E || byte == 0x5F || byte == 0x2D
        }
        guard !name.isEmpty, name.utf8.count <= 200, allowed, !name.hasPrefix("."), !name.hasPrefix("-") else {
            throw CMLError.usage("\(NameLimits.excerpt(name)) is not a valid dataset name\(name.utf8.count > 200 ? " (over 200 bytes)" : "")",
                                 hint: "letters, digits, '.', '_' and '-', not starting with '.' or '-'")
        }
    }
}

/// How users name a version: `NAME` (its latest), `NAME@latest`, `NAME@3` (version number), `NAME@019a3f`
/// (id prefix), or a bare id prefix (when no dataset has that name).
public struct VersionReference: Sendable, Codable, Equatable, CustomStringConvertible {
    public enum Selector: Sendable, Codable, Equatable {
        case latest
        case number(Int64)
        case idPrefix(String)
    }

    public var name: String
    public var selector: Selector
    public let description: String

    public init(_ text: String) throws(CMLError) {
        description = text
        guard let at = text.firstIndex(of: "@") else {
            // A bare id prefix is also a valid name: resolving tries the name first.
            try DatasetName.check(text)
            name = text
            selector = .latest
            return
        }
        let name = String(text[..<at])
        let version = String(text[text.index(after: at)...])
        try DatasetName.check(name)
        self.name = name
        if version == "latest" {
            selector = .latest
        } else if let first = version.first, first != "0", version.utf8.count <= 15, let number = Int64(version), number > 0 {
            // Ids start with 0 until the year 2527, so a number never reads as an id prefix.
            selector = .number(number)
        } else if RunID.isPrefix(version.lowercased()) {
            selector = .idPrefix(version.lowercased())
        } else {
            throw CMLError.usage("\(JSON.string(text).serialized) does not name a version",
                                 hint: "NAME, NAME@latest, NAME@3 (its number) or NAME@ID (an id prefix)")
        }
    }
}

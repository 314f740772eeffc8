import Glibc

/// One file of a stored directory: a regular file (its content is blob `sha256`) or a symbolic link
/// (kept as a link, never followed). A file's CRC-32C, computed in the same read as its sha256, is kept
/// too (manifests written before it was added lack it): checkout verifies with it.
public struct ManifestEntry: Sendable, Equatable {
    /// Relative to the directory, `/`-separated, never absolute, never holding `.` or `..`.
    public var path: String
    public var size: Int64
    /// Permission bits (`0o644`).
    public var mode: UInt32
    public var sha256: String?
    public var crc32c: UInt32?
    public var linkTarget: String?

    public init(path: String, size: Int64, mode: UInt32, sha256: String? = nil, crc32c: UInt32? = nil, linkTarget: String? = nil) {
        self.path = path
        self.size = size
        self.mode = mode
        self.sha256 = sha256
        self.crc32c = crc32c
        self.linkTarget = linkTarget
    }

    public var json: JSON {
        var members: [(String, JSON)] = [("path", .string(path)), ("size", .int(size)),
                                         ("mode", .string("0" + String(mode, radix: 8)))]
        if let sha256 { members.append(("sha256", .string(sha256))) }
        if let crc32c { members.append(("crc32c", .string(CRC32C.hex(crc32c)))) }
        if let linkTarget { members.append(("link", .string(linkTarget))) }
        return .object(members)
    }

    init(json: JSON) throws(CMLError) {
        guard let path = json["path"]?.stringValue, let modeText = json["mode"]?.stringValue,
              let mode = UInt32(modeText, radix: 8), mode <= 0o7777 else {
            throw CMLError("a manifest entry lacks its path or mode")
        }
        try Manifest.checkRelativePath(path)
        self.path = path
        self.mode = mode
        sha256 = json["sha256"]?.stringValue
        linkTarget = json["link"]?.stringValue
        if let text = json["crc32c"] {
            guard sha256 != nil, let crc32c = text.stringValue.flatMap(CRC32C.parseHex) else {
                throw CMLError("the manifest entry \(path) has an invalid crc32c (8 hex digits, for a file)")
            }
            self.crc32c = crc32c
        }
        if case .int(let size)? = json["size"], size >= 0 { self.size = size } else {
            throw CMLError("the manifest entry \(path) has no valid size")
        }
        guard (sha256 == nil) != (linkTarget == nil), sha256.map(BlobStore.isBlobID) ?? true else {
            throw CMLError("the manifest entry \(path) must name either a sha256 or a link")
        }
    }
}

/// What a directory held: its files and links sorted by path, stored as JSON lines in a blob of its own.
/// Directories themselves are implied by the paths; empty ones are not kept.
public struct Manifest: Sendable, Equatable {
    public var entries: [ManifestEntry]

    public init(entries: [ManifestEntry]) {
        self.entries = entries.sorted { Self.precedes($0.path, $1.path) }
    }

    /// Byte order of the UTF-8 paths (what `sort` in the C locale gives), compared with memcmp.
    static func precedes(_ a: String, _ b: String) -> Bool {
        let fast = a.utf8.withContiguousStorageIfAvailable { left in
            b.utf8.withContiguousStorageIfAvailable { right -> Bool in
                let common = min(left.count, right.count)
                let order = common == 0 ? 0 : memcmp(left.baseAddress!, right.baseAddress!, common)
                return order != 0 ? order < 0 : left.count < right.count
            }
        }
        return (fast ?? nil) ?? a.utf8.lexicographicallyPrecedes(b.utf8)
    }

    public var totalSize: Int64 { entries.reduce(0) { $0 + $1.size } }

    /// The JSON lines, byte for byte what `ManifestEntry.json` serialises (the manifest's id is their
    /// hash), written directly: a snapshot of 600,000 files encodes 600,000 lines.
    public var encoded: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(entries.count * 160)
        for entry in entries {
            Self.encode(entry, to: &out)
        }
        return out
    }

    private static func encode(_ entry: ManifestEntry, to out: inout [UInt8]) {
        func string(_ text: String) {
            var text = text
            let plain = text.withUTF8 { utf8 in
                out.append(0x22)
                for byte in utf8 where byte < 0x20 || byte == 0x22 || byte == 0x5C || byte == 0x7F { return false }
                out.append(contentsOf: utf8)
                out.append(0x22)
                return true
            }
            if !plain {
                out.removeLast()
                var escaped = ""
                JSON.writeString(text, to: &escaped)
                out.append(contentsOf: escaped.utf8)
            }
        }
        func number(_ value: UInt64, radix: UInt64) {
            // 24 bytes on the stack: room for the 22 digits of the largest UInt64 in octal.
            var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
            withUnsafeMutableBytes(of: &digits) { buffer in
                var rest = value
                var start = buffer.count
                repeat {
                    start -= 1
                    buffer[start] = 0x30 + UInt8(rest % radix)
                    rest /= radix
                } while rest > 0
                out.append(contentsOf: buffer[start...])
            }
        }
        out.append(contentsOf: #"{"path":"#.utf8)
        string(entry.path)
        out.append(contentsOf: #","size":"#.utf8)
        if entry.size < 0 { out.append(0x2D) }
        number(entry.size.magnitude, radix: 10)
        out.append(contentsOf: #","mode":"0"#.utf8)
        number(UInt64(entry.mode), radix: 8)
        out.append(0x22)
        if let sha256 = entry.sha256 {
            out.append(contentsOf: #","sha256":"#.utf8)
            string(sha256)
        }
        if let crc32c = entry.crc32c {
            out.append(contentsOf: #","crc32c":""#.utf8)
            let start = out.count
            out.append(contentsOf: repeatElement(0, count: 8))
            out.withUnsafeMutableBufferPointer { HexDigits.write(UInt64(crc32c), digits: 8, to: $0.baseAddress! + start) }
            out.append(0x22)
        }
        if let linkTarget = entry.linkTarget {
            out.append(contentsOf: #","link":"#.utf8)
            string(linkTarget)
        }
        out.append(contentsOf: "}\n".utf8)
    }

    public init(decoding bytes: [UInt8]) throws(CMLError) {
        var entries: [ManifestEntry] = []
        for (number, line) in bytes.split(separator: 0x0A).enumerated() {
            var lineBytes = Array(line)
            do throws(CMLError) { entries.append(try ManifestEntry(json: try JSON.parse(bytes: &lineBytes))) } catch {
                throw CMLError("manifest line \(number + 1): \(error.message)")
            }
        }
        self.init(entries: entries)
        try checkStructure()
    }

    /// Refuses paths that cannot all exist at once: the same path twice, or a path inside another entry
    /// (`a` a file or link and `a/b` a file). Materialising such a manifest could write through a link.
    public func checkStructure() throws(CMLError) {
        var paths = Set<String>()
        for entry in entries where !paths.insert(entry.path).inserted {
            throw CMLError("the manifest names \(JSON.string(entry.path).serialized) twice")
        }
        for entry in entries {
            var prefix = Substring(entry.path)
            while let slash = prefix.lastIndex(of: "/") {
                prefix = prefix[..<slash]
                if paths.contains(String(prefix)) {
                    throw CMLError("the manifest names \(JSON.string(entry.path).serialized) inside \(JSON.string(String(prefix)).serialized), which is not a directory")
                }
            }
        }
    }

    /// The links whose target, followed through the manifest's own links, leads out of the directory
    /// (an absolute target, or `..` past its top).
    public var escapingLinks: [ManifestEntry] {
        var targets: [String: String] = [:]
        for entry in entries { if let target = entry.linkTarget { targets[entry.path] = target } }
        return entries.filter { entry in
            guard let target = entry.linkTarget else { return false }
            var hops = 0
            let parent = entry.path.split(separator: "/").dropLast().map(String.init)
            return Self.resolve(target, from: parent, links: targets, hops: &hops) == nil
        }
    }

    /// The components of where `target`, read in the folder `from`, leads; nil when it leaves the
    /// directory or loops.
    private static func resolve(_ target: String, from folder: [String], links: [String: String], hops: inout Int) -> [String]? {
        if target.hasPrefix("/") { return nil }
        var current = folder
        for part in target.split(separator: "/") where part != "." {
            if part == ".." {
                if current.isEmpty { return nil }
                current.removeLast()
                continue
            }
            current.append(String(part))
            if let next = links[current.joined(separator: "/")] {
                hops += 1
                if hops > 40 { return nil }
                current.removeLast()
                guard let resolved = resolve(next, from: current, links: links, hops: &hops) else { return nil }
                current = resolved
            }
        }
        return current
    }

    /// A path that stays inside the directory it is written under.
    public static func checkRelativePath(_ path: String) throws(CMLError) {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard !path.isEmpty, !path.hasPrefix("/"), !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }),
              !path.utf8.contains(0) else {
            throw CMLError("unsafe path \(JSON.string(path).serialized) in a manifest")
        }
    }
}

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
                                         ("mode", .string(Self.modeText(mode)))]
        if let sha256 { members.append(("sha256", .string(sha256))) }
        if let crc32c { members.append(("crc32c", .string(CRC32C.hex(crc32c)))) }
        if let linkTarget { members.append(("link", .string(linkTarget))) }
        return .object(members)
    }

    /// Permission bits as octal with a leading zero and at least three digits after it, as `ls` users
    /// and chmod(1) read them: `0644`, `0000`, `04755`.
    public static func modeText(_ mode: UInt32) -> String {
        let digits = String(mode, radix: 8)
        return "0" + String(repeating: "0", count: max(0, 3 - digits.count)) + digits
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
        guard (sha256 == nil) != (linkTarget == nil), sha256.map(BlobDirectory.isBlobID) ?? true else {
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
        // What `ManifestEntry.modeText` gives: at least three digits after the leading zero.
        out.append(contentsOf: #","mode":"0"#.utf8)
        if entry.mode < 0o100 { out.append(0x30) }
        if entry.mode < 0o10 { out.append(0x30) }
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

    /// The links that lead out of the directory, each named once: a link whose own target is absolute or
    /// climbs past the top with `..`, where the links it goes through are followed as the system would
    /// (so `d/self -> .` cannot let `d/self/../..` out). A link that only leads to another link leading
    /// out is not named: that one is. A chain or loop of links that stays inside is fine (following a loop
    /// fails; it never leaves).
    public var escapingLinks: [ManifestEntry] {
        var targets: [String: String] = [:]
        for entry in entries { if let target = entry.linkTarget { targets[entry.path] = target } }
        var culprits = Set<String>()
        for entry in entries where entry.linkTarget != nil {
            var hops = 0
            let folder = entry.path.split(separator: "/").dropLast().map(String.init)
            if case .leaves(let culprit) = Self.resolve(entry.path, from: folder, links: targets, hops: &hops) {
                culprits.insert(culprit)
            }
        }
        return entries.filter { culprits.contains($0.path) }
    }

    /// The links of `escapingLinks` named for a message: "the link a points outside PLACE (to /x)", or
    /// "2 links point outside PLACE: a (to /x), b (to ../y)" (five at most, then how many more).
    public static func describe(_ links: [ManifestEntry], outside place: String) -> String {
        let named = links.map { "\($0.path) (to \($0.linkTarget ?? ""))" }
        if let link = links.first, links.count == 1 {
            return "the link \(link.path) points outside \(place) (to \(link.linkTarget ?? ""))"
        }
        let shown = named.prefix(5).joined(separator: ", ")
        return "\(named.count) links point outside \(place): \(shown)\(named.count > 5 ? " and \(named.count - 5) more" : "")"
    }

    /// Where following a link leads.
    private enum Resolution {
        case inside([String])
        /// Out of the directory, while reading the target of the link `culprit`.
        case leaves(culprit: String)
        /// More than 40 links followed, where the system gives up (ELOOP): it leads nowhere.
        case loops
    }

    /// Follows the link `link`, whose target is read in the folder `folder`.
    private static func resolve(_ link: String, from folder: [String], links: [String: String], hops: inout Int) -> Resolution {
        let target = links[link]!
        if target.hasPrefix("/") { return .leaves(culprit: link) }
        var current = folder
        for part in target.split(separator: "/") where part != "." {
            if part == ".." {
                if current.isEmpty { return .leaves(culprit: link) }
                current.removeLast()
                continue
            }
            current.append(String(part))
            let path = current.joined(separator: "/")
            guard links[path] != nil else { continue }
            hops += 1
            if hops > 40 { return .loops }
            current.removeLast()
            switch resolve(path, from: current, links: links, hops: &hops) {
            case .inside(let resolved): current = resolved
            case let other: return other
            }
        }
        return .inside(current)
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

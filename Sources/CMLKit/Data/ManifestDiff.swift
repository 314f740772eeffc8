/// One difference between two manifests.
public struct ManifestChange: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case added, removed, modified, renamed
    }

    public var kind: Kind
    /// The path in the newer manifest (in the older one for `removed`).
    public var path: String
    /// The path in the older manifest, for `renamed`.
    public var from: String?
    public var old: ManifestEntry?
    public var new: ManifestEntry?

    /// The entry's size as it is now (as it was, for `removed`).
    public var size: Int64 { (new ?? old)?.size ?? 0 }

    public var json: JSON {
        var members: [(String, JSON)] = [("change", .string(kind.rawValue)), ("path", .string(path))]
        if let from { members.append(("from", .string(from))) }
        func describe(_ entry: ManifestEntry, _ prefix: String) {
            members.append((prefix + "size", .int(entry.size)))
            members.append((prefix + "mode", .string(ManifestEntry.modeText(entry.mode))))
            if let sha256 = entry.sha256 { members.append((prefix + "sha256", .string(sha256))) }
            if let link = entry.linkTarget { members.append((prefix + "link", .string(link))) }
        }
        if let shown = new ?? old { describe(shown, "") }
        if kind == .modified || (kind == .renamed && old?.mode != new?.mode), let old { describe(old, "old_") }
        return .object(members)
    }
}

public enum ManifestDiff {
    /// What changed from `old` to `new`, sorted by path. A file gone from one path and new at another with
    /// the same content (or a link with the same target) is a rename, not a removal and an addition;
    /// several such pairs match in path order.
    public static func changes(from old: Manifest, to new: Manifest) -> [ManifestChange] {
        var oldByPath: [String: ManifestEntry] = [:]
        for entry in old.entries { oldByPath[entry.path] = entry }
        var newPaths = Set<String>()
        var changes: [ManifestChange] = []
        var added: [ManifestEntry] = []
        for entry in new.entries {
            newPaths.insert(entry.path)
            guard let before = oldByPath[entry.path] else {
                added.append(entry)
                continue
            }
            // The CRC is left out: a version older than it lacks it, and the sha256 says the same.
            if contentKey(before) != contentKey(entry) || before.mode != entry.mode {
                changes.append(ManifestChange(kind: .modified, path: entry.path, old: before, new: entry))
            }
        }
        var removedByContent: [String: [ManifestEntry]] = [:]
        var removed: [String: ManifestEntry] = [:]
        for entry in old.entries where !newPaths.contains(entry.path) {
            removedByContent[contentKey(entry), default: []].append(entry)
            removed[entry.path] = entry
        }
        for entry in added {
            let key = contentKey(entry)
            if var candidates = removedByContent[key], !candidates.isEmpty {
                let source = candidates.removeFirst()
                removedByContent[key] = candidates
                removed.removeValue(forKey: source.path)
                changes.append(ManifestChange(kind: .renamed, path: entry.path, from: source.path, old: source, new: entry))
            } else {
                changes.append(ManifestChange(kind: .added, path: entry.path, new: entry))
            }
        }
        for entry in removed.values { changes.append(ManifestChange(kind: .removed, path: entry.path, old: entry)) }
        return changes.sorted { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) }
    }

    static func contentKey(_ entry: ManifestEntry) -> String {
        entry.sha256 ?? "link:" + (entry.linkTarget ?? "")
    }
}

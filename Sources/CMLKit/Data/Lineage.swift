/// Where versions came from: their ancestors, the runs that made and used them, and which version
/// first held a piece of content.
public enum Lineage {
    /// A version in the lineage, or a parent the store does not hold (removed, or never imported).
    public struct Entry: Sendable {
        public var id: String
        public var version: DatasetVersion?
        /// Runs that used the version.
        public var usedBy: [String]

        public var json: JSON {
            guard let version, case .object(var members) = version.json else {
                return .object([("id", .string(id)), ("missing", .bool(true))])
            }
            members.append(("used_by", .array(usedBy.map(JSON.string))))
            return .object(members)
        }
    }

    /// `version` and every ancestor through all parents, each once, newest first; parents the store lacks
    /// come last.
    public static func ancestors(of version: DatasetVersion, in store: any Store) throws(CMLError) -> [Entry] {
        var seen: Set<String> = [version.id]
        var pending = [version]
        var found: [DatasetVersion] = []
        var missing: [String] = []
        while let next = pending.popLast() {
            found.append(next)
            for parent in next.parents where seen.insert(parent).inserted {
                if let known = try store.datasetVersion(id: parent) { pending.append(known) } else { missing.append(parent) }
            }
        }
        found.sort { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
        return try found.map { known throws(CMLError) in
            Entry(id: known.id, version: known, usedBy: try store.runsUsing(version: known.id))
        } + missing.map { Entry(id: $0, version: nil, usedBy: []) }
    }

    /// Which version introduced the content `path` has in `version`.
    public struct Blame: Sendable {
        public var path: String
        public var entry: ManifestEntry
        /// The earliest version, following parents, that holds this content.
        public var introducedBy: DatasetVersion
        /// The path the content had there (differs after a rename).
        public var introducedAs: String

        public var json: JSON {
            var members: [(String, JSON)] = [("path", .string(path)), ("size", .int(entry.size))]
            if let sha256 = entry.sha256 { members.append(("sha256", .string(sha256))) }
            if let link = entry.linkTarget { members.append(("link", .string(link))) }
            members += [
                ("version_id", .string(introducedBy.id)), ("dataset", .string(introducedBy.dataset)),
                ("version", .int(introducedBy.number)), ("introduced_as", .string(introducedAs)),
                ("run", introducedBy.run.map(JSON.string) ?? .null),
                ("created_at", .string(Clock.rfc3339(introducedBy.createdAt))),
                ("message", introducedBy.message.map(JSON.string) ?? .null),
            ]
            return .object(members)
        }
    }

    /// Follows the content at `path` back through parents that hold it (at the same path preferably,
    /// else at any path: content moves with renames) to the version where none does.
    public static func blame(_ path: String, in version: DatasetVersion, store: any Store) throws(CMLError) -> Blame {
        var manifests: [String: Manifest] = [:]
        func manifest(_ of: DatasetVersion) throws(CMLError) -> Manifest {
            if let known = manifests[of.manifest] { return known }
            let loaded = try Datasets.manifest(of: of, in: store)
            manifests[of.manifest] = loaded
            return loaded
        }
        let wanted = path.hasPrefix("./") ? String(path.dropFirst(2)) : path
        guard let entry = try manifest(version).entries.first(where: { $0.path == wanted }) else {
            let near = try manifest(version).entries.filter { $0.path.hasSuffix("/" + FileSystem.baseName(wanted)) }.prefix(3)
            throw CMLError("\(version.reference) has no file \(wanted)",
                           hint: near.isEmpty ? "cml-data show \(version.reference) lists its files"
                                              : "did you mean \(near.map(\.path).joined(separator: ", "))?")
        }
        let key = ManifestDiff.contentKey(entry)
        var current = version
        var currentPath = wanted
        var visited: Set<String> = [version.id]
        walking: while true {
            var elsewhere: (DatasetVersion, String)?
            for parentID in current.parents where !visited.contains(parentID) {
                guard let parent = try store.datasetVersion(id: parentID) else { continue }
                let entries = try manifest(parent).entries
                if let same = entries.first(where: { $0.path == currentPath }), ManifestDiff.contentKey(same) == key {
                    visited.insert(parentID)
                    current = parent
                    continue walking
                }
                if elsewhere == nil, let moved = entries.first(where: { ManifestDiff.contentKey($0) == key }) {
                    elsewhere = (parent, moved.path)
                }
            }
            guard let (parent, movedFrom) = elsewhere else { break }
            visited.insert(parent.id)
            current = parent
            currentPath = movedFrom
        }
        return Blame(path: wanted, entry: entry, introducedBy: current, introducedAs: currentPath)
    }
}

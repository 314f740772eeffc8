/// Where versions came from: their ancestors, the runs that made and used them, and which version
/// first held a piece of content.
public enum Lineage {
    /// A version in the lineage, or a parent the store does not hold (removed, or never imported).
    public struct Entry: Sendable {
        public var id: String
        public var version: DatasetVersion?
        /// Runs that used the version.
        public var usedBy: [String]
        /// The pipeline step whose run made it, when one did: the pipeline's id and the step's name.
        public var madeByStep: (pipeline: String, step: String)?

        public var json: JSON {
            guard let version, case .object(var members) = version.json else {
                return .object([("id", .string(id)), ("missing", .bool(true))])
            }
            members.append(("used_by", .array(usedBy.map(JSON.string))))
            if let madeByStep {
                members.append(("made_by_step", .object([("pipeline", .string(madeByStep.pipeline)), ("step", .string(madeByStep.step))])))
            }
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
            Entry(id: known.id, version: known, usedBy: try store.runsUsing(version: known.id), madeByStep: try step(making: known, in: store))
        } + missing.map { Entry(id: $0, version: nil, usedBy: []) }
    }

    /// The pipeline and step whose run made `version` (by the run's parameters `pipeline` and `step`).
    static func step(making version: DatasetVersion, in store: any Store) throws(CMLError) -> (pipeline: String, step: String)? {
        guard let id = version.run else { return nil }
        let run: Run
        do { run = try store.run(id: id) } catch where error.kind == .notFound { return nil }
        func param(_ key: String) -> String? { run.params.first { $0.key == key }?.value.stringValue }
        guard let pipeline = param(PipelineController.pipelineParameter), let step = param(PipelineController.stepParameter) else { return nil }
        return (pipeline, step)
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

extension Lineage {
    /// A dataset's lineage as a graph (the web UI draws it): its versions, their ancestors and
    /// descendants in any dataset, parent → child edges, and the runs that made and used each version.
    public struct Graph: Sendable {
        /// Newest first.
        public var versions: [DatasetVersion] = []
        /// Parents the store does not hold (removed, or never imported).
        public var missing: [String] = []
        /// Version ids, parent → child; the parent may be missing.
        public var edges: [(parent: String, child: String)] = []
        /// Version id → runs that used it (`cml-run --data`, `cml-data get|checkout` inside a run).
        public var usedBy: [String: [String]] = [:]
        /// More versions are related than `limit` allowed: the oldest were left out.
        public var truncated = false

        public init() {}

        /// Every run the graph names, made or used a version, each once.
        public var runs: [String] {
            var seen = Set<String>()
            return (versions.compactMap(\.run) + versions.flatMap { usedBy[$0.id] ?? [] }).filter { seen.insert($0).inserted }
        }
    }

    /// The versions of `dataset`, and every version related to them through parents either way, at most
    /// `limit` of them (the newest).
    public static func graph(of dataset: String, in store: any Store, limit: Int = 200) throws(CMLError) -> Graph {
        let all = try store.datasetVersions(dataset: nil)
        var byID: [String: DatasetVersion] = [:]
        var children: [String: [String]] = [:]
        for version in all {
            byID[version.id] = version
            for parent in version.parents { children[parent, default: []].append(version.id) }
        }
        var related = Set<String>()
        var pending = all.filter { $0.dataset == dataset }.map(\.id)
        var missing = Set<String>()
        while let id = pending.popLast() {
            guard related.insert(id).inserted else { continue }
            guard let version = byID[id] else {
                missing.insert(id)
                continue
            }
            pending += version.parents + (children[id] ?? [])
        }
        var graph = Graph()
        let found = related.compactMap { byID[$0] }.sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
        graph.truncated = found.count > limit
        graph.versions = Array(found.prefix(limit))
        let kept = Set(graph.versions.map(\.id))
        graph.missing = missing.sorted()
        for version in graph.versions {
            for parent in version.parents where kept.contains(parent) || missing.contains(parent) {
                graph.edges.append((parent, version.id))
            }
            graph.usedBy[version.id] = try store.runsUsing(version: version.id)
        }
        return graph
    }
}

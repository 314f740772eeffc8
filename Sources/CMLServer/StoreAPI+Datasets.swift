import CMLKit
import Hummingbird

extension StoreAPI {
    /// The routes of the datasets concern (`DatasetStore`). Versions belong to no project: every token
    /// reads them, and a project-bound one is refused the routes that change them (a run's record of the
    /// versions it used is a write to the run, allowed for the token's projects).
    static let datasetRoutes: [ServerRoute] = [
        ServerRoute(method: .get, path: "/api/v1/store/datasets/versions", parameters: ["dataset"]) { route in
            let dataset = route.query.string("dataset"), store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in try store.datasetVersions(dataset: dataset) })
        },
        ServerRoute(method: .post, path: "/api/v1/store/datasets/versions", parameters: [], scope: .write) { route in
            try route.access.requireUnbound(to: "record dataset versions")
            let draft = try await route.body(DatasetVersionDraft.self, what: "the version")
            try StoreAPI.check(draft)
            let store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in try store.createDatasetVersion(draft) })
        },
        ServerRoute(method: .post, path: "/api/v1/store/datasets/versions/copy", parameters: [], scope: .write) { route in
            try route.access.requireUnbound(to: "record dataset versions")
            let version = try await route.body(DatasetVersion.self, what: "the version")
            try StoreAPI.checkID(version.id)
            let store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in try store.copyDatasetVersion(version) })
        },
        ServerRoute(method: .get, path: "/api/v1/store/datasets/versions/{id}", parameters: []) { route in
            let id = try route.parameter("id"), store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in try store.datasetVersion(id: id) })
        },
        ServerRoute(method: .get, path: "/api/v1/store/datasets/versions/{id}/runs", parameters: []) { route in
            let id = try route.parameter("id"), store = route.store, access = route.access
            return try .wire(try await StoreCalls.run { () throws(CMLError) in
                let runs = try store.runsUsing(version: id)
                guard access.projects != nil else { return runs }
                var visible: [String] = []
                for run in runs where access.sees(project: try store.run(id: run).project) { visible.append(run) }
                return visible
            })
        },
        ServerRoute(method: .get, path: "/api/v1/store/datasets/resolve", parameters: ["version"]) { route in
            guard let text = route.query.string("version") else { throw CMLError.usage("resolve needs ?version=NAME@VER") }
            let reference = try VersionReference(text), store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in try store.resolveDatasetVersion(reference) })
        },
        ServerRoute(method: .post, path: "/api/v1/store/datasets/versions/remove", parameters: [], scope: .write) { route in
            try route.access.requireUnbound(to: "remove dataset versions")
            let ids = try await route.body([String].self, what: "the version ids")
            let store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in
                for id in ids where try store.datasetVersion(id: id) == nil {
                    throw CMLError("no dataset version with id \(id)", kind: .notFound)
                }
                return try store.removeDatasetVersions(ids)
            })
        },
        ServerRoute(method: .post, path: "/api/v1/store/gc", parameters: ["dry_run"], scope: .admin) { route in
            try route.access.requireUnbound(to: "collect garbage")
            let dryRun = try route.query.flag("dry_run"), store = route.store
            return try .wire(try await StoreCalls.run { () throws(CMLError) in try store.collectGarbage(dryRun: dryRun) })
        },
        ServerRoute(method: .post, path: "/api/v1/store/runs/{id}/datasets", parameters: [], scope: .write) { route in
            let versions = try await route.body([DatasetVersion].self, what: "the versions")
            return try await route.writeRun { store, id throws(CMLError) in
                // What the store holds, not what the body says of them.
                var stored: [DatasetVersion] = []
                for version in versions {
                    guard let found = try store.datasetVersion(id: version.id) else {
                        throw CMLError("no dataset version with id \(version.id)", kind: .notFound)
                    }
                    stored.append(found)
                }
                try store.recordDatasetUse(run: id, stored)
            }
        },
    ]

    /// What the local store takes on trust from `cml-data`: an id as versions have, a manifest that is a
    /// blob the version references.
    static func check(_ draft: DatasetVersionDraft) throws(CMLError) {
        try checkID(draft.id)
        try DatasetName.check(draft.dataset)
        guard let manifest = BlobDigest(hex: draft.manifest), draft.blobs.contains(manifest) else {
            throw CMLError.usage("the version's manifest \(draft.manifest.prefix(64)) must be the sha256 of a blob it references")
        }
    }

    static func checkID(_ id: String) throws(CMLError) {
        guard id.utf8.count == 32, RunID.isPrefix(id) else {
            throw CMLError.usage("the version's id must be 32 lowercase hex digits, not '\(id.prefix(40))'")
        }
    }
}

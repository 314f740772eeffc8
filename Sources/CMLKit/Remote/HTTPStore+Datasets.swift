/// The datasets concern over the store API (docs/http-api.md, "The store API: datasets").
extension HTTPStore {
    private static func versionPath(_ id: String, _ rest: String = "") -> String {
        "/api/v1/store/datasets/versions/" + escape(id) + rest
    }

    public func createDatasetVersion(_ draft: DatasetVersionDraft) throws(CMLError) -> DatasetVersionCommit {
        try call("POST", "/api/v1/store/datasets/versions", sending: draft, as: DatasetVersionCommit.self)
    }

    public func copyDatasetVersion(_ version: DatasetVersion) throws(CMLError) -> DatasetVersionCommit {
        try call("POST", "/api/v1/store/datasets/versions/copy", sending: version, as: DatasetVersionCommit.self)
    }

    public func datasetVersions(dataset: String?) throws(CMLError) -> [DatasetVersion] {
        try call("GET", "/api/v1/store/datasets/versions", query: dataset.map { [("dataset", $0)] } ?? [], as: [DatasetVersion].self)
    }

    public func datasetVersion(id: String) throws(CMLError) -> DatasetVersion? {
        try call("GET", Self.versionPath(id), as: DatasetVersion?.self)
    }

    public func resolveDatasetVersion(_ reference: VersionReference) throws(CMLError) -> DatasetVersion {
        try call("GET", "/api/v1/store/datasets/resolve", query: [("version", reference.description)], as: DatasetVersion.self)
    }

    public func removeDatasetVersions(_ ids: [String]) throws(CMLError) -> BlobRemovalReport {
        try call("POST", "/api/v1/store/datasets/versions/remove", sending: ids, as: BlobRemovalReport.self)
    }

    public func collectGarbage(dryRun: Bool) throws(CMLError) -> BlobRemovalReport {
        try call("POST", "/api/v1/store/gc", query: [("dry_run", dryRun ? "1" : "0")], as: BlobRemovalReport.self)
    }

    public func recordDatasetUse(run id: String, _ versions: [DatasetVersion]) throws(CMLError) {
        if versions.isEmpty { return }
        try post(Self.runPath(id, "/datasets"), sending: versions)
    }

    public func runsUsing(version id: String) throws(CMLError) -> [String] {
        try call("GET", Self.versionPath(id, "/runs"), as: [String].self)
    }
}

import Foundation

/// The bodies of store calls that carry more than one model, shared by `HTTPStore` and `cml-serve`.
public enum RemoteRecords {
    public struct CreatedRun: Codable, Sendable {
        public var run: Run
        public var patch: Data
    }

    public struct FinishedRun: Codable, Sendable {
        public var end: RunEnd
        public var logBytes: Int64
    }

    public struct TagChange: Codable, Sendable {
        public var add: [String]
        public var remove: [String]
    }

    public struct RunName: Codable, Sendable {
        public var name: String?
    }

    public struct CatalogKeys: Codable, Sendable {
        public var params: [String]
        public var metrics: [String]

        public init(keys: (params: [String], metrics: [String])) {
            params = keys.params
            metrics = keys.metrics
        }
    }
}

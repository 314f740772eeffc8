/// The record of a process that drives runs: a sweep (`cml-queue sweep`) or a pipeline. The store keeps
/// its document whole and knows only its kind, id and project; what the document holds is its kind's
/// (a `Sweep` for "sweep"), so a new kind of controller needs no new table or route.
public struct ControllerRecord: Sendable, Codable, Equatable {
    public var kind: String
    public var id: String
    /// What a project-bound token may see and write.
    public var project: String
    public var createdAt: Double
    public var updatedAt: Double
    /// A JSON object.
    public var document: String

    public init(kind: String, id: String, project: String, createdAt: Double, updatedAt: Double, document: String) {
        self.kind = kind
        self.id = id
        self.project = project
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.document = document
    }
}

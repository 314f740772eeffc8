import CMLKit

/// MLflow's experiments are cml's projects. Ids are a stable function of the project's name, so no table
/// maps them: "0" (MLflow's Default experiment) is the project `default`; any other project's id is the
/// decimal of the first 53 bits of the sha256 of its name (an integer as MLflow's own ids are, exact in
/// JavaScript's numbers). An experiment created before it has runs is kept as a `ControllerRecord` of
/// kind `mlflowexperiment` (its name and tags), so that it can be found by name and id from then on.
enum MLflowExperiments {
    static let recordKind = "mlflowexperiment"
    static let defaultID = "0"
    static let defaultProject = "default"

    static func id(project: String) -> String {
        if project == defaultProject { return defaultID }
        return String(UInt64(digest(project).prefix(16), radix: 16)! >> 11)
    }

    private static func digest(_ project: String) -> String {
        var hasher = SHA256Hasher()
        hasher.update(Array(project.utf8))
        return hasher.finalizeHex()
    }

    /// What is known of an experiment: its project, and its record when it was created through MLflow.
    struct Experiment: Sendable {
        var project: String
        var record: ControllerRecord?
        var lastStarted: Double?

        var id: String { MLflowExperiments.id(project: project) }

        var json: JSON {
            let created = record?.createdAt ?? lastStarted ?? 0
            var tags: [(String, String)] = []
            if let document = record.flatMap({ try? JSON.parse($0.document) }), case .object(let members)? = document["tags"] {
                tags = members.map { ($0.0, $0.1.stringValue ?? "") }
            }
            return .object([
                ("experiment_id", .string(id)),
                ("name", .string(project == MLflowExperiments.defaultProject ? "Default" : project)),
                ("artifact_location", .string("mlflow-artifacts:/\(id)")),
                ("lifecycle_stage", .string("active")),
                ("last_update_time", MLflowJSON.millis(max(lastStarted ?? created, record?.updatedAt ?? 0))),
                ("creation_time", MLflowJSON.millis(created)),
                ("tags", MLflowJSON.keyValues(tags)),
            ])
        }
    }

    /// The project MLflow names `name` ("Default" is `default`).
    static func project(named name: String) -> String {
        name == "Default" ? defaultProject : name
    }

    /// Every experiment the request may see: the projects with runs, those created through MLflow, and Default.
    static func all(store: any ServedStore, access: RequestAccess) throws(CMLError) -> [Experiment] {
        var found: [String: Experiment] = [defaultProject: Experiment(project: defaultProject)]
        for project in try store.projects() {
            found[project.name] = Experiment(project: project.name, lastStarted: project.lastStarted)
        }
        for record in try store.controllers(kind: recordKind) {
            found[record.project, default: Experiment(project: record.project)].record = record
        }
        return found.values.filter { access.sees(project: $0.project) }.sorted { $0.project < $1.project }
    }

    static func experiment(id: String, store: any ServedStore, access: RequestAccess) throws(CMLError) -> Experiment {
        guard let found = try all(store: store, access: access).first(where: { $0.id == id }) else {
            throw CMLError("No Experiment with id=\(id.prefix(100)) exists", kind: .notFound)
        }
        return found
    }

    static func experiment(named name: String, store: any ServedStore, access: RequestAccess) throws(CMLError) -> Experiment? {
        let project = project(named: name)
        return try all(store: store, access: access).first { $0.project == project }
    }

    /// Creates an experiment (a project with no runs yet); a project that exists already is a conflict.
    static func create(name: String, tags: [(String, String)], store: any ServedStore, access: RequestAccess) throws(CMLError) -> String {
        guard !name.isEmpty else { throw MLflowError.invalid("an experiment needs a name") }
        let project = project(named: name)
        try access.requireWrite(project: project)
        if try experiment(named: name, store: store, access: .everything) != nil {
            throw CMLError("Experiment(name=\(name)) already exists.", kind: .conflict)
        }
        let now = Clock.now()
        let document = JSON.object([("tags", .object(tags.map { ($0.0, .string($0.1)) }))])
        // A record's id is a whole cml id (32 hex digits): the digest's first 32 digits.
        try store.saveController(ControllerRecord(kind: recordKind, id: String(digest(project).prefix(32)), project: project, createdAt: now,
                                                  updatedAt: now, document: document.serialized))
        return id(project: project)
    }
}

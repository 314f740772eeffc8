import CMLKit
import Foundation
import Synchronization

/// ClearML's projects and tasks on cml's runs: a project is a cml project (its id is its name), a task
/// is a cml run (its id is the run's id). What the SDK sends that a run's record holds becomes the
/// record (name, tags, parameters, code state, status); the task document as sent, merged edit by
/// edit, is kept whole in the record's `extra` as `extra.clearml` (`ServedStore.runDocument`), so nothing
/// sent is dropped. Every call
/// here runs on a store thread (`StoreCalls.run`).
struct ClearMLTasks {
    let store: any ServedStore
    let access: RequestAccess

    /// The client name of the documents kept with runs.
    static let client = "clearml"
    /// Seconds between the beats of a run the SDK records: it asks for its task's status every 2 s or so
    /// (to hear of an abort), and each ask beats; six missed beats make it `lost` (`RunLiveness`).
    static let beatInterval = 5.0
    /// Read-merge-write of task documents, one at a time (the SDK edits a task from several threads).
    static let documentEdits = Mutex(())

    // MARK: projects

    func projects(_ body: JSON) throws(CMLError) -> JSON {
        let names = try store.projects().map(\.name).filter(access.sees(project:))
        let pattern = try body["name"]?.stringValue.map { text throws(CMLError) in try Self.regex(text) }
        let ids = body["id"]?.strings
        let chosen = names.filter { name in
            (ids == nil || ids!.contains(name)) && (pattern.map { Self.matches($0, name) } ?? true)
        }
        return .object([("projects", .array(chosen.map { Self.project($0).only(onlyFields(body)) }))])
    }

    func createProject(_ body: JSON) throws(CMLError) -> JSON {
        guard let name = body["name"]?.stringValue, !name.isEmpty else { throw CMLError.usage("projects.create needs a name") }
        try NameLimits.check(name, "project name")
        try access.requireWrite(project: name)
        // A cml project exists through its runs: the name is its id.
        return .object([("id", .string(name))])
    }

    func project(_ body: JSON) throws(CMLError) -> JSON {
        guard let id = body["project"]?.stringValue, access.sees(project: id) else {
            throw CMLError("no project \(body["project"]?.text ?? "")", kind: .notFound)
        }
        return .object([("project", Self.project(id))])
    }

    static func project(_ name: String) -> JSON {
        .object([("id", .string(name)), ("name", .string(name)), ("basename", .string(String(name.split(separator: "/").last ?? ""))),
                 ("description", .string("")), ("tags", .array([])), ("system_tags", .array([]))])
    }

    // MARK: tasks

    /// `tasks.create`: a new run, running from now, with a heartbeat the SDK's status polls renew.
    func create(_ body: JSON, host: String) throws(CMLError) -> JSON {
        let project = body["project"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } ?? "default"
        try NameLimits.check(project, "project name")
        try access.requireWrite(project: project)
        let name = body["name"]?.stringValue
        if let name { try NameLimits.check(name, "run name") }
        let tags = body["tags"]?.strings ?? []
        for tag in tags { try NameLimits.check(tag, "tag") }
        let now = Clock.now()
        var run = Run(id: RunID.make(at: now), name: name, project: project, status: .running, command: [], cwd: "", host: host,
                      user: access.tokenName ?? "clearml", pid: nil, startedAt: now, environment: [],
                      code: Self.noRepository, tags: tags, params: [])
        run.heartbeat = Heartbeat(at: now, interval: Self.beatInterval)
        run = try store.createRun(run, patch: [])
        let document = body.removing(["name", "project", "tags"]).setting("created", .string(Clock.rfc3339(now)))
        try store.saveRunDocument(run: run.id, client: Self.client, document)
        if let script = body["script"] { try setScript(run: run.id, script) }
        try setParameters(run: run.id, from: document)
        return .object([("id", .string(run.id))])
    }

    func task(_ body: JSON) throws(CMLError) -> JSON {
        let run = try seenRun(body["task"]?.stringValue)
        return .object([("task", try view(run).only(onlyFields(body)))])
    }

    /// `tasks.get_all`: by ids, or by project, name (a regular expression), status and tags; newest first.
    /// A call by ids is also how the SDK polls its task's status: it renews the heartbeat of each running
    /// run it names, and a run `cml-run abort` asked to stop shows `stopped`, which makes the SDK stop.
    func tasks(_ body: JSON) throws(CMLError) -> JSON {
        var found: [Run] = []
        if let ids = body["id"]?.strings, !ids.isEmpty {
            for id in ids {
                let run: Run
                do { run = try store.run(id: id) } catch where error.kind == .notFound { continue }
                if access.sees(project: run.project) { found.append(run) }
            }
        } else {
            let projects = body["project"]?.strings ?? []
            for project in projects.isEmpty ? [nil] : projects.map(Optional.some) {
                var query = RunQuery(project: project)
                query.projects = access.projects
                found += try store.runs(query)
            }
            found.sort { ($0.startedAt ?? 0) > ($1.startedAt ?? 0) }
        }
        var views: [JSON] = []
        let pattern = try body["name"]?.stringValue.map { text throws(CMLError) in try Self.regex(text) }
        let statuses = body["status"]?.strings ?? []
        let wanted = body["tags"]?.strings ?? []
        let systemWanted = body["system_tags"]?.strings ?? []
        for run in found {
            if let pattern, !Self.matches(pattern, run.name ?? "") { continue }
            var view = try view(run, polled: body["id"] != nil)
            if !statuses.isEmpty, !statuses.contains(view["status"]?.stringValue ?? "") { continue }
            if !Self.tagsMatch(wanted, view["tags"]?.strings ?? []) || !Self.tagsMatch(systemWanted, view["system_tags"]?.strings ?? []) {
                continue
            }
            view = view.only(onlyFields(body))
            views.append(view)
        }
        if let size = body["page_size"]?.number.map(Int.init), size > 0 {
            let page = body["page"]?.number.map(Int.init) ?? 0
            views = Array(views.dropFirst(page * size).prefix(size))
        }
        return .object([("tasks", .array(views))])
    }

    /// `tasks.edit`, `tasks.update`: the fields sent merged into the document; those a run's record
    /// holds (name, tags, script, hyperparameters) recorded there too.
    func edit(_ body: JSON) throws(CMLError) -> JSON {
        let run = try writableRun(body["task"]?.stringValue)
        let fields = body.removing(["task", "force"])
        try Self.documentEdits.withLock { _ throws(CMLError) in
            try store.saveRunDocument(run: run.id, client: Self.client, try document(run.id).merged(with: fields.removing(["name", "tags"])))
        }
        if let name = fields["name"]?.stringValue, name != run.name {
            try NameLimits.check(name, "run name")
            try store.rename(run: run.id, to: name)
        }
        if let tags = fields["tags"]?.strings { try setTags(run, tags) }
        if let script = fields["script"] { try setScript(run: run.id, script) }
        if fields["hyperparams"] != nil { try setParameters(run: run.id, from: try document(run.id)) }
        return Self.updated(fields)
    }

    /// `tasks.edit_hyper_params`: parameters by section, as `task.connect` and argparse send them.
    func editHyperParams(_ body: JSON) throws(CMLError) -> JSON {
        let run = try writableRun(body["task"]?.stringValue)
        try Self.documentEdits.withLock { _ throws(CMLError) in
            var document = try document(run.id)
            var sections = body["replace_hyperparams"]?.stringValue == "all" ? JSON.object([]) : document["hyperparams"] ?? .object([])
            for item in body["hyperparams"]?.items ?? [] {
                guard let section = item["section"]?.stringValue, let name = item["name"]?.stringValue else { continue }
                sections = sections.merged(with: .object([(section, .object([(name, item)]))]))
            }
            document = document.setting("hyperparams", sections)
            try store.saveRunDocument(run: run.id, client: Self.client, document)
        }
        try setParameters(run: run.id, from: try document(run.id))
        return .object([("updated", .int(1))])
    }

    func hyperParams(_ body: JSON) throws(CMLError) -> JSON {
        var results: [JSON] = []
        for id in body["tasks"]?.strings ?? [] {
            let run = try seenRun(id)
            let sections = try view(run)["hyperparams"] ?? .object([])
            let items = sections.members.flatMap { _, section in section.members.map(\.1) }
            results.append(.object([("task", .string(run.id)), ("hyperparams", .array(items))]))
        }
        return .object([("params", .array(results))])
    }

    /// `tasks.edit_configuration`: named configuration objects, kept in the document.
    func editConfiguration(_ body: JSON) throws(CMLError) -> JSON {
        let run = try writableRun(body["task"]?.stringValue)
        try Self.documentEdits.withLock { _ throws(CMLError) in
            var document = try document(run.id)
            var configuration = body["replace_configuration"]?.bool == true ? JSON.object([]) : document["configuration"] ?? .object([])
            for item in body["configuration"]?.items ?? [] {
                guard let name = item["name"]?.stringValue else { continue }
                configuration = configuration.setting(name, item)
            }
            document = document.setting("configuration", configuration)
            try store.saveRunDocument(run: run.id, client: Self.client, document)
        }
        return .object([("updated", .int(1))])
    }

    func configurations(_ body: JSON) throws(CMLError) -> JSON {
        let names = body["names"]?.strings ?? []
        var results: [JSON] = []
        for id in body["tasks"]?.strings ?? [] {
            let run = try seenRun(id)
            let items = (try view(run)["configuration"] ?? .object([])).members
                .filter { names.isEmpty || names.contains($0.0) }.map(\.1)
            results.append(.object([("task", .string(run.id)), ("configurations", .array(items))]))
        }
        return .object([("configurations", .array(results))])
    }

    func setRequirements(_ body: JSON) throws(CMLError) -> JSON {
        let run = try writableRun(body["task"]?.stringValue)
        try Self.documentEdits.withLock { _ throws(CMLError) in
            let requirements = JSON.object([("script", .object([("requirements", body["requirements"] ?? .object([]))]))])
            try store.saveRunDocument(run: run.id, client: Self.client, try document(run.id).merged(with: requirements))
        }
        return .object([("updated", .int(1))])
    }

    /// `tasks.add_or_update_artifacts`: the SDK's records of the artifacts it uploaded (their files are
    /// cml artifacts already, from the file routes), by key, in the document's `execution.artifacts`.
    func addArtifacts(_ body: JSON) throws(CMLError) -> JSON {
        let run = try writableRun(body["task"]?.stringValue)
        let added = body["artifacts"]?.items ?? []
        try Self.documentEdits.withLock { _ throws(CMLError) in
            let document = try document(run.id)
            var artifacts = document.at("execution.artifacts")?.items ?? []
            for artifact in added {
                let key = artifact["key"]?.stringValue, mode = artifact["mode"]?.stringValue ?? "output"
                artifacts.removeAll { $0["key"]?.stringValue == key && ($0["mode"]?.stringValue ?? "output") == mode }
                artifacts.append(artifact)
            }
            let execution = (document["execution"] ?? .object([])).setting("artifacts", .array(artifacts))
            try store.saveRunDocument(run: run.id, client: Self.client, document.setting("execution", execution))
        }
        return .object([("updated", .int(Int64(added.count)))])
    }

    func started(_ body: JSON) throws(CMLError) -> JSON {
        let run = try writableRun(body["task"]?.stringValue)
        try Self.documentEdits.withLock { _ throws(CMLError) in
            let document = try document(run.id).setting("started", .string(Clock.rfc3339(Clock.now())))
            try store.saveRunDocument(run: run.id, client: Self.client, document)
        }
        _ = try? store.heartbeatWriter(run: run.id).beat()
        return .object([("updated", .int(1)), ("fields", .object([("status", .string("in_progress"))]))])
    }

    func ping(_ body: JSON) throws(CMLError) -> JSON {
        let run = try writableRun(body["task"]?.stringValue)
        if run.status == .running { _ = try? store.heartbeatWriter(run: run.id).beat() }
        return .object([])
    }

    /// `tasks.completed`, `tasks.failed`, `tasks.stopped`: the run ends so; a run that ended already
    /// keeps its end.
    func end(_ body: JSON, as status: RunStatus) throws(CMLError) -> JSON {
        let run = try writableRun(body["task"]?.stringValue)
        guard run.status == .running else { return .object([("updated", .int(0)), ("fields", .object([]))]) }
        let reason = [body["status_reason"]?.stringValue, body["status_message"]?.stringValue].compactMap { $0 }.filter { !$0.isEmpty }
        let error: String? = status == .completed ? nil : reason.isEmpty ? nil : reason.joined(separator: ": ")
        try ClearMLEvents.consoleAppends.withLock { _ throws(CMLError) in
            try store.finishRun(id: run.id, end: RunEnd(status: status, endedAt: Clock.now(), error: error), logBytes: try outputBytes(run.id))
        }
        return .object([("updated", .int(1)), ("fields", .object([("status", .string(Self.status(status)))]))])
    }

    /// Output bytes of a run's console log, as a run's end records them.
    func outputBytes(_ id: String) throws(CMLError) -> Int64 {
        let reader = RunLogReader(store: store, run: id)
        while reader.next() != nil {}
        if let error = reader.readError { throw error }
        return reader.outputBytes
    }

    // MARK: the task as the SDK reads it

    /// The task document of a run: what the SDK sent, over empty defaults (the SDK reads many fields
    /// without checking they are there), with what the run's record says over both. A run recorded by
    /// other means reads as a task too, its parameters as hyperparameters.
    func view(_ run: Run, polled: Bool = false) throws(CMLError) -> JSON {
        let document = run.extra?[Self.client]
        var status = Self.status(run.observedStatus)
        var message = run.end?.error ?? ""
        if run.observedStatus == .running {
            if document != nil, document?["started"] == nil { status = "created" }
            // A poll of the SDK's own running task renews its beat, and hears of an abort.
            var abortRequested = run.heartbeat?.abortRequested == true
            if polled, document != nil, run.heartbeat != nil, (try? store.heartbeatWriter(run: run.id).beat()) == true {
                abortRequested = true
            }
            if abortRequested {
                status = "stopped"
                message = "aborted with cml-run abort"
            }
        }
        let defaults = JSON.object([
            ("type", .string("training")), ("comment", .string("")), ("script", .object([])),
            ("execution", .object([("parameters", .object([])), ("artifacts", .array([]))])),
            ("hyperparams", Self.hyperparams(run.params)), ("configuration", .object([])), ("runtime", .object([])),
            ("output", .object([])), ("models", .object([("input", .array([])), ("output", .array([]))])),
            ("container", .object([])), ("last_metrics", .object([])), ("company", .string("")),
        ])
        let iteration = run.metrics.filter { !$0.key.hasPrefix(":monitor:") }.map(\.lastStep).max() ?? 0
        let started = run.startedAt.map { JSON.string(Clock.rfc3339($0)) } ?? .null
        let updated = run.end?.endedAt ?? run.heartbeat?.at ?? run.startedAt
        // A task that ran never looks reusable to the SDK, which would otherwise reset it (and its run)
        // at the next Task.init of the same name: every script run is a new cml run.
        let systemTags = (document?["system_tags"]?.strings ?? []).filter { $0 != "development" }
        return defaults.merged(with: document ?? .object([])).merged(with: .object([
            ("id", .string(run.id)), ("name", .string(run.name ?? "")), ("project", .string(run.project)),
            ("user", .string(run.user)), ("status", .string(status)), ("status_message", .string(message)),
            ("status_reason", .string(message)), ("tags", .array(run.tags.map(JSON.string))),
            ("system_tags", .array(systemTags.map(JSON.string))),
            ("created", document?["created"] ?? started), ("started", started),
            ("completed", run.end.map { .string(Clock.rfc3339($0.endedAt)) } ?? .null),
            ("last_update", updated.map { .string(Clock.rfc3339($0)) } ?? .null),
            ("last_iteration", .int(iteration)),
        ]))
    }

    static func status(_ status: RunStatus) -> String {
        switch status {
        case .queued: "queued"
        case .running: "in_progress"
        case .completed: "completed"
        case .failed, .lost: "failed"
        case .aborted: "stopped"
        }
    }

    /// cml parameters as hyperparameters: `Section/name` keys in their section, others in `Args`.
    static func hyperparams(_ params: [Param]) -> JSON {
        var sections = JSON.object([])
        for param in params {
            let parts = param.key.split(separator: "/", maxSplits: 1).map(String.init)
            let (section, name) = parts.count == 2 ? (parts[0], parts[1]) : ("Args", param.key)
            let item = JSON.object([("section", .string(section)), ("name", .string(name)), ("value", .string(param.value.text)),
                                    ("type", .string("")), ("description", .string(""))])
            sections = sections.merged(with: .object([(section, .object([(name, item)]))]))
        }
        return sections
    }

    // MARK: what the record holds

    /// The document's hyperparameters as cml parameters `Section/name`: the keys ClearML's
    /// `Task.get_parameters()` uses, so that `Args/lr` (argparse) and `General/lr` (`task.connect`) stay apart.
    private func setParameters(run id: String, from document: JSON) throws(CMLError) {
        var params: [Param] = []
        for (section, entries) in (document["hyperparams"] ?? .object([])).members {
            for (name, item) in entries.members {
                let param = Param(key: "\(section)/\(name)", value: Param.typedValue(item["value"]?.text ?? ""), source: Self.client)
                try NameLimits.check(param)
                params.append(param)
            }
        }
        if !params.isEmpty { try store.addParams(run: id, params) }
    }

    /// The script the SDK reports (repository, branch, commit, entry point, working directory and the
    /// uncommitted diff) as the run's command, working directory and code state.
    private func setScript(run id: String, _ script: JSON) throws(CMLError) {
        guard let entry = script["entry_point"]?.stringValue, !entry.isEmpty else { return }
        let binary = script["binary"]?.stringValue ?? "python"
        let workingDirectory = script["working_dir"]?.stringValue ?? "."
        let diff = script["diff"]?.stringValue ?? ""
        var code: [(String, JSON)] = []
        if let branch = script["branch"]?.stringValue, !branch.isEmpty { code.append(("branch", .string(branch))) }
        let commit = script["version_num"]?.stringValue ?? ""
        if !commit.isEmpty { code.append(("commit", .string(commit))) }
        let repository = script["repository"]?.stringValue ?? ""
        code += [("dirty", .bool(!diff.isEmpty)), ("in_repository", .bool(!repository.isEmpty || !commit.isEmpty)),
                 ("left_out", .array([])), ("omitted_files", .array([])), ("patch_bytes", .int(Int64(diff.utf8.count)))]
        if !repository.isEmpty { code.append(("remote_url", .string(repository))) }
        try store.setOrigin(run: id, command: [binary, entry], cwd: workingDirectory, code: .object(code), patch: Array(diff.utf8))
    }

    private func setTags(_ run: Run, _ tags: [String]) throws(CMLError) {
        for tag in tags { try NameLimits.check(tag, "tag") }
        let added = tags.filter { !run.tags.contains($0) }, removed = run.tags.filter { !tags.contains($0) }
        if !added.isEmpty { try store.addTags(run: run.id, added) }
        if !removed.isEmpty { try store.removeTags(run: run.id, removed) }
    }

    // MARK: helpers

    static let noRepository = JSON.object([("dirty", .bool(false)), ("in_repository", .bool(false)), ("left_out", .array([])),
                                           ("omitted_files", .array([])), ("patch_bytes", .int(0))])

    func document(_ id: String) throws(CMLError) -> JSON {
        try store.runDocument(run: id, client: Self.client) ?? .object([])
    }

    /// A run the request may read: one of another project is answered as absent.
    func seenRun(_ id: String?) throws(CMLError) -> Run {
        guard let id, !id.isEmpty else { throw CMLError.usage("the call needs a task id") }
        let run = try store.run(id: id)
        guard access.sees(project: run.project) else { throw CMLError("no run with id \(id)", kind: .notFound) }
        return run
    }

    func writableRun(_ id: String?) throws(CMLError) -> Run {
        let run = try seenRun(id)
        try access.requireWrite(project: run.project)
        return run
    }

    private func onlyFields(_ body: JSON) -> [String] {
        body["only_fields"]?.strings ?? []
    }

    static func updated(_ fields: JSON) -> JSON {
        .object([("updated", .int(1)), ("fields", fields)])
    }

    static func regex(_ pattern: String) throws(CMLError) -> NSRegularExpression {
        do { return try NSRegularExpression(pattern: pattern) } catch {
            throw CMLError.usage("the name \(pattern.prefix(80)) is not a regular expression")
        }
    }

    static func matches(_ expression: NSRegularExpression, _ text: String) -> Bool {
        expression.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
    }

    /// ClearML's tag filter: every tag named must be there, every `-tag` must not.
    static func tagsMatch(_ wanted: [String], _ tags: [String]) -> Bool {
        wanted.allSatisfy { $0.hasPrefix("-") ? !tags.contains(String($0.dropFirst())) : $0.hasPrefix("__$") || tags.contains($0) }
    }
}

extension JSON {
    /// `only_fields`, where there are any (the task's id always answered).
    func only(_ fields: [String]) -> JSON {
        fields.isEmpty ? self : selecting(fields + ["id"])
    }
}

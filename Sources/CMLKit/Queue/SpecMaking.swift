/// Making specs: from a recorded run (`cml-run clone`) or from the current directory (`cml-run spec`,
/// `cml-queue add -- CMD`).
extension RunSpec {
    /// The spec that runs `run` again with `settings` applied to its command line (see
    /// `ParamParser.override`). A run that came from a queue starts from its own spec. Warnings say
    /// what the spec cannot reproduce.
    public static func clone(_ run: Run, queuedSpec: RunSpec?, settings: [(key: String, value: String)],
                             warn: (String) -> Void) throws(CMLError) -> RunSpec {
        var spec: RunSpec
        if let queuedSpec {
            spec = queuedSpec
        } else {
            let code = run.code
            var repository: String?
            var directory = ""
            if code["in_repository"] == .bool(true), let commit = code["commit"]?.stringValue {
                let root = code["root"]?.stringValue
                let remote = code["remote_url"]?.stringValue
                // A commit that is not pushed is only in the local repository.
                repository = code["pushed"] == .bool(true) ? (remote ?? root) : (root ?? remote)
                if let root, run.cwd.hasPrefix(root + "/") { directory = String(run.cwd.dropFirst(root.count + 1)) }
                if let note = code["patch_note"]?.stringValue { warn("the captured code is incomplete: \(note)") }
                spec = RunSpec(repository: repository, commit: commit, patchBlob: code["patch_blob"]?.stringValue,
                               directory: directory, command: run.command)
                if case .array(let entries)? = code["left_out"] { spec.leftOut = entries.compactMap(LeftOutFile.init(json:)) }
            } else {
                if code["in_repository"] == .bool(true) {
                    throw CMLError("run \(RunID.short(run.id)) ran in a repository without commits: its code cannot be reproduced")
                }
                warn("run \(RunID.short(run.id)) was not in a git repository: the clone starts in an empty directory")
                spec = RunSpec(repository: nil, commit: nil, patchBlob: nil, command: run.command)
            }
            spec.params = run.params.filter { $0.source == "option" }
            // The exact versions it read, by id: a later version of the dataset is another input.
            spec.datasets = run.datasets.map { "\($0.dataset)@\($0.id)" }
        }
        // A clone of a sweep's trial is not one of its trials, nor a clone of a step one of its pipeline's.
        spec.params.removeAll { membershipParameters.contains($0.key) }
        spec.name = run.name
        spec.project = run.project
        spec.tags = run.tags
        spec.clonedFrom = run.id
        try spec.apply(settings)
        spec.warnAboutSecrets(warn)
        return spec
    }

    /// The parameters that say which sweep a run is a trial of (`SweepController`), or which pipeline's
    /// step it ran (`PipelineController`): given to the run by its controller, never copied to a clone.
    public static let membershipParameters = [SweepController.sweepParameter, SweepController.trialParameter,
                                              PipelineController.pipelineParameter, PipelineController.stepParameter,
                                              PipelineController.keyParameter]

    /// Says which environment variables the agent must have for the command's redacted values.
    func warnAboutSecrets(_ warn: (String) -> Void) {
        for key in SecretParameters.redactedKeys(command) {
            warn("the value of \(key) is secret and not recorded: the agent takes it from $\(SecretParameters.variable(for: key))")
        }
    }

    /// Sets parameters on the command line; a parameter recorded with `--param` under the same key is
    /// dropped, since the command line now says it.
    public mutating func apply(_ settings: [(key: String, value: String)]) throws(CMLError) {
        for setting in settings {
            try NameLimits.check(Param(key: setting.key, value: Param.typedValue(setting.value), source: "option"))
            guard ParamParser.isKey(setting.key) else {
                throw CMLError.usage("--set \(setting.key)=\(setting.value): '\(setting.key)' is not a parameter name")
            }
            // A value given here would be stored in the spec: secrets come from the agent's environment.
            if Secrets.isSecretName(setting.key) {
                throw CMLError.usage("--set \(setting.key): a secret parameter's value is not recorded",
                                     hint: "set \(SecretParameters.variable(for: setting.key)) in the agent's environment instead")
            }
        }
        command = ParamParser.override(command, with: settings)
        params.removeAll { param in settings.contains { $0.key == param.key } }
    }

    /// The spec of running `command` in `directory` as it is now: the code state is captured as
    /// `cml-run` captures it, and the patch stored in `store` so that agents can fetch it.
    public static func capture(_ command: [String], directory: String, store: any Store, maxPatchBytes: Int,
                               maxUntrackedBytes: Int = GitCapture.defaultMaxUntrackedBytes,
                               warn: (String) -> Void) throws(CMLError) -> RunSpec {
        guard !command.isEmpty else { throw CMLError.usage("no command given after --") }
        for problem in ParamParser.leftOut(command) { warn(problem) }
        let state: CodeState
        let patch: [UInt8]
        do {
            (state, patch) = try GitCapture.capture(directory: directory, maxPatchBytes: maxPatchBytes,
                                                    maxUntrackedBytes: maxUntrackedBytes, excluding: store.location)
        } catch {
            throw CMLError("the code state of \(directory) could not be captured: \(error.description)")
        }
        guard state.inRepository else {
            warn("\(directory) is not in a git repository: the run will start in an empty directory")
            let spec = RunSpec(repository: nil, commit: nil, patchBlob: nil, command: command)
            spec.warnAboutSecrets(warn)
            return spec
        }
        guard let commit = state.commit else {
            throw CMLError("the repository at \(state.root ?? directory) has no commit yet", hint: "commit first")
        }
        guard let root = state.root else { throw CMLError("\(directory) is in a bare repository: no work tree to reproduce") }
        if let note = state.patchNote { warn("the captured code is incomplete: \(note)") }
        let repository = state.pushed == true ? (state.remoteURL ?? root) : root
        let relative = directory == root ? "" : directory.hasPrefix(root + "/") ? String(directory.dropFirst(root.count + 1)) : ""
        var spec = RunSpec(repository: repository, commit: commit, patchBlob: patch.isEmpty ? nil : try store.putBlob(patch),
                           directory: relative, command: command)
        spec.leftOut = state.leftOut
        spec.warnAboutSecrets(warn)
        return spec
    }
}

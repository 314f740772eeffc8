import Glibc

/// Re-creates the code a spec names in a fresh directory: the repository is cloned once into a cache (a
/// bare repository per URL, fetched when it lacks the commit), the commit is checked out in a clone that
/// shares the cache's objects, and the captured patch is applied, untracked and binary files included.
///
/// Through the git command rather than libgit2: clones and fetches then use the user's git
/// configuration, credential helpers, SSH keys and proxies as `git clone` would, and the patch goes
/// through the same `git apply` it was verified against (GitCapture's tests apply it with git).
public struct CodeReproducer: Sendable {
    /// Holds one bare repository per URL (and a lock file beside each).
    public let cacheDirectory: String

    public init(cacheDirectory: String) {
        self.cacheDirectory = cacheDirectory
    }

    /// Fills `directory` (which must not exist) with the spec's code and returns the directory the
    /// command starts in. An error says why the code could not be reproduced, for the run's record.
    public func reproduce(_ spec: RunSpec, into directory: String, patch: () throws(CMLError) -> [UInt8]) throws(CMLError) -> String {
        guard let repository = spec.repository, let commit = spec.commit else {
            try FileSystem.makeDirectories(directory)
            return directory
        }
        if let path = Self.localPath(repository), access(path, F_OK) != 0 {
            throw CMLError("the repository \(repository) does not exist")
        }
        try FileSystem.makeDirectories(cacheDirectory)
        let cache = cacheDirectory + "/" + String(SHA256Hasher.hex(Array(repository.utf8)).prefix(20)) + ".git"
        try withLock(cache + ".lock") { () throws(CMLError) in
            try updateCache(cache, repository: repository, commit: commit)
        }
        // Without the template's sample hooks: copying them is a good part of a clone's time.
        let clone = try git(["clone", "--quiet", "--template=", "--shared", "--no-checkout", "--", cache, directory])
        guard clone.status == 0 else { throw CMLError("cannot clone the cached \(repository): \(clone.firstLine)") }
        let checkout = try git(["-C", directory, "checkout", "--quiet", "--detach", commit])
        guard checkout.status == 0 else { throw CMLError("cannot check out commit \(commit.prefix(12)): \(checkout.firstLine)") }
        // Users' code may read its remote: it is the repository, not our cache.
        _ = try git(["-C", directory, "remote", "set-url", "origin", repository])

        if let blob = spec.patchBlob {
            let bytes = try patch()
            let patchFile = directory + ".patch"
            try FileSystem.writeFile(patchFile, bytes)
            defer { unlink(patchFile) }
            let apply = try git(["-C", directory, "apply", "--whitespace=nowarn", patchFile])
            guard apply.status == 0 else {
                throw CMLError("the patch \(blob.prefix(12)) does not apply to commit \(commit.prefix(12)): \(apply.firstLine)")
            }
        }
        let start = spec.directory.isEmpty ? directory : directory + "/" + spec.directory
        guard FileSystem.isDirectory(start) else {
            throw CMLError("the directory \(spec.directory) does not exist at commit \(commit.prefix(12))")
        }
        return start
    }

    /// The path of a repository given as a path or a file:// URL; nil for other URLs.
    static func localPath(_ repository: String) -> String? {
        if repository.hasPrefix("file://") { return String(repository.dropFirst("file://".count)) }
        if repository.hasPrefix("/") || repository.hasPrefix("./") || repository.hasPrefix("../") { return repository }
        return nil
    }

    /// Clones the repository into the cache when it is not there, and fetches when the cache lacks the
    /// commit: its branches and tags first, then the commit itself (servers allow that for commits on no
    /// branch since git 2.5).
    private func updateCache(_ cache: String, repository: String, commit: String) throws(CMLError) {
        if !FileSystem.isDirectory(cache) {
            // Cloned beside it and renamed, so that an interrupted clone never looks like a cache.
            let partial = cache + ".partial"
            FileSystem.removeTree(partial)
            let clone = try git(["clone", "--quiet", "--bare", "--", repository, partial])
            guard clone.status == 0 else {
                FileSystem.removeTree(partial)
                throw CMLError("cannot clone \(repository): \(clone.firstLine)")
            }
            // No automatic gc: working clones borrow the cache's objects.
            _ = try git(["-C", partial, "config", "gc.auto", "0"])
            guard rename(partial, cache) == 0 else { throw FileSystem.error("cannot move the clone into place at", cache) }
        }
        if try hasCommit(cache, commit) { return }
        let fetch = try git(["-C", cache, "fetch", "--quiet", "--prune", repository,
                             "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"])
        guard fetch.status == 0 else { throw CMLError("cannot fetch from \(repository): \(fetch.firstLine)") }
        if try hasCommit(cache, commit) { return }
        _ = try git(["-C", cache, "fetch", "--quiet", repository, commit])
        guard try hasCommit(cache, commit) else { throw CMLError("commit \(commit) is not in \(repository)") }
    }

    private func hasCommit(_ cache: String, _ commit: String) throws(CMLError) -> Bool {
        try git(["-C", cache, "cat-file", "-e", commit + "^{commit}"]).status == 0
    }

    /// Runs `body` holding an exclusive lock on `path`, so that agents (and their slots) sharing a cache
    /// do not clone or fetch into it at the same time.
    private func withLock<T>(_ path: String, _ body: () throws(CMLError) -> T) throws(CMLError) -> T {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileSystem.error("cannot lock", path) }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else { throw FileSystem.error("cannot lock", path) }
        }
        return try body()
    }

    struct ToolResult {
        var status: Int32
        var output: String
        /// The first line git printed that says something (its error), for a one-line reason.
        var firstLine: String {
            let lines = output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            let message = lines.first { $0.hasPrefix("fatal:") || $0.hasPrefix("error:") } ?? lines.first
            return message ?? "git exited with status \(status)"
        }
    }

    /// Runs git with stdin from /dev/null and its output (stdout and stderr together) in a temporary
    /// file, never asking for a password on a terminal; messages in English, for the record.
    private func git(_ arguments: [String]) throws(CMLError) -> ToolResult {
        let outputPath = cacheDirectory + "/.git-output-" + RunID.make()
        defer { unlink(outputPath) }
        var environment = RunEnvironment.current().filter { !["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "LC_ALL"].contains($0.0) }
        environment += [("GIT_TERMINAL_PROMPT", "0"), ("LC_ALL", "C")]

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(ChildProcess.startWithCleanSignals(&attributes)))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO)

        var cArgs = (["git"] + arguments).map { strdup($0) } + [nil]
        var cEnv = environment.map { strdup("\($0.0)=\($0.1)") } + [nil]
        defer {
            for p in cArgs { free(p) }
            for p in cEnv { free(p) }
        }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, "git", &actions, &attributes, &cArgs, &cEnv)
        guard rc == 0 else { throw CMLError("cannot run git: \(String(cString: strerror(rc)))", hint: "install git") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let output = (try? FileSystem.readAll(outputPath)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let exited = status & 0x7F == 0
        return ToolResult(status: exited ? (status >> 8) & 0xFF : 128 + (status & 0x7F), output: output)
    }
}

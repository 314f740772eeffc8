import CGit2
import Foundation

/// A file of the work tree that is not in the captured patch, by choice: a secret file (named only), or
/// an untracked file over the size cap (named with its size and sha256, so a later run can tell whether
/// it was the same file).
public struct LeftOutFile: Codable, Sendable, Equatable {
    public enum Reason: String, Codable, Sendable {
        /// Its name says it holds keys or passwords (`Secrets.isSecretFile`).
        case secret
        /// Untracked and larger than the cap (`--max-untracked-size`).
        case size
    }

    public var path: String
    public var reason: Reason
    public var size: Int?
    public var sha256: String?

    public init(path: String, reason: Reason, size: Int? = nil, sha256: String? = nil) {
        self.path = path
        self.reason = reason
        self.size = size
        self.sha256 = sha256
    }

    /// As the record's `code.left_out` holds it (keys sorted, as JSONEncoder writes them).
    public var json: JSON {
        var members: [(String, JSON)] = [("path", .string(path)), ("reason", .string(reason.rawValue))]
        if let sha256 { members.append(("sha256", .string(sha256))) }
        if let size { members.append(("size", .int(Int64(size)))) }
        return .object(members)
    }

    /// Reads one entry of `code.left_out`; nil when it is not one.
    public init?(json: JSON) {
        guard let path = json["path"]?.stringValue, !path.isEmpty,
              let reason = json["reason"]?.stringValue.flatMap(Reason.init(rawValue:)) else { return nil }
        self.init(path: path, reason: reason, size: json["size"]?.number.map { Int($0) },
                  sha256: json["sha256"]?.stringValue)
    }

    /// For a person: `model.pt (2,097,152 bytes, sha256 3f2a9c1b2d4e)` or `.env (secret)`.
    public var summary: String {
        switch reason {
        case .secret: "\(path) (secret)"
        case .size: "\(path) (\(size.map { formatCount(Int64($0)) + " bytes" } ?? "size unknown")"
            + "\(sha256.map { ", sha256 \($0.prefix(12))" } ?? ""))"
        }
    }
}

/// The code state of the directory a command ran in, as recorded with a run.
public struct CodeState: Codable, Sendable, Equatable {
    /// false outside a repository (not an error)
    public var inRepository: Bool
    /// work tree root (no trailing slash); nil outside a repository and for bare repositories
    public var root: String?
    /// "origin"'s URL, else the first remote's, else nil
    public var remoteURL: String?
    /// short branch name; nil when HEAD is detached
    public var branch: String?
    /// full hex of HEAD; nil when the branch is unborn (no commits yet)
    public var commit: String?
    /// HEAD is contained in (equal to or an ancestor of) some remote-tracking branch; nil if no commit
    public var pushed: Bool?
    /// the work tree differs from HEAD (the patch is non-empty, or something was left out of it)
    public var dirty: Bool
    /// human note when files were left out of the patch (names them), else nil
    public var patchNote: String?
    /// paths left out of the patch because of the size cap
    public var omittedFiles: [String]
    /// files left out of the patch on purpose: secret files, untracked files over their cap
    public var leftOut: [LeftOutFile]
    /// left nil by GitCapture (the caller stores the patch and fills it)
    public var patchBlob: String?
    /// size of the patch GitCapture returned
    public var patchBytes: Int

    /// The record's `code` field: what JSONEncoder with sorted keys writes, built directly (Foundation's
    /// encoder costs cml-run a millisecond of protocol-conformance lookups at every start).
    public var json: JSON {
        var members: [(String, JSON)] = []
        if let branch { members.append(("branch", .string(branch))) }
        if let commit { members.append(("commit", .string(commit))) }
        members.append(("dirty", .bool(dirty)))
        members.append(("in_repository", .bool(inRepository)))
        members.append(("left_out", .array(leftOut.map(\.json))))
        members.append(("omitted_files", .array(omittedFiles.map(JSON.string))))
        if let patchBlob { members.append(("patch_blob", .string(patchBlob))) }
        members.append(("patch_bytes", .int(Int64(patchBytes))))
        if let patchNote { members.append(("patch_note", .string(patchNote))) }
        if let pushed { members.append(("pushed", .bool(pushed))) }
        if let remoteURL { members.append(("remote_url", .string(remoteURL))) }
        if let root { members.append(("root", .string(root))) }
        return .object(members)
    }

    enum CodingKeys: String, CodingKey {
        case inRepository = "in_repository", root, remoteURL = "remote_url", branch, commit, pushed, dirty
        case patchNote = "patch_note", omittedFiles = "omitted_files", patchBlob = "patch_blob"
        case patchBytes = "patch_bytes", leftOut = "left_out"
    }

    public init(
        inRepository: Bool, root: String? = nil, remoteURL: String? = nil, branch: String? = nil,
        commit: String? = nil, pushed: Bool? = nil, dirty: Bool = false, patchNote: String? = nil,
        omittedFiles: [String] = [], leftOut: [LeftOutFile] = [], patchBlob: String? = nil, patchBytes: Int = 0
    ) {
        self.inRepository = inRepository
        self.root = root
        self.remoteURL = remoteURL
        self.branch = branch
        self.commit = commit
        self.pushed = pushed
        self.dirty = dirty
        self.patchNote = patchNote
        self.omittedFiles = omittedFiles
        self.leftOut = leftOut
        self.patchBlob = patchBlob
        self.patchBytes = patchBytes
    }
}

public struct GitCaptureError: Error, CustomStringConvertible {
    public let description: String
}

/// Captures the state of a git work tree through libgit2: where HEAD is, and a
/// git-format patch that, applied with `git apply` to a clean checkout of
/// `commit`, reproduces the work tree (tracked changes, untracked non-ignored
/// files, binaries, modes, symlinks). Files matching `.cmlignore` are ignored like git's ignored files;
/// secret files and large untracked files are left out and named (`LeftOutFile`).
public enum GitCapture {
    /// Untracked files over this are recorded by name, size and sha256 unless asked otherwise: model
    /// checkpoints and outputs are not code.
    public static let defaultMaxUntrackedBytes = 1 << 20

    /// libgit2 must be initialised once per process; a static let is initialised
    /// exactly once, thread-safely. We never call git_libgit2_shutdown.
    static let libgit2Ready: Int32 = git_libgit2_init()

    /// Starts initialising libgit2 on its own thread when `directory` may be inside a repository, so that
    /// its cost (milliseconds: the TLS backend parses the CA bundle) overlaps whatever comes next.
    public static func warmUp(directory: String) {
        guard mayBeInsideRepository(directory) else { return }
        Thread.detachNewThread { _ = libgit2Ready }
    }

    /// Discovers the repository containing `directory` (walking up, like git), and returns its state and the
    /// patch. Nothing under `excluding` (the store, when it lies in the work tree) goes into the patch: its
    /// database changes while it is read, and it is no part of the code. An untracked file over
    /// `maxUntrackedBytes` is named with its size and sha256 instead.
    public static func capture(
        directory: String, maxPatchBytes: Int = 10 << 20, maxUntrackedBytes: Int = defaultMaxUntrackedBytes,
        excluding: String? = nil
    ) throws(GitCaptureError) -> (state: CodeState, patch: [UInt8]) {
        // Initialising libgit2 costs milliseconds (its TLS backend reads the CA bundle): skip it where no
        // repository can be found.
        if FileManager.default.fileExists(atPath: directory) && !mayBeInsideRepository(directory) {
            return (CodeState(inRepository: false), [])
        }
        guard libgit2Ready >= 0 else {
            throw GitCaptureError(description: "libgit2 initialisation failed: \(lastErrorMessage())")
        }

        guard FileManager.default.fileExists(atPath: directory) else {
            throw GitCaptureError(description: "git: cannot capture the code state of \(directory): no such directory")
        }

        // Open (discover) the repository.
        var repoPtr: OpaquePointer?
        let openRC = git_repository_open_ext(&repoPtr, directory, 0, nil)
        if openRC == GIT_ENOTFOUND.rawValue {
            git_error_clear()
            return (CodeState(inRepository: false), [])
        }
        try check(openRC, "opening the repository containing \(directory)")
        guard let repo = repoPtr else { throw GitCaptureError(description: "opening the repository containing \(directory) returned no repository") }
        defer { git_repository_free(repo) }

        var state = CodeState(inRepository: true)
        state.remoteURL = try remoteURL(repo)

        // HEAD: branch, commit.
        let unborn = git_repository_head_unborn(repo)
        if unborn < 0 { try check(unborn, "checking whether HEAD is unborn") }
        var headOID: git_oid?
        if unborn == 1 {
            state.branch = try unbornBranchName(repo)
        } else {
            let detached = git_repository_head_detached(repo)
            if detached < 0 { try check(detached, "checking whether HEAD is detached") }
            var headRef: OpaquePointer?
            try check(git_repository_head(&headRef, repo), "resolving HEAD")
            defer { git_reference_free(headRef) }
            if detached == 0, git_reference_is_branch(headRef) == 1 {
                var name: UnsafePointer<CChar>?
                try check(git_branch_name(&name, headRef), "reading the branch name")
                state.branch = name.map { String(cString: $0) }
            }
            var commitObject: OpaquePointer?
            try check(git_reference_peel(&commitObject, headRef, GIT_OBJECT_COMMIT), "resolving HEAD to a commit")
            defer { git_object_free(commitObject) }
            guard let oid = git_object_id(commitObject)?.pointee else {
                throw GitCaptureError(description: "git: resolving HEAD to a commit gave no id")
            }
            headOID = oid
            state.commit = hex(oid)
            state.pushed = try isPushed(repo, head: oid)
        }

        // Bare repositories have no work tree: nothing to diff.
        if git_repository_is_bare(repo) == 1 {
            return (state, [])
        }
        if let workdir = git_repository_workdir(repo) {
            var root = String(cString: workdir)
            while root.count > 1, root.hasSuffix("/") { root.removeLast() }
            state.root = root
        }

        var excludedPrefix: String?
        if let excluding, let root = state.root, excluding.hasPrefix(root + "/") {
            excludedPrefix = String(excluding.dropFirst(root.count + 1)) + "/"
        }
        if let root = state.root { try addCmlignoreRules(repo, root: root) }
        let result = try buildPatch(repo, head: headOID, root: state.root ?? "", maxPatchBytes: maxPatchBytes,
                                    maxUntrackedBytes: maxUntrackedBytes, excludedPrefix: excludedPrefix)
        state.omittedFiles = result.omitted
        state.leftOut = result.leftOut
        state.patchBytes = result.patch.count
        state.dirty = !result.patch.isEmpty || !result.omitted.isEmpty || !result.submodules.isEmpty
            || !result.unrepresentable.isEmpty || !result.leftOut.isEmpty
        state.patchNote = note(result, cap: maxPatchBytes, untrackedCap: maxUntrackedBytes)
        return (state, result.patch)
    }

    // MARK: - Patch

    private struct PatchResult {
        var patch: [UInt8] = []
        var omitted: [String] = []
        var leftOut: [LeftOutFile] = []
        var submodules: [String] = []
        var unrepresentable: [String] = []
    }

    /// False only when no folder from `directory` up to `/` holds a `.git` entry or looks like a git
    /// directory itself (HEAD and objects/): then libgit2's discovery would find nothing either.
    static func mayBeInsideRepository(_ directory: String) -> Bool {
        var path = directory
        while true {
            if access(path + "/.git", F_OK) == 0 { return true }
            if access(path + "/HEAD", F_OK) == 0 && access(path + "/objects", F_OK) == 0 { return true }
            guard let slash = path.lastIndex(of: "/"), path != "/" else { return false }
            path = slash == path.startIndex ? "/" : String(path[..<slash])
        }
    }

    private static let binaryPatchMarker = Array("\nGIT binary patch\n".utf8)
    private static let binaryPlaceholderStart = Array("\nBinary files ".utf8)
    private static let binaryPlaceholderEnd = Array(" differ\n".utf8)

    /// libgit2 quirk: for a binary file whose content did not change (a pure rename, or a
    /// mode-only change) it prints "Binary files a/x and b/y differ" instead of no body.
    /// `git apply` rejects that line ("cannot apply binary patch ... without full index
    /// line"), so drop it when both sides have the same blob id. Returns false when a binary
    /// delta with changed content came out without its data (cannot be applied).
    private static func fixBinaryPlaceholder(_ bytes: inout [UInt8], patch: OpaquePointer) -> Bool {
        guard let flags = git_patch_get_delta(patch)?.pointee.flags,
              flags & GIT_DIFF_FLAG_BINARY.rawValue != 0,
              let start = range(of: binaryPlaceholderStart, in: bytes),
              range(of: binaryPatchMarker, in: bytes) == nil,
              let end = range(of: binaryPlaceholderEnd, in: bytes, from: start.upperBound)
        else { return true }
        guard var delta = git_patch_get_delta(patch)?.pointee,
              git_oid_equal(&delta.old_file.id, &delta.new_file.id) == 1
        else { return false }
        bytes.removeSubrange((start.lowerBound + 1)..<end.upperBound)
        return true
    }

    private static func range(of needle: [UInt8], in haystack: [UInt8], from: Int = 0) -> Range<Int>? {
        guard !needle.isEmpty, haystack.count >= needle.count, from <= haystack.count - needle.count else { return nil }
        var i = from
        let last = haystack.count - needle.count
        while i <= last {
            if haystack[i] == needle[0], haystack[i..<(i + needle.count)].elementsEqual(needle) { return i..<(i + needle.count) }
            i += 1
        }
        return nil
    }

    /// The rules of `.cmlignore` in the work tree's root, in gitignore syntax, added to this repository
    /// object's ignore rules: in memory only, nothing in `.git` changes.
    private static func addCmlignoreRules(_ repo: OpaquePointer, root: String) throws(GitCaptureError) {
        let path = root + "/.cmlignore"
        guard access(path, F_OK) == 0 else { return }
        let rules: [UInt8]
        do { rules = try FileSystem.readAll(path) } catch {
            throw GitCaptureError(description: "cannot read \(path): \(error.message)")
        }
        try check(git_ignore_add_rule(repo, String(decoding: rules, as: UTF8.self)), "adding the rules of \(path)")
    }

    /// The sha256 and size of the file at `path` as it reads now; nil when it cannot be read.
    private static func digest(ofFile path: String) -> (sha256: String, size: Int)? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var hasher = SHA256Hasher()
        var size = 0
        do {
            try FileSystem.copyChunks(from: fd, path: path) { chunk in
                hasher.update(chunk)
                size += chunk.count
            }
        } catch {
            return nil
        }
        return (hasher.finalizeHex(), size)
    }

    private static func buildPatch(
        _ repo: OpaquePointer, head: git_oid?, root: String, maxPatchBytes: Int, maxUntrackedBytes: Int,
        excludedPrefix: String?
    ) throws(GitCaptureError) -> PatchResult {
        // HEAD's tree (nil for an unborn branch: diff against the empty tree).
        var tree: OpaquePointer?
        defer { if let tree { git_tree_free(tree) } }
        if var oid = head {
            var commit: OpaquePointer?
            try check(git_commit_lookup(&commit, repo, &oid), "looking up the HEAD commit")
            defer { git_commit_free(commit) }
            try check(git_commit_tree(&tree, commit), "reading the HEAD tree")
        }

        var opts = git_diff_options()
        try check(git_diff_options_init(&opts, UInt32(GIT_DIFF_OPTIONS_VERSION)), "initialising diff options")
        opts.flags = GIT_DIFF_INCLUDE_UNTRACKED.rawValue
            | GIT_DIFF_RECURSE_UNTRACKED_DIRS.rawValue
            | GIT_DIFF_SHOW_UNTRACKED_CONTENT.rawValue
            | GIT_DIFF_SHOW_BINARY.rawValue
        // `git apply` refuses binary patches without full (40-hex) index lines.
        opts.id_abbrev = UInt16(GIT_OID_HEXSZ)

        var diffPtr: OpaquePointer?
        try check(git_diff_tree_to_workdir_with_index(&diffPtr, repo, tree, &opts), "diffing HEAD against the work tree")
        guard let diff = diffPtr else { throw GitCaptureError(description: "diffing HEAD against the work tree returned no diff") }
        defer { git_diff_free(diff) }

        // Rename detection, also pairing deletions with untracked files (plain `mv`).
        var findOpts = git_diff_find_options()
        try check(git_diff_find_options_init(&findOpts, UInt32(GIT_DIFF_FIND_OPTIONS_VERSION)), "initialising rename options")
        findOpts.flags = GIT_DIFF_FIND_RENAMES.rawValue | GIT_DIFF_FIND_FOR_UNTRACKED.rawValue
        try check(git_diff_find_similar(diff, &findOpts), "detecting renames")

        var result = PatchResult()
        var capReached = false
        let count = git_diff_num_deltas(diff)
        for index in 0..<count {
            guard let delta = git_diff_get_delta(diff, index)?.pointee else { continue }
            let oldPath = delta.old_file.path.map { String(cString: $0) }
            let newPath = delta.new_file.path.map { String(cString: $0) }
            let path = (delta.status == GIT_DELTA_DELETED ? oldPath : newPath) ?? oldPath ?? "?"
            if let excludedPrefix, (path + "/").hasPrefix(excludedPrefix) { continue }

            switch delta.status {
            case GIT_DELTA_UNMODIFIED, GIT_DELTA_IGNORED:
                continue
            case GIT_DELTA_UNREADABLE:
                result.unrepresentable.append(path)
                continue
            default:
                break
            }
            // Submodules (gitlinks) and untracked nested repositories (reported as a
            // directory) cannot be expressed in a patch: leave them out and name them.
            let commitMode = UInt16(GIT_FILEMODE_COMMIT.rawValue)
            let treeMode = UInt16(GIT_FILEMODE_TREE.rawValue)
            if delta.old_file.mode == commitMode || delta.new_file.mode == commitMode
                || delta.new_file.mode == treeMode {
                var name = path
                while name.hasSuffix("/") { name.removeLast() }
                if !result.submodules.contains(name) { result.submodules.append(name) }
                continue
            }
            // Before any cap: a secret file stays out of the patch whatever its size.
            if [oldPath, newPath].contains(where: { $0.map(Secrets.isSecretFile) == true }) {
                result.leftOut.append(LeftOutFile(path: path, reason: .secret))
                continue
            }
            if delta.status == GIT_DELTA_UNTRACKED, delta.new_file.size > UInt64(max(0, maxUntrackedBytes)) {
                let digest = digest(ofFile: root + "/" + path)
                result.leftOut.append(LeftOutFile(path: path, reason: .size, size: digest?.size ?? Int(delta.new_file.size),
                                                  sha256: digest?.sha256))
                continue
            }
            if capReached {
                result.omitted.append(path)
                continue
            }
            // A file whose new content alone exceeds the cap is left out unread.
            if delta.new_file.size > UInt64(max(0, maxPatchBytes)) {
                result.omitted.append(path)
                continue
            }

            var patch: OpaquePointer?
            try check(git_patch_from_diff(&patch, diff, index), "generating the patch for \(path)")
            guard let patch else { continue }  // nothing to print for this delta
            defer { git_patch_free(patch) }
            var buf = git_buf()
            try check(git_patch_to_buf(&buf, patch), "formatting the patch for \(path)")
            defer { git_buf_dispose(&buf) }
            guard let ptr = buf.ptr, buf.size > 0 else { continue }
            var bytes = ptr.withMemoryRebound(to: UInt8.self, capacity: buf.size) {
                [UInt8](UnsafeBufferPointer(start: $0, count: buf.size))
            }
            if !fixBinaryPlaceholder(&bytes, patch: patch) {
                result.unrepresentable.append(path)
                continue
            }

            if result.patch.count + bytes.count > maxPatchBytes {
                capReached = true
                result.omitted.append(path)
                continue
            }
            result.patch.append(contentsOf: bytes)
        }
        return result
    }

    private static func note(_ result: PatchResult, cap: Int, untrackedCap: Int) -> String? {
        let omitted = result.omitted, submodules = result.submodules
        var parts: [String] = []
        let secrets = result.leftOut.filter { $0.reason == .secret }.map(\.path)
        if !secrets.isEmpty {
            let files = secrets.count == 1 ? "1 secret file" : "\(secrets.count) secret files"
            parts.append("\(files) left out of the patch: \(secrets.joined(separator: ", "))")
        }
        let large = result.leftOut.filter { $0.reason == .size }.map(\.path)
        if !large.isEmpty {
            let files = large.count == 1 ? "1 untracked file" : "\(large.count) untracked files"
            parts.append("\(files) over \(formatSize(untrackedCap)) recorded by name, size and sha256 only: \(large.joined(separator: ", "))")
        }
        if !omitted.isEmpty {
            let files = omitted.count == 1 ? "1 file" : "\(omitted.count) files"
            parts.append("\(files) left out of the patch (over the \(formatSize(cap)) cap): \(omitted.joined(separator: ", "))")
        }
        if !submodules.isEmpty {
            let what = submodules.count == 1 ? "1 submodule or nested repository" : "\(submodules.count) submodules or nested repositories"
            parts.append("\(what) left out of the patch: \(submodules.joined(separator: ", "))")
        }
        if !result.unrepresentable.isEmpty {
            let files = result.unrepresentable.count == 1 ? "1 file" : "\(result.unrepresentable.count) files"
            parts.append("\(files) left out of the patch (unreadable, or binary data unavailable): \(result.unrepresentable.joined(separator: ", "))")
        }
        return parts.isEmpty ? nil : parts.joined(separator: "; ")
    }

    private static func formatSize(_ bytes: Int) -> String {
        if bytes > 0, bytes % (1 << 30) == 0 { return "\(bytes >> 30) GiB" }
        if bytes > 0, bytes % (1 << 20) == 0 { return "\(bytes >> 20) MiB" }
        if bytes > 0, bytes % (1 << 10) == 0 { return "\(bytes >> 10) KiB" }
        return bytes == 1 ? "1 byte" : "\(bytes) bytes"
    }

    // MARK: - HEAD, remotes

    /// The branch an unborn HEAD points at, read from HEAD's symbolic target.
    private static func unbornBranchName(_ repo: OpaquePointer) throws(GitCaptureError) -> String? {
        var ref: OpaquePointer?
        try check(git_reference_lookup(&ref, repo, "HEAD"), "reading HEAD")
        defer { git_reference_free(ref) }
        guard git_reference_type(ref) == GIT_REFERENCE_SYMBOLIC, let target = git_reference_symbolic_target(ref) else {
            return nil
        }
        let name = String(cString: target)
        let prefix = "refs/heads/"
        return name.hasPrefix(prefix) ? String(name.dropFirst(prefix.count)) : name
    }

    private static func remoteURL(_ repo: OpaquePointer) throws(GitCaptureError) -> String? {
        if let url = try url(ofRemote: "origin", repo) { return url }
        var names = git_strarray()
        try check(git_remote_list(&names, repo), "listing remotes")
        defer { git_strarray_dispose(&names) }
        for i in 0..<names.count {
            guard let name = names.strings[i] else { continue }
            if let url = try url(ofRemote: String(cString: name), repo) { return url }
        }
        return nil
    }

    private static func url(ofRemote name: String, _ repo: OpaquePointer) throws(GitCaptureError) -> String? {
        var remote: OpaquePointer?
        let rc = git_remote_lookup(&remote, repo, name)
        if rc == GIT_ENOTFOUND.rawValue || rc == GIT_EINVALIDSPEC.rawValue {
            git_error_clear()
            return nil
        }
        try check(rc, "looking up remote \(name)")
        defer { git_remote_free(remote) }
        return git_remote_url(remote).map { String(cString: $0) }
    }

    /// HEAD is equal to, or an ancestor of, the tip of some remote-tracking branch.
    private static func isPushed(_ repo: OpaquePointer, head: git_oid) throws(GitCaptureError) -> Bool {
        var head = head
        var iter: OpaquePointer?
        try check(git_branch_iterator_new(&iter, repo, GIT_BRANCH_REMOTE), "listing remote-tracking branches")
        defer { git_branch_iterator_free(iter) }
        while true {
            var ref: OpaquePointer?
            var type = GIT_BRANCH_REMOTE
            let rc = git_branch_next(&ref, &type, iter)
            if rc == GIT_ITEROVER.rawValue { git_error_clear(); return false }
            try check(rc, "listing remote-tracking branches")
            defer { git_reference_free(ref) }
            // refs/remotes/origin/HEAD is symbolic; resolve it (skip it if dangling).
            var resolved: OpaquePointer?
            guard git_reference_resolve(&resolved, ref) == 0, let resolved else {
                git_error_clear()
                continue
            }
            defer { git_reference_free(resolved) }
            guard var tip = git_reference_target(resolved)?.pointee else { continue }
            if git_oid_equal(&tip, &head) == 1 { return true }
            let rc2 = git_graph_descendant_of(repo, &tip, &head)
            if rc2 == 1 { return true }
            if rc2 < 0 { git_error_clear() }  // e.g. a tip whose objects are missing: not containing HEAD
        }
    }

    // MARK: - Errors, helpers

    private static func hex(_ oid: git_oid) -> String {
        var oid = oid
        var chars = [UInt8](repeating: 0, count: Int(GIT_OID_HEXSZ))
        chars.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) { _ = git_oid_fmt($0, &oid) }
        }
        return String(decoding: chars, as: UTF8.self)
    }

    private static func lastErrorMessage() -> String {
        guard let err = git_error_last(), let message = err.pointee.message else { return "unknown libgit2 error" }
        return String(cString: message)
    }

    private static func check(_ rc: Int32, _ what: @autoclosure () -> String) throws(GitCaptureError) {
        guard rc < 0 else { return }
        var klass: Int32 = 0
        var message = "unknown error"
        if let err = git_error_last() {
            klass = err.pointee.klass
            if let m = err.pointee.message { message = String(cString: m) }
        }
        git_error_clear()
        throw GitCaptureError(description: "git: \(what()) failed: \(message) (libgit2 error \(rc), class \(klass))")
    }
}

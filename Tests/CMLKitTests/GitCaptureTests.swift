import Foundation
import Testing

@testable import CMLKit

// MARK: - Helpers (file-private, prefixed `git` so they don't collide with other test files)

private struct GitTestFailure: Error, CustomStringConvertible {
    let description: String
}

private struct GitRunResult {
    let status: Int32
    let stdout: Data
    let stderr: String
    var out: String { String(decoding: stdout, as: UTF8.self) }
}

/// One entry of a work tree snapshot.
private enum GitTreeEntry: Equatable, CustomStringConvertible {
    case file(bytes: Data, executable: Bool)
    case symlink(target: String)

    var description: String {
        switch self {
        case .file(let bytes, let executable): return "file(\(bytes.count) bytes\(executable ? ", +x" : ""))"
        case .symlink(let target): return "symlink(-> \(target))"
        }
    }
}

/// A temporary git repository built with the `git` CLI.
private final class GitTestRepo {
    let base: URL  // temporary parent folder (removed by `cleanup`)
    let root: URL  // the repository's work tree

    init(bare: Bool = false, initialCommit: Bool = true) throws {
        base = try gitTempDir()
        root = base.appendingPathComponent("repo")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        try git(bare ? ["init", "-q", "--bare", "-b", "main"] : ["init", "-q", "-b", "main"])
        try git(["config", "core.autocrlf", "false"])
        if initialCommit && !bare {
            try write("README.md", "# test repo\n")
            try commitAll("initial")
        }
    }

    func cleanup() { try? FileManager.default.removeItem(at: base) }

    func url(_ path: String) -> URL { root.appendingPathComponent(path) }

    @discardableResult
    func git(_ args: [String], allowFailure: Bool = false) throws -> GitRunResult {
        try gitRun(args, in: root, allowFailure: allowFailure)
    }

    func write(_ path: String, _ text: String, executable: Bool = false) throws {
        try write(path, Data(text.utf8), executable: executable)
    }

    func write(_ path: String, _ data: Data, executable: Bool = false) throws {
        let u = url(path)
        try FileManager.default.createDirectory(at: u.deletingLastPathComponent(), withIntermediateDirectories: true)
        try data.write(to: u)
        try FileManager.default.setAttributes([.posixPermissions: executable ? 0o755 : 0o644], ofItemAtPath: u.path)
    }

    func chmod(_ path: String, _ mode: Int) throws {
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: url(path).path)
    }

    func symlink(_ path: String, to target: String) throws {
        let u = url(path)
        try FileManager.default.createDirectory(at: u.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: u.path, withDestinationPath: target)
    }

    func remove(_ path: String) throws { try FileManager.default.removeItem(at: url(path)) }

    func move(_ from: String, _ to: String) throws {
        let dst = url(to)
        try FileManager.default.createDirectory(at: dst.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.moveItem(at: url(from), to: dst)
    }

    func commitAll(_ message: String) throws {
        try git(["add", "-A"])
        try git(["commit", "-q", "--allow-empty", "-m", message])
    }

    func head() throws -> String {
        try git(["rev-parse", "HEAD"]).out.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

private func gitTempDir() throws -> URL {
    let u = FileManager.default.temporaryDirectory.appendingPathComponent("gitcap-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
    // Resolve symlinks (e.g. /tmp -> /private/tmp) so paths compare with libgit2's.
    return URL(fileURLWithPath: u.resolvingSymlinksInPath().path)
}

private let gitEnvironment: [String: String] = {
    var env = ProcessInfo.processInfo.environment
    env["GIT_AUTHOR_NAME"] = "CML Test"
    env["GIT_AUTHOR_EMAIL"] = "cml-test@example.com"
    env["GIT_COMMITTER_NAME"] = "CML Test"
    env["GIT_COMMITTER_EMAIL"] = "cml-test@example.com"
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_CONFIG_GLOBAL"] = "/dev/null"
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["LC_ALL"] = "C"
    env.removeValue(forKey: "GIT_DIR")
    env.removeValue(forKey: "GIT_WORK_TREE")
    env.removeValue(forKey: "GIT_INDEX_FILE")
    return env
}()

@discardableResult
private func gitRun(_ args: [String], in dir: URL, allowFailure: Bool = false) throws -> GitRunResult {
    let tmp = try gitTempDir()
    defer { try? FileManager.default.removeItem(at: tmp) }
    let outURL = tmp.appendingPathComponent("out")
    let errURL = tmp.appendingPathComponent("err")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let outHandle = try FileHandle(forWritingTo: outURL)
    let errHandle = try FileHandle(forWritingTo: errURL)

    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["git", "-c", "protocol.file.allow=always"] + args
    process.currentDirectoryURL = dir
    process.environment = gitEnvironment
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = outHandle
    process.standardError = errHandle
    try process.run()
    process.waitUntilExit()
    try outHandle.close()
    try errHandle.close()

    let result = GitRunResult(
        status: process.terminationStatus,
        stdout: try Data(contentsOf: outURL),
        stderr: String(decoding: try Data(contentsOf: errURL), as: UTF8.self))
    if result.status != 0 && !allowFailure {
        throw GitTestFailure(description: "git \(args.joined(separator: " ")) failed (\(result.status)) in \(dir.path): \(result.stderr)")
    }
    return result
}

/// Snapshot of a work tree: every file and symlink (not directories), keyed by relative path,
/// skipping `.git` and any path in `excluding` (or under an excluded directory).
private func gitSnapshot(_ root: URL, excluding: Set<String> = []) throws -> [String: GitTreeEntry] {
    var result: [String: GitTreeEntry] = [:]
    let fm = FileManager.default
    func walk(_ rel: String) throws {
        let dir = rel.isEmpty ? root.path : root.path + "/" + rel
        for name in try fm.contentsOfDirectory(atPath: dir) {
            let path = rel.isEmpty ? name : rel + "/" + name
            if path == ".git" || excluding.contains(path) { continue }
            let full = root.path + "/" + path
            let attrs = try fm.attributesOfItem(atPath: full)  // lstat: does not follow symlinks
            let type = attrs[.type] as? FileAttributeType
            if type == .typeSymbolicLink {
                result[path] = .symlink(target: try fm.destinationOfSymbolicLink(atPath: full))
            } else if type == .typeDirectory {
                try walk(path)
            } else {
                let perms = (attrs[.posixPermissions] as? NSNumber)?.intValue ?? 0
                let data = try Data(contentsOf: URL(fileURLWithPath: full))
                result[path] = .file(bytes: data, executable: perms & 0o100 != 0)
            }
        }
    }
    try walk("")
    return result
}

/// Paths in the work tree that git ignores (files, and whole ignored directories).
private func gitIgnoredPaths(_ root: URL) throws -> Set<String> {
    let out = try gitRun(["ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory"], in: root).stdout
    var set = Set<String>()
    for part in out.split(separator: 0) {
        var path = String(decoding: part, as: UTF8.self)
        while path.hasSuffix("/") { path.removeLast() }
        if !path.isEmpty { set.insert(path) }
    }
    return set
}

/// Rebuilds the work tree from `commit` + `patch` in a fresh clone (or a fresh `git init` for an
/// unborn branch), applies the patch with plain `git apply`, and returns both snapshots.
private func gitRoundTrip(
    _ repo: GitTestRepo, state: CodeState, patch: [UInt8], excluding: Set<String> = []
) throws -> (original: [String: GitTreeEntry], rebuilt: [String: GitTreeEntry], cloneBase: URL) {
    let cloneBase = try gitTempDir()
    let clone = cloneBase.appendingPathComponent("clone")
    do {
        if let commit = state.commit {
            try gitRun(["clone", "-q", "--no-checkout", repo.root.path, clone.path], in: cloneBase)
            try gitRun(["config", "core.autocrlf", "false"], in: clone)
            try gitRun(["checkout", "-q", "--detach", commit], in: clone)
        } else {
            try FileManager.default.createDirectory(at: clone, withIntermediateDirectories: true)
            try gitRun(["init", "-q", "-b", "main"], in: clone)
            try gitRun(["config", "core.autocrlf", "false"], in: clone)
        }
        if !patch.isEmpty {
            let patchFile = cloneBase.appendingPathComponent("capture.patch")
            try Data(patch).write(to: patchFile)
            let applied = try gitRun(["apply", patchFile.path], in: clone, allowFailure: true)
            if applied.status != 0 {
                throw GitTestFailure(description: "git apply failed: \(applied.stderr)\npatch:\n\(String(decoding: patch.prefix(8000), as: UTF8.self))")
            }
        }
        let ignored = try gitIgnoredPaths(repo.root)
        let original = try gitSnapshot(repo.root, excluding: ignored.union(excluding))
        let rebuilt = try gitSnapshot(clone, excluding: excluding)
        return (original, rebuilt, cloneBase)
    } catch {
        try? FileManager.default.removeItem(at: cloneBase)
        throw error
    }
}

/// Captures `repo`, checks the patch round-trips exactly, and returns the capture.
@discardableResult
private func gitCaptureAndVerify(
    _ repo: GitTestRepo, maxPatchBytes: Int = 10 << 20, excluding: Set<String> = [],
    sourceLocation: SourceLocation = #_sourceLocation
) throws -> (state: CodeState, patch: [UInt8], text: String) {
    let (state, patch) = try GitCapture.capture(directory: repo.root.path, maxPatchBytes: maxPatchBytes)
    #expect(state.inRepository, sourceLocation: sourceLocation)
    #expect(state.root == repo.root.path, sourceLocation: sourceLocation)
    #expect(state.patchBytes == patch.count, sourceLocation: sourceLocation)
    #expect(state.patchBlob == nil, sourceLocation: sourceLocation)
    let trip = try gitRoundTrip(repo, state: state, patch: patch, excluding: excluding)
    defer { try? FileManager.default.removeItem(at: trip.cloneBase) }
    gitExpectSameTree(trip.original, trip.rebuilt, sourceLocation: sourceLocation)
    return (state, patch, String(decoding: patch, as: UTF8.self))
}

private func gitExpectSameTree(
    _ original: [String: GitTreeEntry], _ rebuilt: [String: GitTreeEntry],
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(Set(original.keys) == Set(rebuilt.keys), "paths differ", sourceLocation: sourceLocation)
    for (path, entry) in original.sorted(by: { $0.key < $1.key }) {
        guard let other = rebuilt[path] else { continue }
        #expect(entry == other, "\(path): original \(entry) vs rebuilt \(other)", sourceLocation: sourceLocation)
    }
    #expect(!original.isEmpty, "snapshot is empty", sourceLocation: sourceLocation)
}

/// Deterministic pseudo-random bytes (with NULs, so git treats them as binary).
private func gitBinary(_ count: Int, seed: UInt64) -> Data {
    var x = seed &* 6364136223846793005 &+ 1442695040888963407
    var bytes = [UInt8](repeating: 0, count: count)
    for i in 0..<count {
        x = x &* 6364136223846793005 &+ 1442695040888963407
        bytes[i] = i % 7 == 0 ? 0 : UInt8(truncatingIfNeeded: x >> 33)
    }
    return Data(bytes)
}

// MARK: - Tests

@Suite("GitCapture")
struct GitCaptureTests {
    @Test func outsideRepositoryIsNotAnError() throws {
        let dir = try gitTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (state, patch) = try GitCapture.capture(directory: dir.path)
        #expect(state.inRepository == false)
        #expect(state.root == nil && state.commit == nil && state.branch == nil && state.pushed == nil)
        #expect(state.dirty == false)
        #expect(patch.isEmpty)
        #expect(state.patchBytes == 0)
    }

    @Test func missingDirectoryIsAnError() throws {
        let dir = try gitTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(throws: GitCaptureError.self) {
            _ = try GitCapture.capture(directory: dir.appendingPathComponent("does/not/exist").path)
        }
    }

    @Test func cleanRepository() throws {
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        try repo.write(".gitignore", "*.log\n")
        try repo.commitAll("ignore logs")
        try repo.write("debug.log", "ignored\n")
        let (state, patch) = try GitCapture.capture(directory: repo.root.path)
        #expect(state.inRepository)
        #expect(state.root == repo.root.path)
        #expect(state.branch == "main")
        #expect(state.commit == (try repo.head()))
        #expect(state.pushed == false)
        #expect(state.remoteURL == nil)
        #expect(state.dirty == false)
        #expect(patch.isEmpty)
        #expect(state.patchBytes == 0)
        #expect(state.patchNote == nil)
        #expect(state.omittedFiles.isEmpty)
    }

    @Test func discoversFromSubdirectory() throws {
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        try repo.write("src/deep/a.txt", "a\n")
        try repo.commitAll("a")
        try repo.write("src/deep/a.txt", "a\nb\n")
        let (state, patch) = try GitCapture.capture(directory: repo.url("src/deep").path)
        #expect(state.root == repo.root.path)
        #expect(state.dirty)
        #expect(String(decoding: patch, as: UTF8.self).contains("+b"))
    }

    @Test func stagedUnstagedAndDeletedEdits() throws {
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        try repo.write("staged.txt", "one\ntwo\nthree\n")
        try repo.write("unstaged.txt", "alpha\nbeta\n")
        try repo.write("both.txt", "base\n")
        try repo.write("gitrm.txt", "remove me with git rm\n")
        try repo.write("plainrm.txt", "remove me with rm\n")
        try repo.write("dir/nested.txt", "nested\n")
        try repo.commitAll("base")

        try repo.write("staged.txt", "one\n2\nthree\n")
        try repo.git(["add", "staged.txt"])
        try repo.write("unstaged.txt", "alpha\nbeta\ngamma\n")
        try repo.write("both.txt", "base\nstaged line\n")
        try repo.git(["add", "both.txt"])
        try repo.write("both.txt", "base\nworktree wins\n")  // staged, then modified again
        try repo.git(["rm", "-q", "gitrm.txt"])
        try repo.remove("plainrm.txt")
        try repo.remove("dir/nested.txt")
        try repo.write("added-staged.txt", "new and staged\n")
        try repo.git(["add", "added-staged.txt"])
        try repo.write("added-then-deleted.txt", "gone\n")
        try repo.git(["add", "added-then-deleted.txt"])
        try repo.remove("added-then-deleted.txt")

        let (state, _, text) = try gitCaptureAndVerify(repo)
        #expect(state.dirty)
        #expect(state.patchNote == nil)
        #expect(text.contains("worktree wins"))
        #expect(!text.contains("staged line"))
        #expect(text.contains("deleted file mode 100644"))
        #expect(!text.contains("added-then-deleted"))
    }

    @Test func renames() throws {
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        let body = (1...40).map { "line \($0) of a file long enough for rename detection" }.joined(separator: "\n") + "\n"
        try repo.write("gitmv.txt", body)
        try repo.write("plainmv.txt", body + "plain\n")
        try repo.write("edited-mv.txt", body + "edited\n")
        try repo.write("old dir/spaced name.txt", body + "spaced\n")
        try repo.commitAll("base")

        try FileManager.default.createDirectory(at: repo.url("moved"), withIntermediateDirectories: true)
        try repo.git(["mv", "gitmv.txt", "moved/gitmv.txt"])
        try repo.move("plainmv.txt", "plainmv-renamed.txt")
        try repo.git(["mv", "edited-mv.txt", "edited-renamed.txt"])
        try repo.write("edited-renamed.txt", body + "edited, and changed after the move\n")
        try repo.move("old dir/spaced name.txt", "new dir/spaced name.txt")

        let (_, _, text) = try gitCaptureAndVerify(repo)
        #expect(text.contains("rename from gitmv.txt"))
        #expect(text.contains("rename to moved/gitmv.txt"))
        #expect(text.contains("rename from plainmv.txt"))
        #expect(text.contains("rename to plainmv-renamed.txt"))
        #expect(text.contains("rename from edited-mv.txt"))
        #expect(text.contains("similarity index"))
        #expect(text.contains("spaced name.txt"))
    }

    @Test func modeChanges() throws {
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        try repo.write("script.sh", "#!/bin/sh\necho hi\n")
        try repo.write("was-exec.sh", "#!/bin/sh\necho bye\n", executable: true)
        try repo.write("exec-and-edit.sh", "#!/bin/sh\n")
        try repo.commitAll("base")

        try repo.chmod("script.sh", 0o755)
        try repo.chmod("was-exec.sh", 0o644)
        try repo.write("exec-and-edit.sh", "#!/bin/sh\necho edited\n", executable: true)
        try repo.write("new-tool.sh", "#!/bin/sh\necho new\n", executable: true)

        let (_, _, text) = try gitCaptureAndVerify(repo)
        #expect(text.contains("old mode 100644\nnew mode 100755"))
        #expect(text.contains("old mode 100755\nnew mode 100644"))
        #expect(text.contains("new file mode 100755"))
    }

    @Test func untrackedAndIgnoredFiles() throws {
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        try repo.write(".gitignore", "*.log\nbuild/\n/secret.txt\n")
        try repo.write("tracked.log", "committed despite the ignore rule\n")
        try repo.git(["add", "-f", "tracked.log"])
        try repo.commitAll("ignore")

        // Files that match an ignore rule but are tracked (committed, or staged with -f) still count.
        try repo.write("tracked.log", "committed despite the ignore rule, then edited\n")
        try repo.write("forced.log", "staged with add -f\n")
        try repo.git(["add", "-f", "forced.log"])

        try repo.write("top.txt", "top level untracked\n")
        try repo.write("newdir/a.txt", "a\n")
        try repo.write("newdir/deeper/still/b.txt", "b\n")
        try repo.write("newdir/deeper/c.log", "ignored by pattern\n")
        try repo.write("build/output.o", "ignored directory\n")
        try repo.write("secret.txt", "ignored file\n")
        try repo.write("empty.txt", "")
        try repo.write("newdir/empty-in-dir", "")
        try FileManager.default.createDirectory(at: repo.url("emptydir/inner"), withIntermediateDirectories: true)

        let (state, _, text) = try gitCaptureAndVerify(repo, excluding: ["emptydir"])
        #expect(state.dirty)
        #expect(text.contains("newdir/deeper/still/b.txt"))
        #expect(text.contains("empty.txt"))
        #expect(!text.contains("c.log"))
        #expect(text.contains("staged with add -f"))
        #expect(text.contains("then edited"))
        #expect(!text.contains("output.o"))
        #expect(!text.contains("secret.txt"))
    }

    @Test func binaryFiles() throws {
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        try repo.write("data/model.bin", gitBinary(20_000, seed: 1))
        try repo.write("data/deleted.bin", gitBinary(3_000, seed: 2))
        try repo.write("data/renamed.bin", gitBinary(5_000, seed: 3))
        try repo.write("data/chmod.bin", gitBinary(500, seed: 4))
        try repo.write("data/staged-rename.bin", gitBinary(800, seed: 5))
        try repo.write("data/rename-edit.bin", gitBinary(6_000, seed: 6))
        try repo.commitAll("binaries")

        var changed = gitBinary(20_000, seed: 1)
        changed[100] ^= 0xFF
        changed.append(gitBinary(1_000, seed: 9))
        try repo.write("data/model.bin", changed)
        try repo.write("data/new.bin", gitBinary(7_777, seed: 4))
        try repo.write("data/staged-new.bin", gitBinary(1_234, seed: 5))
        try repo.git(["add", "data/staged-new.bin"])
        try repo.write("data/all-nul.bin", Data(repeating: 0, count: 4096))
        try repo.remove("data/deleted.bin")
        try repo.move("data/renamed.bin", "data/renamed-now.bin")
        try repo.chmod("data/chmod.bin", 0o755)
        try repo.git(["mv", "data/staged-rename.bin", "data/staged-renamed.bin"])
        try repo.move("data/rename-edit.bin", "data/rename-edited.bin")
        var edited = gitBinary(6_000, seed: 6)
        edited[10] = 1
        try repo.write("data/rename-edited.bin", edited)

        let (_, patch, text) = try gitCaptureAndVerify(repo)
        #expect(text.contains("GIT binary patch"))
        // Binary patches need full index lines.
        let indexLines = text.split(separator: "\n").filter { $0.hasPrefix("index ") }
        #expect(!indexLines.isEmpty)
        for line in indexLines {
            let ids = line.dropFirst("index ".count).split(separator: " ")[0].split(separator: ".", omittingEmptySubsequences: true)
            #expect(ids.count == 2 && ids.allSatisfy { $0.count == 40 }, "short index line: \(line)")
        }
        #expect(patch.count > 0)
    }

    @Test func symlinks() throws {
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        try repo.write("target-a.txt", "a\n")
        try repo.write("target-b.txt", "b\n")
        try repo.symlink("link-changes", to: "target-a.txt")
        try repo.symlink("link-deleted", to: "target-a.txt")
        try repo.write("file-becomes-link", "I was a file\n")
        try repo.symlink("link-becomes-file", to: "target-b.txt")
        try repo.commitAll("links")

        try repo.remove("link-changes")
        try repo.symlink("link-changes", to: "target-b.txt")
        try repo.remove("link-deleted")
        try repo.symlink("new-link", to: "target-a.txt")
        try repo.symlink("sub/dangling", to: "../nowhere/at all")
        try repo.symlink("dir-link", to: "sub")
        try repo.remove("file-becomes-link")
        try repo.symlink("file-becomes-link", to: "target-a.txt")
        try repo.remove("link-becomes-file")
        try repo.write("link-becomes-file", "now a regular file\n")

        let (_, _, text) = try gitCaptureAndVerify(repo)
        #expect(text.contains("new file mode 120000"))
        #expect(text.contains("+target-b.txt"))
    }

    @Test func lineEndingsAndTrailingNewlines() throws {
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        try repo.write("crlf.txt", "one\r\ntwo\r\nthree\r\n")
        try repo.write("no-newline.txt", "no newline at end")
        try repo.write("gets-no-newline.txt", "has newline\n")
        try repo.write("gets-newline.txt", "lacks newline")
        try repo.write("mixed.txt", "lf\ncrlf\r\nlone cr\rend")
        try repo.commitAll("endings")

        try repo.write("crlf.txt", "one\r\n2\r\nthree\r\nfour\r\n")
        try repo.write("no-newline.txt", "still no newline at end, but changed")
        try repo.write("gets-no-newline.txt", "has newline")
        try repo.write("gets-newline.txt", "lacks newline\n")
        try repo.write("mixed.txt", "lf\ncrlf changed\r\nlone cr\rend\r")
        try repo.write("new-crlf.txt", "new\r\nfile\r\n")
        try repo.write("new-no-newline.txt", "x")

        let (_, _, text) = try gitCaptureAndVerify(repo)
        #expect(text.contains("\\ No newline at end of file"))
        #expect(text.contains("+2\r\n"))
    }

    @Test func unusualFileNames() throws {
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        try repo.write("with space.txt", "space\n")
        try repo.write("café/naïve.txt", "unicode\n")
        try repo.commitAll("names")

        try repo.write("with space.txt", "space edited\n")
        try repo.write("café/naïve.txt", "unicode edited\n")
        try repo.write("日本語 ファイル.txt", "japanese\n")
        try repo.write("dir with spaces/sub dir/file name.txt", "nested spaces\n")
        try repo.write("quote\"and\\backslash.txt", "quoted\n")
        try repo.write("tab\there.txt", "tab\n")
        try repo.write("empty new ü.txt", "")
        try repo.move("with space.txt", "moved with space.txt")

        try gitCaptureAndVerify(repo)
    }

    @Test func fileAndDirectorySwapsAndEmptyFiles() throws {
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        try repo.write("becomes-dir", "I am a file\n")
        try repo.write("becomes-file/inner.txt", "I am in a directory\n")
        try repo.write("empty-deleted", "")
        try repo.write("empty-kept", "")
        try repo.write("fills-up", "")
        try repo.commitAll("shapes")

        try repo.remove("becomes-dir")
        try repo.write("becomes-dir/child.txt", "now a directory\n")
        try repo.remove("becomes-file")
        try repo.write("becomes-file", "now a file\n")
        try repo.remove("empty-deleted")
        try repo.write("empty-new", "")
        try repo.write("fills-up", "no longer empty\n")
        try repo.write("empties", "")

        try gitCaptureAndVerify(repo)
    }

    @Test func sameSizeEditRightAfterCommit() throws {
        // "Racy git": an edit that keeps the size, in the same second as the index was written.
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        for round in 0..<5 {
            try repo.write("same.txt", "round \(round) aaaa\n")
            try repo.commitAll("round \(round)")
            try repo.git(["status", "--porcelain"])  // refreshes the index's stat data
            try repo.write("same.txt", "round \(round) bbbb\n")
            let (state, _, text) = try gitCaptureAndVerify(repo)
            #expect(state.dirty)
            #expect(text.contains("+round \(round) bbbb"))
        }
    }

    @Test func unbornRepository() throws {
        let repo = try GitTestRepo(initialCommit: false)
        defer { repo.cleanup() }
        try repo.write(".gitignore", "*.tmp\n")
        try repo.write("staged.txt", "staged\n")
        try repo.git(["add", "staged.txt"])
        try repo.write("staged.txt", "staged then edited\n")
        try repo.write("untracked/u.txt", "untracked\n")
        try repo.write("tool.sh", "#!/bin/sh\n", executable: true)
        try repo.write("blob.bin", gitBinary(2_000, seed: 7))
        try repo.symlink("link", to: "staged.txt")
        try repo.write("scratch.tmp", "ignored\n")

        let (state, _, text) = try gitCaptureAndVerify(repo)
        #expect(state.commit == nil)
        #expect(state.pushed == nil)
        #expect(state.branch == "main")
        #expect(state.dirty)
        #expect(!text.contains("scratch.tmp"))
    }

    @Test func unbornRepositoryWithNothing() throws {
        let repo = try GitTestRepo(initialCommit: false)
        defer { repo.cleanup() }
        let (state, patch) = try GitCapture.capture(directory: repo.root.path)
        #expect(state.inRepository)
        #expect(state.branch == "main")
        #expect(state.commit == nil)
        #expect(state.dirty == false)
        #expect(patch.isEmpty)
    }

    @Test func sizeCapLeavesOutBigFiles() throws {
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        try repo.write("a-small.txt", "small\n")
        try repo.write("tracked-big.bin", gitBinary(1_000, seed: 1))
        try repo.commitAll("base")

        let cap = 64 << 10
        try repo.write("a-small.txt", "small, edited\n")
        try repo.write("data/big.bin", gitBinary(200_000, seed: 2))      // untracked, over the cap
        try repo.write("tracked-big.bin", gitBinary(100_000, seed: 3))   // tracked, grows over the cap
        try repo.write("z-small.txt", "another small file\n")

        let omitted: Set<String> = ["data/big.bin", "tracked-big.bin"]
        let (state, patch) = try GitCapture.capture(directory: repo.root.path, maxPatchBytes: cap)
        #expect(Set(state.omittedFiles) == omitted)
        #expect(state.dirty)
        #expect(patch.count <= cap)
        let note = try #require(state.patchNote)
        #expect(note.contains("2 files left out of the patch (over the 64 KiB cap)"))
        #expect(note.contains("data/big.bin") && note.contains("tracked-big.bin"))
        let text = String(decoding: patch, as: UTF8.self)
        #expect(text.contains("small, edited"))
        #expect(text.contains("another small file"))
        #expect(!text.contains("big.bin"))

        // Everything else still round-trips.
        let trip = try gitRoundTrip(repo, state: state, patch: patch, excluding: omitted)
        defer { try? FileManager.default.removeItem(at: trip.cloneBase) }
        gitExpectSameTree(trip.original, trip.rebuilt)
    }

    @Test func sizeCapStopsOnceTotalIsReached() throws {
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        let line = String(repeating: "x", count: 99) + "\n"
        for i in 0..<6 {
            try repo.write("f\(i).txt", String(repeating: line, count: 100))  // ~10 KB each, ~10 KB of patch
        }
        let (state, patch) = try GitCapture.capture(directory: repo.root.path, maxPatchBytes: 25_000)
        #expect(patch.count <= 25_000)
        #expect(state.omittedFiles == ["f2.txt", "f3.txt", "f4.txt", "f5.txt"])
        #expect(state.patchNote?.contains("4 files left out of the patch (over the 25000 bytes cap)") == true)
        let trip = try gitRoundTrip(repo, state: state, patch: patch, excluding: Set(state.omittedFiles))
        defer { try? FileManager.default.removeItem(at: trip.cloneBase) }
        gitExpectSameTree(trip.original, trip.rebuilt)
    }

    @Test func pushedAndRemoteURL() throws {
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        let remote = repo.base.appendingPathComponent("remote.git")
        try gitRun(["init", "-q", "--bare", remote.path], in: repo.base)

        var state = try GitCapture.capture(directory: repo.root.path).state
        #expect(state.remoteURL == nil)
        #expect(state.pushed == false)

        try repo.git(["remote", "add", "backup", "/somewhere/else.git"])
        state = try GitCapture.capture(directory: repo.root.path).state
        #expect(state.remoteURL == "/somewhere/else.git")

        try repo.git(["remote", "add", "origin", remote.path])
        try repo.git(["push", "-q", "-u", "origin", "main"])
        state = try GitCapture.capture(directory: repo.root.path).state
        #expect(state.remoteURL == remote.path)
        #expect(state.pushed == true)

        try repo.write("more.txt", "more\n")
        try repo.commitAll("local only")
        state = try GitCapture.capture(directory: repo.root.path).state
        #expect(state.pushed == false)

        // An older commit (ancestor of the remote tip) counts as pushed.
        try repo.git(["push", "-q", "origin", "main"])
        try repo.write("more.txt", "even more\n")
        try repo.commitAll("second")
        try repo.git(["push", "-q", "origin", "main"])
        try repo.git(["checkout", "-q", "--detach", "HEAD~1"])
        state = try GitCapture.capture(directory: repo.root.path).state
        #expect(state.pushed == true)
        #expect(state.branch == nil)
    }

    @Test func detachedHead() throws {
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        try repo.write("a.txt", "a\n")
        try repo.commitAll("a")
        let first = try repo.head()
        try repo.write("a.txt", "b\n")
        try repo.commitAll("b")
        try repo.git(["checkout", "-q", "--detach", first])
        try repo.write("a.txt", "edited while detached\n")

        let (state, _, _) = try gitCaptureAndVerify(repo)
        #expect(state.branch == nil)
        #expect(state.commit == first)
        #expect(state.dirty)
    }

    @Test func linkedWorktree() throws {
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        let wt = repo.base.appendingPathComponent("wt")
        try repo.git(["worktree", "add", "-q", "-b", "side", wt.path])
        try "edited in the worktree\n".write(to: wt.appendingPathComponent("README.md"), atomically: false, encoding: .utf8)
        let (state, patch) = try GitCapture.capture(directory: wt.path)
        #expect(state.root == wt.path)
        #expect(state.branch == "side")
        #expect(state.commit == (try repo.head()))
        #expect(String(decoding: patch, as: UTF8.self).contains("+edited in the worktree"))
        // The main work tree is unaffected.
        #expect(try GitCapture.capture(directory: repo.root.path).state.dirty == false)
    }

    @Test func otherBranchName() throws {
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        try repo.git(["checkout", "-q", "-b", "feature/x"])
        let state = try GitCapture.capture(directory: repo.root.path).state
        #expect(state.branch == "feature/x")
    }

    @Test func bareRepository() throws {
        let repo = try GitTestRepo(bare: true)
        defer { repo.cleanup() }
        let (state, patch) = try GitCapture.capture(directory: repo.root.path)
        #expect(state.inRepository)
        #expect(state.root == nil)
        #expect(state.commit == nil)
        #expect(state.dirty == false)
        #expect(patch.isEmpty)
    }

    @Test func submodulesAreLeftOutAndNamed() throws {
        let sub = try GitTestRepo()
        defer { sub.cleanup() }
        try sub.write("lib.txt", "library\n")
        try sub.commitAll("lib")

        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        try repo.git(["submodule", "add", "-q", sub.root.path, "vendor/lib"])
        try repo.commitAll("add submodule")

        // Move the submodule to a new commit, and make an untracked nested repository.
        try gitRun(["commit", "-q", "--allow-empty", "-m", "sub moves"], in: repo.url("vendor/lib"))
        try repo.write("nested/file.txt", "inside a nested repo\n")
        try gitRun(["init", "-q"], in: repo.url("nested"))
        try repo.write("plain.txt", "a normal change\n")

        let (state, _, text) = try gitCaptureAndVerify(repo, excluding: ["vendor/lib", "nested"])
        #expect(state.dirty)
        #expect(!text.contains("vendor/lib"))
        #expect(!text.contains("nested"))
        #expect(text.contains("a normal change"))
        let note = try #require(state.patchNote)
        #expect(note.contains("vendor/lib"))
        #expect(note.contains("nested"))
        #expect(state.omittedFiles.isEmpty)
    }

    @Test func kitchenSink() throws {
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        try repo.write(".gitignore", "*.pyc\n")
        try repo.write("src/main.py", "print('hello')\n")
        try repo.write("src/util.py", (1...30).map { "def f\($0)(): return \($0)" }.joined(separator: "\n") + "\n")
        try repo.write("assets/logo.png", gitBinary(4_000, seed: 11))
        try repo.write("run.sh", "#!/bin/sh\npython src/main.py\n")
        try repo.commitAll("project")

        try repo.write("src/main.py", "print('hello, world')\n")
        try repo.git(["add", "src/main.py"])
        try repo.write("src/main.py", "print('hello, world!')\nprint('again')\n")
        try repo.move("src/util.py", "src/helpers.py")
        try repo.write("assets/logo.png", gitBinary(4_100, seed: 12))
        try repo.chmod("run.sh", 0o755)
        try repo.write("src/cache.pyc", gitBinary(100, seed: 13))
        try repo.write("notes/todo.md", "- [ ] everything\n")
        try repo.symlink("latest", to: "notes/todo.md")

        let (state, _, _) = try gitCaptureAndVerify(repo)
        #expect(state.dirty)
        #expect(state.branch == "main")
    }

    @Test func codableKeys() throws {
        let state = CodeState(
            inRepository: true, root: "/r", remoteURL: "u", branch: "b", commit: "c", pushed: true, dirty: true,
            patchNote: "n", omittedFiles: ["x"],
            leftOut: [LeftOutFile(path: ".env", reason: .secret), LeftOutFile(path: "m.pt", reason: .size, size: 9, sha256: "ab")],
            patchBlob: nil, patchBytes: 3)
        let data = try JSONEncoder().encode(state)
        let json = String(decoding: data, as: UTF8.self)
        for key in ["in_repository", "remote_url", "patch_note", "omitted_files", "patch_bytes", "left_out"] {
            #expect(json.contains("\"\(key)\""))
        }
        #expect(try JSONDecoder().decode(CodeState.self, from: data) == state)
        // The record's `code` is built directly, and must read as the encoder writes it.
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        for candidate in [state, CodeState(inRepository: false), CodeState(inRepository: true, commit: "c", patchBlob: "p")] {
            var bytes = [UInt8](try encoder.encode(candidate))
            #expect(try JSON.parse(bytes: &bytes) == candidate.json)
        }
    }

    // MARK: - Left out on purpose

    @Test func secretFilesAreLeftOutAndNamed() throws {
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        try repo.write(".env", "OPENAI_API_KEY=sk-committed\n")
        try repo.write("deploy/server.pem", "-----BEGIN CERTIFICATE-----\n")
        try repo.write("train.py", "print(1)\n")
        try repo.commitAll("with secrets, as happens")

        try repo.write(".env", "OPENAI_API_KEY=sk-tracked-edit\n")              // tracked, modified
        try repo.remove("deploy/server.pem")                                      // tracked, deleted
        try repo.write("id_rsa", "-----BEGIN OPENSSH PRIVATE KEY-----\n")        // untracked
        try repo.write("aws/credentials.json", "{\"secret\": \"aws-secret\"}\n")
        try repo.write("config/.env.local", "TOKEN=local-token\n")
        try repo.write("train.py", "print(2)\n")

        let secrets: Set<String> = [".env", "deploy/server.pem", "id_rsa", "aws/credentials.json", "config/.env.local"]
        let (state, patch) = try GitCapture.capture(directory: repo.root.path)
        #expect(Set(state.leftOut.map(\.path)) == secrets)
        #expect(state.leftOut.allSatisfy { $0.reason == .secret && $0.size == nil && $0.sha256 == nil })
        let text = String(decoding: patch, as: UTF8.self)
        for content in ["sk-tracked-edit", "sk-committed", "CERTIFICATE", "OPENSSH", "aws-secret", "local-token"] {
            #expect(!text.contains(content), "\(content) is in the patch")
        }
        #expect(text.contains("+print(2)"))
        #expect(state.patchNote?.contains("5 secret files left out of the patch: ") == true)
        // The rest reproduces.
        let trip = try gitRoundTrip(repo, state: state, patch: patch, excluding: secrets.union(["aws", "config"]))
        defer { try? FileManager.default.removeItem(at: trip.cloneBase) }
        gitExpectSameTree(trip.original, trip.rebuilt)
    }

    @Test func cmlignoreIgnoresLikeGitignoreWithoutTouchingTheRepository() throws {
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        try repo.write("notes.tmp", "tracked despite the rule\n")
        try repo.commitAll("notes")
        let exclude = try repo.git(["rev-parse", "--git-path", "info/exclude"]).out.trimmingCharacters(in: .whitespacesAndNewlines)
        let excludeBefore = try? Data(contentsOf: repo.url(exclude))

        try repo.write(".cmlignore", "# outputs\nckpt/\n*.tmp\n/top-only.log\n")
        try repo.write("ckpt/epoch1.pt", "weights\n")
        try repo.write("scratch.tmp", "scratch\n")
        try repo.write("top-only.log", "ignored at the top\n")
        try repo.write("sub/top-only.log", "kept below\n")
        try repo.write("notes.tmp", "tracked despite the rule, edited\n")

        let (state, patch) = try GitCapture.capture(directory: repo.root.path)
        let text = String(decoding: patch, as: UTF8.self)
        #expect(!text.contains("b/ckpt/") && !text.contains("scratch.tmp") && !text.contains("a/top-only.log"))
        #expect(text.contains("sub/top-only.log") && text.contains("b/.cmlignore"))
        #expect(text.contains("tracked despite the rule, edited"))  // a rule never hides a tracked file's change
        #expect(state.leftOut.isEmpty && state.patchNote == nil)
        #expect((try? Data(contentsOf: repo.url(exclude))) == excludeBefore)
        let trip = try gitRoundTrip(repo, state: state, patch: patch, excluding: ["ckpt", "scratch.tmp", "top-only.log"])
        defer { try? FileManager.default.removeItem(at: trip.cloneBase) }
        gitExpectSameTree(trip.original, trip.rebuilt)
    }

    @Test func largeUntrackedFilesAreNamedWithSizeAndHash() throws {
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        try repo.write("tracked.bin", gitBinary(1_000, seed: 1))
        try repo.commitAll("base")
        let big = gitBinary(300_000, seed: 2)
        try repo.write("out/model.pt", big)                         // untracked, over the cap
        try repo.write("small.bin", gitBinary(50_000, seed: 3))    // untracked, under it
        try repo.write("tracked.bin", gitBinary(300_000, seed: 4))  // tracked: the untracked cap does not apply

        let (state, patch) = try GitCapture.capture(directory: repo.root.path, maxUntrackedBytes: 100_000)
        #expect(state.leftOut == [LeftOutFile(path: "out/model.pt", reason: .size, size: 300_000, sha256: SHA256Hasher.hex([UInt8](big)))])
        let text = String(decoding: patch, as: UTF8.self)
        #expect(!text.contains("model.pt") && text.contains("b/small.bin") && text.contains("b/tracked.bin"))
        #expect(state.dirty && state.omittedFiles.isEmpty)
        #expect(state.patchNote == "1 untracked file over 100000 bytes recorded by name, size and sha256 only: out/model.pt")
        let trip = try gitRoundTrip(repo, state: state, patch: patch, excluding: ["out"])
        defer { try? FileManager.default.removeItem(at: trip.cloneBase) }
        gitExpectSameTree(trip.original, trip.rebuilt)

        // The default cap is 1 MiB: the same file goes into the patch.
        #expect(GitCapture.defaultMaxUntrackedBytes == 1 << 20)
        let (whole, _) = try GitCapture.capture(directory: repo.root.path)
        #expect(whole.leftOut.isEmpty)
    }

    // MARK: - Binary files in cml-diff --code

    @Test func binaryFilesCondenseToOneLineEach() throws {
        let repo = try GitTestRepo()
        defer { repo.cleanup() }
        try repo.write("model.bin", gitBinary(20_000, seed: 1))
        try repo.write("gone.bin", gitBinary(3_000, seed: 2))
        try repo.write("rename-edit.bin", gitBinary(6_000, seed: 6))
        try repo.commitAll("binaries")
        func blob(_ path: String) throws -> String {
            String(try repo.git(["hash-object", "--no-filters", path]).out.prefix(12))
        }
        let oldModel = try blob("model.bin"), oldGone = try blob("gone.bin"), oldRenamed = try blob("rename-edit.bin")

        var changed = gitBinary(20_000, seed: 1)
        changed[100] ^= 0xFF
        changed.append(gitBinary(1_000, seed: 9))
        try repo.write("model.bin", changed)
        try repo.remove("gone.bin")
        try repo.write("new.bin", gitBinary(7_777, seed: 4))
        try repo.move("rename-edit.bin", "rename-edited.bin")
        var edited = gitBinary(6_000, seed: 6)
        edited[10] = 1
        try repo.write("rename-edited.bin", edited)
        try repo.write("README.md", "# test repo\nmore\n")

        let (_, patch) = try GitCapture.capture(directory: repo.root.path)
        let original = String(decoding: patch, as: UTF8.self)
        #expect(original.contains("\ndelta "), "a delta is in the patch, so its sizes are read too")
        let condensed = String(decoding: CodeSummary.condensingBinaryFiles(patch), as: UTF8.self)
        let lines = condensed.split(separator: "\n").map(String.init)
        #expect(lines.contains("binary model.bin: 20,000 → 21,000 bytes, blob \(oldModel) → \(try blob("model.bin"))"), "\(condensed)")
        #expect(lines.contains("binary gone.bin: deleted, 3,000 bytes, blob \(oldGone)"), "\(condensed)")
        #expect(lines.contains("binary new.bin: new, 7,777 bytes, blob \(try blob("new.bin"))"), "\(condensed)")
        #expect(lines.contains("binary rename-edit.bin → rename-edited.bin: 6,000 → 6,000 bytes, blob \(oldRenamed) → \(try blob("rename-edited.bin"))"),
                "\(condensed)")
        #expect(!condensed.contains("GIT binary patch") && condensed.utf8.count < 1_000, "\(condensed)")
        // Text changes stay as they were.
        let readme = try #require(CodeSummary.sections(of: patch).first { String(decoding: $0, as: UTF8.self).contains("README.md") })
        #expect(condensed.contains(String(decoding: readme, as: UTF8.self)))
        // A patch without binary files comes back as it was.
        let text = Array("diff --git a/x b/x\nindex 1..2 100644\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n".utf8)
        #expect(CodeSummary.condensingBinaryFiles(text) == text)
        // The files left out follow, one line each.
        let code: JSON = .object([("left_out", .array([LeftOutFile(path: ".env", reason: .secret).json,
                                                        LeftOutFile(path: "m.pt", reason: .size, size: 2_000_000, sha256: "0123456789abcdef").json]))])
        #expect(String(decoding: CodeSummary.text(patch: text, code: code), as: UTF8.self).hasSuffix(
            "+b\nleft out: .env (secret)\nleft out: m.pt (2,000,000 bytes, sha256 0123456789ab)\n"))
    }
}

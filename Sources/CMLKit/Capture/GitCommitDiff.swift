import CGit2

extension GitCapture {
    /// The committed changes from commit `old` to commit `new` in the repository at `root`, as a patch,
    /// when the repository is here and holds both commits; nil otherwise (another machine's clone, a
    /// commit not fetched), which the caller reports as such.
    public static func commitDiff(root: String, from old: String, to new: String) -> String? {
        guard libgit2Ready >= 0 else { return nil }
        var repository: OpaquePointer?
        guard git_repository_open(&repository, root) == 0, let repository else { return nil }
        defer { git_repository_free(repository) }
        func tree(_ hex: String) -> OpaquePointer? {
            var oid = git_oid()
            var commit: OpaquePointer?
            guard git_oid_fromstr(&oid, hex) == 0, git_commit_lookup(&commit, repository, &oid) == 0, let commit else { return nil }
            defer { git_commit_free(commit) }
            var tree: OpaquePointer?
            return git_commit_tree(&tree, commit) == 0 ? tree : nil
        }
        guard let oldTree = tree(old) else { return nil }
        defer { git_tree_free(oldTree) }
        guard let newTree = tree(new) else { return nil }
        defer { git_tree_free(newTree) }
        var diff: OpaquePointer?
        guard git_diff_tree_to_tree(&diff, repository, oldTree, newTree, nil) == 0, let diff else { return nil }
        defer { git_diff_free(diff) }
        var buffer = git_buf()
        defer { git_buf_dispose(&buffer) }
        guard git_diff_to_buf(&buffer, diff, GIT_DIFF_FORMAT_PATCH) == 0 else { return nil }
        guard let bytes = buffer.ptr else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: bytes, count: buffer.size), as: UTF8.self)
    }
}

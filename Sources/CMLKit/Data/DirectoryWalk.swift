import Glibc

/// A regular file or symbolic link found under a directory, not read yet.
struct WalkedFile: Sendable {
    /// Relative to the directory, `/`-separated.
    var path: String
    var identity: FileIdentity
    /// Permission bits.
    var mode: UInt32
    var linkTarget: String?
}

/// Everything under a directory, without following symbolic links: regular files and links (with their
/// identities, from one `fstatat` each), directories that cannot be read, and special files left out.
struct DirectoryWalk {
    var files: [WalkedFile] = []
    /// `path: reason` for each directory that cannot be listed (the snapshot cannot be complete).
    var unreadable: [String] = []

    /// `excluding`: a directory left out wherever it appears (the store, when it lies inside `root`: it
    /// changes while the snapshot writes to it).
    static func walk(_ root: String, excluding: String? = nil, warn: (String) -> Void) -> DirectoryWalk {
        var result = DirectoryWalk()
        var excluded = stat()
        let hasExcluded = excluding.map { stat($0, &excluded) == 0 } ?? false
        var pending = [""]
        while let relative = pending.popLast() {
            let absolute = relative.isEmpty ? root : root + "/" + relative
            guard let handle = opendir(absolute) else {
                result.unreadable.append("\(absolute): \(String(cString: strerror(errno)))")
                continue
            }
            defer { closedir(handle) }
            let folder = dirfd(handle)
            while let entry = readdir(handle) {
                guard let name = withUnsafeBytes(of: entry.pointee.d_name, { raw in
                    String(validating: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
                }) else {
                    result.unreadable.append("\(absolute)/\(FileSystem.entryName(entry)): the name is not UTF-8")
                    continue
                }
                if name == "." || name == ".." { continue }
                let path = relative.isEmpty ? name : relative + "/" + name
                var st = stat()
                guard fstatat(folder, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                    // Removed since it was listed: it is simply not part of the snapshot.
                    if errno != ENOENT { result.unreadable.append("\(root)/\(path): \(String(cString: strerror(errno)))") }
                    continue
                }
                let mode = UInt32(st.st_mode) & 0o7777
                switch st.st_mode & S_IFMT {
                case S_IFDIR:
                    if hasExcluded && st.st_dev == excluded.st_dev && st.st_ino == excluded.st_ino {
                        warn("left out \(root)/\(path): it is the store")
                        continue
                    }
                    pending.append(path)
                case S_IFREG:
                    result.files.append(WalkedFile(path: path, identity: FileIdentity(st), mode: mode, linkTarget: nil))
                case S_IFLNK:
                    var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
                    let n = buffer.withUnsafeMutableBufferPointer { readlinkat(folder, name, $0.baseAddress!, $0.count) }
                    guard n >= 0 else {
                        if errno != ENOENT { result.unreadable.append("\(root)/\(path): \(String(cString: strerror(errno)))") }
                        continue
                    }
                    result.files.append(WalkedFile(path: path, identity: FileIdentity(st), mode: mode,
                                                   linkTarget: String(decoding: buffer[0..<n], as: UTF8.self)))
                default:
                    warn("skipped \(root)/\(path): not a regular file, directory or symbolic link")
                }
            }
        }
        return result
    }
}

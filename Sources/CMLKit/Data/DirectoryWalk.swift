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
///
/// The directories are listed on one thread, telling files from directories by the type readdir(3) gives;
/// the `fstatat` of each file, most of the walk's time, runs on `jobs` threads.
struct DirectoryWalk {
    var files: [WalkedFile] = []
    /// `path: reason` for each directory that cannot be listed (the snapshot cannot be complete).
    var unreadable: [String] = []
    /// Each file or folder whose name is not UTF-8 (a manifest's paths are), its bytes that are not shown
    /// escaped as `\xff`.
    var badNames: [String] = []

    /// A file or link, listed but not looked at yet.
    private struct Listed {
        /// Index in the list of directories.
        var directory: Int
        var name: String
    }

    private enum Looked: Sendable {
        case file(WalkedFile)
        case unreadable(String)
        /// Removed since it was listed, or now a directory: not part of the walk.
        case gone
        case special(String)
    }

    /// Files and links looked at by one thread in a row (one directory opened per run of them).
    private static let filesPerTask = 256

    /// `excluding`: a directory left out wherever it appears (the store, when it lies inside `root`: it
    /// changes while the snapshot writes to it).
    static func walk(_ root: String, excluding: String? = nil, jobs: Int = 1, warn: (String) -> Void) -> DirectoryWalk {
        var result = DirectoryWalk()
        var excluded = stat()
        let hasExcluded = excluding.map { stat($0, &excluded) == 0 } ?? false
        var directories = [""]
        var listed: [Listed] = []
        var pending = [0]
        while let index = pending.popLast() {
            let relative = directories[index]
            let absolute = relative.isEmpty ? root : root + "/" + relative
            guard let handle = opendir(absolute) else {
                result.unreadable.append("\(absolute): \(String(cString: strerror(errno)))")
                continue
            }
            defer { closedir(handle) }
            let folder = dirfd(handle)
            while let entry = readdir(handle) {
                let bytes = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix(while: { $0 != 0 })) }
                guard let name = String(validating: bytes, as: UTF8.self) else {
                    result.badNames.append("\(absolute)/\(Self.escaped(bytes))")
                    continue
                }
                if name == "." || name == ".." { continue }
                let path = relative.isEmpty ? name : relative + "/" + name
                var type = Int32(entry.pointee.d_type)
                var st = stat()
                // Filesystems that do not give the type, and directories that might be the store, are looked at.
                if type == DT_UNKNOWN || (type == DT_DIR && hasExcluded) {
                    guard fstatat(folder, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                        // Removed since it was listed: it is simply not part of the snapshot.
                        if errno != ENOENT { result.unreadable.append("\(root)/\(path): \(String(cString: strerror(errno)))") }
                        continue
                    }
                    type = Self.type(of: st)
                }
                switch type {
                case Int32(DT_DIR):
                    if hasExcluded && st.st_dev == excluded.st_dev && st.st_ino == excluded.st_ino {
                        warn("left out \(root)/\(path): it is the store")
                        continue
                    }
                    directories.append(path)
                    pending.append(directories.count - 1)
                case Int32(DT_REG), Int32(DT_LNK):
                    listed.append(Listed(directory: index, name: name))
                default:
                    warn("skipped \(root)/\(path): not a regular file, directory or symbolic link")
                }
            }
        }

        let tasks = (listed.count + filesPerTask - 1) / filesPerTask
        let looked = ParallelWork.map(count: tasks, workers: jobs) { [listed, directories] _, task in
            look(at: listed[task * filesPerTask..<min(listed.count, (task + 1) * filesPerTask)], root: root,
                 directories: directories)
        }
        result.files.reserveCapacity(listed.count)
        for outcome in looked.joined() {
            switch outcome {
            case .file(let file): result.files.append(file)
            case .unreadable(let message): result.unreadable.append(message)
            case .gone: break
            case .special(let message): warn(message)
            }
        }
        return result
    }

    /// A name that is not UTF-8, readable: its valid characters as they are, other bytes as `\xff`.
    static func escaped(_ bytes: [UInt8]) -> String {
        var shown = ""
        var start = 0
        while start < bytes.count {
            // The shortest run of bytes from `start` that is one valid character (UTF-8 takes at most 4).
            let character = (1...min(4, bytes.count - start)).lazy.compactMap { length in
                String(validating: bytes[start..<start + length], as: UTF8.self).map { ($0, length) }
            }.first
            if let (text, length) = character {
                shown += text
                start += length
            } else {
                let hex = String(bytes[start], radix: 16)
                shown += "\\x" + (hex.count == 1 ? "0" + hex : hex)
                start += 1
            }
        }
        return shown
    }

    private static func type(of st: stat) -> Int32 {
        switch st.st_mode & S_IFMT {
        case S_IFDIR: Int32(DT_DIR)
        case S_IFREG: Int32(DT_REG)
        case S_IFLNK: Int32(DT_LNK)
        default: Int32(DT_UNKNOWN)
        }
    }

    private static func look(at slice: ArraySlice<Listed>, root: String, directories: [String]) -> [Looked] {
        var looked: [Looked] = []
        looked.reserveCapacity(slice.count)
        var openDirectory = -1
        var folder: Int32 = -1
        var folderError: Int32 = 0
        defer { if folder >= 0 { close(folder) } }
        for item in slice {
            let relative = directories[item.directory]
            let path = relative.isEmpty ? item.name : relative + "/" + item.name
            if item.directory != openDirectory {
                if folder >= 0 { close(folder) }
                folder = open(relative.isEmpty ? root : root + "/" + relative, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                folderError = folder < 0 ? errno : 0
                openDirectory = item.directory
            }
            var st = stat()
            guard folder >= 0, fstatat(folder, item.name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                let error = folder >= 0 ? errno : folderError
                looked.append(error == ENOENT ? .gone : .unreadable("\(root)/\(path): \(String(cString: strerror(error)))"))
                continue
            }
            let mode = UInt32(st.st_mode) & 0o7777
            switch st.st_mode & S_IFMT {
            case S_IFREG:
                looked.append(.file(WalkedFile(path: path, identity: FileIdentity(st), mode: mode, linkTarget: nil)))
            case S_IFLNK:
                var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
                let n = buffer.withUnsafeMutableBufferPointer { readlinkat(folder, item.name, $0.baseAddress!, $0.count) }
                guard n >= 0 else {
                    looked.append(errno == ENOENT ? .gone : .unreadable("\(root)/\(path): \(String(cString: strerror(errno)))"))
                    continue
                }
                looked.append(.file(WalkedFile(path: path, identity: FileIdentity(st), mode: mode,
                                               linkTarget: String(decoding: buffer[0..<n], as: UTF8.self))))
            case S_IFDIR:
                looked.append(.gone)
            default:
                looked.append(.special("skipped \(root)/\(path): not a regular file, directory or symbolic link"))
            }
        }
        return looked
    }
}

import CArchive
import CMLKit
import Glibc

/// Moving a version between stores as a tar archive (libarchive): `cml-dataset.json` (the version
/// record), `manifest.jsonl` (its manifest, byte for byte), then `data/PATH` for every file and link.
///
/// Importing trusts nothing in the archive: every entry's path is checked (no absolute path, no `..`),
/// links must stay inside the dataset (unless allowed: the rule `cml-data snapshot` applies, see
/// `Manifest.escapingLinks`), the manifest must hash to the record's manifest id, and every
/// entry must match its manifest line (type, size, mode, sha256, crc32c or link target), with nothing
/// missing and nothing extra. Content is written to temporary files and packs only, made visible when all of
/// it checked out; a refused archive leaves the store as it was.
public enum DatasetArchive {
    static let recordName = "cml-dataset.json"
    static let manifestName = "manifest.jsonl"
    static let dataPrefix = "data/"

    public enum Compression: Sendable {
        case none, gzip, zstd, xz

        /// From the file name: `.tar`, `.tar.gz`/`.tgz`, `.tar.zst`/`.tzst`, `.tar.xz`/`.txz`; `-` (stdout)
        /// is a plain tar.
        public init(path: String) throws(CMLError) {
            let lower = path.lowercased()
            if path == "-" || lower.hasSuffix(".tar") { self = .none }
            else if lower.hasSuffix(".tar.gz") || lower.hasSuffix(".tgz") { self = .gzip }
            else if lower.hasSuffix(".tar.zst") || lower.hasSuffix(".tzst") { self = .zstd }
            else if lower.hasSuffix(".tar.xz") || lower.hasSuffix(".txz") { self = .xz }
            else {
                throw CMLError.usage("cannot tell the archive format of \(path)",
                                     hint: "name it FILE.tar, FILE.tar.gz, FILE.tar.zst or FILE.tar.xz")
            }
        }
    }

    // MARK: Export

    /// Writes `version` to `path` (`-`: stdout), checking every blob as it is read. A file is written
    /// under a temporary name and renamed when complete.
    public static func export(_ version: DatasetVersion, from store: any Store, to path: String) throws(CMLError) -> Int64 {
        let compression = try Compression(path: path)
        let (manifest, manifestBytes) = try Datasets.manifestWithBytes(of: version, in: store)
        let target = path == "-" ? path : FileSystem.absolutePath(path)
        let temporary = path == "-" ? path : Materializer.temporaryPath(for: target)
        guard let archive = archive_write_new() else { throw CMLError("libarchive could not start an archive") }
        defer { archive_write_free(archive) }
        func check(_ status: Int32, _ what: String) throws(CMLError) {
            guard status >= ARCHIVE_WARN else { throw CMLError("cannot write \(path): \(what): \(message(archive))") }
        }
        do throws(CMLError) {
            try check(archive_write_set_format_pax_restricted(archive), "tar format")
            switch compression {
            case .none: break
            case .gzip: try check(archive_write_add_filter_gzip(archive), "gzip")
            case .zstd: try check(archive_write_add_filter_zstd(archive), "zstd")
            case .xz: try check(archive_write_add_filter_xz(archive), "xz")
            }
            try check(path == "-" ? archive_write_open_fd(archive, STDOUT_FILENO) : archive_write_open_filename(archive, temporary), "open")
            let time = time_t(version.createdAt)
            func add(_ name: String, size: Int64, mode: UInt32, link: String?, body: () throws(CMLError) -> Void) throws(CMLError) {
                guard let entry = archive_entry_new() else { throw CMLError("libarchive could not make an entry") }
                defer { archive_entry_free(entry) }
                archive_entry_set_pathname_utf8(entry, name)
                archive_entry_set_mtime(entry, time, 0)
                archive_entry_set_perm(entry, mode_t(mode))
                if let link {
                    archive_entry_set_filetype(entry, UInt32(Glibc.S_IFLNK))
                    archive_entry_set_symlink_utf8(entry, link)
                } else {
                    archive_entry_set_filetype(entry, UInt32(Glibc.S_IFREG))
                    archive_entry_set_size(entry, size)
                }
                try check(archive_write_header(archive, entry), name)
                try body()
                try check(archive_write_finish_entry(archive), name)
            }
            func write(_ bytes: UnsafeRawBufferPointer, _ name: String) throws(CMLError) {
                guard bytes.count == 0 || archive_write_data(archive, bytes.baseAddress, bytes.count) == bytes.count else {
                    throw CMLError("cannot write \(path): \(name): \(message(archive))")
                }
            }
            func write(_ bytes: [UInt8], _ name: String) throws(CMLError) {
                var failure: CMLError?
                bytes.withUnsafeBytes { raw in
                    do throws(CMLError) { try write(raw, name) } catch { failure = error }
                }
                if let failure { throw failure }
            }
            let record = Array(version.json.serialized.utf8) + [0x0A]
            try add(recordName, size: Int64(record.count), mode: 0o644, link: nil) { () throws(CMLError) in try write(record, recordName) }
            try add(manifestName, size: Int64(manifestBytes.count), mode: 0o644, link: nil) { () throws(CMLError) in
                try write(manifestBytes, manifestName)
            }
            for entry in manifest.entries {
                let name = dataPrefix + entry.path
                try add(name, size: entry.size, mode: entry.mode, link: entry.linkTarget) { () throws(CMLError) in
                    guard let blob = entry.sha256 else { return }
                    try store.readBlob(blob) { chunk throws(CMLError) in try write(chunk, name) }
                }
            }
            try check(archive_write_close(archive), "close")
            if path != "-" {
                guard rename(temporary, target) == 0 else { throw FileSystem.error("cannot write", target) }
            }
        } catch {
            if path != "-" { unlink(temporary) }
            throw error
        }
        var st = stat()
        return path != "-" && stat(target, &st) == 0 ? Int64(st.st_size) : 0
    }

    // MARK: Import

    /// What an import came to.
    public struct Imported: Sendable {
        public var version: DatasetVersion
        /// The store held this version already: nothing was written.
        public var alreadyPresent: Bool
        /// The dataset it belonged to where it was exported.
        public var exportedDataset: String
        /// The number it had there (nil for an archive that does not say), which it keeps unless its
        /// dataset here has had that number or a later one.
        public var exportedNumber: Int64?
    }

    /// Reads an archive written by `export` (`-`: stdin; compression is recognised by its content) into
    /// `store`, as dataset `name` when given. Stores only content the store lacks. Links that lead out of
    /// the dataset refuse it unless `allowOutsideLinks`. With `server`, the version is recorded there,
    /// `store` being its spool on this machine: the content is stored in the spool, then the blobs the
    /// server lacks are sent (`newBlobs` and `newBytes` count those) and the version recorded once they
    /// are all there.
    public static func `import`(from path: String, into store: SQLiteStore, server: (any Store)? = nil, name: String?,
                                allowOutsideLinks: Bool = false) throws(CMLError) -> Imported {
        do {
            return try importChecked(from: path, into: store, server: server, name: name, allowOutsideLinks: allowOutsideLinks)
        } catch {
            throw CMLError("cannot import \(path): \(error.message)", hint: error.hint ?? "nothing was imported")
        }
    }

    private static func importChecked(from path: String, into store: SQLiteStore, server: (any Store)?, name: String?,
                                      allowOutsideLinks: Bool) throws(CMLError) -> Imported {
        guard let archive = archive_read_new() else { throw CMLError("libarchive could not start reading") }
        defer { archive_read_free(archive) }
        archive_read_support_filter_all(archive)
        archive_read_support_format_tar(archive)
        let opened = path == "-" ? archive_read_open_fd(archive, STDIN_FILENO, 1 << 16)
                                 : archive_read_open_filename(archive, path, 1 << 16)
        guard opened == ARCHIVE_OK else {
            throw access(path, R_OK) == 0 || path == "-" ? CMLError(message(archive)) : FileSystem.error("cannot read", path)
        }
        var reader = EntryReader(archive: archive)

        guard let recordEntry = try reader.next(), recordEntry.path == recordName, recordEntry.type == S_IFREG,
              recordEntry.size < 1 << 20 else {
            throw CMLError("it is not a cml-data archive (it must begin with \(recordName))")
        }
        let record = try parseRecord(try reader.readAll(limit: 1 << 20))
        guard let manifestEntry = try reader.next(), manifestEntry.path == manifestName, manifestEntry.type == S_IFREG else {
            throw CMLError("its second entry must be \(manifestName)")
        }
        let manifestBytes = try reader.readAll(limit: Int(min(manifestEntry.size, 1 << 32)))
        guard SHA256Hasher.hex(manifestBytes) == record.manifest else {
            throw CMLError("its \(manifestName) does not match the version record (the sha256 differs)")
        }
        let manifest = try Manifest(decoding: manifestBytes)
        let escaping = manifest.escapingLinks
        if !escaping.isEmpty && !allowOutsideLinks {
            throw CMLError(Manifest.describe(escaping, outside: "the dataset"),
                           hint: "nothing was imported; pass --allow-outside-links to keep \(escaping.count == 1 ? "it" : "them") as links anyway")
        }
        guard Int64(manifest.entries.count) == record.files, manifest.totalSize == record.size else {
            throw CMLError("its manifest has \(manifest.entries.count) files of \(manifest.totalSize) bytes, its record says \(record.files) of \(record.size)")
        }
        if let existing = try (server ?? store).datasetVersion(id: record.id) {
            if let name, name != existing.dataset {
                throw CMLError("this store holds the version already, as \(existing.reference)",
                               hint: "nothing was imported; a version belongs to one dataset, so --name cannot give it another")
            }
            return Imported(version: existing, alreadyPresent: true, exportedDataset: record.dataset,
                            exportedNumber: record.number)
        }
        let dataset = name ?? record.dataset
        try DatasetName.check(dataset)

        var expected: [String: ManifestEntry] = [:]
        for entry in manifest.entries { expected[entry.path] = entry }
        var seen = Set<String>()
        let batch = try store.blobBatch(workers: 1)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: BlobDirectory.packThreshold, alignment: 64)
        defer { buffer.deallocate() }
        while let item = try reader.next() {
            if item.type == S_IFDIR, item.path == "data" || item.path.hasPrefix(dataPrefix) { continue }
            guard item.path.hasPrefix(dataPrefix) else { throw CMLError("unexpected entry \(item.path) (only data/… may follow the manifest)") }
            let relative = String(item.path.dropFirst(dataPrefix.count))
            guard let wanted = expected[relative] else { throw CMLError("\(item.path) is not in its manifest") }
            guard seen.insert(relative).inserted else { throw CMLError("\(item.path) appears twice") }
            let mismatch = CMLError("\(item.path) does not match its manifest line")
            guard item.mode == wanted.mode else { throw mismatch }
            if let target = wanted.linkTarget {
                guard item.type == S_IFLNK, item.linkTarget == target else { throw mismatch }
                continue
            }
            guard item.type == S_IFREG, item.size == wanted.size, let blob = wanted.sha256 else { throw mismatch }
            try reader.store(expecting: blob, crc32c: wanted.crc32c, size: wanted.size, name: item.path, into: batch, buffer: buffer)
        }
        let absent = manifest.entries.filter { !seen.contains($0.path) }.map(\.path)
        if !absent.isEmpty {
            throw CMLError("it lacks \(absent.count) file\(absent.count == 1 ? "" : "s") of its manifest: \(Snapshot.listed(absent))")
        }
        _ = try batch.put(manifestBytes)
        try batch.finish()
        let stored = batch.stored
        let draft = DatasetVersionDraft(
            id: record.id, dataset: dataset, parents: record.parents, message: record.message, manifest: record.manifest,
            files: record.files, size: record.size, newBlobs: Int64(stored.blobs), newBytes: stored.bytes,
            source: path == "-" ? nil : FileSystem.absolutePath(path), run: record.run, createdAt: record.createdAt,
            blobs: (manifest.entries.compactMap(\.sha256) + [record.manifest]).compactMap(BlobDigest.init(hex:)),
            number: record.number)
        var recorded: DatasetVersionCommit
        if let server {
            // New to the server is what it lacks, whatever the spool held.
            var sent = (blobs: 0, bytes: Int64(0))
            recorded = try DatasetSync(from: store, to: server).sendingMissingBlobs(sent: &sent) { sent throws(CMLError) in
                var toServer = draft
                toServer.newBlobs = Int64(sent.blobs)
                toServer.newBytes = sent.bytes
                return try server.createDatasetVersion(toServer)
            }
        } else {
            recorded = try store.createDatasetVersion(draft)
        }
        switch recorded {
        case .created(let version):
            return Imported(version: version, alreadyPresent: false, exportedDataset: record.dataset, exportedNumber: record.number)
        case .unchanged:
            // Only a draft that asks (`unlessUnchanged`, which an import does not) gets this.
            throw CMLError("the store did not record the version")
        case .missingBlobs:
            throw CMLError("a concurrent cml-data gc removed content it had just stored", hint: "import it again")
        }
    }

    private struct Record {
        var id: String
        var dataset: String
        /// Its number where it was exported.
        var number: Int64?
        var parents: [String]
        var message: String?
        var manifest: String
        var files: Int64
        var size: Int64
        var run: String?
        var createdAt: Double
    }

    private static func parseRecord(_ bytes: [UInt8]) throws(CMLError) -> Record {
        var bytes = bytes
        let json: JSON
        do { json = try JSON.parse(bytes: &bytes) } catch { throw CMLError("its \(recordName) is not JSON: \(error.message)") }
        func isID(_ text: String?) -> Bool { text.map { $0.utf8.count == 32 && RunID.isPrefix($0) } ?? false }
        guard let id = json["id"]?.stringValue, isID(id), let dataset = json["dataset"]?.stringValue,
              let manifest = json["manifest"]?.stringValue, BlobDirectory.isBlobID(manifest),
              case .int(let files)? = json["files"], case .int(let size)? = json["size"],
              case .array(let parentList)? = json["parents"],
              let created = json["created_at"]?.stringValue, let createdAt = Clock.parseTime(created) else {
            throw CMLError("its \(recordName) lacks the fields of a version record")
        }
        let parents = parentList.compactMap(\.stringValue)
        let run = json["run"]?.stringValue
        guard parents.count == parentList.count, parents.allSatisfy({ isID($0) }), run == nil || isID(run) else {
            throw CMLError("its \(recordName) names parents or a run that are not ids")
        }
        try DatasetName.check(dataset)
        var number: Int64?
        if let field = json["version"] {
            guard case .int(let value) = field, value > 0 else {
                throw CMLError("its \(recordName) has a version number that is not a positive integer")
            }
            number = value
        }
        return Record(id: id, dataset: dataset, number: number, parents: parents, message: json["message"]?.stringValue, manifest: manifest,
                      files: files, size: size, run: run, createdAt: createdAt)
    }

    static func message(_ archive: OpaquePointer) -> String {
        archive_error_string(archive).map { String(cString: $0) } ?? "libarchive error \(archive_errno(archive))"
    }
}

/// Reads an archive entry by entry, checking each path before anything else looks at it.
private struct EntryReader {
    struct Item {
        var path: String
        var type: mode_t
        var mode: UInt32
        var size: Int64
        var linkTarget: String?
    }

    let archive: OpaquePointer

    mutating func next() throws(CMLError) -> Item? {
        var entry: OpaquePointer?
        let status = archive_read_next_header(archive, &entry)
        if status == ARCHIVE_EOF { return nil }
        guard status >= ARCHIVE_WARN, let entry else { throw CMLError("it is damaged: \(DatasetArchive.message(archive))") }
        guard let raw = archive_entry_pathname_utf8(entry) ?? archive_entry_pathname(entry) else {
            throw CMLError("an entry has no name")
        }
        let name = String(cString: raw)
        let type = mode_t(archive_entry_filetype(entry))
        var path = name
        if type == S_IFDIR { while path.hasSuffix("/") { path.removeLast() } }
        do { try Manifest.checkRelativePath(path) } catch {
            throw CMLError("it holds an unsafe path: \(JSON.string(name).serialized) (absolute, or with ..)")
        }
        if archive_entry_hardlink(entry) != nil { throw CMLError("\(name) is a hard link, which cml-data archives never hold") }
        guard [S_IFREG, S_IFLNK, S_IFDIR].contains(type) else { throw CMLError("\(name) is not a file, link or directory") }
        let link = (archive_entry_symlink_utf8(entry) ?? archive_entry_symlink(entry)).map { String(cString: $0) }
        return Item(path: path, type: type, mode: UInt32(archive_entry_perm(entry)) & 0o7777,
                    size: archive_entry_size(entry), linkTarget: link)
    }

    /// The current entry's content, which must not exceed `limit` bytes.
    func readAll(limit: Int) throws(CMLError) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { archive_read_data(archive, $0.baseAddress, $0.count) }
            guard n >= 0 else { throw CMLError("it is damaged: \(DatasetArchive.message(archive))") }
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<n])
            guard out.count <= limit else { throw CMLError("an entry is larger than it says") }
        }
    }

    /// Streams the current entry's content: hashed, and stored in `batch` when the store lacks it. Content
    /// that does not hash to `blob`, or whose CRC-32C is not the manifest's (checkout trusts it), is refused.
    func store(expecting blob: String, crc32c: UInt32?, size: Int64, name: String, into batch: BlobBatch,
               buffer: UnsafeMutableRawBufferPointer) throws(CMLError) {
        let mismatch = CMLError("the content of \(name) does not match its manifest (sha256, crc32c or size)")
        let digest = BlobDigest(hex: blob)!
        func matches(_ actual: ContentDigest) -> Bool {
            actual.sha256 == digest && (crc32c == nil || actual.crc32c == crc32c)
        }
        if size < Int64(buffer.count) {
            let content = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Int(size)])
            try fill(content)
            var probe: UInt8 = 0
            guard try withUnsafeMutableBytes(of: &probe, { (raw) throws(CMLError) in try readData(into: raw) }) == 0 else {
                throw mismatch
            }
            var hasher = ContentHasher()
            hasher.update(UnsafeRawBufferPointer(content))
            guard matches(hasher.finalize()) else { throw mismatch }
            if try batch.claim(digest, size: size) {
                do throws(CMLError) { try batch.addPacked(digest, UnsafeRawBufferPointer(content), worker: 0) } catch {
                    batch.release(digest)
                    throw error
                }
            }
            return
        }
        // Claimed before reading: only the first entry with new content writes it.
        let keep = try batch.claim(digest, size: size)
        var temporary: (path: String, fd: Int32)?
        defer { if let temporary { close(temporary.fd) } }
        var hasher = ContentHasher()
        var total: Int64 = 0
        do throws(CMLError) {
            if keep { temporary = try batch.makeTemporaryFile() }
            while true {
                let n = try readData(into: buffer)
                if n == 0 { break }
                let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
                hasher.update(chunk)
                total += Int64(n)
                if let temporary { try FileSystem.writeAll(temporary.fd, chunk, path: temporary.path) }
            }
            guard total == size, matches(hasher.finalize()) else { throw mismatch }
            guard let temporary else { return }
            guard fsync(temporary.fd) == 0 else { throw FileSystem.error("cannot sync blob", temporary.path) }
            batch.addFile(digest, temporary: temporary.path, size: size)
        } catch {
            if let temporary { unlink(temporary.path) }
            if keep { batch.release(digest) }
            throw error
        }
    }

    private func fill(_ buffer: UnsafeMutableRawBufferPointer) throws(CMLError) {
        var done = 0
        while done < buffer.count {
            let n = try readData(into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]))
            if n == 0 { throw CMLError("an entry is shorter than it says") }
            done += n
        }
    }

    private func readData(into buffer: UnsafeMutableRawBufferPointer) throws(CMLError) -> Int {
        let n = archive_read_data(archive, buffer.baseAddress, buffer.count)
        guard n >= 0 else { throw CMLError("it is damaged: \(DatasetArchive.message(archive))") }
        return n
    }
}

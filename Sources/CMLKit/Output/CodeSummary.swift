import CGit2
import CZlib

/// A run's uncommitted code as `cml-diff --code` compares it: the captured patch with each binary file
/// (its headers and base85 data, thousands of lines for a model file) as one line naming it with its
/// sizes and blob ids, then one line for each file left out of the patch.
public enum CodeSummary {
    public static func text(patch: [UInt8], code: JSON) -> [UInt8] {
        var text = condensingBinaryFiles(patch)
        if case .array(let entries)? = code["left_out"] {
            for file in entries.compactMap(LeftOutFile.init(json:)) {
                text += Array("left out: \(file.summary)\n".utf8)
            }
        }
        return text
    }

    /// `patch` with the section of each binary file as one line:
    /// `binary data/model.bin: 20,000 → 21,000 bytes, blob 1a2b3c4d5e6f → 6f5e4d3c2b1a`. Text files stay
    /// as they are; a section libgit2 cannot read stays whole.
    public static func condensingBinaryFiles(_ patch: [UInt8]) -> [UInt8] {
        let sections = sections(of: patch)
        guard sections.contains(where: isBinary) else { return patch }
        var out: [UInt8] = []
        for section in sections {
            if isBinary(section), let line = binaryLine(Array(section)) {
                out += Array(line.utf8) + [0x0A]
            } else {
                out += section
            }
        }
        return out
    }

    /// The patch cut where each file's `diff --git` line starts (what precedes the first stays whole).
    static func sections(of patch: [UInt8]) -> [ArraySlice<UInt8>] {
        let header = Array("diff --git ".utf8)
        var starts: [Int] = []
        var lineStart = 0
        while lineStart < patch.count {
            if patch[lineStart...].starts(with: header) { starts.append(lineStart) }
            guard let newline = patch[lineStart...].firstIndex(of: 0x0A) else { break }
            lineStart = newline + 1
        }
        if starts.first != 0 { starts.insert(0, at: 0) }
        return starts.indices.map { index in
            patch[starts[index]..<(index + 1 < starts.count ? starts[index + 1] : patch.count)]
        }
    }

    private static let binaryMarkers = [Array("\nGIT binary patch\n".utf8), Array("\nBinary files ".utf8)]

    static func isBinary(_ section: ArraySlice<UInt8>) -> Bool {
        binaryMarkers.contains { marker in
            section.withUnsafeBufferPointer { buffer in
                guard buffer.count >= marker.count else { return false }
                return (0...(buffer.count - marker.count)).contains { at in
                    buffer[at] == marker[0] && buffer[at..<(at + marker.count)].elementsEqual(marker)
                }
            }
        }
    }

    /// What libgit2 reads from one binary file's section, as one line; nil when it cannot read it.
    private static func binaryLine(_ section: [UInt8]) -> String? {
        _ = GitCapture.libgit2Ready
        var diffPointer: OpaquePointer?
        let parsed = section.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { git_diff_from_buffer(&diffPointer, $0.baseAddress, $0.count) }
        }
        guard parsed == 0, let diff = diffPointer else {
            git_error_clear()
            return nil
        }
        defer { git_diff_free(diff) }
        guard git_diff_num_deltas(diff) == 1, let delta = git_diff_get_delta(diff, 0)?.pointee else { return nil }

        let sizes = Sizes()
        let box = Unmanaged.passRetained(sizes)
        defer { box.release() }
        let walked = git_diff_foreach(diff, nil, { _, binary, payload in
            guard let binary, let payload else { return 0 }
            let sizes = Unmanaged<Sizes>.fromOpaque(payload).takeUnretainedValue()
            // The forward data turns the old file into the new one, the reverse data the new into the old.
            sizes.new = CodeSummary.size(after: binary.pointee.new_file)
            sizes.old = CodeSummary.size(after: binary.pointee.old_file)
            return 0
        }, nil, nil, box.toOpaque())
        if walked != 0 { git_error_clear() }

        let oldPath = delta.old_file.path.map { String(cString: $0) } ?? "?"
        let newPath = delta.new_file.path.map { String(cString: $0) } ?? oldPath
        let name = oldPath == newPath || delta.status == GIT_DELTA_ADDED || delta.status == GIT_DELTA_DELETED
            ? (delta.status == GIT_DELTA_DELETED ? oldPath : newPath) : "\(oldPath) → \(newPath)"
        let oldID = blobID(delta.old_file.id), newID = blobID(delta.new_file.id)
        func count(_ size: Int?) -> String { size.map { formatCount(Int64($0)) } ?? "?" }
        switch delta.status {
        case GIT_DELTA_ADDED: return "binary \(name): new, \(count(sizes.new)) bytes, blob \(newID)"
        case GIT_DELTA_DELETED: return "binary \(name): deleted, \(count(sizes.old)) bytes, blob \(oldID)"
        default: return "binary \(name): \(count(sizes.old)) → \(count(sizes.new)) bytes, blob \(oldID) → \(newID)"
        }
    }

    private final class Sizes {
        var old: Int?
        var new: Int?
    }

    private static func blobID(_ id: git_oid) -> String {
        var id = id
        var chars = [CChar](repeating: 0, count: 13)
        git_oid_tostr(&chars, chars.count, &id)
        return String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The size of the file one side of git's binary data produces: a literal's inflated length, or the
    /// result size a delta's header holds (after the base's size, both little-endian base-128).
    static func size(after side: git_diff_binary_file) -> Int? {
        switch side.type {
        case GIT_DIFF_BINARY_LITERAL: return side.inflatedlen
        case GIT_DIFF_BINARY_DELTA:
            guard let data = side.data else { return nil }
            let header = inflatedPrefix(UnsafeRawBufferPointer(start: data, count: side.datalen), count: 20)
            var index = 0
            func varint() -> Int? {
                var value = 0, shift = 0
                while index < header.count, shift < 63 {
                    let byte = header[index]
                    index += 1
                    value |= Int(byte & 0x7F) << shift
                    shift += 7
                    if byte & 0x80 == 0 { return value }
                }
                return nil
            }
            guard varint() != nil else { return nil }
            return varint()
        default: return nil
        }
    }

    /// The first `count` bytes (or fewer) that zlib-deflated `data` inflates to.
    private static func inflatedPrefix(_ data: UnsafeRawBufferPointer, count: Int) -> [UInt8] {
        guard let base = data.baseAddress, !data.isEmpty else { return [] }
        var stream = z_stream()
        guard inflateInit_(&stream, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return [] }
        defer { inflateEnd(&stream) }
        var out = [UInt8](repeating: 0, count: count)
        let produced = out.withUnsafeMutableBufferPointer { buffer -> Int in
            stream.next_in = UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = uInt(data.count)
            stream.next_out = buffer.baseAddress
            stream.avail_out = uInt(count)
            let status = inflate(&stream, Z_SYNC_FLUSH)
            guard status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR else { return 0 }
            return count - Int(stream.avail_out)
        }
        return Array(out.prefix(produced))
    }
}

import CGit2

/// A unified diff of two texts (captured patches, console logs), computed by libgit2.
public enum TextDiff {
    /// The hunks (`@@ … @@` headers and ` `, `-`, `+` lines) that turn `old` into `new`; empty when they
    /// are equal. Binary content is reported in one line.
    public static func unified(_ old: [UInt8], _ new: [UInt8], context: Int = 3) throws(CMLError) -> String {
        if old == new { return "" }
        _ = GitCapture.libgit2Ready
        var options = git_diff_options()
        git_diff_options_init(&options, UInt32(GIT_DIFF_OPTIONS_VERSION))
        options.context_lines = UInt32(context)
        // Logs and patches are text to us, whatever bytes they hold.
        options.flags = GIT_DIFF_FORCE_TEXT.rawValue
        let collector = Collector()
        let box = Unmanaged.passRetained(collector)
        defer { box.release() }
        let status = old.withUnsafeBytes { oldBytes in
            new.withUnsafeBytes { newBytes in
                git_diff_buffers(oldBytes.baseAddress, oldBytes.count, "a", newBytes.baseAddress, newBytes.count, "b", &options,
                                 nil, nil, { _, hunk, payload in
                                     guard let hunk, let payload else { return 0 }
                                     let header = withUnsafeBytes(of: hunk.pointee.header) { raw in
                                         Array(raw.prefix(Int(hunk.pointee.header_len)))
                                     }
                                     Unmanaged<Collector>.fromOpaque(payload).takeUnretainedValue().text += header
                                     return 0
                                 }, { _, _, line, payload in
                                     guard let line, let payload, let content = line.pointee.content else { return 0 }
                                     let origin = UInt8(bitPattern: line.pointee.origin)
                                     let collector = Unmanaged<Collector>.fromOpaque(payload).takeUnretainedValue()
                                     // Only context, removed and added lines: the rest are headers and notes.
                                     guard origin == 0x20 || origin == 0x2D || origin == 0x2B else { return 0 }
                                     collector.text.append(origin)
                                     content.withMemoryRebound(to: UInt8.self, capacity: line.pointee.content_len) {
                                         collector.text += UnsafeBufferPointer(start: $0, count: line.pointee.content_len)
                                     }
                                     if collector.text.last != 0x0A { collector.text += Array("\n\\ No newline at end of file\n".utf8) }
                                     return 0
                                 }, box.toOpaque())
            }
        }
        guard status == 0 else {
            let message = git_error_last().map { String(cString: $0.pointee.message) } ?? "error \(status)"
            throw CMLError("cannot compare the texts: \(message)")
        }
        return String(decoding: collector.text, as: UTF8.self)
    }

    private final class Collector {
        var text: [UInt8] = []
    }
}

import CMLKit
import Glibc

/// Writing to stdout and stderr without buffering surprises, and reading stdin.
enum FileHandleOutput {
    static func standardOutput(_ text: String) {
        write(STDOUT_FILENO, text)
    }

    static func standardError(_ text: String) {
        write(STDERR_FILENO, text)
    }

    static func standardOutput(bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in writeRaw(STDOUT_FILENO, raw) }
    }

    static func standardOutput(raw: UnsafeRawBufferPointer) {
        writeRaw(STDOUT_FILENO, raw)
    }

    private static func write(_ fd: Int32, _ text: String) {
        var text = text
        text.withUTF8 { writeRaw(fd, UnsafeRawBufferPointer($0)) }
    }

    private static func writeRaw(_ fd: Int32, _ raw: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < raw.count {
            let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                // The reader went away (`| head`): stop quietly, as Unix tools do.
                Glibc.exit(errno == EPIPE ? 0 : 1)
            }
            offset += n
        }
    }

    static var stdoutIsTerminal: Bool { isatty(STDOUT_FILENO) == 1 }

    /// stdin's lines, or nil when stdin is a terminal (nothing was piped).
    static func stdinLines() -> [String]? {
        guard isatty(STDIN_FILENO) == 0 else { return nil }
        var lines: [String] = []
        while let line = readLine(strippingNewline: true) { lines.append(line) }
        return lines
    }
}

/// Buffers output and writes it in large pieces (for long JSON-lines listings).
struct BufferedOutput {
    private var buffer = ""

    mutating func append(_ text: String) {
        buffer += text
        if buffer.utf8.count >= 1 << 16 { flush() }
    }

    mutating func withBuffer(_ body: (inout String) -> Void) {
        body(&buffer)
        if buffer.utf8.count >= 1 << 16 { flush() }
    }

    mutating func flush() {
        if buffer.isEmpty { return }
        FileHandleOutput.standardOutput(buffer)
        buffer.removeAll(keepingCapacity: true)
    }
}

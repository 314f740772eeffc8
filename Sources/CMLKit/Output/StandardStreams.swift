import Foundation
import Glibc

/// Writing to stdout and stderr without buffering surprises, and reading stdin.
public enum FileHandleOutput {
    public static func standardOutput(_ text: String) {
        write(STDOUT_FILENO, text)
    }

    public static func standardError(_ text: String) {
        write(STDERR_FILENO, text)
    }

    public static func standardOutput(bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in writeRaw(STDOUT_FILENO, raw) }
    }

    public static func standardOutput(raw: UnsafeRawBufferPointer) {
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

    public static var stdoutIsTerminal: Bool { isatty(STDOUT_FILENO) == 1 }

    /// Asks a yes/no question on the terminal (not stdin, which may carry ids); with no terminal there is
    /// no one to ask, and the answer is yes.
    public static func confirm(_ question: String) -> Bool {
        let tty = open("/dev/tty", O_RDWR | O_CLOEXEC)
        guard tty >= 0 else { return true }
        defer { close(tty) }
        var prompt = "\(question) [y/N] "
        prompt.withUTF8 { _ = Glibc.write(tty, $0.baseAddress, $0.count) }
        var answer: [UInt8] = []
        var byte: UInt8 = 0
        while read(tty, &byte, 1) == 1, byte != 0x0A { answer.append(byte) }
        let text = String(decoding: answer, as: UTF8.self).trimmingCharacters(in: .whitespaces).lowercased()
        return text == "y" || text == "yes"
    }

    /// stdin's lines, or nil when stdin is a terminal (nothing was piped).
    public static func stdinLines() -> [String]? {
        guard isatty(STDIN_FILENO) == 0 else { return nil }
        var lines: [String] = []
        while let line = readLine(strippingNewline: true) { lines.append(line) }
        return lines
    }
}

/// Buffers output and writes it in large pieces (for long JSON-lines listings).
public struct BufferedOutput {
    private var buffer = ""

    public init() {}

    public mutating func append(_ text: String) {
        buffer += text
        if buffer.utf8.count >= 1 << 16 { flush() }
    }

    public mutating func withBuffer(_ body: (inout String) -> Void) {
        body(&buffer)
        if buffer.utf8.count >= 1 << 16 { flush() }
    }

    public mutating func flush() {
        if buffer.isEmpty { return }
        FileHandleOutput.standardOutput(buffer)
        buffer.removeAll(keepingCapacity: true)
    }
}

import Foundation
import Glibc

/// stdout, stderr, stdin and the terminal, for every command: whole writes; a reader of stdout that went
/// away (`| head`) is `CMLError.outputClosed`, which the tool's edge turns into a quiet exit; stdin's lines
/// only when something was piped.
public enum Console {
    public static func out(_ text: String) throws(CMLError) {
        var text = text
        var failure: CMLError?
        text.withUTF8 { bytes in
            do throws(CMLError) { try write(STDOUT_FILENO, UnsafeRawBufferPointer(bytes)) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    public static func out(bytes: [UInt8]) throws(CMLError) {
        var failure: CMLError?
        bytes.withUnsafeBytes { raw in
            do throws(CMLError) { try write(STDOUT_FILENO, raw) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    public static func out(raw: UnsafeRawBufferPointer) throws(CMLError) {
        try write(STDOUT_FILENO, raw)
    }

    /// Warnings, progress and errors: a stderr that cannot be written is no reason to stop a command.
    public static func error(_ text: String) {
        var text = text
        text.withUTF8 { bytes in try? write(STDERR_FILENO, UnsafeRawBufferPointer(bytes)) }
    }

    private static func write(_ fd: Int32, _ raw: UnsafeRawBufferPointer) throws(CMLError) {
        var offset = 0
        while offset < raw.count {
            let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EPIPE { throw .outputClosed }
                throw CMLError("cannot write to \(fd == STDOUT_FILENO ? "standard output" : "standard error"): \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }

    public static var stdoutIsTerminal: Bool { isatty(STDOUT_FILENO) == 1 }

    public static var stderrIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }

    /// Colour on stdout: only on a terminal, and not when `NO_COLOR` is set to something (no-color.org).
    public static var stdoutInColor: Bool {
        stdoutIsTerminal && (getenv("NO_COLOR").map { $0.pointee == 0 } ?? true)
    }

    /// The width and height to fit output to: `$COLUMNS` and `$LINES` when set (as GNU ls reads them),
    /// else the size of the terminal on stdout; nil where neither says.
    public static func terminalSize() -> (columns: Int, rows: Int)? {
        func variable(_ name: String) -> Int? {
            getenv(name).flatMap { Int(String(cString: $0)) }.flatMap { $0 > 0 ? $0 : nil }
        }
        var size = winsize()
        let terminal = ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0 && size.ws_row > 0
        guard let columns = variable("COLUMNS") ?? (terminal ? Int(size.ws_col) : nil) else { return nil }
        return (columns, variable("LINES") ?? (terminal ? Int(size.ws_row) : 24))
    }

    /// stdin's lines, or nil when stdin is a terminal (nothing was piped).
    public static func stdinLines() -> [String]? {
        guard isatty(STDIN_FILENO) == 0 else { return nil }
        var lines: [String] = []
        while let line = readLine(strippingNewline: true) { lines.append(line) }
        return lines
    }

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

    /// Records as JSON lines or one JSON array, or `table()` rendered as a table, CSV or TSV.
    public static func print(_ objects: [JSON], format: OutputFormat, table: () -> TextTable) throws(CMLError) {
        var out = BufferedOutput()
        switch format {
        case .jsonl: for object in objects { try out.withBuffer { object.write(to: &$0); $0 += "\n" } }
        case .json: try out.append(JSON.array(objects).serialized + "\n")
        case .table, .csv, .tsv: try out.append(table().render(format))
        }
        try out.flush()
    }
}

/// Buffers stdout and writes it in large pieces (for long JSON-lines listings).
public struct BufferedOutput {
    private var buffer = ""

    public init() {}

    public mutating func append(_ text: String) throws(CMLError) {
        buffer += text
        if buffer.utf8.count >= 1 << 16 { try flush() }
    }

    public mutating func withBuffer(_ body: (inout String) -> Void) throws(CMLError) {
        body(&buffer)
        if buffer.utf8.count >= 1 << 16 { try flush() }
    }

    public mutating func flush() throws(CMLError) {
        if buffer.isEmpty { return }
        try Console.out(buffer)
        buffer.removeAll(keepingCapacity: true)
    }
}

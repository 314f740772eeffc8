import Glibc

/// stdout, stderr and stdin for the commands: whole writes, a reader that went away (`| head`) ends the
/// command quietly as Unix tools do, and stdin's lines only when something was piped.
public enum Console {
    public static func out(_ text: String) { write(STDOUT_FILENO, text) }

    public static func error(_ text: String) { write(STDERR_FILENO, text) }

    public static var stdoutIsTerminal: Bool { isatty(STDOUT_FILENO) == 1 }

    /// stdin's lines, or nil when stdin is a terminal (nothing was piped).
    public static func stdinLines() -> [String]? {
        guard isatty(STDIN_FILENO) == 0 else { return nil }
        var lines: [String] = []
        while let line = readLine(strippingNewline: true) { lines.append(line) }
        return lines
    }

    /// The format asked for, else a table on a terminal and JSON lines elsewhere.
    public static func format(_ text: String?) throws(CMLError) -> OutputFormat {
        guard let text else { return .automatic(isTerminal: stdoutIsTerminal) }
        guard let format = OutputFormat(rawValue: text) else {
            throw .usage("unknown format '\(text)'", hint: "one of \(OutputFormat.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return format
    }

    /// JSON objects as JSON lines or one JSON array, or the table's rows, in one write.
    public static func print(_ objects: [JSON], table: @autoclosure () -> TextTable, format: OutputFormat) {
        switch format {
        case .jsonl:
            var text = ""
            for object in objects { object.write(to: &text); text += "\n" }
            out(text)
        case .json: out(JSON.array(objects).serialized + "\n")
        case .table, .csv, .tsv: out(table().render(format))
        }
    }

    private static func write(_ fd: Int32, _ text: String) {
        var text = text
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    exit(errno == EPIPE ? 0 : 1)
                }
                offset += n
            }
        }
    }
}

import Foundation

/// Output formats shared by every listing command.
public enum OutputFormat: String, CaseIterable, Sendable {
    case jsonl, json, table, csv, tsv

    /// Without `--format`: a table on a terminal, JSON lines everywhere else.
    public static var automatic: OutputFormat { Console.stdoutIsTerminal ? .table : .jsonl }
}

/// Renders rows of cells as an aligned table, CSV or TSV.
public struct TextTable: Sendable {
    public var headers: [String]
    public var rows: [[String]]

    public init(headers: [String], rows: [[String]] = []) {
        self.headers = headers
        self.rows = rows
    }

    public func render(_ format: OutputFormat) -> String {
        switch format {
        case .csv: return ([headers] + rows).map { $0.map(Self.csvField).joined(separator: ",") + "\n" }.joined()
        case .tsv: return ([headers] + rows).map { $0.map(Self.tsvField).joined(separator: "\t") + "\n" }.joined()
        default: return aligned()
        }
    }

    private func aligned() -> String {
        var out = StyledOutput(color: false)
        styled(into: &out)
        return out.buffered
    }

    /// The aligned table, headers bold; `style(row, column)` colours each cell of the body (padding
    /// stays plain).
    public func styled(into out: inout StyledOutput, style: (Int, Int) -> StyledOutput.Style = { _, _ in .plain }) {
        let widths = widths
        func line(_ cells: [String], _ cellStyle: (Int) -> StyledOutput.Style) {
            for (i, cell) in cells.enumerated() {
                out.text(cell, style: cellStyle(i))
                if i < cells.count - 1 { out.text(String(repeating: " ", count: widths[i] - cell.count + 2)) }
            }
            out.text("\n")
        }
        line(headers) { _ in .bold }
        for (r, row) in rows.enumerated() { line(row) { style(r, $0) } }
    }

    /// Each column's width: its widest cell.
    var widths: [Int] {
        var widths = headers.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        return widths
    }

    /// The table narrowed to `width` characters: the rightmost columns not `required` are dropped until
    /// it fits, except that the `elastic` column is first cut down to as little as `minimumElastic`.
    public func fitted(to width: Int, required: Set<Int>, elastic: Int? = nil, minimumElastic: Int = 20) -> TextTable {
        var kept = Array(headers.indices)
        let widths = widths
        func total() -> Int { kept.map { widths[$0] }.reduce(0, +) + 2 * max(0, kept.count - 1) }
        var table = self
        while total() > width {
            if let elastic, kept.last == elastic {
                let room = width - (total() - widths[elastic])
                if room >= max(minimumElastic, headers[elastic].count) {
                    table.rows = rows.map { row in
                        var row = row
                        row[elastic] = Self.truncate(row[elastic], to: room)
                        return row
                    }
                    break
                }
            }
            guard let drop = kept.lastIndex(where: { !required.contains($0) }) else { break }
            kept.remove(at: drop)
        }
        return TextTable(headers: kept.map { table.headers[$0] }, rows: table.rows.map { row in kept.map { row[$0] } })
    }

    static func csvField(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    static func tsvField(_ text: String) -> String {
        String(text.map { $0 == "\t" || $0 == "\n" || $0 == "\r" ? " " : $0 })
    }

    /// A table row is one line: a cell's own line breaks (a command's `python -c '…'`) become spaces.
    public static func singleLine(_ text: String) -> String {
        text.split(whereSeparator: \.isNewline).joined(separator: " ")
    }

    /// Shortens text for a table cell.
    public static func truncate(_ text: String, to width: Int) -> String {
        text.count <= width ? text : String(text.prefix(width - 1)) + "…"
    }
}

/// Up to 6 significant digits, for table cells.
public func formatNumber(_ value: Double) -> String {
    if value.isNaN { return "nan" }
    if value.isInfinite { return value > 0 ? "inf" : "-inf" }
    if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
    var text = String(format: "%.6g", value)
    if text.contains("e") { return text }
    while text.contains(".") && (text.hasSuffix("0") || text.hasSuffix(".")) { text.removeLast() }
    return text
}

/// Human durations for tables: `850ms`, `12.3s`, `4m05s`, `2h03m`.
public func formatDuration(_ seconds: Double) -> String {
    if seconds < 1 { return "\(Int(seconds * 1000))ms" }
    if seconds < 60 { return String(Int(seconds * 10) / 10) + "." + String(Int(seconds * 10) % 10) + "s" }
    let total = Int(seconds)
    func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
    if total < 3600 { return "\(total / 60)m\(two(total % 60))s" }
    return "\(total / 3600)h\(two(total % 3600 / 60))m"
}

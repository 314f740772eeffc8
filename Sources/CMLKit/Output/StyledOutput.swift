/// Text for stdout, in ANSI colours when `color` (a terminal without `NO_COLOR`), held until `flush`:
/// `cml-diff`'s tables, code and log diffs, and charts.
public struct StyledOutput {
    public enum Style { case plain, dim, highlight, added, removed, hunk, bold }

    public let color: Bool
    public private(set) var buffered = ""

    public init(color: Bool) { self.color = color }

    public mutating func text(_ text: String, style: Style = .plain) {
        let code: String? = switch style {
        case .plain: nil
        case .dim: "2"
        case .highlight: "33"
        case .added: "32"
        case .removed: "31"
        case .hunk: "36"
        case .bold: "1"
        }
        if color, let code {
            buffered += "\u{1B}[\(code)m" + text + "\u{1B}[0m"
        } else {
            buffered += text
        }
    }

    public mutating func header(_ title: String) {
        text(title + "\n", style: .bold)
    }

    /// A unified diff, its added, removed and hunk lines coloured.
    public mutating func diff(_ unified: String) {
        for line in unified.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            let style: Style = line.hasPrefix("+") ? .added : line.hasPrefix("-") ? .removed : line.hasPrefix("@@") ? .hunk : .plain
            text(String(line), style: style)
            text("\n")
        }
    }

    /// An aligned table; `style(row, column)` colours each cell (padding stays plain).
    public mutating func table(_ table: TextTable, style: (Int, Int) -> Style) {
        table.styled(into: &self, style: style)
    }

    public mutating func flush() throws(CMLError) {
        if buffered.isEmpty { return }
        try Console.out(buffered)
        buffered.removeAll(keepingCapacity: true)
    }
}

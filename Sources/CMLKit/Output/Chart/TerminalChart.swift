/// Line charts for a terminal, drawn with Unicode Braille patterns: each character cell holds 2×4 dots.
///
/// Lines are told apart by colour and, since colour may be off (`NO_COLOR`, a pipe) or hard to tell
/// apart, by a letter put just after the last point of each line and repeated in the legend. Where
/// lines cross a cell, it shows the dots of all of them in the colour of the line with most dots there
/// (the later line on a tie).
public enum TerminalChart {
    /// The chart as lines of text, each ending in a newline, fitting `options.width` × `options.height`
    /// cells (at least 30 × 10; taller only when the legend leaves the plot fewer than three rows).
    /// Colour is ANSI escapes, only when `color` is true. Labels are measured in characters, so wide
    /// (East Asian) characters in them can push a row past the width.
    public static func render(_ series: [ChartSeries], options: ChartOptions, color: Bool) -> String {
        let data = ChartData(series, options: options)
        let width = max(options.width, 30)
        let height = max(options.height, 10)
        var rows = header(options, width: width)
        guard let xRange = data.xRange, let yRange = data.yRange else {
            rows.append("(" + (data.emptyReason ?? "") + ")")
            return joined(rows)
        }
        let legend = legendRows(data.lines.map(\.label), width: width, color: color)
        let notes = wrapped("(" + data.notes.joined(separator: "; ") + ")", width: width)
        let xTitle = ChartText.printable(data.xTitle(options))

        let belowPlot = 2 + (xTitle.isEmpty ? 0 : 1) + legend.count + (data.notes.isEmpty ? 0 : notes.count)
        let plotRows = max(3, height - rows.count - belowPlot)
        let yAxis = ChartAxis.y(yRange, logarithmic: data.logY, maxTicks: plotRows / 3 + 1, padding: 0)
        let labelWidth = yAxis.ticks.map(\.label.count).max() ?? 0
        // One column for the y axis line, one after the plot for the letters of lines that end there.
        let plotColumns = max(width - labelWidth - 2, 10)
        let (xAxis, xLabels) = fittedXAxis(
            xRange, unit: options.xUnit, plotColumns: plotColumns, offset: labelWidth + 1, width: width)

        let scale = DotScale(xAxis: xAxis, yAxis: yAxis, columns: plotColumns, rows: plotRows)
        var canvas = BrailleCanvas(columns: plotColumns + 1, rows: plotRows, lines: data.lines.count)
        for (index, line) in data.lines.enumerated() {
            let segments = data.segments(of: line, threshold: plotColumns * 4)
            canvas.draw(segments.map { $0.map(scale.dot) }, line: index)
        }
        canvas.placeLetters(marker)

        var tickLabels = [Int: String]()
        for tick in yAxis.ticks { tickLabels[scale.y(tick.position) / 4] = tick.label }
        for row in 0..<plotRows {
            let label = tickLabels[row].map { String(repeating: " ", count: labelWidth - $0.count) + $0 + "┤" }
            rows.append((label ?? String(repeating: " ", count: labelWidth) + "│") + canvas.row(row, color: color))
        }
        let tickColumns = Set(xAxis.ticks.map { scale.x($0.position) / 2 })
        rows.append(
            String(repeating: " ", count: labelWidth) + "└"
                + String((0...plotColumns).map { tickColumns.contains($0) ? "┬" : "─" }))
        rows.append(xLabels)
        if !xTitle.isEmpty { rows.append(centred(xTitle, in: plotColumns, offset: labelWidth + 1, width: width)) }
        rows += legend
        if !data.notes.isEmpty { rows += notes }
        return joined(rows)
    }

    static let palette = [34, 33, 35, 36, 32, 31, 94, 93, 95, 96, 92, 91]
    private static let letters = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")

    static func marker(_ line: Int) -> Character { letters[line % letters.count] }

    static func colored(_ text: String, line: Int) -> String {
        "\u{1B}[\(palette[line % palette.count])m" + text + "\u{1B}[0m"
    }

    /// The y label at the left and the title centred, on one row; none when there is neither.
    private static func header(_ options: ChartOptions, width: Int) -> [String] {
        let yLabel = ChartText.truncated(ChartText.printable(options.yLabel ?? ""), to: width)
        guard let title = options.title.map(ChartText.printable), !title.isEmpty else {
            return yLabel.isEmpty ? [] : [yLabel]
        }
        let titleText = ChartText.truncated(title, to: width - (yLabel.isEmpty ? 0 : yLabel.count + 2))
        let start = max((width - titleText.count) / 2, yLabel.isEmpty ? 0 : yLabel.count + 2)
        return [yLabel + String(repeating: " ", count: start - yLabel.count) + titleText]
    }

    /// The legend entries (`A━━ label`), as many to a row as fit.
    private static func legendRows(_ labels: [String], width: Int, color: Bool) -> [String] {
        var rows = [String]()
        var row = ""
        var rowWidth = 0
        for (index, label) in labels.enumerated() {
            let key = String(marker(index)) + "━━"
            let text = ChartText.truncated(ChartText.printable(label), to: width - 4)
            let entryWidth = key.count + 1 + text.count
            if rowWidth > 0 && rowWidth + 3 + entryWidth > width {
                rows.append(row)
                row = ""
                rowWidth = 0
            }
            if rowWidth > 0 {
                row += "   "
                rowWidth += 3
            }
            row += (color ? colored(key, line: index) : key) + " " + text
            rowWidth += entryWidth
        }
        if rowWidth > 0 { rows.append(row) }
        return rows
    }

    /// The x axis with as many ticks as have room for their labels, and the row of those labels.
    private static func fittedXAxis(
        _ range: ClosedRange<Double>, unit: ChartXUnit, plotColumns: Int, offset: Int, width: Int
    ) -> (ChartAxis, String) {
        var maxTicks = max(2, plotColumns / 6)
        while true {
            let axis = ChartAxis.x(range, unit: unit, maxTicks: maxTicks)
            var row = [Character](repeating: " ", count: width)
            var free = 0
            var fits = true
            for tick in axis.ticks {
                let column = offset + DotScale.dot(at: axis.fraction(tick.position), of: plotColumns * 2) / 2
                let label = Array(tick.label)
                let start = min(max(column - label.count / 2, 0), width - label.count)
                guard start >= free else {
                    fits = false
                    continue
                }
                row.replaceSubrange(start..<start + label.count, with: label)
                free = start + label.count + 2
            }
            if fits || maxTicks == 2 { return (axis, String(row)) }
            maxTicks -= 1
        }
    }

    private static func centred(_ text: String, in columns: Int, offset: Int, width: Int) -> String {
        let text = ChartText.truncated(text, to: width)
        let start = min(max(offset + (columns - text.count) / 2, 0), width - text.count)
        return String(repeating: " ", count: start) + text
    }

    /// `text` broken at spaces into rows of at most `width` characters.
    private static func wrapped(_ text: String, width: Int) -> [String] {
        var rows = [String]()
        var row = ""
        for word in text.split(separator: " ") {
            if !row.isEmpty && row.count + 1 + word.count > width {
                rows.append(row)
                row = ""
            }
            row += (row.isEmpty ? "" : " ") + ChartText.truncated(String(word), to: width)
        }
        if !row.isEmpty { rows.append(row) }
        return rows
    }

    private static func joined(_ rows: [String]) -> String {
        rows.map { row in
            var row = Substring(row)
            while row.last == " " { row.removeLast() }
            return row + "\n"
        }.joined()
    }
}

/// Where plot-space values fall among the dots of a plot `columns` × `rows` cells large.
private struct DotScale {
    let xAxis: ChartAxis
    let yAxis: ChartAxis
    let columns: Int
    let rows: Int

    func x(_ value: Double) -> Int { Self.dot(at: xAxis.fraction(value), of: columns * 2) }
    func y(_ value: Double) -> Int { Self.dot(at: 1 - yAxis.fraction(value), of: rows * 4) }
    func dot(_ point: ChartPoint) -> (x: Int, y: Int) { (x(point.x), y(point.y)) }

    /// The dot `fraction` of the way along a row or column of `count` dots.
    static func dot(at fraction: Double, of count: Int) -> Int { Int((fraction * Double(count - 1)).rounded()) }
}

/// A grid of Braille cells, with the dots of each line kept apart so that a shared cell can take the
/// colour of the line with most dots in it.
struct BrailleCanvas {
    let columns: Int
    let rows: Int
    /// Dots per line: one byte per cell, one bit per dot in Braille order.
    private var dots: [[UInt8]]
    private var letters: [Int: (line: Int, letter: Character)] = [:]
    /// Where each drawn line ends: its last dot's cell.
    private var ends: [(line: Int, column: Int, row: Int)] = []

    init(columns: Int, rows: Int, lines: Int) {
        self.columns = columns
        self.rows = rows
        dots = Array(repeating: Array(repeating: 0, count: columns * rows), count: lines)
    }

    /// The bit of the dot at (column, row) within a cell, as Unicode numbers Braille dots:
    /// 1 2 3 down the left with 7 below them, 4 5 6 down the right with 8 below.
    private static let bits: [[UInt8]] = [[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]]

    mutating func set(line: Int, x: Int, y: Int) {
        guard x >= 0, y >= 0, x < columns * 2, y < rows * 4 else { return }
        dots[line][(y / 4) * columns + x / 2] |= Self.bits[y % 4][x % 2]
    }

    /// The dots from one point to the other, both included (Bresenham's line).
    mutating func drawLine(line: Int, from start: (x: Int, y: Int), to end: (x: Int, y: Int)) {
        let dx = abs(end.x - start.x), dy = -abs(end.y - start.y)
        let stepX = start.x < end.x ? 1 : -1, stepY = start.y < end.y ? 1 : -1
        var error = dx + dy
        var x = start.x, y = start.y
        while true {
            set(line: line, x: x, y: y)
            if x == end.x && y == end.y { return }
            let doubled = 2 * error
            if doubled >= dy {
                error += dy
                x += stepX
            }
            if doubled <= dx {
                error += dx
                y += stepY
            }
        }
    }

    /// Draws a line's runs of dots: lone dots, or dots joined by straight lines.
    mutating func draw(_ runs: [[(x: Int, y: Int)]], line: Int) {
        for run in runs {
            set(line: line, x: run[0].x, y: run[0].y)
            for (from, to) in zip(run, run.dropFirst()) { drawLine(line: line, from: from, to: to) }
        }
        if let end = runs.last?.last { ends.append((line, end.x / 2 + 1, end.y / 4)) }
    }

    /// Puts each line's letter in the cell after its last dot, moved up or down to the nearest row
    /// without a letter when another line ends there too.
    mutating func placeLetters(_ letter: (Int) -> Character) {
        for end in ends {
            let distances = (0..<rows).lazy.flatMap { [end.row - $0, end.row + $0] }
            let row = distances.first { $0 >= 0 && $0 < rows && letters[$0 * columns + end.column] == nil } ?? end.row
            letters[row * columns + end.column] = (end.line, letter(end.line))
        }
    }

    func row(_ row: Int, color: Bool) -> String {
        var text = ""
        var currentColor: Int? = nil
        for column in 0..<columns {
            let cell = row * columns + column
            var character: Character = " "
            var owner: Int? = nil
            if let letter = letters[cell] {
                character = letter.letter
                owner = letter.line
            } else {
                var union: UInt8 = 0
                var most = 0
                for line in dots.indices where dots[line][cell] != 0 {
                    union |= dots[line][cell]
                    if dots[line][cell].nonzeroBitCount >= most {
                        most = dots[line][cell].nonzeroBitCount
                        owner = line
                    }
                }
                if union != 0 { character = Character(Unicode.Scalar(0x2800 + UInt32(union))!) }
            }
            if color {
                let wanted = owner.map { TerminalChart.palette[$0 % TerminalChart.palette.count] }
                if wanted != currentColor {
                    text += wanted.map { "\u{1B}[\($0)m" } ?? "\u{1B}[0m"
                    currentColor = wanted
                }
            }
            text.append(character)
        }
        if color && currentColor != nil { text += "\u{1B}[0m" }
        return text
    }
}

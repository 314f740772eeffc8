import Foundation

/// A point in plot space: y is log10 of the value on a log axis.
struct ChartPoint: Equatable {
    var x: Double
    var y: Double
}

/// Series made ready to draw, shared by the renderers: smoothed, cut to the x range asked for, y in
/// plot space, every value that cannot be drawn turned into a NaN gap, with the ranges of what will be
/// drawn and counts of what will not. Every step is one pass over the points.
struct ChartData {
    struct Line {
        var label: String
        var x: [Double]
        /// In plot space; NaN where nothing is drawn.
        var y: [Double]
        /// Ascending indices of the points that are gaps (x or y not drawable).
        var gaps: [Int]
        /// The series this line was made from, for what a point was before smoothing.
        var input: ChartSeries
        /// The index in `input` of each point; nil when they are the same (no x range left points out).
        var source: [Int]?

        /// The index in `input` of the line's point `index`.
        func inputIndex(_ index: Int) -> Int { source?[index] ?? index }
    }

    var lines: [Line] = []
    /// Ranges over the drawable points of all lines (the x range asked for, where one was); nil when
    /// there are none.
    var xRange: ClosedRange<Double>?
    var yRange: ClosedRange<Double>?
    /// Values left out because a log axis cannot show them.
    var notPositive = 0
    /// NaN and infinite values (of x or y), drawn as gaps.
    var notFinite = 0
    /// Finite values too large to draw (or smoothed into overflow), drawn as gaps.
    var tooLarge = 0
    let smoothing: ChartSmoothing
    let logY: Bool
    /// Whether the options asked for an x range that left points out or could.
    let windowed: Bool

    init(_ series: [ChartSeries], options: ChartOptions) {
        smoothing = options.smoothing
        logY = options.logY
        let from = options.xFrom ?? -.infinity, to = options.xTo ?? .infinity
        windowed = options.xFrom != nil || options.xTo != nil
        var xMin = Double.infinity, xMax = -Double.infinity
        var yMin = Double.infinity, yMax = -Double.infinity
        for input in series {
            let count = min(input.x.count, input.y.count)
            var x = count == input.x.count ? input.x : Array(input.x.prefix(count))
            // Smoothed before the cut, so that a zoomed-in line is the same line, only closer.
            var y = smoothing.apply(count == input.y.count ? input.y : Array(input.y.prefix(count)))
            var source: [Int]? = nil
            if windowed {
                // A point whose x is not finite has no place in a range: it is left out with the rest.
                let kept = x.indices.filter { x[$0] >= from && x[$0] <= to }
                if kept.count < count {
                    x = kept.map { x[$0] }
                    y = kept.map { y[$0] }
                    source = kept
                }
            }
            var gaps = [Int]()
            // y becomes plot space: log10 on a log axis, NaN at gaps.
            for i in x.indices {
                let px = x[i], value = y[i]
                if abs(px) <= Self.largestDrawable && abs(value) <= Self.largestDrawable && (!logY || value > 0) {
                    let py = logY ? log10(value) : value
                    if logY { y[i] = py }
                    xMin = min(xMin, px)
                    xMax = max(xMax, px)
                    yMin = min(yMin, py)
                    yMax = max(yMax, py)
                    continue
                }
                gaps.append(i)
                if !(px.isFinite && input.y[source?[i] ?? i].isFinite) {
                    notFinite += 1
                } else if logY && value <= 0 {
                    notPositive += 1
                } else {
                    tooLarge += 1
                }
                // Downsampling skips what is not finite: every gap must read so.
                y[i] = .nan
            }
            lines.append(Line(label: input.label, x: x, y: y, gaps: gaps, input: input, source: source))
        }
        if xMin <= xMax {
            // A zoom shows the range asked for, even where its ends hold no point. Every drawn x lies
            // inside that range, so it holds xMin...xMax.
            xRange = max(options.xFrom ?? xMin, -Self.largestDrawable)...min(options.xTo ?? xMax, Self.largestDrawable)
            yRange = yMin...yMax
        }
    }

    /// Beyond this magnitude, spans, positions and tick steps on an axis could overflow to infinity.
    static let largestDrawable = 1e300

    /// Why nothing can be drawn, or nil when something can.
    var emptyReason: String? {
        if xRange != nil { return nil }
        if lines.isEmpty { return "no series to plot" }
        if windowed && lines.allSatisfy({ $0.x.isEmpty }) { return "no points in the x range" }
        if notPositive > 0 { return "no values > 0 to plot on a log scale" }
        if tooLarge > 0 { return "no values within ±1e300 to plot" }
        return "no finite values to plot"
    }

    /// The x-axis title: the label, and for Unix times where the axis starts, which tick labels
    /// showing only clock times do not tell.
    func xTitle(_ options: ChartOptions) -> String {
        guard options.xUnit == .unixTime, let xRange else { return options.xLabel }
        return ChartTime.unixTimeTitle(options.xLabel, start: xRange.lowerBound)
    }

    /// What the chart leaves out or changes, one short sentence each.
    var notes: [String] {
        var notes = [String]()
        if let note = smoothing.note { notes.append(note) }
        func counted(_ count: Int, _ noun: String) -> String { "\(count) \(noun)\(count == 1 ? "" : "s")" }
        if notPositive > 0 { notes.append(counted(notPositive, "value") + " ≤ 0 not shown on the log scale") }
        if notFinite > 0 { notes.append(counted(notFinite, "NaN/infinite value") + " not shown") }
        if tooLarge > 0 { notes.append(counted(tooLarge, "value") + " beyond ±1e300 not shown") }
        return notes
    }

    /// The line downsampled to at most `threshold` points, split into runs at its gaps.
    func segments(of line: Line, threshold: Int) -> [[ChartPoint]] {
        segmentIndices(of: line, threshold: threshold).map { run in run.map { ChartPoint(x: line.x[$0], y: line.y[$0]) } }
    }

    /// The indices into the line of the points `segments` draws, in the same runs.
    func segmentIndices(of line: Line, threshold: Int) -> [[Int]] {
        let kept = Downsample.lttbIndices(x: line.x, y: line.y, threshold: threshold)
        var segments = [[Int]]()
        var current = [Int]()
        var nextGap = 0
        var previous = -1
        for index in kept {
            while nextGap < line.gaps.count && line.gaps[nextGap] < index { nextGap += 1 }
            // A gap index below this one and above the previous kept index lies between them.
            if nextGap > 0 && line.gaps[nextGap - 1] > previous && !current.isEmpty {
                segments.append(current)
                current = []
            }
            current.append(index)
            previous = index
        }
        if !current.isEmpty { segments.append(current) }
        return segments
    }
}

/// Text from series labels and options, made safe to print: control characters would move a terminal's
/// cursor or make an SVG document malformed.
enum ChartText {
    static func printable(_ text: String) -> String {
        String(
            String.UnicodeScalarView(
                text.unicodeScalars.map { scalar in
                    switch scalar.value {
                    case 0x09, 0x0A, 0x0D: " "
                    case 0x00..<0x20, 0x7F..<0xA0: "\u{FFFD}"
                    default: scalar
                    }
                }))
    }

    /// `text` cut to `width` characters, the last one an ellipsis when cut.
    static func truncated(_ text: String, to width: Int) -> String {
        guard text.count > width else { return text }
        return width <= 0 ? "" : String(text.prefix(width - 1)) + "…"
    }
}

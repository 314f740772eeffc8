import Foundation
import Testing

@testable import CMLKit

#if canImport(FoundationXML)
    import FoundationXML
#endif

struct ChartDownsampleTests {
    /// A deterministic wiggle, so that failures reproduce.
    private func wiggle(_ count: Int) -> (x: [Double], y: [Double]) {
        ((0..<count).map(Double.init), (0..<count).map { sin(Double($0) * 0.01) + 0.1 * sin(Double($0) * 7.3) })
    }

    @Test func keepsFirstAndLastAndReturnsThresholdPoints() {
        let (x, y) = wiggle(10_000)
        let kept = Downsample.lttbIndices(x: x, y: y, threshold: 100)
        #expect(kept.count == 100)
        #expect(kept.first == 0)
        #expect(kept.last == 9_999)
        #expect(zip(kept, kept.dropFirst()).allSatisfy { $0 < $1 })
        let (keptX, keptY) = Downsample.lttb(x: x, y: y, threshold: 100)
        #expect(keptX == kept.map { x[$0] })
        #expect(keptY == kept.map { y[$0] })
    }

    @Test func spikesInAMillionPointsSurvive() {
        var (x, y) = wiggle(1_000_000)
        y[123_457] = 50
        y[876_543] = -50
        let kept = Downsample.lttbIndices(x: x, y: y, threshold: 500)
        #expect(kept.count == 500)
        #expect(kept.contains(123_457))
        #expect(kept.contains(876_543))
        #expect(kept.first == 0 && kept.last == 999_999)
    }

    @Test func shortSeriesAndTinyThresholds() {
        let x: [Double] = [0, 1, 2, 3, 4]
        let y: [Double] = [5, 3, 4, 1, 2]
        #expect(Downsample.lttbIndices(x: x, y: y, threshold: 10) == [0, 1, 2, 3, 4])
        #expect(Downsample.lttbIndices(x: x, y: y, threshold: 5) == [0, 1, 2, 3, 4])
        #expect(Downsample.lttbIndices(x: x, y: y, threshold: 3) == [0, 3, 4])
        #expect(Downsample.lttbIndices(x: x, y: y, threshold: 2) == [0, 4])
        #expect(Downsample.lttbIndices(x: x, y: y, threshold: 1) == [0])
        #expect(Downsample.lttbIndices(x: x, y: y, threshold: 0) == [])
        #expect(Downsample.lttbIndices(x: [], y: [], threshold: 3) == [])
    }

    @Test func nonFinitePointsAreDroppedBeforeBucketing() {
        var (x, y) = wiggle(1_000)
        y[10] = .nan
        y[500] = .infinity
        x[700] = -.infinity
        let kept = Downsample.lttbIndices(x: x, y: y, threshold: 50)
        #expect(kept.count == 50)
        #expect(!kept.contains(10) && !kept.contains(500) && !kept.contains(700))
        #expect(kept.first == 0 && kept.last == 999)
        let (keptX, keptY) = Downsample.lttb(x: x, y: y, threshold: 2_000)
        #expect(keptX.count == 997)
        #expect(keptX.allSatisfy(\.isFinite) && keptY.allSatisfy(\.isFinite))
    }

    @Test func trailingMeanAveragesTheLastPoints() {
        #expect(Smoothing.trailingMean([1, 2, 3, 4, 5], window: 3) == [1, 1.5, 2, 3, 4])
        #expect(Smoothing.trailingMean([1, 2, 3], window: 1) == [1, 2, 3])
        #expect(Smoothing.trailingMean([1, 2, 3], window: 0) == [1, 2, 3])
        #expect(Smoothing.trailingMean([4, 8], window: 10) == [4, 6])
    }

    @Test func trailingMeanKeepsGapsAndLeavesThemOut() {
        let smoothed = Smoothing.trailingMean([1, .nan, 3, 5, .infinity, 7], window: 2)
        #expect(smoothed[0] == 1)
        #expect(smoothed[1].isNaN)
        #expect(smoothed[2] == 3)
        #expect(smoothed[3] == 4)
        #expect(smoothed[4] == .infinity)
        #expect(smoothed[5] == 7)
    }
}

struct ChartAxisTests {
    private func labels(_ axis: ChartAxis) -> [String] { axis.ticks.map(\.label) }

    @Test func linearTicksAtOneTwoFiveSteps() {
        let unit = ChartAxis.linear(0...1, maxTicks: 6)
        #expect(labels(unit) == ["0", "0.2", "0.4", "0.6", "0.8", "1"])
        #expect(unit.lower == 0 && unit.upper == 1)
        #expect(labels(ChartAxis.linear(0.31...0.95, maxTicks: 5)) == ["0.4", "0.6", "0.8"])
        #expect(labels(ChartAxis.linear(-3...7, maxTicks: 6)) == ["-2", "0", "2", "4", "6"])
        #expect(labels(ChartAxis.linear(0...1_000_000, maxTicks: 6)) == ["0", "200k", "400k", "600k", "800k", "1M"])
    }

    @Test func stepTicksAreWholeSteps() {
        // Issue 13: four steps gave ticks at 0.5, 1.5 … where no step can be.
        #expect(labels(ChartAxis.x(0...3, unit: .number, maxTicks: 8)) == ["0", "1", "2", "3"])
        #expect(labels(ChartAxis.x(0...1_000, unit: .number, maxTicks: 6)) == ["0", "200", "400", "600", "800", "1k"])
    }

    @Test func linearTicksAreAtLeastTwo() {
        #expect(labels(ChartAxis.linear(3...7, maxTicks: 2)) == ["4", "6"])
        #expect(ChartAxis.linear(0.3...0.7, maxTicks: 1).ticks.count >= 2)
    }

    @Test func paddingWidensTheBounds() {
        let axis = ChartAxis.linear(0...10, maxTicks: 6, padding: 0.1)
        #expect(axis.lower == -1 && axis.upper == 11)
        #expect(axis.fraction(5) == 0.5)
    }

    @Test func flatRangesOpenAroundTheValue() {
        let seven = ChartAxis.linear(7...7, maxTicks: 5)
        #expect(seven.lower < 7 && seven.upper > 7)
        #expect(labels(seven).contains("7"))
        let zero = ChartAxis.linear(0...0, maxTicks: 5)
        #expect(zero.lower == -1 && zero.upper == 1)
    }

    @Test func compactNumberLabels() {
        #expect(ChartNumber.label(0, stepExponent: 3) == "0")
        #expect(ChartNumber.label(999, stepExponent: 0) == "999")
        #expect(ChartNumber.label(2_500, stepExponent: 2) == "2.5k")
        #expect(ChartNumber.label(1_200_000, stepExponent: 5) == "1.2M")
        #expect(ChartNumber.label(3e9, stepExponent: 9) == "3G")
        #expect(ChartNumber.label(1e12, stepExponent: 12) == "1T")
        #expect(ChartNumber.label(1e15, stepExponent: 15) == "1e15")
        #expect(ChartNumber.label(-0.5, stepExponent: -1) == "-0.5")
        #expect(ChartNumber.label(0.0001, stepExponent: -4) == "0.0001")
        #expect(ChartNumber.label(0.00001, stepExponent: -5) == "1e-5")
        #expect(ChartNumber.label(1e-12, stepExponent: -12) == "1e-12")
        #expect(ChartNumber.label(2.5e-12, stepExponent: -13) == "2.5e-12")
        #expect(ChartNumber.label(-3e-7, stepExponent: -7) == "-3e-7")
        #expect(ChartNumber.fixed(0.30000000000000004, decimals: 1) == "0.3")
        #expect(ChartNumber.fixed(-0.04, decimals: 1) == "0")
    }

    @Test func logTicksAtPowersOfTen() {
        let wide = ChartAxis.logarithmic(-12...12, maxTicks: 6)
        #expect(labels(wide) == ["1e-10", "1e-5", "1", "100k", "10G"])
        #expect(wide.ticks.map(\.position) == [-10, -5, 0, 5, 10])
        let fewDecades = ChartAxis.logarithmic(-2...1, maxTicks: 6)
        #expect(labels(fewDecades) == ["0.01", "0.1", "1", "10"])
        let oneDecade = ChartAxis.logarithmic(log10(0.15)...log10(0.9), maxTicks: 6)
        #expect(labels(oneDecade) == ["0.2", "0.5"])
    }

    @Test func narrowLogRangesTickLinearly() {
        let axis = ChartAxis.logarithmic(log10(0.3)...log10(0.9), maxTicks: 6)
        #expect(labels(axis) == ["0.4", "0.6", "0.8"])
        #expect(abs(axis.ticks[0].position - log10(0.4)) < 1e-12)
    }

    @Test func elapsedTimeTicks() {
        let axis = ChartAxis.time(0...9_000, maxTicks: 6, unit: .elapsedSeconds)
        #expect(labels(axis) == ["0", "30m", "1h", "1h30m", "2h", "2h30m"])
        #expect(ChartTime.durationLabel(90, step: 30) == "1m30s")
        #expect(ChartTime.durationLabel(129_600, step: 43_200) == "1d12h")
        #expect(ChartTime.durationLabel(2.5, step: 0.5) == "2.5s")
    }

    @Test func unixTimeTicksOverSecondsAndDays() {
        let start = 1_795_000_000.0  // 2026-11-18 11:06:40 UTC
        let seconds = ChartAxis.time(start...(start + 40), maxTicks: 5, unit: .unixTime)
        #expect(labels(seconds) == ["11:06:40", "11:06:50", "11:07:00", "11:07:10", "11:07:20"])
        let days = ChartAxis.time(start...(start + 5 * 86_400), maxTicks: 6, unit: .unixTime)
        #expect(labels(days) == ["Nov 19", "Nov 20", "Nov 21", "Nov 22", "Nov 23"])
        let hours = ChartAxis.time(start...(start + 14 * 3_600), maxTicks: 8, unit: .unixTime)
        #expect(labels(hours) == ["12:00", "14:00", "16:00", "18:00", "20:00", "22:00", "Nov 19"])
        #expect(ChartTime.unixTimeTitle("time", start: start) == "time (UTC, from 2026-11-18 11:06:40)")
    }
}

struct ChartDataTests {
    @Test func gapsSplitLinesIntoSegments() {
        let series = ChartSeries(label: "a", x: [0, 1, 2, 3, 4, .infinity, 6], y: [0, 1, 2, .nan, 4, 5, 6])
        let data = ChartData([series], options: ChartOptions())
        let segments = data.segments(of: data.lines[0], threshold: 100)
        #expect(segments.map { $0.map(\.x) } == [[0, 1, 2], [4], [6]])
        #expect(data.notFinite == 2)
        #expect(data.notes == ["2 NaN/infinite values not shown"])
        #expect(data.xRange == 0...6 && data.yRange == 0...6)
    }

    @Test func logScaleLeavesOutValuesAtOrBelowZero() {
        let series = ChartSeries(label: "a", x: [0, 1, 2, 3, 4], y: [1, 0, -1, 10, 100])
        let data = ChartData([series], options: ChartOptions(logY: true))
        #expect(data.notPositive == 2)
        #expect(data.notFinite == 0)
        #expect(data.yRange == 0...2)
        #expect(data.segments(of: data.lines[0], threshold: 100).map { $0.map(\.y) } == [[0], [1, 2]])
        #expect(data.notes == ["2 values ≤ 0 not shown on the log scale"])
    }

    @Test func smoothingComesBeforeTheLogScale() {
        let series = ChartSeries(label: "a", x: [0, 1, 2], y: [-10, 30, 1000])
        let data = ChartData([series], options: ChartOptions(logY: true, smoothing: .trailingMean(window: 2)))
        #expect(data.notPositive == 1)
        #expect(data.lines[0].y[1] == 1)  // log10 of the mean of -10 and 30
        #expect(data.notes.first == "smoothed: trailing mean of 2 points")
    }

    @Test func unequalArraysUseTheShorter() {
        let data = ChartData([ChartSeries(label: "a", x: [0, 1, 2, 3], y: [5, 6])], options: ChartOptions())
        #expect(data.lines[0].x == [0, 1] && data.lines[0].y == [5, 6])
        #expect(data.xRange == 0...1)
    }

    @Test func emptyReasons() {
        #expect(ChartData([], options: ChartOptions()).emptyReason == "no series to plot")
        let nan = ChartSeries(label: "a", x: [0, 1], y: [.nan, .infinity])
        #expect(ChartData([nan], options: ChartOptions()).emptyReason == "no finite values to plot")
        let negative = ChartSeries(label: "a", x: [0, 1], y: [0, -1])
        let logReason = ChartData([negative], options: ChartOptions(logY: true)).emptyReason
        #expect(logReason == "no values > 0 to plot on a log scale")
        #expect(ChartData([negative], options: ChartOptions()).emptyReason == nil)
    }
}

struct TerminalChartTests {
    private let twoRuns = [
        ChartSeries(
            label: "lr=0.1", x: (0...10).map(Double.init),
            y: [1.0, 0.8, 0.6, 0.5, 0.45, 0.4, 0.38, 0.36, 0.35, 0.34, 0.33]),
        ChartSeries(label: "lr=0.01", x: [0, 2, 4, 6, 8, 10], y: [1.0, 0.9, 0.8, 0.75, 0.7, 0.68]),
    ]

    private func render(_ series: [ChartSeries], _ options: ChartOptions, color: Bool = false) -> String {
        TerminalChart.render(series, options: options, color: color)
    }

    private func withoutEscapes(_ text: String) -> String {
        text.replacingOccurrences(of: "\u{1B}\\[[0-9;]*m", with: "", options: .regularExpression)
    }

    @Test func goldenTwoSeries() {
        let chart = render(twoRuns, ChartOptions(title: "loss", width: 40, height: 12))
        let expected = """
                              loss
              1┤⠙⢖⠒⠤⢄⣀⡀
               │  ⠣⡀  ⠈⠉⠒⠒⠤⢄⣀⡀
               │   ⠈⠢⡀       ⠈⠉⠉⠒⠒⠒⠤⠤⠤⢄⣀⣀⣀
               │     ⠘⢄                   ⠉⠉⠉⠉⠉⠒⠒⠒⠒B
               │       ⠑⠢⢄⡀
            0.5┤          ⠈⠑⠒⠢⠤⣀⣀
               │                 ⠉⠉⠒⠒⠒⠢⠤⠤⠤⠤⠤⠤⢄⣀⣀⣀⣀⣀A
               └┬────────────────┬────────────────┬─
                0                5               10
                               step
            A━━ lr=0.1   B━━ lr=0.01

            """
        #expect(chart == expected)
    }

    @Test func fitsTheRequestedSize() {
        for (width, height) in [(40, 12), (80, 20), (120, 40), (30, 10)] {
            let options = ChartOptions(title: "t", yLabel: "loss", smoothing: .trailingMean(window: 3), width: width, height: height)
            let rows = render(twoRuns, options).split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            #expect(rows.count == height, "\(width)x\(height)")
            #expect(rows.allSatisfy { $0.count <= width }, "\(width)x\(height)")
        }
    }

    @Test func colourOnlyAddsEscapes() {
        let options = ChartOptions(width: 50, height: 14)
        let coloured = TerminalChart.render(twoRuns, options: options, color: true)
        #expect(coloured.contains("\u{1B}[34m") && coloured.contains("\u{1B}[33m"))
        #expect(withoutEscapes(coloured) == TerminalChart.render(twoRuns, options: options, color: false))
    }

    @Test func eachLineEndsInItsLetter() {
        let chart = TerminalChart.render(twoRuns, options: ChartOptions(width: 50, height: 14), color: false)
        let plotRows = chart.split(separator: "\n").filter { $0.contains("┤") || $0.contains("│") }
        #expect(plotRows.filter { $0.hasSuffix("A") }.count == 1)
        #expect(plotRows.filter { $0.hasSuffix("B") }.count == 1)
        #expect(chart.contains("A━━ lr=0.1") && chart.contains("B━━ lr=0.01"))
    }

    @Test func emptyStates() {
        #expect(TerminalChart.render([], options: ChartOptions(), color: false) == "(no series to plot)\n")
        let nan = ChartSeries(label: "a", x: [0, 1], y: [.nan, .nan])
        let titled = TerminalChart.render([nan], options: ChartOptions(title: "acc"), color: true)
        #expect(titled == String(repeating: " ", count: 38) + "acc\n(no finite values to plot)\n")
    }

    @Test func onePointAndFlatLinesDraw() {
        let one = render([ChartSeries(label: "a", x: [5], y: [0.5])], ChartOptions(width: 40, height: 10))
        #expect(one.unicodeScalars.filter { (0x2801...0x28FF).contains($0.value) }.count == 1)
        #expect(one.contains("0.5┤"))
        let flat = render([ChartSeries(label: "a", x: [0, 1, 2, 3], y: [7, 7, 7, 7])], ChartOptions(width: 40, height: 10))
        let flatRow = flat.split(separator: "\n").first { $0.contains("⠉") }
        #expect(flatRow?.hasPrefix("  7┤") == true)
    }

    @Test func hugeTinyAndNegativeValuesGetCompactLabels() {
        let x = (0..<50).map(Double.init)
        let options = ChartOptions(width: 60, height: 14)
        let huge = render([ChartSeries(label: "a", x: x.map { $0 * 100_000 }, y: x.map { 1e12 + $0 * 1e11 })], options)
        #expect(huge.contains("2T┤") && huge.contains("1M") && !huge.contains("000000"))
        let tiny = render([ChartSeries(label: "a", x: x, y: x.map { 1e-12 * (1 + $0 / 25) })], options)
        #expect(tiny.contains("1e-12┤") && tiny.contains("2e-12┤"))
        let negative = render([ChartSeries(label: "a", x: x, y: x.map { -$0 })], options)
        #expect(negative.contains("-40┤") && negative.contains("0┤"))
    }

    @Test func logScaleNotesWhatItLeavesOut() {
        let series = ChartSeries(label: "a", x: [0, 1, 2, 3, 4], y: [0.001, 0, -5, 10, 1000])
        let chart = render([series], ChartOptions(logY: true, width: 60, height: 14))
        #expect(chart.contains("(2 values ≤ 0 not shown on the log scale)"))
        #expect(chart.contains("0.01┤") && chart.contains("100┤"))
        let none = render([ChartSeries(label: "a", x: [0, 1], y: [0, -1])], ChartOptions(logY: true))
        #expect(none == "(no values > 0 to plot on a log scale)\n")
    }

    @Test func controlCharactersInLabelsAreNotPrinted() {
        let series = ChartSeries(label: "evil\u{1B}]0;title\u{07}\nname", x: [0, 1], y: [0, 1])
        let chart = TerminalChart.render([series], options: ChartOptions(title: "t\u{1B}[2J"), color: false)
        #expect(!chart.contains("\u{1B}") && !chart.contains("\u{07}"))
        #expect(chart.contains("A━━ evil\u{FFFD}]0;title\u{FFFD} name"))
    }

    @Test func lettersOfLinesEndingInOneCellBothShow() {
        let first = ChartSeries(label: "a", x: [0, 10], y: [0, 1])
        let second = ChartSeries(label: "b", x: [0, 10], y: [0.5, 1])
        let chart = TerminalChart.render([first, second], options: ChartOptions(width: 40, height: 12), color: false)
        let plotRows = chart.split(separator: "\n").filter { $0.contains("┤") || $0.contains("│") }
        // Both end in the top right cell: the first line's letter takes it, the second moves down a row.
        #expect(plotRows.first?.hasSuffix("A") == true)
        #expect(plotRows.dropFirst().first?.hasSuffix("B") == true)
    }

    @Test func extremeValuesNeitherCrashNorHang() throws {
        let extremes = [
            ChartSeries(label: "max", x: [0, 1, 2], y: [-.greatestFiniteMagnitude, 0, .greatestFiniteMagnitude]),
            ChartSeries(label: "subnormal", x: [0, 1], y: [0, .leastNonzeroMagnitude]),
            ChartSeries(label: "flat near the limit", x: [0, 1], y: [1e300, 1e300]),
            ChartSeries(label: "one point far out", x: [1e300], y: [1]),
            ChartSeries(label: "narrow x", x: [1, 1 + 1e-15], y: [1, 2]),
            ChartSeries(label: "wide x", x: [-1e300, 1e300], y: [1, 2]),
        ]
        for series in extremes {
            for unit in [ChartXUnit.number, .elapsedSeconds, .unixTime] {
                for logY in [false, true] {
                    let options = ChartOptions(logY: logY, xUnit: unit, width: 50, height: 12)
                    let chart = TerminalChart.render([series], options: options, color: false)
                    let rows = chart.split(separator: "\n")
                    #expect(rows.allSatisfy { $0.count <= 50 }, "\(series.label) \(unit) \(logY)")
                    let svg = SVGChart.render([series], options: options)
                    #expect(XMLParser(data: Data(svg.utf8)).parse(), "\(series.label) \(unit) \(logY)")
                }
            }
        }
        let overflowing = TerminalChart.render([extremes[0]], options: ChartOptions(), color: false)
        #expect(overflowing.contains("(2 values beyond ±1e300 not shown)"))
    }

    @Test func aMillionPointsDrawLikeAThousand() {
        let count = 1_000_000
        var y = (0..<count).map { sin(Double($0) / 50_000) }
        y[600_000] = 10
        let chart = render([ChartSeries(label: "a", x: (0..<count).map(Double.init), y: y)], ChartOptions())
        // The spike reaches the top row.
        let firstPlotRow = chart.split(separator: "\n")[0]
        #expect(firstPlotRow.unicodeScalars.contains { (0x2801...0x28FF).contains($0.value) })
    }
}

struct SVGChartTests {
    /// The SVG's elements and the text inside its `<text>` elements, as an XML parser reads them.
    private final class Reader: NSObject, XMLParserDelegate {
        var elements: [(name: String, attributes: [String: String])] = []
        var texts: [String] = []
        private var inText = false

        func parser(
            _ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
            attributes: [String: String] = [:]
        ) {
            elements.append((name, attributes))
            if name == "text" {
                inText = true
                texts.append("")
            }
        }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            if name == "text" { inText = false }
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            if inText { texts[texts.count - 1] += string }
        }
    }

    private func parse(_ svg: String) -> Reader? {
        let parser = XMLParser(data: Data(svg.utf8))
        let reader = Reader()
        parser.delegate = reader
        return parser.parse() ? reader : nil
    }

    private let labels = ["lr=0.1 <best> & \"fast\"", "it's 'ok'", "a\u{01}b"]

    private var series: [ChartSeries] {
        labels.enumerated().map { index, label in
            let y = (0..<100).map { Double(index) + sin(Double($0) / 10) }
            return ChartSeries(label: label, x: (0..<100).map(Double.init), y: y)
        }
    }

    @Test func isWellFormedWithOnePathPerSeriesAndEscapedLabels() throws {
        let svg = SVGChart.render(series, options: ChartOptions(title: "loss <&>", xLabel: "step", yLabel: "loss"))
        let reader = try #require(parse(svg))
        let root = try #require(reader.elements.first)
        #expect(root.name == "svg")
        #expect(root.attributes["xmlns"] == "http://www.w3.org/2000/svg")
        #expect(root.attributes["viewBox"] == "0 0 960 540")
        #expect(root.attributes["width"] == "960" && root.attributes["height"] == "540")
        let lines = reader.elements.filter { $0.name == "path" && $0.attributes["class"] == "series" }
        #expect(lines.count == 3)
        #expect(Set(lines.compactMap { $0.attributes["stroke"] }).count == 3)
        #expect(reader.texts.contains("lr=0.1 <best> & \"fast\""))
        #expect(reader.texts.contains("it's 'ok'"))
        #expect(reader.texts.contains("a\u{FFFD}b"))
        #expect(reader.texts.contains("loss <&>"))
        #expect(!svg.contains("<best>"))
    }

    @Test func gapsBecomeSubpaths() throws {
        let gappy = ChartSeries(label: "a", x: [0, 1, 2, 3, 4, 5], y: [1, 2, .nan, 3, 4, .infinity])
        let reader = try #require(parse(SVGChart.render([gappy], options: ChartOptions())))
        let path = try #require(reader.elements.first { $0.attributes["class"] == "series" }?.attributes["d"])
        #expect(path.filter { $0 == "M" }.count == 2)
        #expect(reader.texts.contains("2 NaN/infinite values not shown"))
    }

    @Test func longSeriesAreDownsampledToTwiceThePlotWidth() throws {
        let count = 200_000
        let long = ChartSeries(label: "a", x: (0..<count).map(Double.init), y: (0..<count).map { sin(Double($0)) })
        let reader = try #require(parse(SVGChart.render([long], options: ChartOptions(), width: 800, height: 400)))
        let path = try #require(reader.elements.first { $0.attributes["class"] == "series" }?.attributes["d"])
        let points = path.split(separator: " ").count
        #expect(points > 1_000 && points <= 1_600)
    }

    @Test func emptyAndLogStatesStayDocuments() throws {
        let empty = try #require(parse(SVGChart.render([], options: ChartOptions(title: "acc"))))
        #expect(empty.texts.contains("No data: no series to plot"))
        let logY = ChartSeries(label: "a", x: [0, 1, 2, 3], y: [0, 1, 10, -1])
        let chart = try #require(parse(SVGChart.render([logY], options: ChartOptions(logY: true))))
        #expect(chart.texts.contains("2 values ≤ 0 not shown on the log scale"))
        #expect(chart.texts.contains("1") && chart.texts.contains("10"))
    }
}

struct ChartPipelineTests {
    @Test func lttbKeepsEndpointsExtremesAndExactlyThresholdPoints() {
        // A noisy series whose lowest and highest points lie inside buckets, not at their edges.
        let count = 100_000
        let x = (0..<count).map(Double.init)
        var y = (0..<count).map { sin(Double($0) * 7.31) }
        y[31_337] = -9
        y[77_777] = 9
        for threshold in [3, 10, 1_600, 5_000] {
            let kept = Downsample.lttbIndices(x: x, y: y, threshold: threshold)
            #expect(kept.count == threshold)
            #expect(kept.first == 0 && kept.last == count - 1)
            #expect(zip(kept, kept.dropFirst()).allSatisfy { $0 < $1 })
            if threshold >= 10 { #expect(kept.contains(31_337) && kept.contains(77_777), "threshold \(threshold)") }
        }
    }

    @Test func exponentialSmoothingIsDebiasedAtTheStart() {
        let smoothed = Smoothing.exponential([10, 20, 30], weight: 0.5)
        // Running averages 5, 12.5, 21.25 divided by 1 - 0.5^n: 0.5, 0.75, 0.875.
        #expect(smoothed[0] == 10)
        #expect(abs(smoothed[1] - 12.5 / 0.75) < 1e-12)
        #expect(abs(smoothed[2] - 21.25 / 0.875) < 1e-12)
        let flat = Smoothing.exponential([Double](repeating: 0.3, count: 10_000), weight: 0.99)
        #expect(flat.allSatisfy { abs($0 - 0.3) < 1e-12 })
        #expect(Smoothing.exponential([1, 5, 2], weight: 0) == [1, 5, 2])
        #expect(Smoothing.exponential([1, 5, 2], weight: 1) == [1, 5, 2])
    }

    @Test func exponentialSmoothingKeepsGapsAndLeavesThemOut() {
        let smoothed = Smoothing.exponential([4, .nan, 8, .infinity, -.infinity], weight: 0.5)
        #expect(smoothed[0] == 4)
        #expect(smoothed[1].isNaN)
        // As if the NaN were not there: (0.5 * 2 + 4) / 0.75.
        #expect(abs(smoothed[2] - 5 / 0.75) < 1e-12)
        #expect(smoothed[3] == .infinity && smoothed[4] == -.infinity)
    }

    @Test func smoothingParsesWeightsAndWindows() throws {
        #expect(try ChartSmoothing(parsing: "0.6", name: "smooth") == .exponential(weight: 0.6))
        #expect(try ChartSmoothing(parsing: "20", name: "smooth") == .trailingMean(window: 20))
        #expect(try ChartSmoothing(parsing: "0", name: "smooth") == ChartSmoothing.none)
        #expect(try ChartSmoothing(parsing: "1", name: "smooth") == ChartSmoothing.none)
        for bad in ["1.5", "-0.5", "abc", "nan", "inf", ""] {
            #expect(throws: CMLError.self, "\(bad)") { try ChartSmoothing(parsing: bad, name: "--smooth") }
        }
        #expect {
            try ChartSmoothing(parsing: "2.5", name: "--smooth")
        } throws: { error in
            (error as? CMLError)?.message == "--smooth of 1 or more is a whole number of points, not '2.5'"
        }
        let data = ChartData([ChartSeries(label: "a", x: [0, 1], y: [1, 2])], options: ChartOptions(smoothing: .exponential(weight: 0.6)))
        #expect(data.notes == ["smoothed: exponential moving average, weight 0.6"])
    }

    @Test func logScaleGapsSplitTheLine() {
        let series = ChartSeries(label: "a", x: [0, 1, 2, 3, 4, 5], y: [1, 10, 0, 100, -5, 1000])
        let data = ChartData([series], options: ChartOptions(logY: true))
        #expect(data.segments(of: data.lines[0], threshold: 100).map { $0.map(\.x) } == [[0, 1], [3], [5]])
        #expect(data.notes == ["2 values ≤ 0 not shown on the log scale"])
    }

    @Test func nanAndInfinityGapsSplitTheLineAndAreCounted() {
        let series = ChartSeries(label: "a", x: (0..<8).map(Double.init), y: [1, 2, .nan, 3, 4, .infinity, -.infinity, 5])
        let data = ChartData([series], options: ChartOptions())
        #expect(data.segmentIndices(of: data.lines[0], threshold: 100) == [[0, 1], [3, 4], [7]])
        #expect(data.notes == ["3 NaN/infinite values not shown"])
    }

    @Test func xModesComeFromTheColumns() {
        var columns = MetricColumns()
        for (step, time) in [(Int64(10), 1000.5), (20, 1002.0), (30, 1010.25)] {
            columns.append(MetricPoint(key: "loss", step: step, value: Double(step) / 10, time: time))
        }
        let steps = RunCharts.series(columns, label: "a", x: .number, start: 990)
        #expect(steps.x == [10, 20, 30] && steps.y == [1, 2, 3])
        #expect(steps.steps == [10, 20, 30] && steps.times == [1000.5, 1002.0, 1010.25])
        #expect(RunCharts.series(columns, label: "a", x: .unixTime, start: 990).x == [1000.5, 1002.0, 1010.25])
        #expect(RunCharts.series(columns, label: "a", x: .elapsedSeconds, start: 1000).x == [0.5, 2, 10.25])
        // A start not recorded: elapsed from the first point.
        #expect(RunCharts.series(columns, label: "a", x: .elapsedSeconds, start: nil).x == [0, 1.5, 9.75])
        #expect(ChartXUnit(axis: "elapsed") == .elapsedSeconds && ChartXUnit(axis: "epoch") == nil)
        #expect([ChartXUnit.number, .unixTime, .elapsedSeconds].map(\.axisName) == ["step", "time", "elapsed"])
    }

    @Test func anXRangeKeepsOnlyItsPointsAndSmoothsAsTheWholeLine() {
        let count = 1_000
        let series = ChartSeries(label: "a", x: (0..<count).map(Double.init), y: (0..<count).map { Double($0 % 7) })
        let whole = ChartData([series], options: ChartOptions(smoothing: .exponential(weight: 0.9)))
        let zoomed = ChartData([series], options: ChartOptions(smoothing: .exponential(weight: 0.9), xFrom: 250.5, xTo: 400))
        let line = zoomed.lines[0]
        #expect(line.x.first == 251 && line.x.last == 400 && line.x.count == 150)
        #expect(zoomed.xRange == 250.5...400)
        // The same smoothed values as in the whole line: smoothing saw the points before the range.
        #expect(line.y == Array(whole.lines[0].y[251...400]))
        #expect(line.inputIndex(0) == 251)
        // An open end stops at the last point.
        #expect(ChartData([series], options: ChartOptions(xFrom: 900)).xRange == 900...999)
        let empty = ChartData([series], options: ChartOptions(xFrom: 5_000, xTo: 6_000))
        #expect(empty.emptyReason == "no points in the x range")
    }

    @Test func aMillionPointsCostLittleAfterReading() {
        let count = 1_000_000
        var y = (0..<count).map { sin(Double($0) / 10_000) }
        for index in stride(from: 5_000, to: count, by: 100_000) { y[index] = .nan }
        let series = ChartSeries(label: "a", x: (0..<count).map(Double.init), y: y,
                                 steps: (0..<Int64(count)).map { $0 }, times: (0..<count).map { 1.7e9 + Double($0) })
        let svg = SVGChart.render([series], options: ChartOptions(logY: false, smoothing: .exponential(weight: 0.6)),
                                  width: 800, height: 300, interactive: true)
        let points = svg.components(separatedBy: "data-points=\"")[1].prefix { $0 != "\"" }.split(separator: " ")
        #expect(points.count <= 1_600 && points.count > 1_000)
        #expect(svg.utf8.count < 200_000)
    }

    @Test func sqliteReadsTheSameColumnsAsItStreams() throws {
        let box = try TemporaryStore()
        let id = try box.makeRun()
        let points = (0..<5_000).map { (index: Int) -> MetricPoint in
            let value: Double = index == 7 ? .nan : 1 / Double(index + 1)
            return MetricPoint(key: "loss", step: Int64(index * 2), value: value, time: 1e9 + Double(index))
        }
        try box.store.appendMetrics(run: id, points + [MetricPoint(key: "acc", step: 0, value: 0.5, time: 1e9)], source: .log)
        let columns = try box.store.metricColumns(run: id, key: "loss")
        var streamed = MetricColumns()
        try box.store.forEachMetric(run: id, key: "loss") { streamed.append($0) }
        #expect(columns.count == 5_000)
        #expect(columns.steps == streamed.steps && columns.times == streamed.times)
        #expect(columns.values[7].isNaN && streamed.values[7].isNaN)
        #expect(columns.values.enumerated().allSatisfy { $0.offset == 7 || $0.element == streamed.values[$0.offset] })
        #expect(try box.store.metricColumns(run: id, key: "nope").count == 0)
    }
}

extension SVGChartTests {
    @Test func interactiveChartsCarryTheDrawnPointsForHover() throws {
        let series = [
            ChartSeries(label: "<script>alert(1)</script>", x: [0, 1, 2, 3], y: [0.5, .nan, 0.25, 0.125],
                        steps: [0, 1, 2, 3], times: [1.7e9, 1.7e9 + 1, 1.7e9 + 2, 1.7e9 + 3.5]),
            ChartSeries(label: "b", x: [0, 3], y: [1, 2]),
        ]
        let svg = SVGChart.render(series, options: ChartOptions(title: "k<&>"), width: 600, height: 300, interactive: true)
        let reader = try #require(parse(svg))
        let root = try #require(reader.elements.first)
        #expect(root.attributes["class"] == "cml-chart" && root.attributes["data-x-unit"] == "step")
        let plot = try #require(root.attributes["data-plot"]).split(separator: " ").compactMap { Double($0) }
        #expect(plot.count == 4 && plot[0] < plot[2] && plot[1] < plot[3])
        let domain = try #require(root.attributes["data-x-domain"]).split(separator: " ").compactMap { Double($0) }
        #expect(domain.count == 2 && domain[0] <= 0 && domain[1] >= 3)
        let lines = reader.elements.filter { $0.attributes["class"] == "series" }
        let first = try #require(lines.first?.attributes["data-points"]).split(separator: " ").map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        #expect(first.map { $0[2] } == ["0", "2", "3"])
        #expect(first.map { $0[3] } == ["0.5", "0.25", "0.125"])
        #expect(first.map { $0[4] } == ["1700000000", "1700000002", "1700000003.5"])
        #expect(first.allSatisfy { $0.count == 5 })
        // Pixels inside the plot, x rising.
        let px = first.compactMap { Double($0[0]) }
        #expect(px == px.sorted() && px.allSatisfy { $0 >= plot[0] && $0 <= plot[2] })
        let second = try #require(lines.last?.attributes["data-points"]).split(separator: " ")
        #expect(second.map { $0.split(separator: ",", omittingEmptySubsequences: false)[2] } == ["", ""])
        #expect(!svg.contains("<script>") && svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
        #expect(reader.texts.contains("<script>alert(1)</script>"))
        // Not asked for: none of it.
        let plain = SVGChart.render(series, options: ChartOptions())
        #expect(!plain.contains("data-points") && !plain.contains("data-plot"))
    }

    @Test func aSeriesCanKeepItsRunsColour() throws {
        let series = [ChartSeries(label: "a", x: [0, 1], y: [1, 2], colorIndex: 2), ChartSeries(label: "b", x: [0, 1], y: [2, 1])]
        let reader = try #require(parse(SVGChart.render(series, options: ChartOptions())))
        let strokes = reader.elements.filter { $0.name == "path" }.compactMap { $0.attributes["stroke"] }
        // Two lines, then their two legend swatches.
        #expect(strokes == [SVGChart.palette[2], SVGChart.palette[1], SVGChart.palette[2], SVGChart.palette[1]])
    }

    @Test func smoothedPointsAddTheSmoothedValue() throws {
        let series = [ChartSeries(label: "a", x: [0, 1], y: [10, 20], steps: [0, 1], times: [5, 6])]
        let svg = SVGChart.render(series, options: ChartOptions(logY: true, smoothing: .exponential(weight: 0.5)), interactive: true)
        let points = try #require(parse(svg)?.elements.first { $0.attributes["class"] == "series" }?.attributes["data-points"])
        let fields = points.split(separator: " ").map { $0.split(separator: ",") }
        #expect(fields.map { $0[3] } == ["10", "20"])
        #expect(fields[0].count == 6 && abs(Double(fields[1][5])! - 50.0 / 3) < 1e-9)
    }

    @Test func aZoomDrawsOnlyItsRange() throws {
        let count = 100_000
        let series = ChartSeries(label: "a", x: (0..<count).map(Double.init), y: (0..<count).map { cos(Double($0) / 100) },
                                 steps: (0..<Int64(count)).map { $0 }, times: [])
        let svg = SVGChart.render([series], options: ChartOptions(xFrom: 40_000, xTo: 40_500), width: 800, height: 300, interactive: true)
        let reader = try #require(parse(svg))
        let points = try #require(reader.elements.first { $0.attributes["class"] == "series" }?.attributes["data-points"])
        let steps = points.split(separator: " ").compactMap { Int($0.split(separator: ",", omittingEmptySubsequences: false)[2]) }
        // Every step of the range, not an enlargement of a few hundred spread over the whole run.
        #expect(steps == Array(40_000...40_500))
        let domain = try #require(reader.elements.first?.attributes["data-x-domain"])
        #expect(domain == "40000 40500")
    }
}

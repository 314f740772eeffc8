import Foundation

/// Line charts as standalone SVG 1.1 documents, for reports and the web UI.
///
/// Lines take the colours of Okabe and Ito's palette, which stays distinct under the common kinds of
/// colour blindness; past seven lines the colours repeat with dash patterns.
public enum SVGChart {
    /// The chart as an SVG document of `width` × `height` pixels (at least 240 × 160), with a grid at
    /// the axis ticks, the legend below the plot, and a note of what was smoothed or left out. Each
    /// line is one `<path class="series">`, downsampled to twice the plot's width in points.
    ///
    /// `interactive` adds what a script needs for hover and zoom, and no more than the drawn points:
    /// the root `<svg class="cml-chart">` has `data-plot` (the plot's left, top, right and bottom in
    /// pixels), `data-x-domain` (the x values at its left and right edges) and `data-x-unit` (step,
    /// time or elapsed); each line's path has `data-points`, its drawn points separated by spaces,
    /// each `px,py,step,value,time` (pixels to a tenth; the value before smoothing; step and time empty
    /// when the series has none), and with smoothing a sixth field, the smoothed value.
    public static func render(
        _ series: [ChartSeries], options: ChartOptions, width: Int = 960, height: Int = 540, interactive: Bool = false
    ) -> String {
        let data = ChartData(series, options: options)
        let width = Double(max(width, 240))
        let height = Double(max(height, 160))
        var rootAttributes = ""
        func document(_ body: String) -> String {
            """
            <?xml version="1.0" encoding="UTF-8"?>
            <svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="\(number(width))" height="\(number(height))" \
            viewBox="0 0 \(number(width)) \(number(height))" font-family="Helvetica, Arial, sans-serif" \
            font-size="\(number(tickFont))"\(rootAttributes)>
            <rect width="100%" height="100%" fill="white"/>

            """ + body + "</svg>\n"
        }
        if interactive { rootAttributes = " class=\"cml-chart\" data-x-unit=\"\(options.xUnit.axisName)\"" }
        var svg = ""
        let title = options.title ?? ""
        if !title.isEmpty {
            svg += "<title>\(escaped(title))</title>\n"
            svg += text(title, x: width / 2, y: 28, anchor: "middle", attributes: #"font-size="16" font-weight="bold""#)
        }
        guard let xRange = data.xRange, let yRange = data.yRange else {
            let message = "No data: " + (data.emptyReason ?? "")
            return document(svg + text(message, x: width / 2, y: height / 2, anchor: "middle", attributes: ##"fill="#555""##))
        }

        // From the bottom up: notes, legend rows, x-axis title, tick labels; the plot takes the rest.
        let margin = 16.0
        let legend = legendLayout(options.legend ? data.lines.map(\.label) : [], width: width - 2 * margin)
        let notes = data.notes.joined(separator: " · ")
        let xTitle = data.xTitle(options)
        let yTitle = options.yLabel ?? ""
        let top = title.isEmpty ? 16.0 : 44.0
        let legendTop = height - margin - (notes.isEmpty ? 0 : 18) - Double(legend.rows) * legendRowHeight
        let bottom = max(legendTop - (xTitle.isEmpty ? 0 : 26) - 22, top + 40)
        let yAxis = ChartAxis.y(yRange, logarithmic: data.logY, maxTicks: Int((bottom - top) / 45) + 1, padding: 0.04)
        let tickLabelWidth = yAxis.ticks.map { textWidth($0.label, size: tickFont) }.max() ?? 0
        let left = margin + (yTitle.isEmpty ? 0 : 22) + tickLabelWidth + 8
        let right = width - 24
        let xAxis = fittedXAxis(xRange, unit: options.xUnit, plotWidth: right - left)
        func px(_ x: Double) -> Double { left + xAxis.fraction(x) * (right - left) }
        func py(_ y: Double) -> Double { top + (1 - yAxis.fraction(y)) * (bottom - top) }
        if interactive {
            rootAttributes += " data-plot=\"\(number(left)) \(number(top)) \(number(right)) \(number(bottom))\""
                + " data-x-domain=\"\(exact(xAxis.lower)) \(exact(xAxis.upper))\""
        }

        svg += "<g stroke=\"#e4e4e4\">\n"
        for tick in yAxis.ticks { svg += line(left, py(tick.position), right, py(tick.position)) }
        for tick in xAxis.ticks { svg += line(px(tick.position), top, px(tick.position), bottom) }
        svg += "</g>\n<g stroke=\"#666\">\n" + line(left, top, left, bottom) + line(left, bottom, right, bottom)
        for tick in yAxis.ticks { svg += line(left - 4, py(tick.position), left, py(tick.position)) }
        for tick in xAxis.ticks { svg += line(px(tick.position), bottom, px(tick.position), bottom + 4) }
        svg += "</g>\n<g fill=\"#333\">\n"
        for tick in yAxis.ticks { svg += text(tick.label, x: left - 7, y: py(tick.position), anchor: "end") }
        for tick in xAxis.ticks { svg += text(tick.label, x: px(tick.position), y: bottom + 15, anchor: "middle") }
        svg += "</g>\n"
        if !xTitle.isEmpty {
            svg += text(xTitle, x: (left + right) / 2, y: bottom + 36, anchor: "middle", attributes: #"font-size="13""#)
        }
        if !yTitle.isEmpty {
            svg += "<text transform=\"translate(\(number(margin + 6)),\(number((top + bottom) / 2))) rotate(-90)\" "
                + "text-anchor=\"middle\" dy=\"0.35em\" font-size=\"13\">\(escaped(yTitle))</text>\n"
        }

        let threshold = Int(right - left) * 2
        for (index, line) in data.lines.enumerated() {
            let segments = data.segmentIndices(of: line, threshold: threshold)
            guard !segments.isEmpty else { continue }
            let path = segments.map { segment in
                if segment.count == 1 {
                    // A lone point, between gaps, is drawn as a small ring so that it can be seen.
                    let x = px(line.x[segment[0]]), y = py(line.y[segment[0]])
                    return "M\(number(x - 1.5)),\(number(y))a1.5,1.5 0 1,0 3,0a1.5,1.5 0 1,0 -3,0"
                }
                return "M" + segment.map { number(px(line.x[$0])) + "," + number(py(line.y[$0])) }.joined(separator: " ")
            }.joined()
            let points = interactive
                ? " data-points=\"" + hoverPoints(line, segments, data: data, px: px, py: py) + "\"" : ""
            svg += "<path class=\"series\" fill=\"none\" \(stroke(line.input.colorIndex ?? index)) stroke-width=\"1.5\" "
                + "stroke-linejoin=\"round\" stroke-linecap=\"round\" d=\"\(path)\"\(points)>"
                + "<title>\(escaped(line.label))</title></path>\n"
        }

        for (index, entry) in legend.entries.enumerated() {
            let x = margin + entry.x
            let y = legendTop + (Double(entry.row) + 0.5) * legendRowHeight
            svg += "<path fill=\"none\" \(stroke(data.lines[index].input.colorIndex ?? index)) stroke-width=\"2.5\" "
                + "d=\"M\(number(x)),\(number(y))h\(number(swatchWidth))\"/>\n"
            svg += text(entry.label, x: x + swatchWidth + 6, y: y, anchor: "start",
                        attributes: "font-size=\"\(number(legendFont))\"")
        }
        if !notes.isEmpty {
            svg += text(notes, x: margin, y: height - margin - 9, anchor: "start",
                        attributes: ##"font-size="11" font-style="italic" fill="#666""##)
        }
        return document(svg)
    }

    /// The `data-points` of a line: for each drawn point, where it is drawn and what it was.
    private static func hoverPoints(
        _ line: ChartData.Line, _ segments: [[Int]], data: ChartData, px: (Double) -> Double, py: (Double) -> Double
    ) -> String {
        var text = ""
        text.reserveCapacity(segments.reduce(0) { $0 + $1.count } * 40)
        let input = line.input
        for index in segments.joined() {
            let original = line.inputIndex(index)
            if !text.isEmpty { text += " " }
            text += number(px(line.x[index])) + "," + number(py(line.y[index])) + ","
            if original < input.steps.count { text += String(input.steps[original]) }
            text += "," + exact(input.y[original]) + ","
            if original < input.times.count { text += ChartNumber.fixed(input.times[original], decimals: 3) }
            if data.smoothing != .none {
                text += "," + exact(data.logY ? pow(10, line.y[index]) : line.y[index])
            }
        }
        return text
    }

    /// A value as it is, in the shortest form that reads back the same (`0.1`, `1e-05`).
    private static func exact(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }

    static let palette = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000"]
    private static let dashes = ["", "7 4", "2 3", "9 3 2 3"]
    private static let tickFont = 12.0
    private static let legendFont = 13.0
    private static let legendRowHeight = 20.0
    private static let swatchWidth = 24.0

    private static func stroke(_ line: Int) -> String {
        let style = lineStyle(line)
        return "stroke=\"\(style.color)\"" + (style.dash.isEmpty ? "" : " stroke-dasharray=\"\(style.dash)\"")
    }

    /// The colour and dash pattern (empty: solid) of the line with colour index `line`, for a legend
    /// drawn outside the chart.
    public static func lineStyle(_ line: Int) -> (color: String, dash: String) {
        (palette[line % palette.count], dashes[line / palette.count % dashes.count])
    }

    /// A guess at the rendered width of `text` without font metrics: sans-serif characters average
    /// a little over half the font size.
    private static func textWidth(_ text: String, size: Double) -> Double { Double(text.count) * size * 0.6 }

    /// Legend entries flowed into rows `width` wide: each entry's offset from the left and its row.
    private static func legendLayout(_ labels: [String], width: Double)
        -> (entries: [(label: String, x: Double, row: Int)], rows: Int)
    {
        var entries = [(label: String, x: Double, row: Int)]()
        var x = 0.0
        var row = 0
        let maxCharacters = Int((width - swatchWidth - 6) / (legendFont * 0.6))
        for label in labels {
            let label = ChartText.truncated(ChartText.printable(label), to: maxCharacters)
            let entryWidth = swatchWidth + 6 + textWidth(label, size: legendFont)
            if x > 0 && x + entryWidth > width {
                row += 1
                x = 0
            }
            entries.append((label, x, row))
            x += entryWidth + 24
        }
        return (entries, entries.isEmpty ? 0 : row + 1)
    }

    /// The x axis with as many ticks as leave room between their labels.
    private static func fittedXAxis(_ range: ClosedRange<Double>, unit: ChartXUnit, plotWidth: Double) -> ChartAxis {
        var maxTicks = max(2, Int(plotWidth / 70) + 1)
        while true {
            let axis = ChartAxis.x(range, unit: unit, maxTicks: maxTicks)
            let widest = axis.ticks.map { textWidth($0.label, size: tickFont) }.max() ?? 0
            let positions = axis.ticks.map { axis.fraction($0.position) * plotWidth }
            let spacing = positions.count > 1 ? positions[1] - positions[0] : plotWidth
            if spacing >= widest + 16 || maxTicks == 2 { return axis }
            maxTicks -= 1
        }
    }

    private static func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double) -> String {
        "<line x1=\"\(number(x1))\" y1=\"\(number(y1))\" x2=\"\(number(x2))\" y2=\"\(number(y2))\"/>\n"
    }

    private static func text(_ content: String, x: Double, y: Double, anchor: String, attributes: String = "")
        -> String
    {
        "<text x=\"\(number(x))\" y=\"\(number(y))\" text-anchor=\"\(anchor)\" dy=\"0.35em\""
            + (attributes.isEmpty ? "" : " " + attributes) + ">\(escaped(content))</text>\n"
    }

    /// A coordinate to a tenth of a pixel, which is finer than any screen or printer shows.
    private static func number(_ value: Double) -> String { ChartNumber.fixed(value, decimals: 1) }

    /// `text` safe inside XML character data and attribute values, control characters left out.
    static func escaped(_ text: String) -> String { markupEscaped(ChartText.printable(text)) }
}

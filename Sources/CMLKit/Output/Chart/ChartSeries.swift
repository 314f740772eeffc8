/// One line of a chart: parallel arrays of x and y values.
///
/// Points where x or y is NaN or infinite are gaps: the line breaks there. When the arrays differ in
/// length, the extra values of the longer one are ignored.
public struct ChartSeries: Sendable, Equatable {
    public var label: String
    public var x: [Double]
    public var y: [Double]

    public init(label: String, x: [Double], y: [Double]) {
        self.label = label
        self.x = x
        self.y = y
    }
}

/// What the x values mean, which decides how the x axis is ticked and labelled.
public enum ChartXUnit: Sendable, Equatable {
    /// Plain numbers such as steps: ticks at 1-2-5 multiples, labels like `250`, `2.5k`, `1.2M`.
    case number
    /// Seconds since the start of each run: ticks at whole seconds, minutes, hours or days, labels like `1h30m`.
    case elapsedSeconds
    /// Unix time in seconds: ticks aligned to UTC clock times, labels like `14:05` or `Nov 27`.
    case unixTime
}

/// How a chart is drawn. The same options drive the terminal and the SVG renderer.
public struct ChartOptions: Sendable, Equatable {
    public var title: String?
    public var xLabel: String
    public var yLabel: String?
    /// Log-10 y axis; values ≤ 0 cannot be drawn on it and are left out (the chart says how many).
    public var logY: Bool
    /// Trailing moving-average window in points; 1 (or less) draws the values as they are.
    public var smooth: Int
    public var xUnit: ChartXUnit
    /// Size of the whole terminal chart in character cells, title and legend included.
    /// The SVG renderer takes its size in pixels instead.
    public var width: Int
    public var height: Int

    public init(
        title: String? = nil, xLabel: String = "step", yLabel: String? = nil, logY: Bool = false, smooth: Int = 1,
        xUnit: ChartXUnit = .number, width: Int = 80, height: Int = 20
    ) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.logY = logY
        self.smooth = smooth
        self.xUnit = xUnit
        self.width = width
        self.height = height
    }
}

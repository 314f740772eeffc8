/// One line of a chart: parallel arrays of x and y values.
///
/// Points where x or y is NaN or infinite are gaps: the line breaks there. When the arrays differ in
/// length, the extra values of the longer one are ignored.
public struct ChartSeries: Sendable, Equatable {
    public var label: String
    public var x: [Double]
    public var y: [Double]
    /// The metric's steps and times, parallel to `y`, when the series is one: what an interactive SVG
    /// tells of each drawn point on hover. Empty when the series is not a metric's.
    public var steps: [Int64]
    public var times: [Double]
    /// Which colour (and past seven, which dash pattern) the SVG draws the line in: for a run's series,
    /// the run's place among those compared, so that it keeps its colour in every chart even where
    /// another run has no such metric. nil: the series' place in the chart.
    public var colorIndex: Int?

    public init(label: String, x: [Double], y: [Double], steps: [Int64] = [], times: [Double] = [], colorIndex: Int? = nil) {
        self.label = label
        self.x = x
        self.y = y
        self.steps = steps
        self.times = times
        self.colorIndex = colorIndex
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

    /// The unit a metric's x axis named `step`, `time` (wall clock) or `elapsed` (since the run
    /// started) calls for; nil for any other name.
    public init?(axis name: String) {
        switch name {
        case "step": self = .number
        case "time": self = .unixTime
        case "elapsed": self = .elapsedSeconds
        default: return nil
        }
    }

    /// The name `init(axis:)` takes.
    public var axisName: String {
        switch self {
        case .number: "step"
        case .unixTime: "time"
        case .elapsedSeconds: "elapsed"
        }
    }
}

/// How a series is smoothed before it is drawn (and before it is downsampled, so that smoothing sees
/// every point).
public enum ChartSmoothing: Sendable, Equatable {
    case none
    /// The mean of each point and the `window - 1` before it.
    case trailingMean(window: Int)
    /// An exponential moving average with this weight of the past, in 0..<1, debiased at the start as
    /// TensorBoard's smoothing slider is (`Smoothing.exponential`).
    case exponential(weight: Double)

    /// `text` as `cml-diff --smooth` and the chart routes' `smooth` take it: a weight in 0..<1 (0.6)
    /// for the exponential average, a whole number of points (20) for the trailing mean; 0 and 1 are
    /// no smoothing. Errors name the option or parameter as `name`.
    public init(parsing text: String, name: String) throws(CMLError) {
        guard let number = Double(text), number.isFinite, number >= 0 else {
            throw CMLError.usage("\(name) must be a weight in 0..<1 (0.6) or a number of points (20), not '\(text.prefix(40))'")
        }
        if number < 1 {
            self = number == 0 ? .none : .exponential(weight: number)
        } else {
            guard number == number.rounded(), number <= Double(Int32.max) else {
                throw CMLError.usage("\(name) of 1 or more is a whole number of points, not '\(text.prefix(40))'")
            }
            self = number == 1 ? .none : .trailingMean(window: Int(number))
        }
    }

    /// `y` smoothed; gaps (values that are not finite) stay gaps and are left out of their neighbours'.
    func apply(_ y: [Double]) -> [Double] {
        switch self {
        case .none: y
        case .trailingMean(let window): Smoothing.trailingMean(y, window: window)
        case .exponential(let weight): Smoothing.exponential(y, weight: weight)
        }
    }

    /// The chart's note saying how it was smoothed; nil when it was not.
    var note: String? {
        switch self {
        case .none: nil
        case .trailingMean(let window) where window > 1: "smoothed: trailing mean of \(window) points"
        case .trailingMean: nil
        case .exponential(let weight) where weight > 0 && weight < 1:
            "smoothed: exponential moving average, weight \(ChartNumber.fixed(weight, decimals: 3))"
        case .exponential: nil
        }
    }
}

/// How a chart is drawn. The same options drive the terminal and the SVG renderer.
public struct ChartOptions: Sendable, Equatable {
    public var title: String?
    public var xLabel: String
    public var yLabel: String?
    /// Log-10 y axis; values ≤ 0 cannot be drawn on it and are left out (the chart says how many).
    public var logY: Bool
    public var smoothing: ChartSmoothing
    public var xUnit: ChartXUnit
    /// Only the points with x in this range are drawn, and the x axis spans it: a zoom. Either end may
    /// be open (nil: from the first point, to the last). Smoothing still sees the points outside it.
    public var xFrom: Double?
    public var xTo: Double?
    /// Size of the whole terminal chart in character cells, title and legend included.
    /// The SVG renderer takes its size in pixels instead.
    public var width: Int
    public var height: Int
    /// The SVG's legend below the plot; a page that shows one legend for several charts leaves it out.
    public var legend = true

    public init(
        title: String? = nil, xLabel: String = "step", yLabel: String? = nil, logY: Bool = false,
        smoothing: ChartSmoothing = .none, xUnit: ChartXUnit = .number, xFrom: Double? = nil, xTo: Double? = nil,
        width: Int = 80, height: Int = 20
    ) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.logY = logY
        self.smoothing = smoothing
        self.xUnit = xUnit
        self.xFrom = xFrom
        self.xTo = xTo
        self.width = width
        self.height = height
    }
}

import Foundation

/// One axis of a chart in plot space (log10 of the value on a log axis): its bounds and labelled ticks.
/// Public for the web UI's scatter plot, which places its dots on the same axes.
public struct ChartAxis: Equatable, Sendable {
    public struct Tick: Equatable, Sendable {
        public var position: Double
        public var label: String

        public init(position: Double, label: String) {
            self.position = position
            self.label = label
        }
    }

    public var lower: Double
    public var upper: Double
    public var ticks: [Tick]

    public init(lower: Double, upper: Double, ticks: [Tick]) {
        self.lower = lower
        self.upper = upper
        self.ticks = ticks
    }

    /// Where `position` lies between the bounds: 0 at `lower`, 1 at `upper`.
    public func fraction(_ position: Double) -> Double { (position - lower) / (upper - lower) }

    /// A value axis over `range` widened by `padding` (a fraction of its span) at each end, with ticks
    /// at the 1-2-5 multiples inside it: at most `maxTicks`, at least two.
    public static func linear(_ range: ClosedRange<Double>, maxTicks: Int, padding: Double = 0) -> ChartAxis {
        let (lower, upper) = padded(widened(range), by: padding)
        let (step, first, last) = ticksInside(lower, upper, maxTicks: maxTicks, nice: niceStep(atLeast:))
        let exponent = Int(floor(log10(step) + 1e-9))
        let ticks = stride(from: first, through: last, by: 1).map { index in
            Tick(position: index * step, label: ChartNumber.label(index * step, stepExponent: exponent))
        }
        return ChartAxis(lower: lower, upper: upper, ticks: ticks)
    }

    /// A log-10 axis over `exponents` (log10 of the smallest and largest value) widened by `padding`.
    /// Ticks sit at 1, 2 and 5 times the powers of ten inside it when at most `maxTicks` of those fit;
    /// at powers of ten (every second, third … when they would not fit) over many decades; at linear
    /// 1-2-5 steps when the range is too narrow to hold two of either.
    public static func logarithmic(_ exponents: ClosedRange<Double>, maxTicks: Int, padding: Double = 0) -> ChartAxis {
        var (lower, upper) = (exponents.lowerBound, exponents.upperBound)
        if upper - lower < 1e-9 {
            lower -= 0.5
            upper += 0.5
        }
        (lower, upper) = padded((lower, upper), by: padding)
        // Ticks past the largest or smallest Double would be labelled with infinity or zero.
        lower = max(lower, log10(Double.leastNonzeroMagnitude))
        upper = min(upper, log10(Double.greatestFiniteMagnitude))
        let maxTicks = max(2, maxTicks)
        let inside = { (position: Double) in position >= lower - 1e-9 && position <= upper + 1e-9 }

        var fine = [Tick]()
        for decade in Int(floor(lower))...Int(ceil(upper)) {
            for multiple in [1.0, 2, 5] where inside(log10(multiple) + Double(decade)) {
                let label = ChartNumber.label(multiple * pow(10, Double(decade)), stepExponent: decade)
                fine.append(Tick(position: log10(multiple) + Double(decade), label: label))
            }
        }
        if fine.count >= 2 && fine.count <= maxTicks { return ChartAxis(lower: lower, upper: upper, ticks: fine) }
        if fine.count > maxTicks {
            // Every `every`-th power of ten, aligned to multiples of `every`, the fewest apart that fit;
            // when none fit and still give two ticks, the sparsest that give two.
            var sparsest = fine
            for every in 1... {
                let decades = Array(stride(
                    from: Int(ceil(lower / Double(every) - 1e-9)) * every,
                    through: Int(floor(upper / Double(every) + 1e-9)) * every, by: every))
                if decades.count < 2 { break }
                sparsest = decades.map { decade in
                    Tick(position: Double(decade), label: ChartNumber.label(pow(10, Double(decade)), stepExponent: decade))
                }
                if decades.count <= maxTicks { break }
            }
            return ChartAxis(lower: lower, upper: upper, ticks: sparsest)
        }
        let values = linear(pow(10, lower)...pow(10, upper), maxTicks: maxTicks)
        return ChartAxis(
            lower: lower, upper: upper,
            ticks: values.ticks.filter { $0.position > 0 }.map { Tick(position: log10($0.position), label: $0.label) })
    }

    /// A time axis over `range` seconds (elapsed, or Unix time): ticks at whole seconds, minutes, hours
    /// or days (UTC clock times for Unix time), inside the range.
    static func time(_ range: ClosedRange<Double>, maxTicks: Int, unit: ChartXUnit) -> ChartAxis {
        let (lower, upper) = widened(range, flatPadding: 1)
        let (step, first, last) = ticksInside(lower, upper, maxTicks: maxTicks, nice: niceTimeStep(atLeast:))
        let ticks = stride(from: first, through: last, by: 1).map { index in
            let value = index * step
            return Tick(
                position: value,
                label: unit == .unixTime
                    ? ChartTime.clockLabel(value, step: step) : ChartTime.durationLabel(value, step: step))
        }
        return ChartAxis(lower: lower, upper: upper, ticks: ticks)
    }

    /// The finest `nice` step that puts at most `maxTicks` ticks between the bounds, or a finer one
    /// where that would leave fewer than two; with the multiples of it that are the first and last tick.
    private static func ticksInside(
        _ lower: Double, _ upper: Double, maxTicks: Int, nice: (Double) -> Double
    ) -> (step: Double, first: Double, last: Double) {
        // The tolerances keep a bound that is a tick, up to rounding, among the ticks.
        func ends(_ step: Double) -> (first: Double, last: Double, count: Double) {
            let first = ceil(lower / step - 1e-9)
            let last = floor(upper / step + 1e-9)
            return (first, last, last - first + 1)
        }
        let maxTicks = max(2, maxTicks)
        // Ticks inside the bounds need not sit on them, so as many as `maxTicks + 1` steps can fit.
        var step = nice((upper - lower) / Double(maxTicks + 1))
        while ends(step).count > Double(maxTicks) { step = nice(step * 1.5) }
        while ends(step).count < 2 {
            var finer = step / 2
            while nice(finer) >= step { finer /= 2 }
            step = nice(finer)
        }
        let (first, last, _) = ends(step)
        return (step, first, last)
    }

    /// The x axis a series set calls for.
    static func x(_ range: ClosedRange<Double>, unit: ChartXUnit, maxTicks: Int) -> ChartAxis {
        guard unit == .number else { return time(range, maxTicks: maxTicks, unit: unit) }
        let axis = linear(range, maxTicks: maxTicks)
        // Steps are integers: a tick between two steps would name a step no point can have.
        let whole = axis.ticks.filter { $0.position == $0.position.rounded() }
        guard !whole.isEmpty, whole.count < axis.ticks.count else { return axis }
        return ChartAxis(lower: axis.lower, upper: axis.upper,
                         ticks: whole.map { Tick(position: $0.position, label: ChartNumber.label($0.position, stepExponent: 0)) })
    }

    /// The y axis a series set calls for; `range` is in plot space (log10 of the values on a log axis).
    static func y(_ range: ClosedRange<Double>, logarithmic isLog: Bool, maxTicks: Int, padding: Double) -> ChartAxis {
        isLog
            ? logarithmic(range, maxTicks: maxTicks, padding: padding)
            : linear(range, maxTicks: maxTicks, padding: padding)
    }

    /// The smallest of 1, 2 and 5 times a power of ten that is at least `raw`.
    static func niceStep(atLeast raw: Double) -> Double {
        let magnitude = pow(10, floor(log10(raw)))
        for multiple in [1.0, 2, 5] where multiple * magnitude >= raw * (1 - 1e-9) { return multiple * magnitude }
        return 10 * magnitude
    }

    /// Like `niceStep`, in the units of a clock: seconds, minutes, hours, days and weeks.
    static func niceTimeStep(atLeast raw: Double) -> Double {
        if raw < 1 { return niceStep(atLeast: raw) }
        let clockSteps: [Double] = [
            1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
            86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400,
        ]
        return clockSteps.first { $0 >= raw } ?? 86400 * niceStep(atLeast: raw / 86400)
    }

    private static func padded(_ bounds: (Double, Double), by fraction: Double) -> (Double, Double) {
        let margin = (bounds.1 - bounds.0) * fraction
        return (bounds.0 - margin, bounds.1 + margin)
    }

    /// The range, opened up around a single value so that it can be drawn: by a tenth of the value,
    /// by 1 around zero, or by `flatPadding` where given.
    private static func widened(_ range: ClosedRange<Double>, flatPadding: Double? = nil) -> (Double, Double) {
        let lower = range.lowerBound
        let upper = range.upperBound
        // Spans below 1e-290 would make tick steps underflow to zero.
        guard upper - lower <= max(abs(lower), abs(upper)) * 1e-12 || upper - lower < 1e-290 else { return (lower, upper) }
        // At least a billionth of the value, or the padding would vanish in rounding (1e300 + 1 == 1e300),
        // and 1 around subnormal values, whose tenth is zero.
        var padding = max(flatPadding ?? (lower == 0 ? 1 : abs(lower) * 0.1), abs(lower) * 1e-9)
        if padding < 1e-290 { padding = 1 }
        return (lower - padding, upper + padding)
    }
}

/// Compact tick labels for numbers: `0.25`, `250`, `2.5k`, `1.2M`, `1e-12`.
enum ChartNumber {
    /// `value` as a label among ticks `10^stepExponent` apart (1, 2 or 5 times that), with as many
    /// digits as tell the ticks apart. From 1000 on, SI suffixes (k, M, G, T); below 1e-4 steps and
    /// from 1e15 on, scientific notation.
    static func label(_ value: Double, stepExponent: Int) -> String {
        if value == 0 { return "0" }
        let magnitude = abs(value)
        let exponent = Int(floor(log10(magnitude) + 1e-12))
        if magnitude >= 1e15 || stepExponent <= -5 {
            let digits = max(0, exponent - stepExponent)
            let mantissa = fixed(value / pow(10, Double(exponent)), decimals: digits)
            // Rounding can carry the mantissa to 10.
            if mantissa == "10" || mantissa == "-10" {
                return (value < 0 ? "-1e" : "1e") + String(exponent + 1)
            }
            return mantissa + "e" + String(exponent)
        }
        if magnitude >= 1000 {
            let suffixes: [(exponent: Int, suffix: String)] = [(12, "T"), (9, "G"), (6, "M"), (3, "k")]
            let unit = suffixes.first { $0.exponent <= exponent } ?? suffixes[suffixes.count - 1]
            let scaled = value / pow(10, Double(unit.exponent))
            return fixed(scaled, decimals: max(0, unit.exponent - stepExponent)) + unit.suffix
        }
        return fixed(value, decimals: max(0, -stepExponent))
    }

    /// `value` rounded to `decimals` places, trailing zeros dropped: `fixed(2.50, 2)` is `2.5`.
    static func fixed(_ value: Double, decimals: Int) -> String {
        let places = min(max(decimals, 0), 15)
        let scale = pow(10, Double(places))
        let scaled = (abs(value) * scale).rounded()
        // Past 2^53 the integer arithmetic below would lose digits; such labels never arise from ticks.
        guard scaled < 9e15 else { return String(value) }
        let units = Int(scaled)
        let divisor = Int(scale)
        var text = String(units / divisor)
        let fraction = units % divisor
        if fraction > 0 {
            var digits = String(fraction)
            digits = String(repeating: "0", count: places - digits.count) + digits
            while digits.hasSuffix("0") { digits.removeLast() }
            text += "." + digits
        }
        return units > 0 && value < 0 ? "-" + text : text
    }
}

/// Labels for time axes.
enum ChartTime {
    /// Elapsed seconds as `45s`, `1m30s`, `2h`, `1d12h`: the non-zero parts; below 1 s steps, seconds
    /// with decimals (`2.5s`).
    static func durationLabel(_ seconds: Double, step: Double) -> String {
        if seconds == 0 { return "0" }
        // Beyond what an integer count of seconds holds (about 3e11 years), plain numbers.
        if abs(seconds) >= 1e15 { return ChartNumber.label(seconds, stepExponent: Int(floor(log10(step)))) + "s" }
        if step < 1 {
            return ChartNumber.fixed(seconds, decimals: Int(ceil(-log10(step) - 1e-9))) + "s"
        }
        var rest = Int(abs(seconds).rounded())
        var text = seconds < 0 ? "-" : ""
        for (size, name) in [(86400, "d"), (3600, "h"), (60, "m"), (1, "s")] where rest >= size {
            text += String(rest / size) + name
            rest %= size
        }
        return text
    }

    /// Unix time as a UTC clock label fit for ticks `step` seconds apart: `14:05:30`, `14:05`, or the
    /// date (`Nov 27`) for day steps and at midnight; `2026-11-27` for steps of four weeks and more.
    static func clockLabel(_ seconds: Double, step: Double) -> String {
        let decimals = step < 1 ? Int(ceil(-log10(step) - 1e-9)) : 0
        let scale = pow(10, Double(decimals))
        // Rounded first, so that the fraction can never round up into the next second.
        let seconds = (seconds * scale).rounded() / scale
        let parts = utcParts(seconds)
        let midnight = parts.hour == 0 && parts.minute == 0 && parts.second == 0
        if step >= 28 * 86400 { return date(parts) }
        if step >= 86400 || (midnight && step >= 60) { return months[parts.month - 1] + " " + String(parts.day) }
        let clock = pad(parts.hour) + ":" + pad(parts.minute)
        if step >= 60 { return clock }
        let whole = clock + ":" + pad(parts.second)
        let fraction = ChartNumber.fixed(seconds - seconds.rounded(.down), decimals: decimals)
        return fraction == "0" ? whole : whole + fraction.dropFirst()
    }

    /// The x-axis title for Unix times: the label and where the axis starts, which tick labels
    /// showing only clock times do not tell.
    static func unixTimeTitle(_ label: String, start: Double) -> String {
        let parts = utcParts(start)
        let start = date(parts) + " " + pad(parts.hour) + ":" + pad(parts.minute) + ":" + pad(parts.second)
        return label + " (UTC, from " + start + ")"
    }

    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    private struct Parts {
        var year, month, day, hour, minute, second: Int
    }

    private static func utcParts(_ seconds: Double) -> Parts {
        // gmtime_r handles years up to about 2^31: clamp to well within that rather than trap converting.
        var whole = time_t(min(max(seconds, -1e16), 1e16).rounded(.down))
        var broken = tm()
        gmtime_r(&whole, &broken)
        return Parts(
            year: Int(broken.tm_year) + 1900, month: Int(broken.tm_mon) + 1, day: Int(broken.tm_mday),
            hour: Int(broken.tm_hour), minute: Int(broken.tm_min), second: Int(broken.tm_sec))
    }

    private static func date(_ parts: Parts) -> String {
        String(parts.year) + "-" + pad(parts.month) + "-" + pad(parts.day)
    }

    private static func pad(_ value: Int) -> String { value < 10 ? "0" + String(value) : String(value) }
}

/// Shape-preserving reduction of long series to what a screen can show.
public enum Downsample {
    /// Largest-triangle-three-buckets (Sveinn Steinarsson, 2013), in one O(n) pass.
    ///
    /// Points where x or y is not finite are dropped first; of the rest, at most `threshold` are kept:
    /// the first, the last, and from each of `threshold - 2` equal-count buckets between them the point
    /// that spans the largest triangle with the point kept before it and the mean of the next bucket,
    /// so peaks and troughs survive. With no more finite points than `threshold`, all of them are kept.
    public static func lttb(x: [Double], y: [Double], threshold: Int) -> (x: [Double], y: [Double]) {
        let kept = lttbIndices(x: x, y: y, threshold: threshold)
        return (kept.map { x[$0] }, kept.map { y[$0] })
    }

    /// The indices into `x` and `y` of the points `lttb` keeps, ascending.
    public static func lttbIndices(x: [Double], y: [Double], threshold: Int) -> [Int] {
        let count = min(x.count, y.count)
        var finite: [Int]? = nil
        for i in 0..<count where !(x[i].isFinite && y[i].isFinite) {
            finite = (0..<count).filter { x[$0].isFinite && y[$0].isFinite }
            break
        }
        guard let finite else {
            return x.withUnsafeBufferPointer { xs in
                y.withUnsafeBufferPointer { ys in bucketWinners(xs, ys, count: count, threshold: threshold) }
            }
        }
        let xs = finite.map { x[$0] }
        let ys = finite.map { y[$0] }
        let kept = xs.withUnsafeBufferPointer { xs in
            ys.withUnsafeBufferPointer { ys in bucketWinners(xs, ys, count: finite.count, threshold: threshold) }
        }
        return kept.map { finite[$0] }
    }

    /// LTTB over the first `count` points, all finite.
    private static func bucketWinners(
        _ x: UnsafeBufferPointer<Double>, _ y: UnsafeBufferPointer<Double>, count: Int, threshold: Int
    ) -> [Int] {
        if threshold >= count { return Array(0..<count) }
        if threshold <= 0 { return [] }
        if threshold == 1 { return [0] }
        if threshold == 2 { return [0, count - 1] }
        let buckets = threshold - 2
        let inner = count - 2
        // Bucket b holds points bucketStart(b)..<bucketStart(b + 1); integer bounds, so every point
        // between the first and the last belongs to exactly one bucket.
        func bucketStart(_ b: Int) -> Int { 1 + b * inner / buckets }
        var kept = [Int]()
        kept.reserveCapacity(threshold)
        kept.append(0)
        var previous = 0
        for b in 0..<buckets {
            let nextStart = bucketStart(b + 1)
            let nextEnd = b + 1 == buckets ? count : bucketStart(b + 2)
            var meanX = 0.0
            var meanY = 0.0
            for j in nextStart..<nextEnd {
                meanX += x[j]
                meanY += y[j]
            }
            meanX /= Double(nextEnd - nextStart)
            meanY /= Double(nextEnd - nextStart)
            let ax = x[previous]
            let ay = y[previous]
            var best = bucketStart(b)
            var bestArea = -1.0
            for j in bucketStart(b)..<nextStart {
                // Twice the triangle's area; the factor does not change which point wins.
                let area = abs((ax - meanX) * (y[j] - ay) - (ax - x[j]) * (meanY - ay))
                if area > bestArea {
                    bestArea = area
                    best = j
                }
            }
            kept.append(best)
            previous = best
        }
        kept.append(count - 1)
        return kept
    }
}

/// Smoothing applied to a series before it is downsampled.
public enum Smoothing {
    /// Trailing moving average: each value becomes the mean of the finite values among itself and the
    /// `window - 1` values before it (fewer at the start of the series, so no point is lost). A value that
    /// is not finite stays as it is, a gap, and is left out of its neighbours' means. A window of 1 or
    /// less returns the values unchanged.
    public static func trailingMean(_ y: [Double], window: Int) -> [Double] {
        guard window > 1 else { return y }
        return [Double](unsafeUninitializedCapacity: y.count) { result, initialized in
            y.withUnsafeBufferPointer { y in
                var sum = 0.0
                var finiteInWindow = 0
                for i in y.indices {
                    if y[i].isFinite {
                        sum += y[i]
                        finiteInWindow += 1
                    }
                    let leaving = i - window
                    if leaving >= 0 && y[leaving].isFinite {
                        sum -= y[leaving]
                        finiteInWindow -= 1
                    }
                    result[i] = y[i].isFinite ? sum / Double(finiteInWindow) : y[i]
                }
            }
            initialized = y.count
        }
    }
}

extension Smoothing {
    /// Exponential moving average, as TensorBoard's smoothing slider draws it: each value becomes
    /// `weight` times the running average plus `1 - weight` times itself, and the average is divided
    /// by `1 - weight^n` after `n` finite values, so that the start is not pulled towards zero. A value
    /// that is not finite stays as it is, a gap, and leaves the average alone. A weight outside 0..<1
    /// (or 0) returns the values unchanged. One pass, no allocation besides the result.
    public static func exponential(_ y: [Double], weight: Double) -> [Double] {
        guard weight > 0 && weight < 1 else { return y }
        return [Double](unsafeUninitializedCapacity: y.count) { result, initialized in
            y.withUnsafeBufferPointer { y in
                var average = 0.0
                // weight^n, kept by multiplying rather than by pow at every point; it underflows to 0
                // after a few thousand points, where the debiasing has long stopped mattering.
                var weightPower = 1.0
                for i in y.indices {
                    guard y[i].isFinite else {
                        result[i] = y[i]
                        continue
                    }
                    average = average * weight + (1 - weight) * y[i]
                    weightPower *= weight
                    result[i] = average / (1 - weightPower)
                }
            }
            initialized = y.count
        }
    }
}

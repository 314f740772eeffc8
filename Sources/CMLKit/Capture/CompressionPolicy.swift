/// Decides, batch by batch, whether the recorder compresses the output it stores. While it keeps up with
/// the program it always compresses (logs shrink several times). When output floods in faster, it picks
/// whichever stores a byte sooner, compressing or writing as is, from what each cost on earlier batches,
/// and tries the other way again now and then, since both the text and the disk change.
struct CompressionPolicy {
    /// Seconds per output byte of each way, averaged over recent batches.
    private(set) var compressedCost: Double?
    private(set) var rawCost: Double?
    private var batchesSinceProbe = 0
    static let probeEvery = 16
    /// Batches smaller than this are too small to time.
    static let measurableBytes = 1 << 20

    mutating func shouldCompress(keepingUp: Bool) -> Bool {
        if keepingUp { return true }
        guard let compressedCost else { return true }
        guard let rawCost else { return false }
        let cheaper = compressedCost <= rawCost
        batchesSinceProbe += 1
        if batchesSinceProbe >= Self.probeEvery {
            batchesSinceProbe = 0
            return !cheaper
        }
        return cheaper
    }

    mutating func record(compressed: Bool, bytes: Int, seconds: Double) {
        guard bytes >= Self.measurableBytes else { return }
        let cost = seconds / Double(bytes)
        if compressed {
            compressedCost = compressedCost.map { 0.7 * $0 + 0.3 * cost } ?? cost
        } else {
            rawCost = rawCost.map { 0.7 * $0 + 0.3 * cost } ?? cost
        }
    }
}

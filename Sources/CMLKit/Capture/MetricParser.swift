import CSupport
import Glibc

/// Finds `key: value` and `key=value` pairs in one line of output, the way training scripts print them,
/// while leaving alone what merely contains numbers: times (`12:30:45`), dates (`2026-11-27`), versions
/// (`1.2.3`), addresses (`localhost:8080`), prose (`Note: 3 files`).
///
/// Rules: a key starts with a letter or `_` and holds letters, digits and `_ . / -`; it follows the start of
/// the line, a space or one of `,;|([{:`. Then `=` (spaces allowed around it) or `:` followed by a space.
/// The value is a decimal number (or nan/inf) that ends the line or is followed by a space or one of
/// `,;|)]}`; a value followed by a plain word is prose, unless that word is itself the key of a pair.
///
/// Framework forms: Guild's `loss: 0.3 (step 10)` and `loss: 0.3 (10)` give that pair its step; a line
/// that starts with `[N]` (XGBoost, LightGBM: `[3]\ttrain-mlogloss:0.66`, `[5]\tvalid_0's l2: 0.9`) or
/// with a step word and a number (`Iteration 3, loss = 2.1`, `Epoch 3/10`, `step 100: …`) has step N,
/// and after `[N]` a `:` needs no space; `valid_0's l2` becomes the key `valid_0/l2`; a tqdm bar's
/// `12/30 [00:01<…` gives step 12; Python dict lines (`{'loss': 0.69, 'epoch': 0.5}`, as Hugging Face's
/// Trainer prints them) are read like JSON objects.
public struct MetricLineParser: Sendable {
    public struct Pair: Sendable, Equatable {
        public var key: String
        public var value: Double
        /// A step written for this pair or its line; nil when the line gives none.
        public var step: Int64?

        public init(key: String, value: Double, step: Int64? = nil) {
            self.key = key
            self.value = value
            self.step = step
        }
    }

    public init() {}

    public func pairs(in line: UnsafeBufferPointer<UInt8>) -> [Pair] {
        guard let base = line.baseAddress, line.count >= 3 else { return [] }
        let n = line.count
        // Jump from separator to separator with memchr: most lines hold few, often none that make a pair.
        func next(_ byte: Int32, from start: Int) -> Int {
            guard start < n, let found = memchr(base + start, byte, n - start) else { return n }
            return UnsafePointer(found.assumingMemoryBound(to: UInt8.self)) - base
        }
        var colon = next(0x3A, from: 0)
        var equals = next(0x3D, from: 0)
        if colon == n && equals == n { return [] }
        if let members = jsonMembers(line) { return members }
        let prefix = Self.linePrefix(line)
        var found: [Pair] = []
        while true {
            let separator = min(colon, equals)
            if separator >= n { break }
            var resume = separator + 1
            if separator >= prefix.end, let (parsed, end) = pair(at: separator, in: line, tightColon: prefix.bracketed) {
                var pair = parsed
                if pair.step == nil { pair.step = prefix.step }
                found.append(pair)
                resume = end
            }
            if colon < resume { colon = next(0x3A, from: resume) }
            if equals < resume { equals = next(0x3D, from: resume) }
        }
        // Only a line that holds pairs is worth searching for a progress bar's counter.
        if !found.isEmpty && prefix.step == nil, let barStep = Self.progressBarStep(line) {
            for index in found.indices where found[index].step == nil { found[index].step = barStep }
        }
        return found
    }

    public func pairs(in text: String) -> [Pair] {
        var bytes = Array(text.utf8)
        return bytes.withUnsafeMutableBufferPointer { pairs(in: UnsafeBufferPointer($0)) }
    }

    /// A line that is a JSON object, or a Python dict of the same (single quotes): its numeric members.
    private func jsonMembers(_ line: UnsafeBufferPointer<UInt8>) -> [Pair]? {
        var first = 0
        var last = line.count - 1
        while first < last && Self.isSpace(line[first]) { first += 1 }
        while last > first && (Self.isSpace(line[last]) || line[last] == 0x0D) { last -= 1 }
        guard line[first] == 0x7B, line[last] == 0x7D else { return nil }
        var bytes = Array(line[first...last])
        if bytes.count > 1, bytes[1] == 0x27 {
            bytes = bytes.map { $0 == 0x27 ? 0x22 : $0 }  // {'loss': 0.69} → {"loss": 0.69}
        }
        guard case .object(let members)? = try? JSON.parse(bytes: &bytes) else { return nil }
        return members.compactMap { key, value in
            switch value {
            case .int(let i): return Pair(key: key, value: Double(i))
            case .double(let d): return Pair(key: key, value: d)
            default: return nil
            }
        }
    }

    static func isKeyByte(_ c: UInt8) -> Bool {
        (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || (c >= 0x30 && c <= 0x39)
            || c == 0x5F || c == 0x2E || c == 0x2F || c == 0x2D
    }

    static func isKeyStart(_ c: UInt8) -> Bool {
        (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || c == 0x5F
    }

    static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 }

    /// Bytes that may stand before a key: `,;|([{:` and spaces.
    static func isKeyBoundary(_ c: UInt8) -> Bool {
        isSpace(c) || c == 0x2C || c == 0x3B || c == 0x7C || c == 0x28 || c == 0x5B || c == 0x7B || c == 0x3A
    }

    /// Bytes that may end a value: `,;|)]}` and spaces.
    /// Also backspace and escape: a terminal progress bar (Keras's) ends its values with them.
    static func isValueEnd(_ c: UInt8) -> Bool {
        isSpace(c) || c == 0x2C || c == 0x3B || c == 0x7C || c == 0x29 || c == 0x5D || c == 0x7D || c == 0x0D || c == 0x0A
            || c == 0x08 || c == 0x1B
    }

    /// Keras's progress bar at the start of a line: `12/469 [=====>....]` (Keras 2) or
    /// `12/469 ━━━━━━` (Keras 3, amid colour escapes). Gives the batch counter and its target.
    static func kerasProgress(_ line: UnsafeBufferPointer<UInt8>) -> (current: Int64, target: Int64)? {
        let n = line.count
        var i = 0
        func skipDecoration() {
            while i < n {
                if isSpace(line[i]) || line[i] == 0x08 { i += 1; continue }
                // An ANSI escape: ESC [ parameters, up to a letter.
                guard line[i] == 0x1B, i + 1 < n, line[i + 1] == 0x5B else { return }
                i += 2
                while i < n && !((line[i] | 0x20) >= 0x61 && (line[i] | 0x20) <= 0x7A) { i += 1 }
                i += 1
            }
        }
        func integer() -> Int64? {
            let start = i
            while i < n && line[i] >= 0x30 && line[i] <= 0x39 { i += 1 }
            guard i > start, i - start < 16 else { return nil }
            return Int64(String(decoding: UnsafeBufferPointer(rebasing: line[start..<i]), as: UTF8.self))
        }
        skipDecoration()
        guard let current = integer(), i < n, line[i] == 0x2F else { return nil }
        i += 1
        guard let target = integer(), i < n, isSpace(line[i]) || line[i] == 0x1B else { return nil }
        skipDecoration()
        guard i + 2 < n else { return nil }
        let isBar = (line[i] == 0x5B && (line[i + 1] == 0x3D || line[i + 1] == 0x3E || line[i + 1] == 0x2E))
            || (line[i] == 0xE2 && line[i + 1] == 0x94 && (line[i + 2] == 0x81 || line[i + 2] == 0x80))
        return isBar ? (current, target) : nil
    }

    static let stepWords: [[UInt8]] = ["step", "iteration", "iter", "epoch"].map { Array($0.utf8) }

    /// What starts the line: `[N]` (then `bracketed`), or a step word and a number; the step, and where
    /// pairs may begin.
    static func linePrefix(_ line: UnsafeBufferPointer<UInt8>) -> (step: Int64?, end: Int, bracketed: Bool) {
        let n = line.count
        var i = 0
        while i < n && isSpace(line[i]) { i += 1 }
        if i < n && line[i] == 0x5B {  // [N]
            var j = i + 1
            while j < n && line[j] >= 0x30 && line[j] <= 0x39 { j += 1 }
            if j > i + 1 && j < n && line[j] == 0x5D, let step = Int64(String(decoding: UnsafeBufferPointer(rebasing: line[(i + 1)..<j]), as: UTF8.self)) {
                return (step, j + 1, true)
            }
            return (nil, 0, false)
        }
        for word in stepWords where i + word.count < n {
            guard zip(word, line[i..<(i + word.count)]).allSatisfy({ $0 == $1 | 0x20 }), isSpace(line[i + word.count]) else { continue }
            var j = i + word.count
            while j < n && isSpace(line[j]) { j += 1 }
            let digits = j
            while j < n && line[j] >= 0x30 && line[j] <= 0x39 { j += 1 }
            guard j > digits, j == n || isSpace(line[j]) || line[j] == 0x2C || line[j] == 0x3A || line[j] == 0x2F,
                  let step = Int64(String(decoding: UnsafeBufferPointer(rebasing: line[digits..<j]), as: UTF8.self))
            else { return (nil, 0, false) }
            return (step, j, false)
        }
        return (nil, 0, false)
    }

    /// A tqdm bar's counter: `12/30 [00:01<00:02, …` gives 12 (the bracket opens on a time, not a bar).
    static func progressBarStep(_ line: UnsafeBufferPointer<UInt8>) -> Int64? {
        guard let base = line.baseAddress else { return nil }
        let n = line.count
        var i = 0
        // Jump from bracket to bracket: most lines have none.
        while i + 2 < n, let found = memchr(base + i + 1, 0x5B, n - i - 1) {
            i = UnsafePointer(found.assumingMemoryBound(to: UInt8.self)) - base - 1
            guard i + 2 < n else { return nil }
            if line[i] == 0x20 && line[i + 1] == 0x5B && line[i + 2] >= 0x30 && line[i + 2] <= 0x39 {
                // Back over `N/M` before the space.
                var j = i
                while j > 0 && line[j - 1] >= 0x30 && line[j - 1] <= 0x39 { j -= 1 }
                if j < i && j > 0 && line[j - 1] == 0x2F {
                    var k = j - 1
                    while k > 0 && line[k - 1] >= 0x30 && line[k - 1] <= 0x39 { k -= 1 }
                    if k < j - 1 { return Int64(String(decoding: UnsafeBufferPointer(rebasing: line[k..<(j - 1)]), as: UTF8.self)) }
                }
            }
            i += 1
        }
        return nil
    }

    /// The pair whose separator is at `separator`, and where scanning should continue. With
    /// `tightColon`, `key:value` needs no space after the colon (XGBoost's lines).
    private func pair(at separator: Int, in line: UnsafeBufferPointer<UInt8>, tightColon: Bool = false) -> (Pair, Int)? {
        let n = line.count
        let isEquals = line[separator] == 0x3D
        // The key, backwards from the separator.
        var keyEnd = separator
        if isEquals { while keyEnd > 0 && Self.isSpace(line[keyEnd - 1]) { keyEnd -= 1 } }
        var keyStart = keyEnd
        while keyStart > 0 && Self.isKeyByte(line[keyStart - 1]) { keyStart -= 1 }
        // A key cannot start with a digit or punctuation: `1.5e-3` is not a key.
        if keyStart < keyEnd && !Self.isKeyStart(line[keyStart]) { return nil }
        guard keyStart < keyEnd, keyStart == 0 || Self.isKeyBoundary(line[keyStart - 1]) else { return nil }
        // The value, forwards.
        var v = separator + 1
        if isEquals {
            while v < n && Self.isSpace(line[v]) { v += 1 }
        } else {
            guard v < n, tightColon || Self.isSpace(line[v]) else { return nil }
            while v < n && Self.isSpace(line[v]) { v += 1 }
        }
        guard let (value, valueEnd) = Self.number(in: line, at: v) else { return nil }
        guard valueEnd == n || Self.isValueEnd(line[valueEnd]) else { return nil }
        let guildStep = Self.guildStep(line, after: valueEnd)
        if guildStep == nil && valueEnd < n && Self.isSpace(line[valueEnd])
            && followedByProse(line, from: valueEnd, tightColon: tightColon) { return nil }
        var key = String(decoding: UnsafeBufferPointer(rebasing: line[keyStart..<keyEnd]), as: UTF8.self)
        if let owner = Self.possessive(line, before: keyStart) { key = owner + "/" + key }
        return (Pair(key: key, value: value, step: guildStep?.step), guildStep?.end ?? valueEnd)
    }

    /// Guild's ` (step 10)` or ` (10)` right after a value: the step, and the index after it.
    static func guildStep(_ line: UnsafeBufferPointer<UInt8>, after start: Int) -> (step: Int64, end: Int)? {
        let n = line.count
        var i = start
        while i < n && isSpace(line[i]) { i += 1 }
        guard i > start, i < n, line[i] == 0x28 else { return nil }
        i += 1
        let word = Array("step ".utf8)
        if i + word.count <= n && zip(word, line[i..<(i + word.count)]).allSatisfy({ $0 == $1 | 0x20 }) { i += word.count }
        let digits = i
        while i < n && line[i] >= 0x30 && line[i] <= 0x39 { i += 1 }
        guard i > digits, i < n, line[i] == 0x29,
              let step = Int64(String(decoding: UnsafeBufferPointer(rebasing: line[digits..<i]), as: UTF8.self)) else { return nil }
        return (step, i + 1)
    }

    /// LightGBM's `valid_0's multi_logloss`: the owner before `'s `, to make the key `valid_0/multi_logloss`.
    static func possessive(_ line: UnsafeBufferPointer<UInt8>, before keyStart: Int) -> String? {
        guard keyStart >= 4, line[keyStart - 1] == 0x20, line[keyStart - 2] == 0x73, line[keyStart - 3] == 0x27 else { return nil }
        let end = keyStart - 3
        var start = end
        while start > 0 && isKeyByte(line[start - 1]) { start -= 1 }
        guard start < end, isKeyStart(line[start]) else { return nil }
        return String(decoding: UnsafeBufferPointer(rebasing: line[start..<end]), as: UTF8.self)
    }

    /// True when the value is followed by a plain word (`3 files`) rather than another pair or the end.
    private func followedByProse(_ line: UnsafeBufferPointer<UInt8>, from start: Int, tightColon: Bool) -> Bool {
        let n = line.count
        var i = start
        while i < n && Self.isSpace(line[i]) { i += 1 }
        guard i < n, Self.isKeyStart(line[i]) else { return false }
        while i < n && Self.isKeyByte(line[i]) { i += 1 }
        var j = i
        while j < n && Self.isSpace(line[j]) { j += 1 }
        if j < n && line[j] == 0x3D { return false }
        if i < n && line[i] == 0x3A && (tightColon || i + 1 == n || Self.isSpace(line[i + 1])) { return false }
        if i + 2 < n && line[i] == 0x27 && line[i + 1] == 0x73 && line[i + 2] == 0x20 { return false }  // `valid_0's l2: …`
        return true
    }

    /// A decimal number (`-1.5e-3`, `.5`, `3`) or nan/inf at `start`, and the index after it.
    static func number(in line: UnsafeBufferPointer<UInt8>, at start: Int) -> (Double, Int)? {
        let n = line.count
        var i = start
        if i < n && (line[i] == 0x2D || line[i] == 0x2B) { i += 1 }
        let digitsStart = i
        var sawDigit = false
        while i < n && line[i] >= 0x30 && line[i] <= 0x39 { i += 1; sawDigit = true }
        if i < n && line[i] == 0x2E {
            i += 1
            while i < n && line[i] >= 0x30 && line[i] <= 0x39 { i += 1; sawDigit = true }
        }
        if !sawDigit {
            // nan / inf / infinity, any case.
            let word = lowercasedWord(line, from: digitsStart)
            switch word {
            case "nan": return (.nan, digitsStart + 3)
            case "inf": return (line[start] == 0x2D ? -.infinity : .infinity, digitsStart + 3)
            case "infinity": return (line[start] == 0x2D ? -.infinity : .infinity, digitsStart + 8)
            default: return nil
            }
        }
        if i < n && (line[i] == 0x65 || line[i] == 0x45) {
            var e = i + 1
            if e < n && (line[e] == 0x2D || line[e] == 0x2B) { e += 1 }
            let expDigits = e
            while e < n && line[e] >= 0x30 && line[e] <= 0x39 { e += 1 }
            if e > expDigits { i = e }
        }
        let length = i - start
        let value: Double? = withUnsafeTemporaryAllocation(of: CChar.self, capacity: length + 1) { text in
            for k in 0..<length { text[k] = CChar(bitPattern: line[start + k]) }
            text[length] = 0
            var end: UnsafeMutablePointer<CChar>?
            let d = strtod(text.baseAddress!, &end)
            return end == text.baseAddress! + length ? d : nil
        }
        guard let value else { return nil }
        return (value, i)
    }

    private static func lowercasedWord(_ line: UnsafeBufferPointer<UInt8>, from start: Int) -> String {
        var i = start
        var bytes: [UInt8] = []
        while i < line.count, bytes.count < 9, isKeyStart(line[i]) { bytes.append(line[i] | 0x20); i += 1 }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Turns parsed pairs into metric points with steps. A `step`, `iteration`/`iter` or `epoch` key (in that
/// order of precedence, integer values only) sets the step of its line and of the lines after it, and is
/// not itself recorded. A key with no step on its line takes the current step, or, when it was already
/// recorded at that step, its own previous step plus one (so `loss: …` printed repeatedly counts up).
/// A step written on the line itself (a progress bar's counter, `[3]`, `(step 10)`) may be redrawn with
/// new values (tqdm draws once more after `set_postfix`): such points are held until their key moves to
/// another step or `flush()` is called, so the last value drawn for a step is the one recorded.
public struct MetricExtractor: Sendable {
    static let stepKeys = ["step", "iteration", "iter", "epoch"]

    private let parser = MetricLineParser()
    private let patterns: [MetricPattern]
    private var currentStep: Int64?
    private var lastStep: [String: Int64] = [:]
    /// Points at a step written on their line, not yet handed out, in the order they first came.
    private var held: [MetricPoint] = []
    private var heldIndex: [String: Int] = [:]

    /// `patterns` are the user's, applied to every line besides the default rules.
    public init(patterns: [MetricPattern] = []) {
        self.patterns = patterns
    }

    /// With user patterns every line may hold a metric, not only those with `:` or `=`.
    public var needsEveryLine: Bool { !patterns.isEmpty }

    public mutating func points(in line: UnsafeBufferPointer<UInt8>, time: Double) -> [MetricPoint] {
        var pairs = parser.pairs(in: line)
        if !patterns.isEmpty {
            let text = String(decoding: line, as: UTF8.self)
            for pattern in patterns { pairs += pattern.pairs(in: text) }
        }
        if pairs.isEmpty {
            // A header such as Keras's `Epoch 3/10` sets the step of the lines after it.
            if let header = MetricLineParser.linePrefix(line).step { currentStep = header }
            return []
        }
        // Keras redraws its bar with running averages after every batch; the epoch's values are on the
        // last one, whose counter has reached the target.
        if let progress = MetricLineParser.kerasProgress(line), progress.current < progress.target { return [] }
        return points(from: pairs, time: time)
    }

    /// Hands out the held points (see the type's comment): at the end of the output, and after each
    /// batch while a run records, so no point waits longer than a batch.
    public mutating func flush() -> [MetricPoint] {
        defer {
            held.removeAll(keepingCapacity: true)
            heldIndex.removeAll(keepingCapacity: true)
        }
        return held
    }

    /// The precedence of a step key (0 is highest), compared without allocating: this runs per pair.
    static func stepRank(_ key: String) -> Int? {
        let count = key.utf8.count
        guard count >= 4 && count <= 9 else { return nil }
        for (rank, candidate) in stepKeys.enumerated() where candidate.utf8.count == count {
            // `| 0x20` lowercases ASCII letters and maps no other byte onto one.
            if zip(candidate.utf8, key.utf8).allSatisfy({ $0 == $1 | 0x20 }) { return rank }
        }
        return nil
    }

    public mutating func points(from pairs: [MetricLineParser.Pair], time: Double) -> [MetricPoint] {
        var stepKey: String?
        var bestRank = Int.max
        for pair in pairs {
            if let rank = Self.stepRank(pair.key), rank < bestRank,
               pair.value == pair.value.rounded(), abs(pair.value) < 9e15 {
                bestRank = rank
                stepKey = pair.key
            }
        }
        if let stepKey, let pair = pairs.first(where: { $0.key == stepKey }) { currentStep = Int64(pair.value) }
        else if let lineStep = pairs.first?.step, pairs.allSatisfy({ $0.step == lineStep }) { currentStep = lineStep }
        var out: [MetricPoint] = []
        out.reserveCapacity(pairs.count)
        for pair in pairs where pair.key != stepKey {
            let step: Int64
            let previous = lastStep[pair.key]
            if let explicit = pair.step, stepKey == nil {
                if let index = heldIndex[pair.key] {
                    if held[index].step == explicit {
                        // A redraw of the step: its newer value replaces the held one.
                        held[index].value = pair.value
                        held[index].time = time
                        continue
                    }
                    out.append(held[index])
                    held[index] = MetricPoint(key: pair.key, step: explicit, value: pair.value, time: time)
                } else {
                    // A redraw after its step was handed out (a flush came in between) is not a new point.
                    if previous == explicit { continue }
                    heldIndex[pair.key] = held.count
                    held.append(MetricPoint(key: pair.key, step: explicit, value: pair.value, time: time))
                }
                lastStep[pair.key] = explicit
                continue
            } else if stepKey != nil, let currentStep {
                step = currentStep
            } else if let currentStep, previous.map({ $0 < currentStep }) ?? true {
                step = currentStep
            } else if let previous {
                step = previous + 1
            } else {
                step = 0
            }
            lastStep[pair.key] = step
            out.append(MetricPoint(key: pair.key, step: step, value: pair.value, time: time))
        }
        return out
    }
}

/// Splits a stream of output into lines at `\n` and at `\r` (each redraw of a progress bar is a line for
/// the parser) and yields only the lines that can hold a metric or set a step: those with a `:` or `=`,
/// and those with `Epoch ` (Keras's `Epoch 3/10` header). It scans each
/// chunk for separators, not for lines, so output without metrics costs a few vectorised `memchr` passes
/// and nothing per line. The unfinished last line is carried to the next chunk; lines longer than
/// `maxLine` are not metric lines, and their excess is dropped rather than buffered.
public struct MetricLineSplitter: Sendable {
    private var partial: [UInt8] = []
    private var overflowed = false
    let maxLine: Int
    /// Yield every line, not only those with a separator (for user patterns).
    let everyLine: Bool

    public init(maxLine: Int = 64 << 10, everyLine: Bool = false) {
        self.maxLine = maxLine
        self.everyLine = everyLine
    }

    public mutating func feed(_ chunk: UnsafeBufferPointer<UInt8>, _ line: (UnsafeBufferPointer<UInt8>) -> Void) {
        guard let base = chunk.baseAddress, chunk.count > 0 else { return }
        if everyLine { return feedEveryLine(chunk, line) }
        let n = chunk.count
        func next(_ byte: UInt8, from start: Int) -> Int {
            guard start < n, let found = memchr(base + start, Int32(byte), n - start) else { return n }
            return UnsafePointer(found.assumingMemoryBound(to: UInt8.self)) - base
        }
        func last(_ byte: UInt8, in range: Range<Int>) -> Int? {
            guard !range.isEmpty, let found = cml_memrchr(base + range.lowerBound, Int32(byte), range.count) else { return nil }
            return UnsafePointer(found.assumingMemoryBound(to: UInt8.self)) - base
        }
        var position = 0
        var newline = next(0x0A, from: 0)
        var cr = next(0x0D, from: 0)
        // The line carried over from the last chunk ends at this chunk's first terminator.
        if !partial.isEmpty || overflowed {
            let end = min(newline, cr)
            carry(UnsafeBufferPointer(start: base, count: end))
            if end == n { return }
            emitCarried(line)
            position = end + 1
        }
        func nextHeader(from start: Int) -> Int {
            Self.headerIndex(UnsafeBufferPointer(rebasing: chunk[start...])).map { start + $0 } ?? n
        }
        var colon = next(0x3A, from: position)
        var equals = next(0x3D, from: position)
        var header = nextHeader(from: position)
        while true {
            let separator = min(colon, equals, header)
            if separator >= n { break }
            let before = position..<separator
            let start = max(last(0x0A, in: before) ?? -1, last(0x0D, in: before) ?? -1, position - 1) + 1
            if newline < separator { newline = next(0x0A, from: separator) }
            if cr < separator { cr = next(0x0D, from: separator) }
            let end = min(newline, cr)
            if end == n {
                carry(UnsafeBufferPointer(start: base + start, count: n - start))
                return
            }
            line(UnsafeBufferPointer(start: base + start, count: end - start))
            position = end + 1
            if newline < position { newline = next(0x0A, from: position) }
            if cr < position { cr = next(0x0D, from: position) }
            if colon < position { colon = next(0x3A, from: position) }
            if equals < position { equals = next(0x3D, from: position) }
            if header < position { header = nextHeader(from: position) }
        }
        // No separator left: only the unfinished tail matters, since its rest may bring one.
        let rest = position..<n
        let tail = max(last(0x0A, in: rest) ?? -1, last(0x0D, in: rest) ?? -1, position - 1) + 1
        carry(UnsafeBufferPointer(start: base + tail, count: n - tail))
    }

    /// Ends the stream: an unterminated last line still counts.
    public mutating func finish(_ line: (UnsafeBufferPointer<UInt8>) -> Void) {
        emitCarried(line)
    }

    private mutating func feedEveryLine(_ chunk: UnsafeBufferPointer<UInt8>, _ line: (UnsafeBufferPointer<UInt8>) -> Void) {
        var start = 0
        for index in chunk.indices where chunk[index] == 0x0A || chunk[index] == 0x0D {
            carry(UnsafeBufferPointer(rebasing: chunk[start..<index]))
            emitCarried(line)
            start = index + 1
        }
        carry(UnsafeBufferPointer(rebasing: chunk[start...]))
    }

    private mutating func carry(_ bytes: UnsafeBufferPointer<UInt8>) {
        if overflowed { return }
        if partial.count + bytes.count > maxLine {
            overflowed = true
            partial.removeAll()
        } else {
            partial.append(contentsOf: bytes)
        }
    }

    static let headerWord = Array("Epoch ".utf8)

    /// Where `Epoch ` first stands in `bytes`: memchr for the 'E', then compare (memmem is several times
    /// slower than memchr here).
    static func headerIndex(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        guard let base = bytes.baseAddress else { return nil }
        let n = bytes.count
        var at = 0
        while at < n, let found = memchr(base + at, 0x45, n - at) {
            let index = UnsafePointer(found.assumingMemoryBound(to: UInt8.self)) - base
            if index + headerWord.count <= n && memcmp(base + index, headerWord, headerWord.count) == 0 { return index }
            at = index + 1
        }
        return nil
    }

    private mutating func emitCarried(_ line: (UnsafeBufferPointer<UInt8>) -> Void) {
        if !overflowed && !partial.isEmpty && (everyLine || partial.contains(0x3A) || partial.contains(0x3D)
                                                || partial.withUnsafeBufferPointer({ Self.headerIndex($0) != nil })) {
            partial.withUnsafeBufferPointer { line($0) }
        }
        partial.removeAll(keepingCapacity: true)
        overflowed = false
    }
}

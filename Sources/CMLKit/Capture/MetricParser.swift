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
        /// Whether the value may be a counter (`step`, `epoch`…): written as an integer. `'epoch': 1.0`
        /// and Hugging Face's `'epoch': '1'` (a float it formatted) are metrics, not steps.
        public var integral: Bool

        public init(key: String, value: Double, step: Int64? = nil, integral: Bool? = nil) {
            self.key = key
            self.value = value
            self.step = step
            self.integral = integral ?? (value == value.rounded() && abs(value) < 9e15)
        }
    }

    /// What kind of line the pairs came from.
    public enum LineKind: Sendable, Equatable {
        case text
        case json
        /// A Python dict (`{'loss': 0.69, 'epoch': 0.5}`), as Hugging Face's Trainer prints its logs.
        case pythonDict
    }

    public init() {}

    public func pairs(in line: UnsafeBufferPointer<UInt8>) -> [Pair] {
        parse(line).pairs
    }

    public func parse(_ line: UnsafeBufferPointer<UInt8>) -> (pairs: [Pair], kind: LineKind) {
        guard let base = line.baseAddress, line.count >= 3 else { return ([], .text) }
        let n = line.count
        // Jump from separator to separator with memchr: most lines hold few, often none that make a pair.
        func next(_ byte: Int32, from start: Int) -> Int {
            guard start < n, let found = memchr(base + start, byte, n - start) else { return n }
            return UnsafePointer(found.assumingMemoryBound(to: UInt8.self)) - base
        }
        var colon = next(0x3A, from: 0)
        var equals = next(0x3D, from: 0)
        if colon == n && equals == n { return ([], .text) }
        if let members = jsonMembers(line) { return members }
        if Self.isLoggerMessage(line) { return ([], .text) }
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
        return (found, .text)
    }

    public func pairs(in text: String) -> [Pair] {
        var bytes = Array(text.utf8)
        return bytes.withUnsafeMutableBufferPointer { pairs(in: UnsafeBufferPointer($0)) }
    }

    /// A line that is a JSON object, or a Python dict of the same (single quotes): its numeric members.
    /// A Python dict's quoted numbers are numbers too: Transformers 5 prints its floats formatted
    /// (`{'loss': '0.6968', 'epoch': '0.5'}`).
    private func jsonMembers(_ line: UnsafeBufferPointer<UInt8>) -> (pairs: [Pair], kind: LineKind)? {
        var first = 0
        var last = line.count - 1
        while first < last && Self.isSpace(line[first]) { first += 1 }
        while last > first && (Self.isSpace(line[last]) || line[last] == 0x0D) { last -= 1 }
        guard line[first] == 0x7B, line[last] == 0x7D else { return nil }
        var bytes = Array(line[first...last])
        let python = bytes.count > 1 && bytes[1] == 0x27
        if python {
            bytes = bytes.map { $0 == 0x27 ? 0x22 : $0 }  // {'loss': 0.69} → {"loss": 0.69}
        }
        guard case .object(let members)? = try? JSON.parse(bytes: &bytes) else { return nil }
        if members.contains(where: Self.namesARun) { return ([], .json) }
        let pairs: [Pair] = members.compactMap { key, value in
            switch value {
            case .int(let i): return Pair(key: key, value: Double(i), integral: true)
            case .double(let d): return Pair(key: key, value: d, integral: false)
            case .string(let text) where python:
                return Self.wholeNumber(text).map { Pair(key: key, value: $0, integral: false) }
            default: return nil
            }
        }
        return (pairs, python ? .pythonDict : .json)
    }

    /// A member that makes a JSON line a record of cml's own tools (`cml-log artifact` prints one, with
    /// its size and time, inside a run too): a `run` or `id` that is a run id, 32 hex digits.
    static func namesARun(_ member: (String, JSON)) -> Bool {
        guard member.0 == "run" || member.0 == "id", case .string(let value) = member.1, value.utf8.count == 32 else { return false }
        return value.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// `text` as a number when all of it is one (`0.6968`, `3.333e-05`, `nan`, `-inf`).
    static func wholeNumber(_ text: String) -> Double? {
        var bytes = Array(text.utf8)
        return bytes.withUnsafeMutableBufferPointer { buffer in
            let line = UnsafeBufferPointer(buffer)
            guard let (value, end) = number(in: line, at: 0), end == line.count else { return nil }
            return value
        }
    }

    static let lightGBMLogger = Array("[LightGBM] [".utf8)

    /// LightGBM's own log messages (`[LightGBM] [Info] Number of positive: 741, number of negative: 759`,
    /// `[LightGBM] [Warning] … best gain: -inf`) are prose; its evaluation lines (`[3]\tvalid_0's l2: …`)
    /// are not written through its logger.
    static func isLoggerMessage(_ line: UnsafeBufferPointer<UInt8>) -> Bool {
        var i = 0
        while i < line.count && isSpace(line[i]) { i += 1 }
        guard i + lightGBMLogger.count <= line.count, line[i] == 0x5B else { return false }
        return zip(lightGBMLogger, line[i...]).allSatisfy { $0 == $1 }
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

    /// Keras's progress bar at the start of a line: `12/469 [=====>....]` (Keras 2), `12/469 ━━━━━━`
    /// (Keras 3, amid colour escapes) or `469/469 - 1s - …` (`verbose=2`). Gives the batch counter and
    /// its target.
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
            || isKerasElapsed(line, at: i)
        return isBar ? (current, target) : nil
    }

    /// `- 1s - ` or `- 62ms - `, which follows the counter in Keras's `verbose=2` lines.
    static func isKerasElapsed(_ line: UnsafeBufferPointer<UInt8>, at start: Int) -> Bool {
        let n = line.count
        guard start + 2 < n, line[start] == 0x2D, line[start + 1] == 0x20 else { return false }
        var i = start + 2
        let digits = i
        while i < n && line[i] >= 0x30 && line[i] <= 0x39 { i += 1 }
        let unit = i
        while i < n && (line[i] == 0x6D || line[i] == 0x73 || line[i] == 0x75) { i += 1 }  // m, s, u
        return i > digits && unit > digits && i > unit && i + 1 < n && line[i] == 0x20 && line[i + 1] == 0x2D
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

    /// Whether the line begins with `Epoch`/`Step`/`Iteration`/`Iter` and a number (a bar's description).
    static func startsWithStepWord(_ line: UnsafeBufferPointer<UInt8>) -> Bool {
        // Most lines are ruled out by their first letter, before the words are compared.
        guard let first = line.first(where: { !isSpace($0) }), [0x65, 0x73, 0x69].contains(first | 0x20) else { return false }
        let prefix = linePrefix(line)
        return prefix.step != nil && !prefix.bracketed
    }

    /// The counter of a bar that begins with its epoch: tqdm's `Epoch 3:  40%|████ | 4/10 [00:01<…` and
    /// Rich's `Epoch 3/9 ━━━━━ 4/10 0:00:01 • …` give 4: the first `N/M` after a space past the epoch.
    static func epochBarCounter(_ line: UnsafeBufferPointer<UInt8>) -> Int64? {
        guard let base = line.baseAddress else { return nil }
        let n = line.count
        var i = linePrefix(line).end + 1
        while i < n, let found = memchr(base + i, 0x2F, n - i) {
            let slash = UnsafePointer(found.assumingMemoryBound(to: UInt8.self)) - base
            var start = slash
            while start > 0 && line[start - 1] >= 0x30 && line[start - 1] <= 0x39 { start -= 1 }
            var end = slash + 1
            while end < n && line[end] >= 0x30 && line[end] <= 0x39 { end += 1 }
            if start < slash && start > 0 && line[start - 1] == 0x20 && end > slash + 1 && (end == n || line[end] == 0x20),
               slash - start < 16 {
                return Int64(String(decoding: UnsafeBufferPointer(rebasing: line[start..<slash]), as: UTF8.self))
            }
            i = slash + 1
        }
        return nil
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
        let integral = !line[v..<valueEnd].contains { $0 == 0x2E || $0 == 0x65 || $0 == 0x45 || $0 == 0x6E || $0 == 0x4E }
        guard valueEnd == n || Self.isValueEnd(line[valueEnd]) else { return nil }
        // A list of numbers (`Using 4 GPUs: 0,1,2,3`) is no value.
        if valueEnd + 1 < n && line[valueEnd] == 0x2C && line[valueEnd + 1] >= 0x30 && line[valueEnd + 1] <= 0x39 { return nil }
        let guildStep = Self.guildStep(line, after: valueEnd)
        if guildStep == nil && valueEnd < n && Self.isSpace(line[valueEnd])
            && followedByProse(line, from: valueEnd, tightColon: tightColon) { return nil }
        var key = String(decoding: UnsafeBufferPointer(rebasing: line[keyStart..<keyEnd]), as: UTF8.self)
        if let owner = Self.possessive(line, before: keyStart) { key = owner + "/" + key }
        return (Pair(key: key, value: value, step: guildStep?.step, integral: integral), guildStep?.end ?? valueEnd)
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

/// Turns the lines of one output stream into metric points with steps. A `step`, `iteration`/`iter` or
/// `epoch` key (in that order of precedence, written as an integer) sets the step of its line and of the
/// lines after it, and is not itself recorded. A key with no step on its line takes the current step, or,
/// when it was already recorded at that step, its own previous step plus one (so `loss: …` printed
/// repeatedly counts up).
///
/// A step written on the line itself (a progress bar's counter, `Epoch 3:`, `[3]`, `(step 10)`) may be
/// redrawn with new values (tqdm draws once more after `set_postfix`, Lightning's bar gets the validation
/// metrics at the end of its epoch): such points are held until their key moves to another step or the
/// output ends, so the last value drawn for a step is the one recorded, whatever the timing. Keras's bars
/// are such lines too, at the epoch's index (0 for `Epoch 1/10`, as Keras's own logs count).
public struct MetricExtractor: Sendable {
    static let stepKeys = ["step", "iteration", "iter", "epoch"]
    /// The logger's version that Lightning's bar shows: not a metric.
    static let barVersion = "v_num"

    /// What one line gave.
    public struct LineResult: Sendable {
        public var points: [MetricPoint] = []
        /// A Python dict line's pairs (Hugging Face's Trainer's logs), whose step a progress bar gives:
        /// `ConsoleMetrics` turns them into points.
        public var dict: [MetricLineParser.Pair]?
        /// The counter of an outer progress bar (not one drawn below another) drawn on this line.
        public var barCounter: Int64?
    }

    private let parser = MetricLineParser()
    private let patterns: [MetricPattern]
    private var currentStep: Int64?
    private var lastStep: [String: Int64] = [:]
    /// Points at a step written on their line, not yet handed out, in the order they first came.
    private var held: [MetricPoint] = []
    private var heldIndex: [String: Int] = [:]
    /// After Keras's `Epoch N/M`: the epoch's index, and the batch count of its bar once drawn (a bar
    /// with another count is `evaluate`'s or `predict`'s, not the epoch's).
    private var kerasEpoch: (index: Int64, batches: Int64?)?
    /// The last line that drew a bar with an epoch (`Epoch 2/9 ━━━ … train_loss: 0.45`): Rich wraps its
    /// metrics onto indented lines below it, which continue it.
    private var lastBarLine: [UInt8]?
    private var scratch: [UInt8] = []

    /// `patterns` are the user's, applied to every line besides the default rules.
    public init(patterns: [MetricPattern] = []) {
        self.patterns = patterns
    }

    /// With user patterns every line may hold a metric, not only those with `:` or `=`.
    public var needsEveryLine: Bool { !patterns.isEmpty }

    /// The points of one line; a Python dict's are left to the caller (see `LineResult.dict`).
    public mutating func process(_ raw: UnsafeBufferPointer<UInt8>, time: Double) -> LineResult {
        guard let base = raw.baseAddress, raw.count > 0, memchr(base, 0x1B, raw.count) != nil else {
            return processPlain(raw, time: time, nested: false)
        }
        // Colour and cursor escapes go: `\e[3mtrain_loss: 0.6` is `train_loss: 0.6`. A bar drawn below
        // another ends by moving the cursor back up (`\e[A`).
        let nested = raw.count >= 3 && raw[raw.count - 3] == 0x1B && raw[raw.count - 2] == 0x5B && raw[raw.count - 1] == 0x41
        var text = scratch
        text.removeAll(keepingCapacity: true)
        Self.stripEscapes(raw, into: &text)
        defer { scratch = text }
        return text.withUnsafeBufferPointer { processPlain($0, time: time, nested: nested) }
    }

    static func stripEscapes(_ line: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) {
        var i = 0
        let n = line.count
        while i < n {
            if line[i] == 0x1B, i + 1 < n, line[i + 1] == 0x5B {
                i += 2
                while i < n && !(line[i] >= 0x40 && line[i] <= 0x7E) { i += 1 }
                i += 1
            } else {
                out.append(line[i])
                i += 1
            }
        }
    }

    private mutating func processPlain(_ line: UnsafeBufferPointer<UInt8>, time: Double, nested: Bool) -> LineResult {
        var result = LineResult()
        if let previous = lastBarLine, previous.count + line.count <= Self.maxBarLine, Self.isContinuation(line) {
            // One more wrapped line of the bar's metrics: read the bar with it.
            var joined = previous
            joined.append(0x20)
            joined.append(contentsOf: line.drop { Self.isSpaceOrCR($0) })
            lastBarLine = joined
            return joined.withUnsafeBufferPointer { whole in
                var result = processPlain(whole, time: time, nested: nested)
                result.barCounter = nil
                return result
            }
        }
        lastBarLine = nil
        var (pairs, kind) = parser.parse(line)
        if !patterns.isEmpty {
            let text = String(decoding: line, as: UTF8.self)
            for pattern in patterns { pairs += pattern.pairs(in: text) }
        }
        if !nested { result.barCounter = MetricLineParser.progressBarStep(line) }
        // A bar that begins with its epoch (Lightning's) may wrap onto the lines below it.
        let epochBarCounter = MetricLineParser.startsWithStepWord(line) ? MetricLineParser.epochBarCounter(line) : nil
        if epochBarCounter != nil { lastBarLine = Array(line) }
        if pairs.isEmpty {
            // A header such as Keras's `Epoch 3/10` sets the step of the lines after it.
            let prefix = MetricLineParser.linePrefix(line)
            if let header = prefix.step {
                currentStep = header
                if Self.isKerasHeader(line, prefixEnd: prefix.end) { kerasEpoch = (header - 1, nil) }
            }
            return result
        }
        if pairs.contains(where: { $0.key == Self.barVersion }) { pairs.removeAll { $0.key == Self.barVersion } }
        // Keras redraws its bar with running averages after every batch; the epoch's values are on the
        // last one, whose counter has reached the target (and which is drawn again after validation).
        if let progress = MetricLineParser.kerasProgress(line) {
            if kerasEpoch != nil && kerasEpoch?.batches == nil { kerasEpoch?.batches = progress.target }
            if progress.current < progress.target { return result }
            if let epoch = kerasEpoch, epoch.batches == progress.target {
                for index in pairs.indices { pairs[index].step = epoch.index }
            }
        }
        if let epoch = pairs.first?.step, let counter = epochBarCounter {
            // A bar just reset for epoch N (`Epoch 3: 0/8`, or Rich's `Epoch 3/9 ━━ 0/8`) still shows the
            // values epoch N-1 ended with: Rich often draws epoch N-1's validation results only there.
            // Before the first epoch they are the sanity check's. (tqdm's bar is also redrawn at 0 with
            // the old epoch when it resets: those are epoch N's own.)
            if counter == 0 {
                for index in pairs.indices where pairs[index].step == epoch && lastStep[pairs[index].key] != epoch {
                    pairs[index].step = epoch - 1
                }
                pairs.removeAll { $0.step.map { $0 < 0 } ?? false }
                if pairs.isEmpty { return result }
            }
        }
        if kind == .pythonDict {
            result.dict = pairs
            return result
        }
        result.points = points(from: pairs, time: time)
        return result
    }

    /// A bar with its wrapped lines is no longer than this: indented lines after it beyond are not its.
    static let maxBarLine = 8192

    /// Indented far enough to be a wrapped column of the line above (Rich's bar, in its metrics column).
    static func isContinuation(_ line: UnsafeBufferPointer<UInt8>) -> Bool {
        line.count > 16 && line.prefix(16).allSatisfy { $0 == 0x20 }
    }

    static func isSpaceOrCR(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0D }

    /// Keras's epoch header is all of its line: `Epoch 3/10`.
    static func isKerasHeader(_ line: UnsafeBufferPointer<UInt8>, prefixEnd: Int) -> Bool {
        var i = prefixEnd
        guard i < line.count, line[i] == 0x2F else { return false }
        i += 1
        let digits = i
        while i < line.count && line[i] >= 0x30 && line[i] <= 0x39 { i += 1 }
        return i > digits && line[i...].allSatisfy(isSpaceOrCR)
    }

    /// Hands out the held points (see the type's comment), at the end of the output.
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
        for pair in pairs where pair.step == nil && pair.integral {
            if let rank = Self.stepRank(pair.key), rank < bestRank {
                bestRank = rank
                stepKey = pair.key
            }
        }
        if let stepKey, let pair = pairs.first(where: { $0.key == stepKey }) { currentStep = Int64(pair.value) }
        else if let lineStep = pairs.first?.step, pairs.allSatisfy({ $0.step == lineStep }) { currentStep = lineStep }
        var out: [MetricPoint] = []
        out.reserveCapacity(pairs.count)
        // A key longer than a name may be (`NameLimits`) is prose, not a metric.
        for pair in pairs where pair.key != stepKey && pair.key.utf8.count <= NameLimits.nameBytes {
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

/// Where a line stands in its stream, for what its bytes alone cannot say.
public struct LineContext {
    /// The stream's bytes before the current chunk (its last `MetricLineSplitter.historySize`), and the
    /// chunk's bytes before the line.
    fileprivate var history: UnsafeBufferPointer<UInt8>
    fileprivate var before: UnsafeBufferPointer<UInt8>
    /// Worked out already (for a line carried over from an earlier chunk).
    fileprivate var known: Bool?

    static var none: LineContext { LineContext(history: UnsafeBufferPointer(start: nil, count: 0), before: UnsafeBufferPointer(start: nil, count: 0), known: false) }

    /// Whether the line is a redraw right after the line was blanked (`\r`, spaces, `\r`): what tqdm
    /// writes around `tqdm.write()`, with which Hugging Face's Trainer prints its logs. Cursor-up escapes
    /// (`\e[A`, from a second bar below) may stand between. Looks no further back than
    /// `MetricLineSplitter.historySize` bytes, so that the answer does not depend on how output was chunked.
    public var followsBlankedLine: Bool {
        if let known { return known }
        let total = history.count + before.count
        let floor = max(0, total - MetricLineSplitter.historySize)
        func byte(_ i: Int) -> UInt8 { i >= history.count ? before[i - history.count] : history[i] }
        var i = total - 1
        guard i >= floor, byte(i) == 0x0D else { return false }
        while i >= floor {
            if byte(i) == 0x0D { i -= 1; continue }
            if i - 2 >= floor, byte(i) == 0x41, byte(i - 1) == 0x5B, byte(i - 2) == 0x1B { i -= 3; continue }
            break
        }
        // The spaces must end with the `\r` that tqdm writes after blanking.
        guard i >= floor, byte(i) == 0x20, byte(i + 1) == 0x0D else { return false }
        while i >= floor && byte(i) == 0x20 { i -= 1 }
        return i >= floor && byte(i) == 0x0D
    }
}

/// Splits a stream of output into lines at `\n` and at `\r` (each redraw of a progress bar is a line for
/// the parser) and yields only the lines that can hold a metric or set a step: those with a `:` or `=`,
/// and those with `Epoch ` (Keras's `Epoch 3/10` header). It scans each
/// chunk for separators, not for lines, so output without metrics costs a few vectorised `memchr` passes
/// and nothing per line. The unfinished last line is carried to the next chunk; lines longer than
/// `maxLine` are not metric lines, and their excess is dropped rather than buffered. What it yields does
/// not depend on how the stream was cut into chunks.
public struct MetricLineSplitter: Sendable {
    private var partial: [UInt8] = []
    private var partialFollowsBlankedLine = false
    private var overflowed = false
    /// The stream's last bytes before the current chunk (see `LineContext`).
    private var history: [UInt8] = []
    static let historySize = 1024
    let maxLine: Int
    /// Yield every line, not only those with a separator (for user patterns).
    let everyLine: Bool

    public init(maxLine: Int = 64 << 10, everyLine: Bool = false) {
        self.maxLine = maxLine
        self.everyLine = everyLine
    }

    public mutating func feed(_ chunk: UnsafeBufferPointer<UInt8>, _ line: (UnsafeBufferPointer<UInt8>, LineContext) -> Void) {
        guard chunk.baseAddress != nil, chunk.count > 0 else { return }
        history.withUnsafeBufferPointer { history in
            if everyLine { feedEveryLine(chunk, history: history, line) } else { feedSeparatorLines(chunk, history: history, line) }
        }
        // Keep the last bytes, trimming in steps so that tiny chunks cost little.
        history.append(contentsOf: chunk.suffix(Self.historySize))
        if history.count >= 2 * Self.historySize { history.removeFirst(history.count - Self.historySize) }
    }

    private mutating func feedSeparatorLines(_ chunk: UnsafeBufferPointer<UInt8>, history: UnsafeBufferPointer<UInt8>,
                                             _ line: (UnsafeBufferPointer<UInt8>, LineContext) -> Void) {
        let base = chunk.baseAddress!
        let n = chunk.count
        let recent = UnsafeBufferPointer(rebasing: history.suffix(Self.historySize))
        func context(_ start: Int) -> LineContext {
            LineContext(history: recent, before: UnsafeBufferPointer(start: base, count: start), known: nil)
        }
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
            carry(UnsafeBufferPointer(start: base, count: end), startingAt: nil)
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
                carry(UnsafeBufferPointer(start: base + start, count: n - start), startingAt: context(start))
                return
            }
            line(UnsafeBufferPointer(start: base + start, count: end - start), context(start))
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
        carry(UnsafeBufferPointer(start: base + tail, count: n - tail), startingAt: context(tail))
    }

    /// Ends the stream: an unterminated last line still counts.
    public mutating func finish(_ line: (UnsafeBufferPointer<UInt8>, LineContext) -> Void) {
        emitCarried(line)
    }

    private mutating func feedEveryLine(_ chunk: UnsafeBufferPointer<UInt8>, history: UnsafeBufferPointer<UInt8>,
                                        _ line: (UnsafeBufferPointer<UInt8>, LineContext) -> Void) {
        let recent = UnsafeBufferPointer(rebasing: history.suffix(Self.historySize))
        var start = 0
        for index in chunk.indices where chunk[index] == 0x0A || chunk[index] == 0x0D {
            carry(UnsafeBufferPointer(rebasing: chunk[start..<index]),
                  startingAt: LineContext(history: recent, before: UnsafeBufferPointer(rebasing: chunk[..<start]), known: nil))
            emitCarried(line)
            start = index + 1
        }
        carry(UnsafeBufferPointer(rebasing: chunk[start...]),
              startingAt: LineContext(history: recent, before: UnsafeBufferPointer(rebasing: chunk[..<start]), known: nil))
    }

    /// Adds to the carried line; `context` is where it starts, when this begins it.
    private mutating func carry(_ bytes: UnsafeBufferPointer<UInt8>, startingAt context: LineContext?) {
        if overflowed { return }
        if partial.isEmpty, let context { partialFollowsBlankedLine = context.followsBlankedLine }
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

    private mutating func emitCarried(_ line: (UnsafeBufferPointer<UInt8>, LineContext) -> Void) {
        if !overflowed && !partial.isEmpty && (everyLine || partial.contains(0x3A) || partial.contains(0x3D)
                                                || partial.withUnsafeBufferPointer({ Self.headerIndex($0) != nil })) {
            var context = LineContext.none
            context.known = partialFollowsBlankedLine
            partial.withUnsafeBufferPointer { line($0, context) }
        }
        partial.removeAll(keepingCapacity: true)
        partialFollowsBlankedLine = false
        overflowed = false
    }
}

import CSupport
import Glibc

/// Holds a run's console output between flushes and drops progress redraws before they reach the log.
///
/// A carriage return that does not end a line (`\r` not followed by `\n`) means "redraw this line": the
/// bytes of that line still held here are dropped, unless the stream is binary: once a redrawn line held a
/// control byte other than tab, backspace, bell and escape, or bytes that are not UTF-8, every `\r` of
/// that stream is a byte like any other, and stored. A line's unfinished tail is held back for up to
/// `holdSeconds` so that the redraws of a progress bar collapse; after that it is written, and a later
/// redraw is stored as a `\r` that `ConsoleRenderer` applies when the log is read. Streams keep their
/// order as a terminal shows it: once the other stream's bytes follow an unfinished line, that line stays
/// where it is (a terminal's next redraw draws on a new line), so its held bytes are written before them.
struct OutputCollapser {
    struct Segment {
        var stream: OutputStream
        var time: Double
        var bytes: [UInt8]
    }

    private struct Position {
        var segment: Int
        var offset: Int
    }

    private struct LineState {
        /// The first held byte of the current, unfinished line; nil when none of it is held.
        var start: Position?
        /// Part of the current line was already written, so a redraw must be stored as `\r`.
        var beganInWritten = false
        /// A `\r` ended the last chunk: whether it ends a line depends on the next byte.
        var pendingCR = false
        var heldSince: Double?
        /// How many of the held bytes were looked at for binary ones.
        var checked = 0
        /// The stream showed binary bytes: none of its bytes are dropped any more.
        var binary = false
    }

    private var segments: [Segment] = []
    private var lines = [LineState(), LineState()]
    static let gatherLimit = 1 << 16
    let holdSeconds: Double
    let maxHeldLine: Int

    init(holdSeconds: Double = 0.5, maxHeldLine: Int = 1 << 20) {
        self.holdSeconds = holdSeconds
        self.maxHeldLine = maxHeldLine
    }

    private static func slot(_ stream: OutputStream) -> Int { Int(stream.rawValue) - 1 }
    private static func stream(_ slot: Int) -> OutputStream { slot == 0 ? .stdout : .stderr }

    mutating func feed(_ stream: OutputStream, time: Double, _ chunk: [UInt8]) {
        let s = Self.slot(stream)
        if !chunk.isEmpty { settleLine(of: 1 - s, time: time) }
        chunk.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress, buffer.count > 0 else { return }
            if lines[s].pendingCR {
                lines[s].pendingCR = false
                if base[0] == 0x0A { append(stream, time, [0x0D]) } else { redraw(stream, time) }
            }
            var position = 0
            while position < buffer.count {
                guard let found = memchr(base + position, 0x0D, buffer.count - position) else {
                    append(stream, time, UnsafeBufferPointer(rebasing: buffer[position...]))
                    break
                }
                let cr = UnsafePointer(found.assumingMemoryBound(to: UInt8.self)) - base
                append(stream, time, UnsafeBufferPointer(rebasing: buffer[position..<cr]))
                if cr + 1 == buffer.count {
                    lines[s].pendingCR = true
                } else if base[cr + 1] == 0x0A {
                    append(stream, time, [0x0D])
                } else {
                    redraw(stream, time)
                }
                position = cr + 1
            }
        }
    }

    private mutating func append(_ stream: OutputStream, _ time: Double, _ bytes: UnsafeBufferPointer<UInt8>) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        let s = Self.slot(stream)
        // Small pieces are gathered into one segment (one log record); big ones get their own.
        if segments.last?.stream != stream || segments[segments.count - 1].bytes.count >= Self.gatherLimit {
            segments.append(Segment(stream: stream, time: time, bytes: []))
        }
        let last = segments.count - 1
        let before = segments[last].bytes.count
        segments[last].bytes.append(contentsOf: bytes)
        if let newline = cml_memrchr(base, 0x0A, bytes.count) {
            let after = newline.assumingMemoryBound(to: UInt8.self) - base + 1
            lines[s].start = after == bytes.count ? nil : Position(segment: last, offset: before + after)
            lines[s].beganInWritten = false
            lines[s].checked = 0
        } else if lines[s].start == nil {
            lines[s].start = Position(segment: last, offset: before)
        }
    }

    private mutating func append(_ stream: OutputStream, _ time: Double, _ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { append(stream, time, $0) }
    }

    /// The other stream's bytes come next: the unfinished line of `slot` is no longer held back, and a `\r`
    /// that ended its last chunk was a redraw (on a terminal, the other stream's text draws over it).
    private mutating func settleLine(of s: Int, time: Double) {
        if lines[s].pendingCR {
            lines[s].pendingCR = false
            redraw(Self.stream(s), time)
        }
        if lines[s].start != nil {
            lines[s].start = nil
            lines[s].beganInWritten = true
            lines[s].checked = 0
        }
    }

    /// A bare carriage return: drop the current line's held bytes, unless they are binary.
    private mutating func redraw(_ stream: OutputStream, _ time: Double) {
        let s = Self.slot(stream)
        if heldLineIsBinary(s) {
            append(stream, time, [0x0D])
            return
        }
        if let start = lines[s].start {
            for i in start.segment..<segments.count where segments[i].stream == stream {
                if i == start.segment {
                    segments[i].bytes.removeSubrange(start.offset...)
                } else {
                    segments[i].bytes.removeAll()
                }
            }
            lines[s].start = nil
            lines[s].checked = 0
        }
        if lines[s].beganInWritten { append(stream, time, [0x0D]) }
    }

    /// Whether the stream is binary, looking at the held bytes of the line not looked at before.
    private mutating func heldLineIsBinary(_ s: Int) -> Bool {
        guard let start = lines[s].start, !lines[s].binary else { return lines[s].binary }
        let stream = Self.stream(s)
        var held: [UInt8] = []
        for i in start.segment..<segments.count where segments[i].stream == stream {
            held += segments[i].bytes[(i == start.segment ? start.offset : 0)...]
        }
        // Looked at from the line's start for UTF-8 (a sequence may straddle), but each byte once for
        // control bytes.
        if held.dropFirst(lines[s].checked).contains(where: Self.isBinary) || String(validating: held, as: UTF8.self) == nil {
            lines[s].binary = true
        }
        lines[s].checked = held.count
        return lines[s].binary
    }

    static func isBinary(_ byte: UInt8) -> Bool {
        (byte < 0x20 && byte != 0x09 && byte != 0x08 && byte != 0x07 && byte != 0x1B && byte != 0x0D && byte != 0x0A) || byte == 0x7F
    }

    /// Bytes of the unfinished line of `slot` still held.
    private func heldLineSize(_ s: Int) -> Int {
        guard let start = lines[s].start else { return 0 }
        let stream = Self.stream(s)
        var total = 0
        for i in start.segment..<segments.count where segments[i].stream == stream {
            total += segments[i].bytes.count - (i == start.segment ? start.offset : 0)
        }
        return total
    }

    /// Returns what to write now: every complete line, and unfinished lines held longer than
    /// `holdSeconds` or bigger than `maxHeldLine` (everything when `final`).
    mutating func flush(now: Double, final: Bool) -> [Segment] {
        var holding = [false, false]
        for s in 0..<2 {
            if final {
                if lines[s].pendingCR {
                    append(Self.stream(s), now, [0x0D])
                    lines[s].pendingCR = false
                }
                continue
            }
            let held = heldLineSize(s)
            if held == 0 { lines[s].heldSince = nil; continue }
            let since = lines[s].heldSince ?? now
            holding[s] = now - since < holdSeconds && held <= maxHeldLine
            lines[s].heldSince = holding[s] ? since : nil
        }
        var out: [Segment] = []
        var kept: [Segment] = []
        var newStarts: [Position?] = [nil, nil]
        for (i, segment) in segments.enumerated() {
            let s = Self.slot(segment.stream)
            var cut = segment.bytes.count
            if holding[s], let start = lines[s].start, i >= start.segment {
                cut = i == start.segment ? start.offset : 0
            }
            if cut == segment.bytes.count {
                out.append(segment)
            } else if cut > 0 {
                out.append(Segment(stream: segment.stream, time: segment.time, bytes: Array(segment.bytes[..<cut])))
            }
            if cut < segment.bytes.count {
                if kept.last?.stream != segment.stream {
                    kept.append(Segment(stream: segment.stream, time: segment.time, bytes: []))
                }
                if newStarts[s] == nil { newStarts[s] = Position(segment: kept.count - 1, offset: kept[kept.count - 1].bytes.count) }
                kept[kept.count - 1].bytes.append(contentsOf: segment.bytes[cut...])
            }
        }
        for s in 0..<2 {
            if holding[s] {
                lines[s].start = newStarts[s]
            } else {
                if lines[s].start != nil { lines[s].beganInWritten = true }
                lines[s].start = nil
                lines[s].checked = 0
            }
        }
        segments = kept
        return out
    }
}

import Foundation

/// Finds the lines of console output that hold a text, as the output streams past: fed the rendered
/// output (`ConsoleRenderer`) in pieces of any size, it keeps only the line being read and the matches
/// it reports, so a log of gigabytes is searched in the memory of one line. Lines are numbered from 1;
/// bytes that are not UTF-8 are read as U+FFFD and cannot break the search.
public struct ConsoleSearch {
    public struct Match: Sendable, Equatable {
        public var line: Int
        public var text: String
    }

    public let needle: String
    public let matchCase: Bool
    /// Matches kept: the count goes on past it.
    public let keep: Int
    /// Longest text kept of a matching line, in characters.
    public static let lineLimit = 1000
    public private(set) var matches: [Match] = []
    /// Every matching line, kept or not.
    public private(set) var count = 0
    /// Lines read so far.
    public private(set) var lines = 0
    private var line: [UInt8] = []
    private let needleBytes: [UInt8]?

    /// `needle` is literal text (no pattern); `matchCase` false folds case.
    public init(_ needle: String, matchCase: Bool, keep: Int = 1000) {
        self.needle = needle
        self.matchCase = matchCase
        self.keep = keep
        // A case-sensitive needle is found by bytes: no line is decoded unless it matches.
        needleBytes = matchCase ? Array(needle.utf8) : nil
    }

    public mutating func feed(_ bytes: [UInt8]) {
        var start = 0
        while start < bytes.count {
            guard let newline = bytes[start...].firstIndex(of: 0x0A) else {
                line.append(contentsOf: bytes[start...])
                return
            }
            line.append(contentsOf: bytes[start..<newline])
            endLine()
            start = newline + 1
        }
    }

    /// The last line, when the output does not end with a newline.
    public mutating func finish() {
        if !line.isEmpty { endLine() }
    }

    private mutating func endLine() {
        lines += 1
        defer { line.removeAll(keepingCapacity: true) }
        guard !needle.isEmpty else { return }
        if line.last == 0x0D { line.removeLast() }
        let found: Bool
        if let needleBytes {
            found = Self.contains(line, needleBytes)
        } else {
            found = String(decoding: line, as: UTF8.self).range(of: needle, options: [.caseInsensitive]) != nil
        }
        guard found else { return }
        count += 1
        if matches.count < keep {
            matches.append(Match(line: lines, text: String(String(decoding: line, as: UTF8.self).prefix(Self.lineLimit))))
        }
    }

    private static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count, let first = needle.first else { return needle.isEmpty }
        var index = 0
        while index <= haystack.count - needle.count {
            if haystack[index] == first && haystack[index..<(index + needle.count)].elementsEqual(needle) { return true }
            index += 1
        }
        return false
    }
}

/// Console output as a page shows it: terminal escape sequences (colours, cursor moves, window titles)
/// removed, and control characters other than tab, newline and carriage return shown as U+FFFD, so
/// binary output reads as binary instead of upsetting what displays it. A sequence cut between two
/// pieces is left half-shown; pieces are whole records, which a program rarely splits one in.
public enum ConsoleText {
    public static func plain(_ bytes: [UInt8]) -> [UInt8] {
        guard bytes.contains(where: { $0 < 0x20 && $0 != 0x0A && $0 != 0x09 && $0 != 0x0D || $0 == 0x7F }) else { return bytes }
        let replacement: [UInt8] = [0xEF, 0xBF, 0xBD]
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case 0x1B:
                guard index < bytes.count else { break }
                let kind = bytes[index]
                index += 1
                if kind == UInt8(ascii: "[") {
                    // CSI: parameters and intermediates, then one final byte.
                    while index < bytes.count, !(0x40...0x7E).contains(bytes[index]) { index += 1 }
                    index += 1
                } else if kind == UInt8(ascii: "]") {
                    // OSC: up to BEL or ESC \.
                    while index < bytes.count, bytes[index] != 0x07, bytes[index] != 0x1B { index += 1 }
                    index += index < bytes.count && bytes[index] == 0x1B ? 2 : 1
                }
            case 0x09, 0x0A, 0x0D:
                out.append(byte)
            case 0x00..<0x20, 0x7F:
                out += replacement
            default:
                out.append(byte)
            }
        }
        return out
    }
}

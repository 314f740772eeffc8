import Testing
@testable import CMLKit

struct ConsoleSearchTests {
    /// Lines are found however the output is cut into pieces: a line split across pieces, a last line
    /// without a newline, CRLF endings.
    @Test func linesAreNumberedAcrossPiecesOfAnySize() {
        let output = Array("alpha\r\nBeta gamma\nno\nbeta\nlast beta".utf8)
        for size in [1, 2, 3, 7, output.count] {
            var search = ConsoleSearch("beta", matchCase: false)
            var start = 0
            while start < output.count {
                search.feed(Array(output[start..<min(start + size, output.count)]))
                start += size
            }
            search.finish()
            #expect(search.lines == 5 && search.count == 3, "pieces of \(size)")
            #expect(search.matches == [.init(line: 2, text: "Beta gamma"), .init(line: 4, text: "beta"), .init(line: 5, text: "last beta")])
        }
    }

    @Test func matchCaseAndKeepingFewerThanAreCounted() {
        var search = ConsoleSearch("Beta", matchCase: true, keep: 1)
        search.feed(Array("Beta 1\nbeta 2\nBeta 3\nnot here\n".utf8))
        search.finish()
        #expect(search.count == 2 && search.matches == [.init(line: 1, text: "Beta 1")] && search.lines == 4)
    }

    /// Bytes that are not UTF-8 neither stop the search nor hide a match on their line.
    @Test func invalidUTF8IsReadAsReplacementCharacters() {
        var search = ConsoleSearch("ÉPOCH", matchCase: false)
        search.feed([0xFF, 0xFE, 0x20] + Array("époch 3\n".utf8) + [0xC3, 0x0A])
        search.finish()
        #expect(search.matches == [.init(line: 1, text: "\u{FFFD}\u{FFFD} époch 3")] && search.lines == 2)
    }

    @Test func anEmptyNeedleOnlyCountsLines() {
        var search = ConsoleSearch("", matchCase: false)
        search.feed(Array("a\nb\n".utf8))
        search.finish()
        #expect(search.lines == 2 && search.count == 0 && search.matches.isEmpty)
    }

    /// Colours, cursor moves and titles go; other control bytes show as U+FFFD; text and line ends stay.
    @Test func plainTextDropsEscapesAndMarksControlBytes() {
        let raw = Array("\u{1B}[1;31mred\u{1B}[0m\t\u{1B}]0;title\u{07}ok\u{1B}[2K\r\n".utf8) + [0x00, 0x08, 0x7F, 0x0A]
        #expect(String(decoding: ConsoleText.plain(raw), as: UTF8.self) == "red\tok\r\n\u{FFFD}\u{FFFD}\u{FFFD}\n")
        let clean = Array("plain text\n".utf8)
        #expect(ConsoleText.plain(clean) == clean)
    }
}

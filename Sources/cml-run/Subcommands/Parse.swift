import ArgumentParser
import CMLKit
import Glibc

struct Parse: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parse",
        abstract: "Print the metric points cml-run would capture from output read on stdin.",
        discussion: """
            Use it to check what a script's saved output yields, without running anything.

            Example:
              python train.py 2>&1 | tee out.txt; cml-run parse < out.txt
            """
    )

    @Option(name: .customLong("metric-pattern"), help: ArgumentHelp("A regular expression with named groups key, value and optionally step (repeatable).", valueName: "regex"))
    var metricPatterns: [String] = []

    func run() throws {
        var patterns: [MetricPattern] = []
        for text in metricPatterns { patterns.append(try MetricPattern(text)) }
        var extractor = MetricExtractor(patterns: patterns)
        var splitter = MetricLineSplitter(everyLine: extractor.needsEveryLine)
        var out = MetricLineEncoder()
        let size = 1 << 20
        var buffer = [UInt8](repeating: 0, count: size)
        let time = Clock.now()
        while true {
            let n = buffer.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, size) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            buffer.withUnsafeBufferPointer { chunk in
                splitter.feed(UnsafeBufferPointer(rebasing: chunk[0..<n])) { line in
                    for point in extractor.points(in: line, time: time) { out.append(point) }
                }
            }
            FileHandleOutput.standardOutput(bytes: out.take())
        }
        splitter.finish { line in
            for point in extractor.points(in: line, time: time) { out.append(point) }
        }
        for point in extractor.flush() { out.append(point) }
        FileHandleOutput.standardOutput(bytes: out.take())
    }
}

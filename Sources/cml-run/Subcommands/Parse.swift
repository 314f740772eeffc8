import ArgumentParser
import CMLCommandLine
import CMLKit
import Glibc

struct Parse: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parse",
        abstract: "Print the metric points cml-run would capture from output read on stdin.",
        discussion: """
            Use it to check what a script's saved output yields, without running anything. It reads no
            store; --store is taken, as by every subcommand, so that scripts can pass it to all of them.

            Example:
              python train.py 2>&1 | tee out.txt; cml-run parse < out.txt
            """
    )

    @OptionGroup var storeOption: StoreOption

    @Option(name: .customLong("metric-pattern"), help: ArgumentHelp("A regular expression with named groups key, value and optionally step (repeatable).", valueName: "regex"))
    var metricPatterns: [String] = []

    func run() throws {
        var patterns: [MetricPattern] = []
        for text in metricPatterns { patterns.append(try MetricPattern(text)) }
        var console = ConsoleMetrics(patterns: patterns, streams: 1)
        var out = MetricLineEncoder()
        var points: [MetricPoint] = []
        let size = 1 << 20
        var buffer = [UInt8](repeating: 0, count: size)
        let time = Clock.now()
        while true {
            let n = buffer.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, size) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            buffer.withUnsafeBufferPointer { chunk in
                console.feed(0, UnsafeBufferPointer(rebasing: chunk[0..<n]), time: time, into: &points)
            }
            for point in points { out.append(point) }
            points.removeAll(keepingCapacity: true)
            try Console.out(bytes: out.take())
        }
        console.finish(time: time, into: &points)
        for point in points { out.append(point) }
        try Console.out(bytes: out.take())
    }
}

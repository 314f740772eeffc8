/// The metric points in a command's console output, one `MetricExtractor` per stream (stdout, stderr), so
/// that what a stream gives depends only on its own bytes: not on how they were chunked, when they came,
/// or how they interleaved with the other stream's. The live recorder and `cml-run parse` both use it.
///
/// Hugging Face's Trainer prints each log as a Python dict through `tqdm.write`, which blanks its progress
/// bar, prints, and draws the bar again: the dict's step is the trainer's global step, the counter of
/// that bar. On a terminal, dict and bar share one stream, and the next bar drawn after the dict tells
/// the step. Piped, the dicts go to stdout and the bar to stderr, so the order between them is lost; there
/// each redraw right after a blanked bar marks one `tqdm.write`, and dicts take the marks' counters in
/// order. Since the other stream's bytes may come later, a dict of a stream without a bar waits for its
/// mark, and one that none comes to by the end (tqdm disabled) takes steps as any other line then.
public struct ConsoleMetrics: Sendable {
    private struct PendingDict: Sendable {
        var stream: Int
        var pairs: [MetricLineParser.Pair]
        var time: Double
    }

    private struct Stream: Sendable {
        var splitter: MetricLineSplitter
        var extractor: MetricExtractor
        var lastCounter: Int64?
        /// Dicts printed on this stream since its bar was last drawn.
        var awaitingCounter: [PendingDict] = []
    }

    private var streams: [Stream]
    /// Counters of the bar drawn right after each `tqdm.write`, not yet given to a dict.
    private var marks: [Int64] = []
    private var markIndex = 0
    /// Dicts of a stream without a bar, waiting for a mark of another stream's.
    private var awaitingMark: [PendingDict] = []
    private var awaitingMarkIndex = 0

    public init(patterns: [MetricPattern] = [], streams count: Int = 2) {
        let extractor = MetricExtractor(patterns: patterns)
        streams = Array(repeating: Stream(splitter: MetricLineSplitter(everyLine: extractor.needsEveryLine), extractor: extractor),
                        count: count)
    }

    /// Adds the points of a chunk of stream `stream` (0-based) to `out`.
    public mutating func feed(_ stream: Int, _ chunk: UnsafeBufferPointer<UInt8>, time: Double, into out: inout [MetricPoint]) {
        var splitter = streams[stream].splitter
        splitter.feed(chunk) { line, context in handle(line, context, stream: stream, time: time, into: &out) }
        streams[stream].splitter = splitter
    }

    /// Ends the output: its unterminated last lines, the held points, and dicts still waiting for a step.
    public mutating func finish(time: Double, into out: inout [MetricPoint]) {
        for index in streams.indices {
            var splitter = streams[index].splitter
            splitter.finish { line, context in handle(line, context, stream: index, time: time, into: &out) }
            streams[index].splitter = splitter
        }
        for index in streams.indices {
            // The bar's last counter, or no step of a bar at all.
            let step = streams[index].lastCounter
            for dict in streams[index].awaitingCounter { emit(dict, step: step, into: &out) }
            streams[index].awaitingCounter.removeAll()
        }
        for dict in awaitingMark[awaitingMarkIndex...] { emit(dict, step: nil, into: &out) }
        awaitingMark.removeAll()
        awaitingMarkIndex = 0
        for index in streams.indices { out += streams[index].extractor.flush() }
    }

    private mutating func handle(_ line: UnsafeBufferPointer<UInt8>, _ context: LineContext, stream: Int, time: Double,
                                 into out: inout [MetricPoint]) {
        let result = streams[stream].extractor.process(line, time: time)
        out += result.points
        if let counter = result.barCounter {
            streams[stream].lastCounter = counter
            let waiting = streams[stream].awaitingCounter
            streams[stream].awaitingCounter.removeAll()
            for dict in waiting { emit(dict, step: counter, into: &out) }
            if context.followsBlankedLine {
                marks.append(counter)
                pairMarks(into: &out)
            }
        }
        guard let pairs = result.dict else { return }
        let dict = PendingDict(stream: stream, pairs: pairs, time: time)
        if streams[stream].lastCounter != nil {
            streams[stream].awaitingCounter.append(dict)
        } else if streams.count > 1 {
            awaitingMark.append(dict)
            pairMarks(into: &out)
        } else {
            emit(dict, step: nil, into: &out)
        }
    }

    private mutating func pairMarks(into out: inout [MetricPoint]) {
        while markIndex < marks.count && awaitingMarkIndex < awaitingMark.count {
            emit(awaitingMark[awaitingMarkIndex], step: marks[markIndex], into: &out)
            markIndex += 1
            awaitingMarkIndex += 1
        }
        if markIndex == marks.count { marks.removeAll(keepingCapacity: true); markIndex = 0 }
        if awaitingMarkIndex == awaitingMark.count { awaitingMark.removeAll(keepingCapacity: true); awaitingMarkIndex = 0 }
    }

    private mutating func emit(_ dict: PendingDict, step: Int64?, into out: inout [MetricPoint]) {
        var pairs = dict.pairs
        if let step { for index in pairs.indices { pairs[index].step = step } }
        out += streams[dict.stream].extractor.points(from: pairs, time: dict.time)
    }
}

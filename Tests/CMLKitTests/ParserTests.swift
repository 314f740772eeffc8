import Glibc
import Testing

@testable import CMLKit

struct ParamParserTests {
    private func params(_ argv: [String]) -> [String: JSON] {
        Dictionary(uniqueKeysWithValues: ParamParser.parse(argv).map { ($0.key, $0.value) })
    }

    @Test func longOptionsWithSpaceAndEquals() {
        let found = params(["python", "train.py", "--lr", "0.01", "--epochs=3", "--name", "resnet", "--amp"])
        #expect(found == ["lr": .double(0.01), "epochs": .int(3), "name": .string("resnet"), "amp": .bool(true)])
    }

    @Test func shortOptionsAndNegativeNumbers() {
        let found = params(["./train", "-n", "3", "--offset", "-2.5", "-v"])
        #expect(found == ["n": .int(3), "offset": .double(-2.5), "v": .bool(true)])
    }

    @Test func hydraOverrides() {
        let found = params(["python", "main.py", "lr=0.01", "model.depth=50", "+trainer.precision=16", "optimizer=adam"])
        #expect(found == ["lr": .double(0.01), "model.depth": .int(50), "trainer.precision": .int(16), "optimizer": .string("adam")])
    }

    @Test func interpreterOptionsAreNotParams() {
        #expect(params(["python3", "-u", "-W", "ignore", "train.py", "--lr", "0.1"]) == ["lr": .double(0.1)])
        #expect(params(["python", "-m", "pkg.train", "--batch-size", "64"]) == ["batch-size": .int(64)])
        #expect(params(["/usr/bin/python3.11", "train.py", "--seed", "1"]) == ["seed": .int(1)])
    }

    @Test func positionalArgumentsAndRepeatsKeepLastValue() {
        #expect(params(["./run", "data.csv", "--lr", "1", "--lr", "2"]) == ["lr": .int(2)])
        #expect(params(["make", "all"]).isEmpty)
    }

    @Test func paramOptionAssignment() {
        #expect(ParamParser.parseAssignment("seed=7") == Param(key: "seed", value: .int(7), source: "option"))
        #expect(ParamParser.parseAssignment("novalue") == nil)
        #expect(ParamParser.parseAssignment("=3") == nil)
        #expect(ParamParser.parseAssignment("flag=true")?.value == .bool(true))
    }
}

struct MetricParserTests {
    private func pairs(_ line: String) -> [String: Double] {
        Dictionary(MetricLineParser().pairs(in: line).map { ($0.key, $0.value) }, uniquingKeysWith: { $1 })
    }

    @Test func colonAndEqualsForms() {
        #expect(pairs("loss: 0.31") == ["loss": 0.31])
        #expect(pairs("loss=0.31") == ["loss": 0.31])
        #expect(pairs("epoch=2 loss=0.25, acc=0.91; lr = 1e-3") == ["epoch": 2, "loss": 0.25, "acc": 0.91, "lr": 0.001])
        #expect(pairs("INFO:root:val/loss: -1.5E+2") == ["val/loss": -150])
        #expect(pairs("| train_loss: 0.5 | val_loss: 0.6 |") == ["train_loss": 0.5, "val_loss": 0.6])
    }

    @Test func nonFiniteValues() {
        let found = MetricLineParser().pairs(in: "loss: nan grad=inf")
        #expect(found.count == 2)
        #expect(found[0].value.isNaN)
        #expect(found[1].value == .infinity)
    }

    @Test func jsonObjectLines() {
        #expect(pairs(#"{"step": 3, "loss": 0.3, "name": "x", "ok": true}"#) == ["step": 3, "loss": 0.3])
        // What cml's own tools print is a record, not metrics (issue 13: cml-log inside a run).
        #expect(pairs(#"{"run":"01a23ba45af7f4f6d5b22ef7ab69ed0c","name":"f.txt","size":3,"time":1796296956.99}"#).isEmpty)
        #expect(pairs(#"{"id":"01a23ba45af7f4f6d5b22ef7ab69ed0c","duration":1.5,"exit_code":0}"#).isEmpty)
        #expect(pairs(#"{"id": "batch-7", "loss": 0.5}"#) == ["loss": 0.5])
    }

    @Test func textThatMerelyContainsNumbersIsNotAMetric() {
        for line in [
            "2026-11-27 10:21:40 starting", "time: 12:30:45", "version: 1.2.3", "CUDA 12.1 found",
            "listening on localhost:8080", "Note: 3 files were skipped", "the loss is going down",
            "Downloading: 45%|████      | 45/100", "date=2026-11-27", "http://example.org:80/x",
            "ratio: 3/4", "id=0x1f", "see https://x.org/?a=1&b=2 for more", "lr: 1e-3e",
            "Using 4 GPUs: 0,1,2,3", "[LightGBM] [Info] Number of positive: 741, number of negative: 759",
        ] {
            #expect(pairs(line).isEmpty, "\(line)")
        }
    }

    @Test func stepKeysSetTheStepAndAreNotRecorded() {
        var extractor = MetricExtractor()
        let first = extractor.points(from: MetricLineParser().pairs(in: "step=10 loss=0.3 acc=0.8"), time: 1)
        #expect(first.map(\.key) == ["loss", "acc"])
        #expect(first.allSatisfy { $0.step == 10 })
        // The step carries to later lines that have none.
        let next = extractor.points(from: MetricLineParser().pairs(in: "val_loss: 0.4"), time: 2)
        #expect(next.map(\.step) == [10])
        // A key printed again without a new step advances its own step.
        let again = extractor.points(from: MetricLineParser().pairs(in: "val_loss: 0.35"), time: 3)
        #expect(again.map(\.step) == [11])
    }

    @Test func epochIsAStepButStepWins() {
        var extractor = MetricExtractor()
        let points = extractor.points(from: MetricLineParser().pairs(in: "epoch: 2 step: 300 loss: 0.1"), time: 0)
        #expect(points.map(\.key) == ["epoch", "loss"])
        #expect(points.allSatisfy { $0.step == 300 })
    }

    @Test func repeatedKeyWithoutStepCountsUp() {
        var extractor = MetricExtractor()
        let steps = (0..<4).flatMap { _ in extractor.points(from: MetricLineParser().pairs(in: "loss: 0.5"), time: 0) }.map(\.step)
        #expect(steps == [0, 1, 2, 3])
    }

    private func splitLines(_ chunks: [String], maxLine: Int = 64 << 10) -> [String] {
        var splitter = MetricLineSplitter(maxLine: maxLine)
        var lines: [String] = []
        for chunk in chunks {
            Array(chunk.utf8).withUnsafeBufferPointer { buffer in
                splitter.feed(buffer) { line, _ in lines.append(String(decoding: line, as: UTF8.self)) }
            }
        }
        splitter.finish { line, _ in lines.append(String(decoding: line, as: UTF8.self)) }
        return lines
    }

    @Test func splitterEndsLinesAtNewlinesAndBareCarriageReturns() {
        #expect(splitLines(["a=1\nb=", "2\rc=3\r", "\nd=4"]) == ["a=1", "b=2", "c=3", "d=4"])
        #expect(splitLines(["x: 1\r\ny: 2\r\n"]) == ["x: 1", "y: 2"])
    }

    @Test func splitterYieldsOnlyLinesWithSeparators() {
        #expect(splitLines(["plain\nloss=1\nmore plain\n", "still plain\nacc: 2\n"]) == ["loss=1", "acc: 2"])
        // A separator arriving in a later chunk still sees its whole line.
        #expect(splitLines(["epoch 3 lo", "ss", "=0.5 done\nnext"]) == ["epoch 3 loss=0.5 done"])
        #expect(splitLines(["a", "b", "c\n"]).isEmpty)
    }

    @Test func splitterDropsOverlongLines() {
        #expect(splitLines(["0123456=", "789abc\nok=1\n"], maxLine: 8) == ["ok=1"])
        #expect(splitLines(["k=1 " + String(repeating: "x", count: 20) + "\nok=2\n"], maxLine: 8) == ["k=1 " + String(repeating: "x", count: 20), "ok=2"])
    }
}

struct OutputCollapserTests {
    /// Feeds chunks, flushing between them at the given times, and returns the stored bytes rendered.
    private func stored(_ chunks: [(OutputStream, String)], flushAt times: [Double]? = nil, hold: Double = 0.5) -> (raw: String, rendered: String) {
        var collapser = OutputCollapser(holdSeconds: hold)
        var raw: [UInt8] = []
        for (i, (stream, text)) in chunks.enumerated() {
            collapser.feed(stream, time: 0, Array(text.utf8))
            if let times {
                for segment in collapser.flush(now: times[i], final: false) { raw += segment.bytes }
            }
        }
        for segment in collapser.flush(now: 1000, final: true) { raw += segment.bytes }
        var renderer = ConsoleRenderer()
        let rendered = renderer.feed(raw) + renderer.finish()
        return (String(decoding: raw, as: UTF8.self), String(decoding: rendered, as: UTF8.self))
    }

    @Test func redrawsWithinOneFlushAreDropped() {
        let result = stored([(.stderr, " 10%|#   |\r 50%|##  |\r100%|####|\n"), (.stdout, "done\n")])
        #expect(result.raw == "100%|####|\ndone\n")
    }

    @Test func redrawsAcrossFlushesAreHeldThenMarked() {
        // The bar is held while young, so its redraws vanish; once written, a redraw is stored as \r.
        let chunks: [(OutputStream, String)] = [(.stderr, "\r 10%"), (.stderr, "\r 20%"), (.stderr, "\r 30%"), (.stderr, "\r100%\n")]
        let result = stored(chunks, flushAt: [0, 0.1, 1.0, 1.1])
        #expect(!result.raw.contains("10%") && !result.raw.contains("20%"))
        #expect(result.raw == " 30%\r100%\n")
        #expect(result.rendered == "100%\n")
    }

    @Test func crlfIsKeptExactly() {
        #expect(stored([(.stdout, "a\r\nb\r"), (.stdout, "\nc\n")]).raw == "a\r\nb\r\nc\n")
    }

    @Test func streamsKeepTheirOrder() {
        let result = stored([(.stdout, "one\n"), (.stderr, "two\n"), (.stdout, "three\n")])
        #expect(result.raw == "one\ntwo\nthree\n")
    }

    @Test func redrawOnOneStreamLeavesTheOtherAlone() {
        let result = stored([(.stdout, "line\n"), (.stderr, "working"), (.stderr, "\rfinished\n"), (.stdout, "next\n")])
        #expect(result.raw == "line\nfinished\nnext\n")
    }

    @Test func anUnfinishedLineStaysBeforeTheOtherStreamsBytesAsOnATerminal() {
        // Issue 13: a bar's state held back was stored after the line the other stream printed next.
        let bar = stored([(.stderr, "\r 50%"), (.stdout, "loss: 0.3\n"), (.stderr, "\r100%\n"), (.stdout, "done\n")], flushAt: [0, 0.1, 0.2, 0.3])
        #expect(bar.raw == " 50%loss: 0.3\n\r100%\ndone\n")
        #expect(bar.rendered == " 50%loss: 0.3\n100%\ndone\n")
        // A bar blanked for a line on the other stream (tqdm.write) leaves nothing before it.
        let blanked = stored([(.stderr, "\r 50%"), (.stderr, "\r    \r"), (.stdout, "{'loss': 0.3}\n"), (.stderr, " 60%\n")])
        #expect(blanked.raw == "{'loss': 0.3}\n 60%\n")
    }

    @Test func nonUTF8BytesPassThrough() {
        var collapser = OutputCollapser()
        let bytes: [UInt8] = [0xFF, 0xFE, 0x00, 0x0A, 0xC3, 0x28, 0x0A]
        collapser.feed(.stdout, time: 0, bytes)
        #expect(collapser.flush(now: 0, final: true).flatMap(\.bytes) == bytes)
    }

    @Test func aCarriageReturnInBinaryOutputIsAByteLikeAnyOther() {
        // Issue 13: random bytes hold a \r every 256 bytes or so; each dropped the bytes before it.
        var random = SeededRandom(seed: 5)
        let bytes = (0..<200_000).map { _ in UInt8.random(in: 0...255, using: &random) }
        var collapser = OutputCollapser(holdSeconds: 100)
        var kept: [UInt8] = []
        for start in stride(from: 0, to: bytes.count, by: 4096) {
            collapser.feed(.stdout, time: 0, Array(bytes[start..<min(bytes.count, start + 4096)]))
            kept += collapser.flush(now: 0, final: false).flatMap(\.bytes)
        }
        kept += collapser.flush(now: 1000, final: true).flatMap(\.bytes)
        #expect(kept == bytes)
        // Text redraws still collapse, a bar with colour escapes too.
        #expect(stored([(.stdout, "\u{1B}[32m 10%\u{1B}[0m\r\u{1B}[32m 90%\u{1B}[0m\n")]).raw == "\u{1B}[32m 90%\u{1B}[0m\n")
    }

    @Test func longUnterminatedOutputIsNotHeldWithoutBound() {
        var collapser = OutputCollapser(holdSeconds: 100, maxHeldLine: 1024)
        collapser.feed(.stdout, time: 0, [UInt8](repeating: 0x41, count: 4096))
        #expect(collapser.flush(now: 0, final: false).flatMap(\.bytes).count == 4096)
    }
}

struct JSONTests {
    @Test func roundTripKeepsOrderAndEscapes() throws {
        let text = #"{"b":1,"a":[true,null,-2.5,"x\"y\n\u00e9"],"c":{"d":"\ud83d\ude00"}}"#
        let value = try JSON.parse(text)
        #expect(value.serialized == #"{"b":1,"a":[true,null,-2.5,"x\"y\né"],"c":{"d":"😀"}}"#)
    }

    @Test func badJSONNamesWhere() {
        #expect(throws: CMLError.self) { try JSON.parse(#"{"a": }"#) }
        do { _ = try JSON.parse("[1, 2") } catch { #expect(error.message.contains("byte")) }
    }

    @Test func nonFiniteNumbersAreStrings() {
        #expect(JSON.array([.double(.nan), .double(.infinity), .double(3), .double(0.5)]).serialized == #"["nan","inf",3,0.5]"#)
    }
}

struct RunIDTests {
    @Test func idsAreTimeOrderedHex() {
        let a = RunID.make(at: 1_700_000_000)
        let b = RunID.make(at: 1_700_000_000.002)
        #expect(a.count == 32 && b.count == 32)
        #expect(a < b)
        #expect(RunID.isPrefix(a))
        #expect(!RunID.isPrefix("xyz"))
    }

    @Test func rfc3339() {
        #expect(Clock.rfc3339(0) == "1970-01-01T00:00:00.000Z")
        #expect(Clock.rfc3339(1_764_238_900.1234) == "2025-11-27T10:21:40.123Z")
    }
}

struct ResourceSamplerTests {
    @Test func procStatLinesWithOddCommandNames() throws {
        let line = "4242 (my (odd) name) S 17 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 3 0 12345 500000000 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
        let stat = try #require(ProcessStat(line))
        #expect(stat.pid == 4242 && stat.parent == 17 && stat.cpuTicks == 300 && stat.rssPages == 2048)
        #expect(ProcessStat("garbage") == nil)
    }

    @Test func processTreeHoldsTheProcessAndItsDescendants() {
        let tree = ResourceSampler.processTree(root: getpid())
        #expect(tree.first?.pid == getpid())
        #expect(ResourceSampler.processTree(root: 999_999_999).isEmpty)
    }

    @Test func gpuQueryLines() {
        let gpus = ResourceSampler.parseGPUQuery("0, 57, 1234\n1, [N/A], 10\nNVIDIA-SMI has failed\n2, 3, 4\n")
        #expect(gpus.map(\.index) == [0, 2])
        #expect(gpus[0].utilization == 57 && gpus[0].memoryMiB == 1234)
    }
}

struct ChannelInterpreterTests {
    private func message(_ text: String, _ interpreter: inout ChannelInterpreter) throws -> ChannelMessage? {
        try interpreter.interpret(Array(text.utf8), time: 5)
    }

    @Test func scalarsParamsAndTags() throws {
        var interpreter = ChannelInterpreter()
        #expect(try message(#"{"step": 3, "loss": 0.3, "acc": 1}"# + "\n", &interpreter) == .points([
            MetricPoint(key: "loss", step: 3, value: 0.3, time: 5), MetricPoint(key: "acc", step: 3, value: 1, time: 5),
        ]))
        // Without a step, the step carries on from the last one given, as in printed output.
        #expect(try message(#"{"loss": 0.2}"#, &interpreter) == .points([MetricPoint(key: "loss", step: 4, value: 0.2, time: 5)]))
        #expect(try message(#"{"param": {"lr": 0.01, "opt": "adam"}}"#, &interpreter) == .params([
            Param(key: "lr", value: .double(0.01), source: "log"), Param(key: "opt", value: .string("adam"), source: "log"),
        ]))
        #expect(try message(#"{"tag": "best"}"#, &interpreter) == .tag("best"))
        #expect(try message("  \n", &interpreter) == nil)
    }

    @Test func linesItCannotRead() {
        var interpreter = ChannelInterpreter()
        for bad in ["not json", "[1, 2]", #"{"loss": "high"}"#, #"{"param": 3}"#, #"{"tag": 7}"#] {
            #expect(throws: CMLError.self, "\(bad)") { try message(bad, &interpreter) }
        }
    }
}

/// Output as the common tools print it (issue 3): each line with the points and steps it must give.
struct FrameworkOutputTests {
    private func points(_ lines: [String]) -> [String] {
        var console = ConsoleMetrics(streams: 1)
        var points: [MetricPoint] = []
        let text = lines.joined(separator: "\n") + "\n"
        Array(text.utf8).withUnsafeBufferPointer { console.feed(0, $0, time: 0, into: &points) }
        console.finish(time: 0, into: &points)
        return points.map { "\($0.key)@\($0.step)=\($0.value)" }
    }

    @Test func guildStepsInParentheses() {
        #expect(points(["loss: 0.3 (step 10)", "loss: 0.25 (11)", "acc: 0.9 (step 11)"]) ==
                ["loss@10=0.3", "loss@11=0.25", "acc@11=0.9"])
    }

    @Test func scikitLearnVerbose() {
        #expect(points(["Iteration 1, loss = 2.30258509", "Iteration 2, loss = 2.10853230"]) ==
                ["loss@1=2.30258509", "loss@2=2.1085323"])
    }

    @Test func xgboostAndLightGBM() {
        #expect(points(["[3]\ttrain-mlogloss:0.66193\teval-mlogloss:0.80988"]) ==
                ["train-mlogloss@3=0.66193", "eval-mlogloss@3=0.80988"])
        #expect(points(["[5]\ttraining's multi_logloss: 0.5\tvalid_0's multi_logloss: 0.975972"]) ==
                ["training/multi_logloss@5=0.5", "valid_0/multi_logloss@5=0.975972"])
    }

    @Test func tqdmPostfixGivesOnePointPerUpdate() {
        let bar = { (n: Int, acc: String) in " 40%|####      | \(n)/30 [00:00<00:00, 375.03it/s, acc=\(acc), loss=0.07]" }
        #expect(points([bar(12, "0.4") + "\r" + bar(12, "0.4") + "\r" + bar(13, "0.5")]) ==
                ["acc@12=0.4", "loss@12=0.07", "acc@13=0.5", "loss@13=0.07"])
    }

    @Test func kerasEpochHeadersSetTheStep() {
        // Keras's fit(verbose=1) when its output is not a terminal: a header, then one line per epoch.
        #expect(points(["Epoch 1/2", "60/60 - 1s - 10ms/step - loss: 0.5 - accuracy: 0.8",
                        "Epoch 2/2", "60/60 - 1s - 9ms/step - loss: 0.3 - accuracy: 0.9 - val_loss: 0.2"]) ==
                ["loss@0=0.5", "accuracy@0=0.8", "loss@1=0.3", "accuracy@1=0.9", "val_loss@1=0.2"])
    }

    @Test func kerasOnATerminalGivesTheLastValuesOfEachEpoch() {
        // Keras 2 redraws its bar after every batch: backspaces over the old line, then a carriage return.
        func keras2(_ batch: Int, _ loss: String) -> String {
            let bar = batch == 469 ? "[==============================] - 2s 4ms/step" : "[=====>........................] - ETA: 1:02"
            let line = "\(String(repeating: " ", count: 3 - String(batch).count))\(batch)/469 \(bar) - loss: \(loss) - accuracy: 0.9"
            return line + (batch == 469 ? " - val_loss: 0.15\n" : String(repeating: "\u{8}", count: line.count) + "\r")
        }
        let epochs = "Epoch 1/2\n" + keras2(1, "2.3") + keras2(20, "1.1") + keras2(469, "0.5")
            + "Epoch 2/2\n" + keras2(1, "0.4") + keras2(469, "0.3")
        // At the epoch's index, as Keras's own logs (CSVLogger, TensorBoard) count: 0 for `Epoch 1/2`.
        #expect(points([epochs]) == ["loss@0=0.5", "accuracy@0=0.9", "val_loss@0=0.15",
                                     "loss@1=0.3", "accuracy@1=0.9", "val_loss@1=0.15"])
        // Keras 3 draws with box characters amid colour escapes.
        func keras3(_ batch: Int, _ loss: String) -> String {
            "\r\u{1B}[1m\(batch)/60\u{1B}[0m \u{1B}[32m━━━━━━━━━━\u{1B}[0m\u{1B}[37m━━━━━━━━━━\u{1B}[0m \u{1B}[1m0s\u{1B}[0m 5ms/step - accuracy: 0.8 - loss: \(loss)"
        }
        #expect(points(["Epoch 1/1\n" + keras3(10, "0.9") + keras3(60, "0.4") + "\n"]) == ["accuracy@0=0.8", "loss@0=0.4"])
    }

    @Test func realKerasOutputPipedAndOnATerminal() throws {
        // Written by Keras 3 itself: Fixtures/keras/make_fixtures.sh.
        let folder = FileSystem.directoryName("\(#filePath)") + "/Fixtures/keras/"
        let piped = String(decoding: try FileSystem.readAll(folder + "fit-piped.txt"), as: UTF8.self)
        let terminal = String(decoding: try FileSystem.readAll(folder + "fit-terminal.txt"), as: UTF8.self)
        #expect(points([piped]) == [
            "accuracy@0=0.5956", "loss@0=0.6777", "val_accuracy@0=0.64", "val_loss@0=0.618",
            "accuracy@1=0.7763", "loss@1=0.5341", "val_accuracy@1=0.79", "val_loss@1=0.5037",
            "accuracy@2=0.8656", "loss@2=0.4266", "val_accuracy@2=0.86", "val_loss@2=0.4088",
        ])
        #expect(points([terminal]) == [
            "accuracy@0=0.5825", "loss@0=0.6891", "val_accuracy@0=0.6775", "val_loss@0=0.6156",
            "accuracy@1=0.7606", "loss@1=0.5471", "val_accuracy@1=0.8175", "val_loss@1=0.496",
            "accuracy@2=0.8681", "loss@2=0.4332", "val_accuracy@2=0.8725", "val_loss@2=0.3968",
        ])
    }

    @Test func realOutputOfScikitLearnXGBoostLightGBMAndTqdm() throws {
        // Printed by the libraries themselves: Fixtures/frameworks/make_fixtures.py.
        let folder = FileSystem.directoryName("\(#filePath)") + "/Fixtures/frameworks/"
        func parsed(_ name: String) throws -> [String] {
            points([String(decoding: try FileSystem.readAll(folder + name), as: UTF8.self)])
        }
        #expect(try parsed("sklearn.txt") == ["loss@1=1.07070508", "loss@2=1.02851369", "loss@3=0.98942146",
                                              "loss@4=0.95327609", "loss@5=0.92026459"])
        #expect(try parsed("xgboost.txt") == [
            "train-mlogloss@0=0.78172", "eval-mlogloss@0=0.87004", "train-mlogloss@1=0.59064", "eval-mlogloss@1=0.73467",
            "train-mlogloss@2=0.45671", "eval-mlogloss@2=0.66153", "train-mlogloss@3=0.3565", "eval-mlogloss@3=0.61084",
            "train-mlogloss@4=0.2863", "eval-mlogloss@4=0.58902",
        ])
        #expect(try parsed("lightgbm.txt") == [
            "valid_0/multi_logloss@1=0.99761", "valid_0/multi_logloss@2=0.916228", "valid_0/multi_logloss@3=0.852654",
            "valid_0/multi_logloss@4=0.803207", "valid_0/multi_logloss@5=0.762276",
        ])
        // At LightGBM's default verbosity its logger's [Info] and [Warning] lines are prose (issue 13).
        #expect(try parsed("lightgbm-default.txt") == [
            "valid_0/binary_logloss@1=0.572951", "valid_0/binary_logloss@2=0.534864", "valid_0/binary_logloss@3=0.505",
            "valid_0/binary_logloss@4=0.479744", "valid_0/binary_logloss@5=0.456242",
        ])
        // tqdm draws each count twice, the second time after set_postfix: the later values are the step's.
        let tqdm = try parsed("tqdm.txt").filter { $0.hasPrefix("acc@") }
        let expected = (0..<30).map { "acc@\($0)=\((Double($0) / 30 * 100).rounded() / 100)" } + ["acc@30=0.97"]
        #expect(tqdm == expected)
    }

    @Test func huggingFaceTrainerDicts() {
        #expect(points(["{'loss': 0.6931, 'grad_norm': 1.23, 'learning_rate': 5e-05, 'epoch': 0.5}"]) ==
                ["loss@0=0.6931", "grad_norm@0=1.23", "learning_rate@0=5e-05", "epoch@0=0.5"])
    }

    @Test func richBarsWrappedMetricsAreReadWithTheBarAbove() {
        // Rich wraps its metrics column onto indented lines, even between a key and its value.
        let bar = "Epoch 1/3  ━━━━━━━━━━━━ 8/8 0:00:00 • 0:00:00 56.89it/s train_loss: 0.632 val_loss: "
        let wrap = String(repeating: " ", count: 60) + "0.594 val_acc: 0.750"
        #expect(points([bar, wrap]) == ["train_loss@1=0.632", "val_loss@1=0.594", "val_acc@1=0.75"])
        // Indented lines far past the bar are not its.
        let many = (0..<200).map { String(repeating: " ", count: 60) + "x\($0): 1" }
        #expect(points([bar, wrap] + many).filter { $0.hasPrefix("x199@") }.count == 1)
    }

    @Test func timesAndAddressesStayOut() {
        #expect(points(["listening on localhost:8080", "time: 12:30:45", "[12:30:45] starting", "Step 3 of the pipeline: done"]).isEmpty)
    }
}

struct MetricPatternTests {
    @Test func namedGroupsGiveKeyValueAndStep() throws {
        let pattern = try MetricPattern(#"after (?<step>\d+) steps (?<key>\w+) reached (?<value>[0-9.]+)"#)
        #expect(pattern.pairs(in: "after 5 steps acc reached 0.75") == [MetricLineParser.Pair(key: "acc", value: 0.75, step: 5)])
        #expect(pattern.pairs(in: "nothing here").isEmpty)
        var console = ConsoleMetrics(patterns: [try MetricPattern(#"(?<key>\w+) is (?<value>[0-9.]+)"#)], streams: 1)
        var points: [MetricPoint] = []
        Array("loss is 0.5\nplain line\nacc: 0.9\n".utf8).withUnsafeBufferPointer { console.feed(0, $0, time: 0, into: &points) }
        console.finish(time: 0, into: &points)
        #expect(points.map { "\($0.key)=\($0.value)" } == ["loss=0.5", "acc=0.9"])
    }

    @Test func patternsWithoutTheGroupsAreRefused() {
        #expect(throws: CMLError.self) { try MetricPattern(#"(\w+) is ([0-9.]+)"#) }
        #expect(throws: CMLError.self) { try MetricPattern(#"(?<key>\w+) is"#) }
        #expect(throws: CMLError.self) { try MetricPattern(#"(?<key>[) (?<value>1)"#) }
    }
}

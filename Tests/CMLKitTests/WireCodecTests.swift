import Testing

@testable import CMLKit

/// Points bodies are read by a direct reader when they have the clients' form, and by the full JSON
/// reader otherwise: both must agree on every body.
struct WireCodecPointTests {
    private func full(_ text: String) -> Result<[MetricPoint], CMLError> {
        Result { () throws(CMLError) in try WireCodec.decodePointsInFull(Array(text.utf8), what: "body") }
    }

    /// Points compared in their exact wire form (NaN equals NaN there, -0.0 differs from 0.0).
    private func wire(_ points: [MetricPoint]) -> [UInt8] { WireCodec.encodePoints(points) }

    @Test func theDirectReaderTakesTheClientsFormExactly() throws {
        let body = WireCodec.encodePoints([
            MetricPoint(key: "loss", step: 0, value: 0.5, time: 1_700_000_000.125),
            MetricPoint(key: "a \"quoted\"/é key", step: -3, value: .nan, time: 2),
            MetricPoint(key: "x", step: 123_456_789_012_345_678, value: .infinity, time: -0.0),
            MetricPoint(key: "y", step: Int64.max, value: -.infinity, time: 1e-300),
        ])
        var direct = JSONParser(bytes: body)
        let read = direct.plainPoints()
        let points = try #require(read)
        #expect(points.map(\.key) == ["loss", "a \"quoted\"/é key", "x", "y"])
        #expect(points.map(\.step) == [0, -3, 123_456_789_012_345_678, Int64.max])
        #expect(points[0].value == 0.5 && points[1].value.isNaN && points[2].value == .infinity && points[3].value == -.infinity)
        #expect(points[0].time == 1_700_000_000.125 && points[2].time.sign == .minus && points[3].time == 1e-300)
    }

    @Test func anythingElseFallsBackAndReadsAsTheFullReaderReadsIt() {
        let bodies = [
            #"[]"#, #" [ ] "#, #"[{"key":"a","step":1,"value":2,"time":3}]"#,
            #"[{"time":3,"value":2.5,"step":1,"key":"a"}, {"key":"b","step":2,"value":"NaN","time":4}]"#,
            #"[{"key":"a","step":1,"value":2,"time":3,"extra":[1,{"z":null}]}]"#,
            #"[{"key":"a","step":1,"value":2,"time":3,"key":"b"}]"#,
            #"[{"key":"a","step":1.5,"value":2,"time":3}]"#,
            #"[{"key":"a","step":1,"value":true,"value":2,"time":3}]"#,
            #"[{"key":"a","step":1,"value":2}]"#, #"[{"k\u0065y":"a","step":1,"value":2,"time":3}]"#,
            #"[{"key":"a","step":1,"value":2,"time":3},]"#, #"[{"key":"a","step":1,"value":2,"time":3}] x"#,
            #"{"key":"a"}"#, #"[1]"#, #"["#, "",
        ]
        var direct = 0
        for body in bodies {
            var parser = JSONParser(bytes: Array(body.utf8))
            let fast = parser.plainPoints()
            let full = full(body)
            if let fast {
                direct += 1
                #expect((try? full.get()).map(wire) == wire(fast), "\(body)")
            }
            let answer = Result { () throws(CMLError) in try WireCodec.decodePoints(Array(body.utf8), what: "body") }
            switch (answer, full) {
            case (.success(let a), .success(let b)): #expect(wire(a) == wire(b), "\(body)")
            case (.failure(let a), .failure(let b)): #expect(a.message == b.message, "\(body)")
            default: Issue.record("\(body): \(answer) but the full reader gives \(full)")
            }
        }
        #expect(direct == 4)  // the first four bodies have the clients' form
    }
}

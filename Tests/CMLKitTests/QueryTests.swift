import Foundation
import Testing

@testable import CMLKit

struct RunFilterTests {
    @Test func precedenceIsNotThenAndThenOr() throws {
        let filter = try RunFilter.parse("a > 1 or not b = x and c <= -2e-3")
        #expect(filter == .or(
            .compare(key: "a", keyPosition: 1, op: .greater, value: .number(1)),
            .and(.not(.compare(key: "b", keyPosition: 14, op: .equal, value: .word("x", position: 18))),
                 .compare(key: "c", keyPosition: 24, op: .lessOrEqual, value: .number(-0.002)))))
    }

    @Test func quotesBackquotesParenthesesAndOperators() throws {
        let filter = try RunFilter.parse("(`my key` != 'a b' OR name ~ \"bert*\") AND acc.max >= 0.5 and flag == true")
        #expect(filter.keys.map(\.0) == ["my key", "name", "acc.max", "flag"])
        guard case .and(.and(.or(.compare(_, _, .notEqual, .text("a b")), .compare(_, _, .matches, .text("bert*"))),
                             .compare(_, _, .greaterOrEqual, .number(0.5))), .compare(_, _, .equal, .bool(true))) = filter else {
            Issue.record("parsed as \(filter)")
            return
        }
    }

    @Test func errorsNameWhatWasWrongAndWhere() {
        let cases: [(String, String)] = [
            ("acc >", "expected a value after >, found the end at character 6"),
            ("acc 0.9", "expected a comparison (=, !=, <, <=, >, >=, ~) after acc at character 5"),
            ("acc > 0.9 and", "expected a key, found the end at character 14"),
            ("(acc > 0.9", "expected ')' at character 11"),
            ("acc > 0.9)", "unexpected ')' at character 10"),
            ("name = 'open", "unterminated text at character 8"),
            ("acc ! 1", "expected '!=' at character 5"),
            ("acc ~ 3", "~ matches text, not a number at character 7"),
            ("", "expected a key, found the end at character 1"),
            (String(repeating: "(", count: 5000) + "a = 1" + String(repeating: ")", count: 5000), "nested more than 100 deep at character 101"),
            (String(repeating: "not ", count: 5000) + "a = 1", "nested more than 100 deep at character 401"),
        ]
        for (text, message) in cases {
            do {
                _ = try RunFilter.parse(text)
                Issue.record("\(text) parsed")
            } catch {
                #expect(error.message.hasSuffix(message), "\(text): \(error.message)")
                #expect(error.exitCode == 2)
                // The web UI marks the character: the position is the one the message names.
                #expect(error.position == Int(message.split(separator: " ").last!), "\(text): \(String(describing: error.position))")
            }
        }
    }

    @Test func keysResolveToFieldsParamsAndMetricSummaries() throws {
        let catalog = RunTerm.Catalog(hasParam: { ["lr", "both"].contains($0) }, hasMetric: { ["acc", "both", "val.acc"].contains($0) },
                                      allKeys: { (["both", "lr"], ["acc", "both", "val.acc"]) })
        #expect(try RunTerm.resolve("lr", in: catalog) == .param("lr"))
        #expect(try RunTerm.resolve("acc", in: catalog) == .metric("acc", .last))
        #expect(try RunTerm.resolve("acc.max", in: catalog) == .metric("acc", .max))
        #expect(try RunTerm.resolve("val.acc", in: catalog) == .metric("val.acc", .last))
        #expect(try RunTerm.resolve("val.acc.min", in: catalog) == .metric("val.acc", .min))
        #expect(try RunTerm.resolve("metrics.both.count", in: catalog) == .metric("both", .count))
        #expect(try RunTerm.resolve("params.both", in: catalog) == .param("both"))
        #expect(try RunTerm.resolve("status", in: catalog) == .field(.status))
        #expect(try RunTerm.resolve("started_at", in: catalog) == .field(.started))
        #expect(throws: CMLError.self) { try RunTerm.resolve("both", in: catalog) }
        do {
            _ = try RunTerm.resolve("accuracy", in: catalog)
            Issue.record("resolved")
        } catch {
            #expect(error.message == "no run has a key 'accuracy'")
            #expect(error.hint?.hasPrefix("parameters: both, lr; metrics: acc, both, val.acc") == true)
        }
    }

    @Test func sinceTakesDurationsAndDates() throws {
        #expect(try SinceParser.parse("2h", now: 10_000) == 2_800)
        #expect(try SinceParser.parse("1.5d", now: 200_000) == 200_000 - 129_600)
        #expect(try SinceParser.parse("2026-11-20T08:00:00Z") == 1_795_161_600)
        #expect(Clock.parseTime(Clock.rfc3339(1_795_161_612.25)) == 1_795_161_612.25)
        #expect(Clock.parseTime("2026-13-01") == nil && Clock.parseTime("yesterday") == nil)
        #expect(throws: CMLError.self) { try SinceParser.parse("soon") }
    }
}

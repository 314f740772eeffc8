import Foundation
import Glibc
import Testing
import CMLKit

/// `cml-queue sweep --strategy asha|hyperband` on SweepBox's script, whose loss at epoch e is
/// (log10(lr)+2)² + 1/(e+1) + bs/1000: trials rank at every epoch as they rank at the end, so the trial
/// with the lr nearest 1e-2 is never stopped, and a trial stopped at a rung was behind there.
struct SweepEarlyStoppingTests {
    /// The trial lines a sweep printed, by trial number.
    static func lines(_ result: CommandResult) -> [[String: Any]] {
        result.jsonLines.sorted { ($0["trial"] as! Int) < ($1["trial"] as! Int) }
    }

    static func lr(_ line: [String: Any]) -> Double { number((line["params"] as? [String: Any])?["lr"]) ?? .nan }

    /// The step of the rung a stopped trial's reason names, after checking the reason reads as it should.
    static func rung(ofStopped line: [String: Any]) throws -> Int {
        let reason = try #require(line["reason"] as? String)
        let pattern = try NSRegularExpression(pattern: #"^at step (\d+) its loss ([0-9.e-]+) was not in the best 1/3 of (\d+) trials$"#)
        let match = try #require(pattern.firstMatch(in: reason, range: NSRange(reason.startIndex..., in: reason)), "\(reason)")
        let step = try #require(Int((reason as NSString).substring(with: match.range(at: 1))))
        let value = try #require(Double((reason as NSString).substring(with: match.range(at: 2))))
        #expect(Int((reason as NSString).substring(with: match.range(at: 3)))! >= 3, "\(reason)")
        // Its value there is the script's loss at that epoch, and the record keeps it as its objective.
        #expect(abs(value - SweepBox.loss(lr: lr(line), bs: 32, epochs: Double(step + 1))) < 1e-5, "\(line)")
        #expect(abs(number(line["objective"])! - value) < 1e-5, "\(line)")
        return step
    }

    @Test func ashaStopsTheTrialsBehindAtARungAndKeepsTheBest() throws {
        let s = try SweepBox()
        let swept = try s.sweep(["--objective", "loss", "--param", "lr=loguniform(1e-4,1)", "--param", "sleep=0.4", "--strategy", "asha",
                                 "--budget-param", "epochs", "--max-budget", "9", "--eta", "3", "--trials", "12", "--local", "3", "--seed", "11"],
                                env: ["XDG_CACHE_HOME": s.box.root + "/cache"])
        #expect(swept.status == 0, "\(swept.stderr)")
        let lines = Self.lines(swept)
        #expect(lines.map { $0["trial"] as? Int } == Array(0..<12), "\(swept.out)")
        let stopped = lines.filter { $0["status"] as? String == "stopped" }
        let completed = lines.filter { $0["status"] as? String == "completed" }
        #expect(stopped.count >= 3 && stopped.count + completed.count == 12, "\(swept.out)")
        for line in stopped {
            let step = try Self.rung(ofStopped: line)
            #expect([1, 3].contains(step), "\(line)")
            // Stopped as it ran, its run aborted. (Judged at its highest rung until it reaches the next,
            // a trial may be stopped late, when enough better trials have reached its rung.)
            let steps = try #require(line["steps"] as? Int)
            #expect(steps >= step && steps <= 8, "\(line)")
            let run = try s.box.show(try #require(line["id"] as? String))
            #expect(run["status"] as? String == "aborted", "\(run)")
            #expect(swept.stderr.contains("cml-queue: stopping trial \(line["trial"]!) ("), "\(swept.stderr)")
        }
        for line in completed {
            #expect(line["steps"] as? Int == 8, "\(line)")
            #expect(abs(number(line["objective"])! - SweepBox.loss(lr: Self.lr(line), bs: 32, epochs: 9)) < 1e-9, "\(line)")
        }
        // The best is the completed trial whose lr is nearest 1e-2 among all twelve drawn.
        let nearest = try #require(lines.min { abs(log10(Self.lr($0)) + 2) < abs(log10(Self.lr($1)) + 2) })
        #expect(nearest["status"] as? String == "completed", "\(nearest)")
        #expect(abs(log10(Self.lr(nearest)) + 2) < 0.5, "\(nearest)")
        let record = try s.record(try s.newestSweep())
        let best = try #require(record["best"] as? [String: Any])
        #expect(best["trial"] as? Int == nearest["trial"] as? Int, "\(best)")
        // The last line printed carries the sweep's best.
        #expect(number(swept.jsonLines.last?["best"]) == number(best["objective"]))
        // Every trial was given its budget, and the record says what each spent.
        let trials = try #require(record["trials"] as? [[String: Any]])
        #expect(trials.map { $0["status"] as? String } == lines.map { $0["status"] as? String })
        let spent = trials.compactMap { $0["steps"] as? Int }.reduce(0) { $0 + $1 + 1 }
        #expect(spent < 12 * 9 && stopped.contains { ($0["steps"] as? Int ?? 8) < 8 }, "\(trials)")
        let command = try s.box.show(try #require(nearest["id"] as? String))["command"] as? [String] ?? []
        #expect(command.drop { $0 != "--epochs" }.dropFirst().first == "9", "\(command)")
        #expect(swept.stderr.contains("12 trials by asha"), "\(swept.stderr)")
    }

    @Test func hyperbandJudgesEachTrialWithinItsBracket() throws {
        let s = try SweepBox()
        let swept = try s.sweep(["--objective", "loss", "--param", "lr=loguniform(1e-4,1)", "--param", "sleep=0.3", "--strategy", "hyperband",
                                 "--budget-param", "epochs", "--max-budget", "9", "--trials", "9", "--local", "3", "--seed", "4"],
                                env: ["XDG_CACHE_HOME": s.box.root + "/cache"])
        #expect(swept.status == 0, "\(swept.stderr)")
        let id = try s.newestSweep()
        let trials = try s.trials(id)
        // Brackets of first rungs 1, 3 and 9 (none: it stops nothing) in Hyperband's proportions 9:5:3,
        // spread over the trials; each kept in the trial's record.
        let brackets = trials.map { ($0["info"] as? [String: Any])?["bracket"] as? Int }
        #expect(brackets == [0, 1, 0, 2, 0, 1, 0, 2, 0], "\(brackets)")
        var stoppedSomewhere = false
        for (trial, bracket) in zip(trials, brackets) {
            switch trial["status"] as? String {
            case "stopped":
                stoppedSomewhere = true
                let step = try Self.rung(ofStopped: trial)
                #expect(bracket == 0 ? [1, 3].contains(step) : bracket == 1 && step == 3, "\(trial)")
            case "completed": #expect(trial["steps"] as? Int == 8, "\(trial)")
            default: Issue.record("trial \(trial)")
            }
        }
        #expect(stoppedSomewhere, "\(trials)")
        #expect(trials[3]["status"] as? String == "completed" && trials[7]["status"] as? String == "completed")
        let best = try #require(try s.record(id)["best"] as? [String: Any])
        let nearest = try #require(trials.min { abs(log10(Self.lr($0)) + 2) < abs(log10(Self.lr($1)) + 2) })
        #expect(best["trial"] as? Int == nearest["trial"] as? Int, "\(best)")
    }

    @Test func earlyStoppingOptionsAreRefusedWhereTheyCannotApply() throws {
        let s = try SweepBox()
        func refused(_ args: [String]) throws -> String {
            let result = try s.sweep(["--objective", "loss", "--param", "lr=0.1,0.01", "--trials", "2"] + args)
            #expect(result.status == 2, "\(args): \(result.stderr)")
            return result.stderr.split(separator: "\n").first.map(String.init) ?? ""
        }
        #expect(try refused(["--strategy", "asha"])
                == "cml-queue: error: --strategy asha needs --max-budget: the steps of a whole trial (e.g. --max-budget 27 --budget-param epochs)")
        #expect(try refused(["--strategy", "hyperband", "--max-budget", "9", "--eta", "1"])
                == "cml-queue: error: --eta must be at least 2: one in eta trials goes on at each rung")
        #expect(try refused(["--eta", "3"]) == "cml-queue: error: --eta is for strategies that stop trials early (asha and hyperband), not random")
        #expect(try refused(["--max-budget", "9"]).hasPrefix("cml-queue: error: --max-budget without --budget-param tells random nothing"))
        #expect(try refused(["--strategy", "asha", "--max-budget", "9", "--sampler", "TPESampler"])
                .hasPrefix("cml-queue: error: --sampler TPESampler is Optuna's, not asha's"))
        #expect(try s.box.run("cml-queue", ["sweep", "ls"]).out.isEmpty)
    }
}

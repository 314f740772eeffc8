import Glibc

/// Asynchronous successive halving (`--strategy asha`) and Hyperband (`--strategy hyperband`): random
/// draws, as `RandomSearch` makes them, and trials stopped early when they fall behind.
///
/// A trial's budget is its steps. Rungs are at minBudget·eta^k steps below `--max-budget` (1, 3, 9 for
/// 27 steps and eta 3). A trial reaches rung r at its objective metric's first point at step r or
/// beyond (in the order the points were recorded); its value there is the objective's aggregate (last,
/// min or max) of its points up to that one, and never changes after. At a rung, a trial goes on while
/// it is among the best ceil(n/eta) of the n trials of its bracket that have a value there, and is
/// stopped (`cml-run abort`) otherwise.
///
/// When it is judged: at the highest rung it has reached, against every trial that has reached it so
/// far, at each look until it reaches the next rung (a trial that went on when few had arrived is
/// stopped when enough better ones have); at a lower rung, against the trials that had reached it by
/// the time it reached the next one (by its points' recorded times). So the decision does not depend on
/// how often the controller looks: a trial that ran past two rungs between two looks is judged at both
/// as it would have been at each. A trial is never judged at a rung that fewer than eta trials of its
/// bracket (it included) have reached: the first ones there go on.
///
/// Everything is read from the trials' points, so a strategy made afresh on resume decides as the
/// killed one would have; values of ended trials are read once and kept.
///
/// Hyperband runs brackets side by side: bracket s's first rung is at minBudget·eta^s (bracket 0 is
/// ASHA; the last bracket stops nothing), and trials are judged only against their own bracket's. Trial
/// N's bracket follows Hyperband's proportions (bracket s gets ceil((smax+1)·eta^(smax-s)/(smax-s+1))
/// in each round) spread evenly over the trials by smooth weighted round-robin, so any first trials of
/// a sweep are divided about as Hyperband divides them. It is kept in the trial's `info`
/// (`{"bracket": s}`), so a resumed sweep keeps it.
public final class SuccessiveHalvingSearch: SweepStrategy {
    let space: SearchSpace
    let seed: UInt64
    let objective: SweepObjective
    let eta: Int
    /// The rungs of each bracket, in steps, lowest first (one bracket for ASHA).
    public let brackets: [[Int64]]
    /// Trials per bracket in one round of Hyperband.
    let bracketWeights: [Int]
    /// The bracket of trials 0, 1, …, as far as asked (`bracket(ofTrial:)`), and the round-robin's state.
    private var schedule: [Int] = []
    private var roundRobin: [Int]
    /// Each known trial's bracket and what it reached.
    private var reached: [Int: Progress] = [:]
    /// Trials that ended (`ended`), with their points yet to be read.
    private var unreadEnded: [Int: SweepTrial] = [:]

    /// The value a trial had at each rung of its bracket it reached, and when it reached it.
    struct Progress {
        var bracket: Int
        var rungs: [(value: Double, time: Double)] = []
        /// Ended, and read since: nothing more to read.
        var isFinal = false
    }

    /// `hyperband` false: ASHA, one bracket.
    public init(space: SearchSpace, seed: UInt64, objective: SweepObjective, minBudget: Int64, maxBudget: Int64, eta: Int, hyperband: Bool) {
        self.space = space
        self.seed = seed
        self.objective = objective
        self.eta = eta
        let rungs = Self.rungs(minBudget: minBudget, maxBudget: maxBudget, eta: eta)
        if hyperband {
            // Bracket s skips the first s rungs; the last bracket has none.
            brackets = (0...rungs.count).map { Array(rungs.dropFirst($0)) }
            let smax = rungs.count
            bracketWeights = (0...smax).map { s in
                // Bounded so that absurd budgets (2^60 steps) cannot overflow the round-robin's sums.
                Int(min((Double(smax + 1) * pow(Double(eta), Double(smax - s)) / Double(smax - s + 1)).rounded(.up), 1e12))
            }
        } else {
            brackets = [rungs]
            bracketWeights = [1]
        }
        roundRobin = Array(repeating: 0, count: bracketWeights.count)
    }

    public convenience init(configuration: SweepConfiguration, hyperband: Bool) {
        self.init(space: configuration.space, seed: configuration.seed, objective: configuration.objective,
                  minBudget: configuration.minBudget ?? 1, maxBudget: configuration.maxBudget ?? 1,
                  eta: configuration.reductionFactor ?? 3, hyperband: hyperband)
    }

    /// The steps minBudget·eta^k below maxBudget (a trial that reaches maxBudget has completed).
    public static func rungs(minBudget: Int64, maxBudget: Int64, eta: Int) -> [Int64] {
        var rungs: [Int64] = []
        var rung = minBudget
        while rung < maxBudget {
            rungs.append(rung)
            let (next, overflow) = rung.multipliedReportingOverflow(by: Int64(eta))
            if overflow { break }
            rung = next
        }
        return rungs
    }

    /// Checks a configuration of `asha` or `hyperband`.
    static func check(_ configuration: SweepConfiguration) throws(CMLError) {
        let strategy = configuration.strategy
        guard let maxBudget = configuration.maxBudget else {
            throw CMLError.usage("--strategy \(strategy) needs --max-budget: the steps of a whole trial",
                                 hint: "e.g. --max-budget 27 --budget-param epochs")
        }
        let minBudget = configuration.minBudget ?? 1
        guard minBudget >= 1 else { throw CMLError.usage("--min-budget must be at least 1") }
        guard maxBudget >= minBudget else { throw CMLError.usage("--max-budget \(maxBudget) is less than --min-budget \(minBudget)") }
        if let eta = configuration.reductionFactor, eta < 2 { throw CMLError.usage("--eta must be at least 2: one in eta trials goes on at each rung") }
    }

    // MARK: Trials

    public func suggest(index: Int, trials: [SweepTrial]) -> TrialSuggestion? {
        let assignment = space.sample(seed: seed, index: index)
        guard brackets.count > 1 else { return TrialSuggestion(assignment: assignment) }
        return TrialSuggestion(assignment: assignment, info: .object([("bracket", .int(Int64(bracket(ofTrial: index))))]))
    }

    /// Trial `index`'s bracket by Hyperband's proportions: smooth weighted round-robin (each bracket's
    /// credit grows by its weight; the one with most credit is taken, and pays one round's worth).
    public func bracket(ofTrial index: Int) -> Int {
        let round = bracketWeights.reduce(0, +)
        while schedule.count <= index {
            for s in roundRobin.indices { roundRobin[s] += bracketWeights[s] }
            var taken = 0
            for s in roundRobin.indices where roundRobin[s] > roundRobin[taken] { taken = s }
            roundRobin[taken] -= round
            schedule.append(taken)
        }
        return schedule[index]
    }

    /// A trial's bracket as its record keeps it (a record from before brackets: by its number).
    private func bracket(of trial: SweepTrial) -> Int {
        guard brackets.count > 1 else { return 0 }
        if case .int(let bracket)? = trial.info["bracket"], bracket >= 0, Int(bracket) < brackets.count { return Int(bracket) }
        return bracket(ofTrial: trial.index)
    }

    public func ended(_ trial: SweepTrial) {
        if reached[trial.index]?.isFinal != true { unreadEnded[trial.index] = trial }
    }

    // MARK: Stopping

    public func trialsToStop(_ running: [SweepTrial], progress: TrialProgress) throws(CMLError) -> [EarlyStop] {
        for (index, trial) in unreadEnded {
            try read(trial, progress: progress)
            reached[index]?.isFinal = true
        }
        unreadEnded = [:]
        for trial in running where (reached[trial.index]?.rungs.count ?? 0) < brackets[bracket(of: trial)].count {
            try read(trial, progress: progress)
        }
        let present = Set(running.map(\.index))
        return running.compactMap { judge($0, present: present) }
    }

    /// Reads the rungs a trial reached since it was last read.
    private func read(_ trial: SweepTrial, progress: TrialProgress) throws(CMLError) {
        var known = reached[trial.index] ?? Progress(bracket: bracket(of: trial))
        let rungs = brackets[known.bracket]
        guard known.rungs.count < rungs.count else { return }
        let columns = try progress(trial)
        known.rungs = Self.values(at: rungs, of: columns, objective: objective)
        reached[trial.index] = known
    }

    /// A trial's value and time at each rung it reached: the objective's aggregate of its points up to
    /// its first at the rung's step or beyond.
    static func values(at rungs: [Int64], of columns: MetricColumns, objective: SweepObjective) -> [(value: Double, time: Double)] {
        var values: [(value: Double, time: Double)] = []
        var aggregate = Double.nan
        for point in 0..<columns.count where values.count < rungs.count {
            let value = columns.values[point]
            switch objective.aggregate {
            case .min: if !value.isNaN && (aggregate.isNaN || value < aggregate) { aggregate = value }
            case .max: if !value.isNaN && (aggregate.isNaN || value > aggregate) { aggregate = value }
            default: aggregate = value
            }
            while values.count < rungs.count && columns.steps[point] >= rungs[values.count] {
                values.append((aggregate, columns.times[point]))
            }
        }
        return values
    }

    /// Whether a trial is to stop, by the first rung where it is not among the best (see the type). It
    /// competes with the trials running (`present`) and those ended: not with one being stopped, whose
    /// abort is under way, which a strategy made afresh on resume would not know of until it ends.
    private func judge(_ trial: SweepTrial, present: Set<Int>) -> EarlyStop? {
        guard let own = reached[trial.index] else { return nil }
        let rungs = brackets[own.bracket]
        for (rung, mine) in own.rungs.enumerated() {
            // At a rung it has passed, it competes with those there by the time it reached the next one.
            let deadline = rung + 1 < own.rungs.count ? own.rungs[rung + 1].time : Double.infinity
            var competitors = 0, better = 0
            for (index, other) in reached where other.bracket == own.bracket && other.rungs.count > rung
                && (other.isFinal || present.contains(index)) {
                guard index == trial.index || other.rungs[rung].time <= deadline else { continue }
                competitors += 1
                if index != trial.index && ranksAbove(other.rungs[rung].value, mine.value) { better += 1 }
            }
            let goOn = (competitors + eta - 1) / eta
            if competitors >= eta && better >= goOn {
                let value = mine.value.isNaN ? nil : mine.value
                return EarlyStop(index: trial.index, reason: "at step \(rungs[rung]) its \(objective.name) "
                    + "\(value.map(SearchSpace.format) ?? "NaN") was not in the best 1/\(eta) of \(competitors) trials", value: value)
            }
        }
        return nil
    }

    /// Better by the objective; a value that is not a number ranks below every number.
    private func ranksAbove(_ a: Double, _ b: Double) -> Bool {
        if a.isNaN { return false }
        if b.isNaN { return true }
        return objective.isBetter(a, than: b)
    }
}

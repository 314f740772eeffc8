/// The values a strategy gives a new trial, and what it wants kept about it.
public struct TrialSuggestion: Sendable {
    public var assignment: [(key: String, value: String)]
    /// Kept in the trial's record (`SweepTrial.info`) and handed back with it: an Optuna trial number,
    /// a Hyperband bracket.
    public var info: JSON

    public init(assignment: [(key: String, value: String)], info: JSON = .null) {
        self.assignment = assignment
        self.info = info
    }
}

/// A running trial a strategy stops early: why, and the value it was judged by (its objective at the
/// last rung it reached), which its record keeps as its objective.
public struct EarlyStop: Sendable {
    public var index: Int
    public var reason: String
    public var value: Double?

    public init(index: Int, reason: String, value: Double?) {
        self.index = index
        self.reason = reason
        self.value = value
    }
}

/// Reads a running or ended trial's objective metric as it went: its points in step order.
public typealias TrialProgress = (SweepTrial) throws(CMLError) -> MetricColumns

/// How a sweep picks its trials, and (for early-stopping strategies) which running trials to stop. The
/// controller (`SweepController`) owns the store, the queue and the record; a strategy only decides.
/// It is made afresh when a sweep resumes and told of every trial that ended before, so whatever it
/// keeps must be rebuilt from those calls (or from a file in `SweepContext.stateDirectory`).
public protocol SweepStrategy: AnyObject {
    /// The values of trial `index` (the trials so far are given, the planned and running among them);
    /// nil when the strategy has no more to try, or none now (it is asked again when a trial ends; a
    /// sweep with no trial running whose strategy has none ends).
    func suggest(index: Int, trials: [SweepTrial]) throws(CMLError) -> TrialSuggestion?
    /// A trial ended: its state, objective and reason are set. Called again for the same trial when a
    /// sweep resumes, so it must be idempotent.
    func ended(_ trial: SweepTrial) throws(CMLError)
    /// Of the running trials, those to stop now. Asked about once a second while trials run.
    func trialsToStop(_ running: [SweepTrial], progress: TrialProgress) throws(CMLError) -> [EarlyStop]
}

extension SweepStrategy {
    public func ended(_ trial: SweepTrial) throws(CMLError) {}
    public func trialsToStop(_ running: [SweepTrial], progress: TrialProgress) throws(CMLError) -> [EarlyStop] { [] }
}

/// What a strategy is made with.
public struct SweepContext: Sendable {
    public var configuration: SweepConfiguration
    public var sweepID: String
    /// A directory on this machine, beside the sweep's record where the store is a directory, that is
    /// the sweep's own (an Optuna study lives there).
    public var stateDirectory: String

    public init(configuration: SweepConfiguration, sweepID: String, stateDirectory: String) {
        self.configuration = configuration
        self.sweepID = sweepID
        self.stateDirectory = stateDirectory
    }
}

public enum SweepStrategies {
    /// The strategies `--strategy` names.
    public static let names = ["grid", "random", "asha", "hyperband", "optuna"]
    /// Those that stop trials early, by `--min-budget`, `--max-budget` and `--eta`.
    public static let earlyStopping: Set = ["asha", "hyperband"]

    /// Checks what a strategy needs of its configuration before anything is recorded.
    public static func check(_ configuration: SweepConfiguration) throws(CMLError) {
        switch configuration.strategy {
        case "grid": _ = try configuration.space.grid()
        case "random": break
        case "asha", "hyperband": try SuccessiveHalvingSearch.check(configuration)
        case "optuna":
            try OptunaStrategy.check(configuration)
            _ = try OptunaStrategy.executable()
        default:
            throw CMLError.usage("unknown strategy '\(configuration.strategy)'", hint: "strategies: \(names.joined(separator: ", "))")
        }
        try checkOptionsApply(configuration)
    }

    /// Refuses the options the strategy would ignore.
    static func checkOptionsApply(_ configuration: SweepConfiguration) throws(CMLError) {
        let strategy = configuration.strategy
        if !earlyStopping.contains(strategy) {
            let stoppingOnly = earlyStopping.sorted().joined(separator: " and ")
            if configuration.minBudget != nil {
                throw CMLError.usage("--min-budget is for strategies that stop trials early (\(stoppingOnly)), not \(strategy)")
            }
            if configuration.reductionFactor != nil {
                throw CMLError.usage("--eta is for strategies that stop trials early (\(stoppingOnly)), not \(strategy)")
            }
            if configuration.maxBudget != nil && configuration.budgetParameter == nil {
                throw CMLError.usage("--max-budget without --budget-param tells \(strategy) nothing",
                                     hint: "--budget-param KEY sets the parameter KEY of every trial to it")
            }
        }
        if let sampler = configuration.sampler, strategy != "optuna" {
            throw CMLError.usage("--sampler \(sampler) is Optuna's, not \(strategy)'s", hint: "--strategy optuna --sampler \(sampler)")
        }
    }

    public static func make(_ context: SweepContext) throws(CMLError) -> any SweepStrategy {
        switch context.configuration.strategy {
        case "grid": return GridSearch(combinations: try context.configuration.space.grid())
        case "random": return RandomSearch(space: context.configuration.space, seed: context.configuration.seed)
        case "asha": return SuccessiveHalvingSearch(configuration: context.configuration, hyperband: false)
        case "hyperband": return SuccessiveHalvingSearch(configuration: context.configuration, hyperband: true)
        case "optuna": return try OptunaStrategy(context: context, executable: try OptunaStrategy.executable())
        default:
            throw CMLError.usage("unknown strategy '\(context.configuration.strategy)'", hint: "strategies: \(names.joined(separator: ", "))")
        }
    }
}

/// Every combination once, in order.
public final class GridSearch: SweepStrategy {
    let combinations: [[(key: String, value: String)]]

    public init(combinations: [[(key: String, value: String)]]) {
        self.combinations = combinations
    }

    public func suggest(index: Int, trials: [SweepTrial]) -> TrialSuggestion? {
        index < combinations.count ? TrialSuggestion(assignment: combinations[index]) : nil
    }

}

/// Independent draws, trial N's from the seed and N (`SearchSpace.sample`).
public final class RandomSearch: SweepStrategy {
    let space: SearchSpace
    let seed: UInt64

    public init(space: SearchSpace, seed: UInt64) {
        self.space = space
        self.seed = seed
    }

    public func suggest(index: Int, trials: [SweepTrial]) -> TrialSuggestion? {
        TrialSuggestion(assignment: space.sample(seed: seed, index: index))
    }
}

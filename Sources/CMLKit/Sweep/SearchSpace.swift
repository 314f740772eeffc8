import Foundation

/// The values one parameter of a sweep takes: `uniform(a,b)`, `loguniform(a,b)`, `int(a,b)` (both ends
/// included), `choice(a,b,…)`, or a plain list `a,b,…` (a choice, as `--grid` writes it).
public enum ParameterDomain: Sendable, Equatable {
    case uniform(low: Double, high: Double)
    case logUniform(low: Double, high: Double)
    case integer(low: Int64, high: Int64)
    /// The values as written; each becomes a number, boolean or string as a command line means it.
    case choice([String])

    /// The values a grid walks through; nil for a continuous range.
    public var gridValues: [String]? {
        switch self {
        case .choice(let values): return values
        case .integer(let low, let high) where high - low < 100_000: return (low...high).map { String($0) }
        case .integer, .uniform, .logUniform: return nil
        }
    }

    /// How it is written in `--param`.
    public var description: String {
        switch self {
        case .uniform(let low, let high): return "uniform(\(SearchSpace.format(low)),\(SearchSpace.format(high)))"
        case .logUniform(let low, let high): return "loguniform(\(SearchSpace.format(low)),\(SearchSpace.format(high)))"
        case .integer(let low, let high): return "int(\(low),\(high))"
        case .choice(let values): return "choice(\(values.joined(separator: ",")))"
        }
    }
}

/// One parameter of a sweep: its name, its values, and the condition under which it is set at all
/// (`momentum=uniform(0.5,0.99) if optimizer=sgd`: only trials whose optimizer is sgd get a momentum).
public struct SweepParameter: Sendable, Equatable {
    public var key: String
    public var domain: ParameterDomain
    public var condition: Condition?

    /// Set only when an earlier parameter has one of these values.
    public struct Condition: Sendable, Equatable {
        public var key: String
        public var values: [String]
    }

    public init(key: String, domain: ParameterDomain, condition: Condition? = nil) {
        self.key = key
        self.domain = domain
        self.condition = condition
    }

    /// As `--param` takes it.
    public var description: String {
        let base = key + "=" + domain.description
        guard let condition else { return base }
        return base + " if " + condition.key + "=" + condition.values.joined(separator: ",")
    }

    func applies(to assignment: [(key: String, value: String)]) -> Bool {
        guard let condition else { return true }
        guard let value = assignment.first(where: { $0.key == condition.key })?.value else { return false }
        return condition.values.contains(value)
    }
}

/// The parameters of a sweep, in the order given, and what makes trials from them: every combination
/// (`grid`) or seeded random draws (`sample`).
public struct SearchSpace: Sendable, Equatable {
    public var parameters: [SweepParameter]

    public init(parameters: [SweepParameter]) {
        self.parameters = parameters
    }

    /// Reads `--param` texts; a condition must name a parameter given before it, and no key twice.
    public init(parsing texts: [String], option: String = "--param") throws(CMLError) {
        var parameters: [SweepParameter] = []
        for text in texts {
            let parameter = try Self.parse(text, option: option)
            if parameters.contains(where: { $0.key == parameter.key }) {
                throw CMLError.usage("\(option) \(parameter.key) is given twice")
            }
            if let condition = parameter.condition, !parameters.contains(where: { $0.key == condition.key }) {
                throw CMLError.usage("\(option) \(text): the condition names '\(condition.key)', which is not a parameter given before it")
            }
            parameters.append(parameter)
        }
        self.parameters = parameters
    }

    /// `key=DOMAIN [if key=v1,v2]`.
    public static func parse(_ text: String, option: String = "--param") throws(CMLError) -> SweepParameter {
        let hint = "e.g. \(option) 'lr=loguniform(1e-4,1e-1)', 'bs=choice(32,64)', 'layers=int(1,4)', 'lr=0.1,0.01', "
            + "'momentum=uniform(0.5,0.99) if optimizer=sgd'"
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex else {
            throw CMLError.usage("\(option) \(text) is not key=values", hint: hint)
        }
        let key = String(text[..<eq]).trimmingCharacters(in: .whitespaces)
        guard ParamParser.isKey(key) else { throw CMLError.usage("\(option) \(text): '\(key)' is not a parameter name", hint: hint) }
        if Secrets.isSecretName(key) {
            throw CMLError.usage("\(option) \(key): a secret parameter's value is not recorded, so it cannot be swept")
        }
        var rest = String(text[text.index(after: eq)...])
        var condition: SweepParameter.Condition?
        if let range = rest.range(of: " if ") {
            let clause = rest[range.upperBound...].trimmingCharacters(in: .whitespaces)
            rest = String(rest[..<range.lowerBound])
            guard let ceq = clause.firstIndex(of: "="), ceq != clause.startIndex else {
                throw CMLError.usage("\(option) \(text): the condition '\(clause)' is not key=value[,value…]", hint: hint)
            }
            let values = splitList(String(clause[clause.index(after: ceq)...]))
            guard !values.isEmpty, !values.contains("") else {
                throw CMLError.usage("\(option) \(text): the condition '\(clause)' names no value", hint: hint)
            }
            condition = .init(key: clause[..<ceq].trimmingCharacters(in: .whitespaces), values: values)
        }
        rest = rest.trimmingCharacters(in: .whitespaces)
        let domain = try parseDomain(rest, key: key, text: text, option: option, hint: hint)
        return SweepParameter(key: key, domain: domain, condition: condition)
    }

    private static func parseDomain(_ text: String, key: String, text whole: String, option: String, hint: String) throws(CMLError) -> ParameterDomain {
        func bad(_ why: String) -> CMLError { CMLError.usage("\(option) \(whole): \(why)", hint: hint) }
        guard let open = text.firstIndex(of: "("), text.hasSuffix(")") else {
            let values = splitList(text)
            guard !values.isEmpty, !values.contains("") else { throw bad("no values") }
            return .choice(values)
        }
        let function = String(text[..<open]).trimmingCharacters(in: .whitespaces).lowercased()
        let arguments = splitList(String(text[text.index(after: open)..<text.index(before: text.endIndex)]))
        func bounds() throws(CMLError) -> (Double, Double) {
            guard arguments.count == 2, let low = Double(arguments[0]), let high = Double(arguments[1]), low.isFinite, high.isFinite else {
                throw bad("\(function) takes two numbers, low and high")
            }
            guard low < high else { throw bad("\(function) needs low < high") }
            return (low, high)
        }
        switch function {
        case "uniform":
            let (low, high) = try bounds()
            return .uniform(low: low, high: high)
        case "loguniform", "log_uniform":
            let (low, high) = try bounds()
            guard low > 0 else { throw bad("loguniform needs 0 < low") }
            return .logUniform(low: low, high: high)
        case "int", "randint":
            guard arguments.count == 2, let low = Int64(arguments[0]), let high = Int64(arguments[1]) else {
                throw bad("int takes two whole numbers, low and high (both included)")
            }
            guard low <= high else { throw bad("int needs low ≤ high") }
            return .integer(low: low, high: high)
        case "choice":
            guard !arguments.isEmpty, !arguments.contains("") else { throw bad("choice needs at least one value") }
            return .choice(arguments)
        default:
            throw bad("unknown distribution '\(function)'")
        }
    }

    /// Comma-separated, spaces around each value dropped.
    static func splitList(_ text: String) -> [String] {
        text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
    }

    /// Every combination, the first parameter varying slowest; a conditional parameter varies only where
    /// its condition holds. An error for a continuous range.
    public func grid() throws(CMLError) -> [[(key: String, value: String)]] {
        for parameter in parameters where parameter.domain.gridValues == nil {
            throw CMLError.usage("\(parameter.key)=\(parameter.domain.description) has no finite values to walk through",
                                 hint: "a grid takes lists, choice(…) and int(…); draw from a range with --sample, or a sweep's --strategy random")
        }
        var combinations: [[(key: String, value: String)]] = [[]]
        for parameter in parameters {
            combinations = combinations.flatMap { assignment -> [[(key: String, value: String)]] in
                guard parameter.applies(to: assignment) else { return [assignment] }
                return parameter.domain.gridValues!.map { assignment + [(parameter.key, $0)] }
            }
        }
        return parameters.isEmpty ? [] : combinations
    }

    /// Trial `index`'s random values: the same for the same seed and index, whatever was drawn before, so
    /// that a resumed sweep draws what it would have.
    public func sample(seed: UInt64, index: Int) -> [(key: String, value: String)] {
        var generator = SeededGenerator(seed: seed, stream: UInt64(index))
        var assignment: [(key: String, value: String)] = []
        for parameter in parameters where parameter.applies(to: assignment) {
            assignment.append((parameter.key, Self.draw(parameter.domain, using: &generator)))
        }
        return assignment
    }

    static func draw(_ domain: ParameterDomain, using generator: inout SeededGenerator) -> String {
        switch domain {
        case .uniform(let low, let high):
            return format(Double.random(in: low..<high, using: &generator))
        case .logUniform(let low, let high):
            return format(exp(Double.random(in: log(low)..<log(high), using: &generator)))
        case .integer(let low, let high):
            return String(Int64.random(in: low...high, using: &generator))
        case .choice(let values):
            return values[Int.random(in: 0..<values.count, using: &generator)]
        }
    }

    /// Six significant digits: enough to tell draws apart, short on a command line. Always with a
    /// decimal point or exponent, so that a drawn float never reads back as an integer.
    public static func format(_ value: Double) -> String {
        var text = String(format: "%.6g", value)
        if !text.contains(where: { $0 == "." || $0 == "e" || $0 == "n" || $0 == "i" }) { text += ".0" }
        return text
    }
}

/// A random generator that repeats for a seed and a stream (SplitMix64 over both): trial N's draws
/// depend on the sweep's seed and N alone.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64, stream: UInt64 = 0) {
        state = seed &+ 0x9E37_79B9_7F4A_7C15 &* (stream &+ 1)
        _ = next()
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

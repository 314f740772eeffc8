/// Reads the parameters a command line carries: `--lr 0.01`, `--lr=0.01`, `-n 3`, a bare `--flag`
/// (true), and Hydra's `lr=0.01`, `+model.depth=3`, `~key`. For interpreters (python, Rscript, node, …) the
/// interpreter's own options are skipped and parsing starts after the script or module.
public enum ParamParser {
    /// Interpreter names and their options that take a value (so `python -W ignore train.py` skips both).
    static let interpreters: [String: Set<String>] = [
        "python": ["-m", "-c", "-W", "-X", "-Q"],
        "node": ["-r", "--require", "-e", "--eval"],
        "Rscript": ["-e"],
        "ruby": ["-e", "-r", "-I"],
        "perl": ["-e", "-I", "-M"],
        "julia": ["-e", "-t", "--threads", "--project"],
        "bash": ["-c"], "sh": ["-c"], "zsh": ["-c"],
    ]

    /// How a parameter is written on a command line.
    public enum Form: Sendable, Equatable {
        /// `--lr 0.01` or `-n 3`: the value is the next argument.
        case separate
        /// `--lr=0.01`
        case joined
        /// Hydra's `lr=0.01` (also `+lr=…`, `++lr=…`)
        case hydra
        /// A bare `--flag` (true)
        case flag
    }

    /// Where one parameter sits in an argv: the argument holding its key and, for `.separate`, the next
    /// one holding its value.
    public struct Occurrence: Sendable, Equatable {
        public var key: String
        public var form: Form
        /// The index in argv of the argument naming the key.
        public var index: Int
        /// What precedes the key in that argument: `--`, `-`, `+`, `++` or nothing.
        public var prefix: String
        public var value: String?
    }

    /// The parameters of `argv`, less those over `NameLimits` (see `leftOut`): a command line the
    /// program accepts must not fail its run.
    public static func parse(_ argv: [String]) -> [Param] {
        // A key given twice keeps its last value, as argparse and Hydra do.
        var seen: [String: Int] = [:]
        var params: [Param] = []
        for occurrence in occurrences(argv) {
            let param = param(occurrence)
            if NameLimits.problem(param) != nil { continue }
            if let at = seen[param.key] { params[at].value = param.value } else {
                seen[param.key] = params.count
                params.append(param)
            }
        }
        return params
    }

    /// Why `parse` leaves parameters of `argv` out, one warning each.
    public static func leftOut(_ argv: [String]) -> [String] {
        occurrences(argv).compactMap { occurrence in
            NameLimits.problem(param(occurrence)).map { "\($0): the parameter is not recorded" }
        }
    }

    private static func param(_ occurrence: Occurrence) -> Param {
        Param(key: occurrence.key, value: occurrence.value.map(Param.typedValue) ?? .bool(true), source: "argv")
    }

    /// Every parameter argv carries, in order (a key given twice occurs twice).
    public static func occurrences(_ argv: [String]) -> [Occurrence] {
        var found: [Occurrence] = []
        var args = argv.dropFirst()
        if let program = argv.first {
            args = skipInterpreterOptions(program: program, args)
        }
        var index = args.startIndex
        while index < args.endIndex {
            let at = index
            let arg = args[index]
            index += 1
            if arg == "--" { continue }
            if arg.hasPrefix("--") || (arg.hasPrefix("-") && arg.count >= 2 && !isNumber(arg)) {
                let dashes = arg.hasPrefix("--") ? "--" : "-"
                let body = arg.dropFirst(dashes.count)
                if dashes == "--", let eq = body.firstIndex(of: "=") {
                    let key = String(body[..<eq])
                    if isKey(key) {
                        found.append(Occurrence(key: key, form: .joined, index: at, prefix: dashes,
                                                value: String(body[body.index(after: eq)...])))
                    }
                } else if isKey(String(body)) {
                    if index < args.endIndex, !looksLikeOption(args[index]) {
                        found.append(Occurrence(key: String(body), form: .separate, index: at, prefix: dashes, value: args[index]))
                        index += 1
                    } else {
                        found.append(Occurrence(key: String(body), form: .flag, index: at, prefix: dashes, value: nil))
                    }
                }
            } else if let eq = arg.firstIndex(of: "=") {
                // Hydra overrides: key=value, +key=value (add), ++key=value (force).
                let whole = arg[..<eq]
                let key = String(whole.drop { $0 == "+" })
                if isKey(key) {
                    found.append(Occurrence(key: key, form: .hydra, index: at, prefix: String(whole.prefix { $0 == "+" }),
                                            value: String(arg[arg.index(after: eq)...])))
                }
            }
        }
        return found
    }

    /// `argv` with parameters set to new values (`--set lr=0.1`), each written where and as the command
    /// already writes it (`--lr 0.01` becomes `--lr 0.1`; every occurrence of a repeated key changes). A
    /// key not on the command line is appended in the form most of its parameters use, else `--key value`.
    /// A bare flag set to `false` is removed, set to `true` it stays; a missing one set to `true` is
    /// appended bare.
    public static func override(_ argv: [String], with settings: [(key: String, value: String)]) -> [String] {
        var argv = argv
        for (key, value) in settings {
            let found = occurrences(argv).filter { $0.key == key }
            if found.isEmpty {
                argv += appended(key: key, value: value, form: usualForm(of: argv))
                continue
            }
            // From the last, so that insertions and removals leave the earlier indexes valid.
            for occurrence in found.reversed() {
                switch occurrence.form {
                case .separate: argv[occurrence.index + 1] = value
                case .joined: argv[occurrence.index] = "\(occurrence.prefix)\(key)=\(value)"
                case .hydra: argv[occurrence.index] = "\(occurrence.prefix)\(key)=\(value)"
                case .flag:
                    switch value.lowercased() {
                    case "true": break
                    case "false": argv.remove(at: occurrence.index)
                    default: argv.insert(value, at: occurrence.index + 1)
                    }
                }
            }
        }
        return argv
    }

    /// The form most of argv's parameters are written in (flags say nothing about it); ties go to the
    /// form seen first.
    private static func usualForm(of argv: [String]) -> Form {
        var counts: [(Form, Int)] = []
        for occurrence in occurrences(argv) where occurrence.form != .flag {
            if let at = counts.firstIndex(where: { $0.0 == occurrence.form }) { counts[at].1 += 1 }
            else { counts.append((occurrence.form, 1)) }
        }
        var best: (Form, Int)?
        for entry in counts where entry.1 > (best?.1 ?? 0) { best = entry }
        return best?.0 ?? .separate
    }

    private static func appended(key: String, value: String, form: Form) -> [String] {
        switch form {
        case .hydra: return ["\(key)=\(value)"]
        case .joined: return ["--\(key)=\(value)"]
        case .separate, .flag: return value.lowercased() == "true" ? ["--\(key)"] : ["--\(key)", value]
        }
    }

    /// Parses `--param k=v` options; returns nil for text that is not `key=value`.
    public static func parseAssignment(_ text: String) -> Param? {
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex else { return nil }
        let key = String(text[..<eq])
        guard isKey(key) else { return nil }
        return Param(key: key, value: Param.typedValue(String(text[text.index(after: eq)...])), source: "option")
    }

    private static func skipInterpreterOptions(program: String, _ args: ArraySlice<String>) -> ArraySlice<String> {
        let name = program.split(separator: "/").last.map(String.init) ?? program
        let family = interpreters.keys.first { name == $0 || (name.hasPrefix($0) && name.dropFirst($0.count).allSatisfy { $0.isNumber || $0 == "." }) }
        guard let family, let valued = interpreters[family] else { return args }
        var index = args.startIndex
        while index < args.endIndex {
            let arg = args[index]
            if arg == "-m" || arg == "-c" || arg == "-e" || arg == "--eval" {
                // What follows the module or code is the program's own argv.
                return args[min(index + 2, args.endIndex)...]
            }
            if !arg.hasPrefix("-") || arg == "-" { return args[(index + 1)...] }  // the script itself
            index += valued.contains(arg) ? 2 : 1
        }
        return args[args.endIndex...]
    }

    public static func isKey(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, first.properties.isAlphabetic || first == "_" else { return false }
        return text.unicodeScalars.allSatisfy { $0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-.".unicodeScalars.contains($0) }
    }

    private static func isNumber(_ text: String) -> Bool { Double(text) != nil }

    private static func looksLikeOption(_ text: String) -> Bool {
        text.hasPrefix("-") && text.count > 1 && !isNumber(text)
    }
}

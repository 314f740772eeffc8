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

    public static func parse(_ argv: [String]) -> [Param] {
        var found: [(String, JSON)] = []
        var args = argv.dropFirst()
        if let program = argv.first {
            args = skipInterpreterOptions(program: program, args)
        }
        var index = args.startIndex
        while index < args.endIndex {
            let arg = args[index]
            index += 1
            if arg == "--" { continue }
            if arg.hasPrefix("--") {
                let body = arg.dropFirst(2)
                if let eq = body.firstIndex(of: "=") {
                    let key = String(body[..<eq])
                    if isKey(key) { found.append((key, Param.typedValue(String(body[body.index(after: eq)...])))) }
                } else if isKey(String(body)) {
                    if index < args.endIndex, !looksLikeOption(args[index]) {
                        found.append((String(body), Param.typedValue(args[index])))
                        index += 1
                    } else {
                        found.append((String(body), .bool(true)))
                    }
                }
            } else if arg.hasPrefix("-"), arg.count >= 2, !isNumber(arg) {
                let body = String(arg.dropFirst())
                if isKey(body) {
                    if index < args.endIndex, !looksLikeOption(args[index]) {
                        found.append((body, Param.typedValue(args[index])))
                        index += 1
                    } else {
                        found.append((body, .bool(true)))
                    }
                }
            } else if let eq = arg.firstIndex(of: "=") {
                // Hydra overrides: key=value, +key=value (add), ++key=value (force).
                var key = String(arg[..<eq])
                while key.hasPrefix("+") { key.removeFirst() }
                if isKey(key) { found.append((key, Param.typedValue(String(arg[arg.index(after: eq)...])))) }
            }
        }
        // A key given twice keeps its last value, as argparse and Hydra do.
        var seen: [String: Int] = [:]
        var params: [Param] = []
        for (key, value) in found {
            if let at = seen[key] { params[at].value = value } else {
                seen[key] = params.count
                params.append(Param(key: key, value: value, source: "argv"))
            }
        }
        return params
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

    static func isKey(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, first.properties.isAlphabetic || first == "_" else { return false }
        return text.unicodeScalars.allSatisfy { $0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-.".unicodeScalars.contains($0) }
    }

    private static func isNumber(_ text: String) -> Bool { Double(text) != nil }

    private static func looksLikeOption(_ text: String) -> Bool {
        text.hasPrefix("-") && text.count > 1 && !isNumber(text)
    }
}

import Glibc

/// What cml never records in clear: the values of environment variables and command-line options whose
/// names look like secrets, and files whose names say they hold keys or passwords.
public enum Secrets {
    /// What a secret value is recorded as, in the environment, the command and the parameters.
    public static let redacted = "<redacted>"

    /// A word of a name that ends in one of these (OPENAI_API_KEY, apiKey, db.password, GHTOKEN, OAUTH)
    /// makes the name a secret's. Whole words, not substrings: max_tokens, author and keywords are not.
    static let markers = ["KEY", "TOKEN", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "PASSPHRASE",
                          "CREDENTIAL", "CREDENTIALS", "AUTH"]

    /// Whether `name` (an environment variable's, or an option's such as `api-key`) names a secret.
    public static func isSecretName(_ name: String) -> Bool {
        words(of: name).contains { word in markers.contains { word.hasSuffix($0) } }
    }

    /// The upper-cased words of a name: split at anything not a letter or digit, and where a lower-case
    /// letter is followed by an upper-case one (camelCase).
    static func words(of name: String) -> [String] {
        var words: [String] = []
        var current = ""
        var previousWasLower = false
        for scalar in name.unicodeScalars {
            let isLetterOrDigit = scalar.properties.isAlphabetic || ("0"..."9").contains(scalar)
            if !isLetterOrDigit || (previousWasLower && scalar.properties.isUppercase) {
                if !current.isEmpty { words.append(current.uppercased()) }
                current = ""
            }
            if isLetterOrDigit { current.unicodeScalars.append(scalar) }
            previousWasLower = scalar.properties.isLowercase
        }
        if !current.isEmpty { words.append(current.uppercased()) }
        return words
    }

    /// Files whose names say they hold secrets: left out of the captured patch even when tracked.
    static let filePatterns = [".env*", "*.pem", "*.key", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*",
                               ".netrc", "credentials*"]

    /// Whether the file at `path` (relative, `/`-separated) is a well-known secret file, by its name.
    public static func isSecretFile(_ path: String) -> Bool {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        return filePatterns.contains { fnmatch($0, name, 0) == 0 }
    }
}

/// Secret values on a command line (`--api-key VALUE`, `--api-key=VALUE`, Hydra's `api_key=VALUE`): recorded
/// as `Secrets.redacted`, and supplied again from the environment when a spec is run.
public enum SecretParameters {
    /// `argv` with the value of every parameter whose name is a secret's replaced by the marker, in place
    /// and in the parameter's form. Short options (`-p VALUE`) have no name to judge, and stay.
    public static func redact(_ argv: [String]) -> [String] {
        var argv = argv
        for occurrence in ParamParser.occurrences(argv) where occurrence.value != nil && Secrets.isSecretName(occurrence.key) {
            set(occurrence, to: Secrets.redacted, in: &argv)
        }
        return argv
    }

    /// The names of the parameters of `argv` whose values are redacted, in order, once each.
    public static func redactedKeys(_ argv: [String]) -> [String] {
        var keys: [String] = []
        for occurrence in ParamParser.occurrences(argv)
        where occurrence.value == Secrets.redacted && Secrets.isSecretName(occurrence.key) && !keys.contains(occurrence.key) {
            keys.append(occurrence.key)
        }
        return keys
    }

    /// The variable a redacted parameter's value is taken from when its command runs again:
    /// `api-key` → `CML_SECRET_API_KEY`.
    public static func variable(for key: String) -> String {
        "CML_SECRET_" + String(String.UnicodeScalarView(key.uppercased().unicodeScalars.map { scalar in
            ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar) ? scalar : "_"
        }))
    }

    /// `argv` with each redacted value filled from `environment` (the last value of a name wins); an
    /// error names every parameter whose variable is not set, so the command never runs with the marker.
    public static func fill(_ argv: [String], from environment: [(String, String)]) throws(CMLError) -> [String] {
        var argv = argv
        var missing: [String] = []
        // From the last, so that an occurrence's index stays valid whatever came after it.
        for occurrence in ParamParser.occurrences(argv).reversed()
        where occurrence.value == Secrets.redacted && Secrets.isSecretName(occurrence.key) {
            let name = variable(for: occurrence.key)
            guard let value = environment.last(where: { $0.0 == name })?.1 else {
                if !missing.contains(occurrence.key) { missing.insert(occurrence.key, at: 0) }
                continue
            }
            set(occurrence, to: value, in: &argv)
        }
        guard missing.isEmpty else {
            let one = missing.count == 1
            throw CMLError("the secret parameter\(one ? "" : "s") \(missing.joined(separator: ", ")) \(one ? "is" : "are") not recorded, "
                           + "and \(missing.map(variable(for:)).joined(separator: ", ")) \(one ? "is" : "are") not set in the agent's environment")
        }
        return argv
    }


    private static func set(_ occurrence: ParamParser.Occurrence, to value: String, in argv: inout [String]) {
        switch occurrence.form {
        case .separate: argv[occurrence.index + 1] = value
        case .joined, .hydra: argv[occurrence.index] = "\(occurrence.prefix)\(occurrence.key)=\(value)"
        case .flag: break
        }
    }
}

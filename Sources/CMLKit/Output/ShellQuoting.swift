/// Commands written the way a POSIX shell reads them back, so that a command line printed for people
/// (tables, `cml-diff`, agent logs) can be pasted into a shell and runs the same argv; `--where` and
/// `--sort` on `command` compare this form too.
public enum ShellQuoting {
    /// `argument` as one shell word: bare when it holds only characters no shell treats specially
    /// (`[A-Za-z0-9_@%+=:,./-]`, ASCII only, so non-ASCII text is always quoted), else in single quotes,
    /// inside which every character is literal but `'` itself, written `'\''`. The empty argument is `''`.
    public static func quote(_ argument: String) -> String {
        if !argument.isEmpty && argument.unicodeScalars.allSatisfy(isSafe) { return argument }
        return "'" + argument.split(separator: "'", omittingEmptySubsequences: false).joined(separator: #"'\''"#) + "'"
    }

    /// The command line a user would type: each argument quoted when it needs it, joined by spaces.
    public static func commandLine(_ arguments: [String]) -> String {
        arguments.map(quote).joined(separator: " ")
    }

    private static func isSafe(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "A"..."Z", "a"..."z", "0"..."9", "_", "@", "%", "+", "=", ":", ",", ".", "/", "-": true
        default: false
        }
    }
}

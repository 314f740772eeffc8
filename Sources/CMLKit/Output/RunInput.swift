import Foundation

/// Reads which runs a command should act on: ids (or unique prefixes) given as arguments, else JSON lines
/// on stdin, each an object with an `"id"` (what `cml-run ls` prints) or a bare id. Piped input with no
/// line that names a run gives no runs, not an error: `cml-run ls --status failed | cml-run rm --yes` in a
/// cron job does nothing when no run failed.
public enum RunInput {
    public static func ids(arguments: [String], stdinLines: () -> [String]?, store: any Store) throws(CMLError) -> [String] {
        if !arguments.isEmpty {
            var out: [String] = []
            for argument in arguments { out.append(try store.resolveRunID(argument)) }
            return out
        }
        guard let lines = stdinLines() else {
            throw CMLError.usage("no run given", hint: "pass a run id, or pipe JSON lines with an \"id\" field")
        }
        var out: [String] = []
        for (number, raw) in lines.enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            let candidate: String
            if line.hasPrefix("{") {
                guard let value = try? JSON.parse(line), let id = value["id"]?.stringValue else {
                    throw CMLError("stdin line \(number + 1) is not a JSON object with an \"id\" field: \(line.prefix(60))")
                }
                candidate = id
            } else if RunID.isPrefix(line.lowercased()) {
                candidate = line
            } else {
                throw CMLError("stdin line \(number + 1) is neither a run id nor a JSON line: \(line.prefix(60))")
            }
            out.append(try store.resolveRunID(candidate))
        }
        return out
    }
}

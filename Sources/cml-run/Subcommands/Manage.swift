import ArgumentParser
import CMLCommandLine
import CMLKit
import Glibc

struct TagCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tag",
        abstract: "Add (+TAG) and remove (-TAG) tags of runs.",
        discussion: """
            Runs are ids or unique prefixes, or JSON lines with an "id" on stdin.

            Examples:
              cml-run tag 0192f3a4 +best -old
              cml-run ls --where 'acc > 0.95' | cml-run tag +good
            """
    )

    @OptionGroup var storeOption: StoreOption

    // Unrecognized: `-old` is a change, not an option.
    @Argument(parsing: .allUnrecognized, help: ArgumentHelp("Run ids, then +TAG to add and -TAG to remove.", valueName: "id|+tag|-tag"))
    var arguments: [String] = []

    func run() throws {
        let changes = arguments.filter { $0.hasPrefix("+") || $0.hasPrefix("-") }
        let ids = arguments.filter { !($0.hasPrefix("+") || $0.hasPrefix("-")) }
        guard !changes.isEmpty else { throw CMLError.usage("no tag to add or remove", hint: "e.g. cml-run tag ID +best -old") }
        let add = changes.filter { $0.hasPrefix("+") }.map { String($0.dropFirst()) }
        let remove = changes.filter { $0.hasPrefix("-") }.map { String($0.dropFirst()) }
        // Tags to remove are checked too: no tag that long exists to be removed.
        for tag in add + remove { try NameLimits.check(tag, "tag") }
        if let bad = (add + remove).first(where: { $0.isEmpty || $0.unicodeScalars.contains { $0.value < 0x20 } }) {
            throw CMLError.usage("bad tag \(JSON.string(bad).serialized)", hint: "tags are non-empty text")
        }
        let store = try storeOption.open()
        let resolved = try RunInput.ids(arguments: ids, stdinLines: Console.stdinLines, store: store)
        var out = BufferedOutput()
        for id in resolved {
            try store.removeTags(run: id, remove)
            try store.addTags(run: id, add)
            let run = try store.run(id: id)
            try out.withBuffer { JSON.object([("id", .string(id)), ("tags", .array(run.tags.map(JSON.string)))]).write(to: &$0); $0 += "\n" }
        }
        try out.flush()
    }
}

struct Rename: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rename",
        abstract: "Name a run (an empty name clears it).",
        discussion: "Example:\n  cml-run rename 0192f3a4 baseline")

    @OptionGroup var storeOption: StoreOption
    @Argument(help: ArgumentHelp("The run (id or unique prefix).", valueName: "id")) var id: String
    @Argument(help: "The new name.") var name: String

    func run() throws {
        try NameLimits.check(name, "run name")
        let store = try storeOption.open()
        let runID = try store.resolveRunID(id)
        try store.rename(run: runID, to: name.isEmpty ? nil : name)
        try Console.out(JSON.object([("id", .string(runID)), ("name", name.isEmpty ? .null : .string(name))]).serialized + "\n")
    }
}

struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm",
        abstract: "Remove runs with their output, metrics and artifacts, and free the blobs only they used.",
        discussion: """
            Runs are ids or unique prefixes, or JSON lines with an "id" on stdin. On a terminal it asks \
            first, unless --yes. A run still running is refused unless --force. Prints what was removed \
            and the bytes freed.

            Examples:
              cml-run rm 0192f3a4
              cml-run ls --status failed | cml-run rm --yes
            """
    )

    @OptionGroup var storeOption: StoreOption
    @Flag(name: [.short, .long], help: "Do not ask.") var yes = false
    @Flag(help: "Also remove runs that are still running.") var force = false
    @Argument(help: ArgumentHelp("Run ids or unique prefixes.", valueName: "id")) var ids: [String] = []

    func run() throws {
        let store = try storeOption.open()
        let resolved = Array(Set(try RunInput.ids(arguments: ids, stdinLines: Console.stdinLines, store: store))).sorted()
        // An empty pipe (no run matched upstream) asks nothing and removes nothing: the report, all zero.
        var blobsRemoved = 0
        var bytesFreed: Int64 = 0
        if !resolved.isEmpty {
            let runs = try resolved.map { id throws(CMLError) in try store.run(id: id) }
            if !force, let running = runs.first(where: { $0.observedStatus == .running }) {
                throw CMLError("run \(RunID.short(running.id)) is still running", hint: "stop it first, or pass --force")
            }
            if !yes, !Console.confirm("cml-run: remove \(runs.count) run\(runs.count == 1 ? "" : "s") (\(runs.prefix(3).map { RunID.short($0.id) }.joined(separator: ", "))\(runs.count > 3 ? ", …" : ""))?") {
                throw CMLError("nothing removed")
            }
            let report = try store.removeRuns(resolved)
            blobsRemoved = report.blobs
            bytesFreed = report.bytesFreed
        }
        try Console.out(JSON.object([
            ("removed", .array(resolved.map(JSON.string))), ("blobs_removed", .int(Int64(blobsRemoved))),
            ("bytes_freed", .int(bytesFreed)),
        ]).serialized + "\n")
    }
}

struct Projects: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "projects",
        abstract: "List projects with their run counts, most recently used first.",
        discussion: "Example:\n  cml-run projects\n  cml-run projects | jq -r .project")

    @OptionGroup var storeOption: StoreOption

    @OptionGroup var formatOption: FormatOption

    func run() throws {
        let outputFormat = formatOption.resolve()
        let projects = try storeOption.open(for: .reading).projects()
        let statuses = RunStatus.allCases.map(\.rawValue)
        try Console.print(projects.map(\.json), format: outputFormat) {
            TextTable(headers: ["PROJECT", "RUNS"] + statuses.map { $0.uppercased() } + ["LAST STARTED"],
                      rows: projects.map { project in
                          [project.name, String(project.runs)] + statuses.map { String(project.byStatus[$0] ?? 0) }
                              + [Clock.tableTime(project.lastStarted)]
                      })
        }
    }
}

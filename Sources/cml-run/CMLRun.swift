import ArgumentParser
import CMLCommandLine
import CMLKit
import Glibc

/// `cml-run`: run a command and record it; read recorded runs back.
struct CMLRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cml-run",
        abstract: "Run a command and record everything about it, or read recorded runs back.",
        discussion: """
            Put cml-run -- in front of any command; it runs as before and is recorded in the store \
            (--store, else $CML_STORE, else ~/.cml): output, exit status, environment, code state \
            (git commit plus a patch of every uncommitted change), parameters and printed metrics.

            Examples:
              cml-run -- python train.py --lr 0.01 --epochs 3
              cml-run --name baseline --tag sweep -- python train.py lr=0.1
              cml-run ls --status completed | jq -r .id
              cml-run show 0192f3a4 | jq .params
              cml-run show --patch 0192f3a4 > changes.patch && git apply changes.patch
              cml-run log --follow 0192f3a4
              cml-run metrics 0192f3a4 --key loss
              cml-run artifacts 0192f3a4
              cml-run get 0192f3a4 model.pt ./restored.pt
              cml-run tag 0192f3a4 +best -old
              cml-run ls --status failed | cml-run rm --yes
              cml-run clone 0192f3a4 --set lr=0.1 | cml-queue add gpu
              cml-run spec -- python train.py --lr 0.01 | cml-queue add gpu
              cml-run abort 0192f3a4
              cml-run verify 0192f3a4
            """,
        subcommands: [Exec.self, List.self, Show.self, Log.self, Metrics.self, ArtifactList.self, Get.self,
                      TagCommand.self, Rename.self, Remove.self, Projects.self, Parse.self, Clone.self, Spec.self,
                      Abort.self, Verify.self],
        defaultSubcommand: Exec.self
    )
}

@main
enum Main {
    static func main() {
        let arguments = StoreLocation.optionsAfterSubcommand(Array(CommandLine.arguments.dropFirst()), subcommands: subcommandNames)
        if isRun(arguments) { RunCapture.prepare() }
        if arguments.first == "--" {
            do throws(CMLError) {
                try Exec.execute(Array(arguments.dropFirst()), options: RunOptions(project: Exec.defaultProject), store: nil)
            } catch {
                CMLRun.failTool(error)
            }
        }
        if let error = commandWithoutTerminator(arguments) { CMLRun.failTool(error) }
        CMLRun.runAsTool(arguments)
    }

    /// `cml-run echo hi`: a command given without its `--` is a word that neither names a subcommand nor
    /// belongs to an option; the parser would only call it unexpected.
    static func commandWithoutTerminator(_ arguments: [String]) -> CMLError? {
        guard !arguments.contains("--"), let first = arguments.first, !subcommandNames.contains(first),
              (try? CMLRun.parseAsRoot(arguments)) == nil else { return nil }
        // The first word after options that parse on their own.
        guard let start = arguments.indices.first(where: { index in
            !arguments[index].hasPrefix("-") && (try? CMLRun.parseAsRoot(Array(arguments[..<index]))) is Exec
        }) else { return nil }
        let words = arguments[start...]
        let shown = words.prefix(4).map { $0.prefix(40) }.joined(separator: " ") + (words.count > 4 ? " …" : "")
        return .usage("'\(arguments[start].prefix(40))' is not a cml-run subcommand", hint: "to run a command, put -- before it: cml-run -- \(shown)")
    }

    static let subcommandNames = CMLRun.configuration.subcommands.compactMap { $0.configuration.commandName }

    /// A command line that runs something: options, then `--` and a command, with no subcommand first.
    static func isRun(_ arguments: [String]) -> Bool {
        guard let first = arguments.first, let terminator = arguments.firstIndex(of: "--") else { return false }
        if terminator == 0 { return true }
        let options = arguments[..<terminator]
        return (!subcommandNames.contains(first) || first == "exec") && !options.contains("--help") && !options.contains("-h")
    }

}

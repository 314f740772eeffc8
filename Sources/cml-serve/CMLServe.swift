import ArgumentParser
import CMLCommandLine
import CMLKit
import CMLServer
import Foundation

/// `cml-serve`: serve a store read-only over HTTP.
struct CMLServe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cml-serve",
        abstract: "Serve a store over HTTP (read-only for now): runs, metrics, console output, artifacts and blobs.",
        discussion: """
            Answers with the JSON the commands print (docs/http-api.md lists every route). Listens on \
            127.0.0.1:8080 unless --listen says otherwise; port 0 picks a free port. Prints one line once \
            it listens: cml-serve: serving STORE on http://HOST:PORT. SIGTERM or SIGINT stop it after the \
            requests in progress. Under systemd (Type=notify) it reports READY=1 once it listens.

            There are no tokens yet: an address beyond this machine (0.0.0.0, a LAN address) is refused \
            unless --insecure, which lets anyone who can reach it read the whole store.

            Examples:
              cml-serve --store ~/.cml
              cml-serve --listen 127.0.0.1:0 &
              curl -s 'http://127.0.0.1:8080/api/v1/runs?sort=-acc&limit=5' | jq -r .id
              curl -s http://127.0.0.1:8080/api/v1/runs/0192f3a4/log?raw=1
            """
    )

    @OptionGroup var storeOption: StoreOption

    @Option(help: ArgumentHelp("The address to listen on: HOST:PORT ([::1]:PORT for IPv6; port 0 picks a free one).", valueName: "host:port"))
    var listen = "127.0.0.1:8080"

    @Flag(help: "Allow an address beyond this machine, with no authentication (there are no tokens yet).")
    var insecure = false

    func run() async throws {
        let address = try ListenAddress(parsing: listen)
        if !address.isLoopback && !insecure {
            throw CMLError.usage("--listen \(listen) reaches beyond this machine, and there are no tokens yet: use --insecure to serve it to anyone who can connect",
                                 hint: "or listen on 127.0.0.1 behind a proxy that authenticates")
        }
        let store = try storeOption.open(for: .reading)
        let notifier = SystemdNotifier(environment: ProcessInfo.processInfo.environment)
        let location = store.location
        let application = buildApplication(store: store, configuration: ServerConfiguration(listen: address) { bound in
            do throws(CMLError) { try Console.out("cml-serve: serving \(location) on \(bound.url)\n") } catch {}
            notifier?.notify("READY=1\nSTATUS=serving \(location) on \(bound.url)")
        })
        try await serve(application, on: address)
    }
}

@main
enum Main {
    static func main() async {
        await CMLServe.runAsyncTool()
    }
}

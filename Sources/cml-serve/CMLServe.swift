import ArgumentParser
import CMLCommandLine
import CMLKit
import CMLServer
import Foundation

/// `cml-serve`: serve a store over HTTP, manage the tokens it asks for, and copy runs between stores.
struct CMLServe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cml-serve",
        abstract: "Serve a store over HTTP to every cml command (--store http://HOST:PORT) and to browsers (a web UI), and copy runs between stores.",
        discussion: """
            Every command takes --store http://HOST:PORT (or CML_STORE=http://…) and the token from \
            $CML_TOKEN or --token-file. The routes for people and scripts answer with the JSON the \
            commands print (docs/http-api.md lists every route). Listens on \
            127.0.0.1:8080 unless --listen says otherwise; port 0 picks a free port. Prints one line once \
            it listens: cml-serve: serving STORE on http://HOST:PORT (https:// with TLS). SIGTERM or SIGINT stop it after the \
            requests in progress. Under systemd (Type=notify) it reports READY=1 once it listens.

            Once the store has a token (cml-serve token create), every request but GET /healthz needs \
            one, as Authorization: Bearer TOKEN; tokens created or revoked take effect at the next \
            request, while the server runs. A store with no token is served without authentication, on \
            this machine only: an address beyond it (0.0.0.0, a LAN address) is refused unless the store \
            has a token, or --insecure lets anyone who can reach it read the whole store. Without a \
            token it answers only requests that name it by address or localhost (http://127.0.0.1:8080), \
            so that no web page can reach it through a name of its own (DNS rebinding).

            Beyond this machine, serve https: --tls-cert and --tls-key (PEM; clients check the \
            certificate against the system's CAs, or the file in $CML_CA_FILE), or a reverse proxy that \
            terminates TLS and forwards to 127.0.0.1. A connection that sends nothing for \
            --idle-timeout seconds (60) while a request is awaited or being read is closed; answers, \
            such as a followed log, are never cut.

            The web UI is at the same address: open http://127.0.0.1:8080 in a browser for the runs \
            table (columns, sorting, the --where language, running runs updated live), each run (charts, \
            console, code, environment), compare (/compare), datasets and queues. Once \
            the store has a token, the pages ask for one (a login; the browser keeps a session cookie).

            The options are listed by cml-serve serve --help.

            Examples:
              cml-serve --store ~/.cml
              cml-serve --listen 127.0.0.1:0 &
              curl -s 'http://127.0.0.1:8080/api/v1/runs?sort=-acc&limit=5' | jq -r .id
              cml-serve token create --name ci --scope read --project vision | jq -r .token > ci.token
              curl -s -H "Authorization: Bearer $(cat ci.token)" http://127.0.0.1:8080/api/v1/runs
              CML_TOKEN=$(cat ci.token) cml-run ls --store http://127.0.0.1:8080
              cml-serve --listen 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem
              CML_CA_FILE=cert.pem cml-run ls --store https://gpu-box:8443
              cml-run ls --where 'acc > 0.9' | cml-serve push http://gpu-box:8080
            """,
        subcommands: [Serve.self, Token.self, Push.self, Pull.self],
        defaultSubcommand: Serve.self
    )
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the store until stopped (the default: cml-serve [options])."
    )

    @OptionGroup var storeOption: StoreOption

    @Option(help: ArgumentHelp("The address to listen on: HOST:PORT ([::1]:PORT for IPv6; port 0 picks a free one).", valueName: "host:port"))
    var listen = "127.0.0.1:8080"

    @Flag(help: "Allow an address beyond this machine while the store has no token: anyone who can connect reads everything.")
    var insecure = false

    @Option(name: .customLong("tls-cert"), help: ArgumentHelp("Serve https with this certificate (PEM; the server's first, then its chain); needs --tls-key.", valueName: "pem"))
    var tlsCertificate: String?

    @Option(name: .customLong("tls-key"), help: ArgumentHelp("The certificate's private key (PEM, without a passphrase).", valueName: "pem"))
    var tlsKey: String?

    @Option(name: .customLong("idle-timeout"), help: ArgumentHelp("Close a connection that sends nothing for this long while a request is awaited or being read (a response in progress is never cut).", valueName: "seconds"))
    var idleTimeout: Double = 60

    func validate() throws {
        guard (tlsCertificate == nil) == (tlsKey == nil) else {
            throw ValidationError("--tls-cert and --tls-key go together: give both, or neither for plain HTTP")
        }
        guard idleTimeout > 0, idleTimeout <= 86_400 else {
            throw ValidationError("--idle-timeout must be a number of seconds above 0 and at most 86400 (a day)")
        }
    }

    func run() async throws {
        let address = try ListenAddress(parsing: listen)
        let location = StoreLocation.resolve(storeOption.store)
        guard !StoreLocation.isRemote(location) else {
            throw CMLError("cml-serve serves a store directory, and the store is \(location)\(storeOption.store == nil ? " (from CML_STORE)" : "")",
                           hint: "pass --store DIR; without it, ~/.cml when CML_STORE is unset")
        }
        let served = try StoreLocation.openDirectory(location, for: .reading, concurrentReads: true)
        if !address.isLoopback && !insecure, try !served.tokens().contains(where: { $0.revokedAt == nil }) {
            throw CMLError.usage("--listen \(listen) reaches beyond this machine, and the store has no token: create one with cml-serve token create, or use --insecure to serve it to anyone who can connect",
                                 hint: "or listen on 127.0.0.1 behind a proxy that authenticates")
        }
        var configuration = ServerConfiguration(listen: address, idleTimeout: .milliseconds(Int64((idleTimeout * 1000).rounded(.up))))
        configuration.tokenlessFromAnyHost = insecure
        if let tlsCertificate, let tlsKey {
            configuration.tls = try ServerTLS(certificateFile: tlsCertificate, keyFile: tlsKey)
        }
        let notifier = SystemdNotifier(environment: ProcessInfo.processInfo.environment)
        let scheme = configuration.scheme
        configuration.whenListening = { bound in
            let url = bound.url(scheme: scheme)
            do throws(CMLError) { try Console.out("cml-serve: serving \(location) on \(url)\n") } catch {}
            notifier?.notify("READY=1\nSTATUS=serving \(location) on \(url)")
        }
        try await serve(buildApplication(store: served, configuration: configuration), configuration: configuration)
    }
}

@main
enum Main {
    static func main() async {
        await CMLServe.runAsyncTool()
    }
}

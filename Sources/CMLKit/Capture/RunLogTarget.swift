import Glibc

/// Where `cml-log` sends a JSON line: through `$CML_LOG_FD` to the cml-run that runs it (which records it
/// with the rest of the run), or, outside a run or with `--run`, straight into the store. Each line is
/// checked first, so a bad one is refused with its reason either way; into the store, nothing is written
/// before `close`, so that a refused line leaves the run as it was.
public final class RunLogTarget {
    private enum Destination {
        case channel(Int32)
        case store(any Store, String)
    }

    private let destination: Destination
    private var interpreter = ChannelInterpreter()
    private var points: [MetricPoint] = []
    private var params: [Param] = []
    private var tags: [String] = []

    public init(run: String?, store location: String?, tokenFile: String? = nil) throws(CMLError) {
        let environment = { (name: String) -> String? in getenv(name).map { String(cString: $0) } }
        if run == nil, let descriptor = environment("CML_LOG_FD").flatMap(Int32.init), fcntl(descriptor, F_GETFD) >= 0 {
            destination = .channel(descriptor)
            return
        }
        let (store, id) = try Self.storeAndRun(run: run, store: location, tokenFile: tokenFile)
        destination = .store(store, id)
    }

    /// The store and the full id of the run to record into: `run` when given, else the cml-run this
    /// process runs inside (`$CML_RUN_ID`, `$CML_STORE`). Artifacts always go this way, since the channel
    /// carries JSON lines only, and storing a file before cml-log returns means a script may delete it next.
    /// `tokenFile` holds the token for a server (else `$CML_TOKEN`).
    public static func storeAndRun(run: String?, store location: String?, tokenFile: String? = nil) throws(CMLError) -> (any Store, String) {
        guard let run = run ?? getenv("CML_RUN_ID").map({ String(cString: $0) }) else {
            throw CMLError.usage("no run to log to", hint: "run inside cml-run, or pass --run ID")
        }
        let store = try StoreLocation.open(location, tokenFile: tokenFile)
        return (store, try store.resolveRunID(run))
    }

    public func send(_ line: [UInt8]) throws(CMLError) {
        let message = try interpreter.interpret(line, time: Clock.now())
        switch destination {
        case .channel(let descriptor):
            guard message != nil else { return }
            try FileSystem.writeAll(descriptor, line + [0x0A], path: "$CML_LOG_FD")
        case .store:
            switch message {
            case .points(let new)?: points += new
            case .params(let new)?: params += new
            case .tag(let tag)?: tags.append(tag)
            case nil: break
            }
        }
    }

    /// Stores what was gathered when writing to the store directly (the points in one transaction).
    public func close() throws(CMLError) {
        guard case .store(let store, let id) = destination else { return }
        if !params.isEmpty { try store.addParams(run: id, params) }
        if !tags.isEmpty { try store.addTags(run: id, tags) }
        if !points.isEmpty { try store.appendMetrics(run: id, points, source: .log) }
        params.removeAll()
        tags.removeAll()
        points.removeAll()
    }
}

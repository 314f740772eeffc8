/// What `cml-serve` asks of the store it serves besides `Store` and `TokenStore`: a request for one run
/// answered with one read, its token checked in the same read, and a record the server has already
/// read not read again while its revision (`RunRevisions`) is unchanged.
public protocol ServedStore: Store, TokenStore {
    /// In one read: what the store says of the token `presented` (nil: not asked), and run `id` with its
    /// revision, or only its revision while that is still `known`. `revision` nil: there is no run `id`.
    func readRun(id: String, unlessRevision known: Int64?, presented: PresentedToken?) throws(CMLError) -> ServedRunRead
    /// Rewrites a run's `extra` in one write: `change` gets what it holds and returns what it is to hold,
    /// so concurrent requests of a client (MLflow's tags, inputs and models) never lose each other's.
    func updateExtra(run id: String, _ change: (JSON?) throws(CMLError) -> JSON?) throws(CMLError)
    /// Makes an ended run `running` again, its end forgotten: a client resumed it (MLflow's
    /// `start_run(run_id=…)`).
    func reopenRun(id: String) throws(CMLError)
    /// Sets the command, working directory and code state of a run that a client reports after creating it
    /// (ClearML's SDK sends its script after `tasks.create`); `patch` (the uncommitted change) goes to the
    /// blob store and the code's `patch_blob`, as `createRun` does it.
    func setOrigin(run id: String, command: [String], cwd: String, code: JSON, patch: [UInt8]) throws(CMLError)
}

extension ServedStore {
    /// The document `client` keeps in run `id`'s record (`Run.extra[client]`: what its protocol sends that
    /// no other field holds); nil when it has none.
    public func runDocument(run id: String, client: String) throws(CMLError) -> JSON? {
        try run(id: id).extra?[client]
    }

    /// Replaces the document `client` keeps in run `id`'s `extra`, in one write that keeps the other
    /// clients' documents.
    public func saveRunDocument(run id: String, client: String, _ document: JSON) throws(CMLError) {
        try updateExtra(run: id) { held in (held ?? .object([])).setting(client, document) }
    }
}

/// The token a request presents, as the server looks it up.
public enum PresentedToken: Sendable, Hashable {
    /// None: allowed only while the store has never had a token.
    case none
    /// The sha256 of the secret it presented (`TokenSecret.hash`).
    case hash(String)
}

/// What the store says of a presented token.
public struct TokenLookup: Sendable {
    /// Whether the store has ever had a token (from then on every request needs one).
    public var configured: Bool
    /// The token presented, revoked or not; nil when none was presented or the store does not know it.
    public var token: AccessToken?

    public init(configured: Bool, token: AccessToken?) {
        self.configured = configured
        self.token = token
    }
}

public struct ServedRunRead: Sendable {
    public var token: TokenLookup?
    /// nil: no run has the id.
    public var revision: Int64?
    /// nil when the run is not there, or its revision is the one the caller knows.
    public var run: Run?
}

extension TokenStore {
    /// Looks up a presented token in a read of its own.
    public func lookUp(_ presented: PresentedToken) throws(CMLError) -> TokenLookup {
        switch presented {
        case .none: TokenLookup(configured: try hasTokens(), token: nil)
        case .hash(let hash): TokenLookup(configured: true, token: try token(hash: hash))
        }
    }
}

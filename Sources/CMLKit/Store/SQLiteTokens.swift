import GRDB

/// Tokens in the store's database (`tokens`, migration 7): each one's record and the sha256 of its secret.
extension SQLiteStore: TokenStore {
    public func addToken(_ token: AccessToken, hash: String) throws(CMLError) {
        let projects = JSON.array(token.projects.map(JSON.string)).serialized
        let added: Bool = try write { db in
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM tokens WHERE name = ?", arguments: [token.name]) != nil { return false }
            try db.execute(sql: "INSERT INTO tokens (name, hash, scope, projects, created_at) VALUES (?, ?, ?, ?, ?)",
                           arguments: [token.name, hash, token.scope.rawValue, projects, token.createdAt])
            return true
        }
        guard added else {
            throw CMLError("there is a token named '\(token.name)' already", hint: "pick another name; see cml-serve token ls", kind: .conflict)
        }
    }

    public func tokens() throws(CMLError) -> [AccessToken] {
        try read { db in try Row.fetchAll(db, sql: "SELECT * FROM tokens ORDER BY created_at, name").map(Self.token) }
    }

    public func revokeToken(name: String) throws(CMLError) -> AccessToken {
        let now = Clock.now()
        // The token as it was before, and as it is now.
        let found: (before: AccessToken, after: AccessToken)? = try write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM tokens WHERE name = ?", arguments: [name]) else { return nil }
            let before = try Self.token(row)
            guard before.revokedAt == nil else { return (before, before) }
            try db.execute(sql: "UPDATE tokens SET revoked_at = ? WHERE name = ?", arguments: [now, name])
            var after = before
            after.revokedAt = now
            return (before, after)
        }
        guard let found else {
            throw CMLError("no token is named '\(name.prefix(64))'", hint: "see cml-serve token ls", kind: .notFound)
        }
        if let revokedAt = found.before.revokedAt {
            throw CMLError("the token '\(name)' was revoked already, at \(Clock.rfc3339(revokedAt))", kind: .conflict)
        }
        return found.after
    }

    public func token(hash: String) throws(CMLError) -> AccessToken? {
        try read { db in try Self.token(db, hash: hash) }
    }

    public func hasTokens() throws(CMLError) -> Bool {
        try read { db in try Self.hasTokens(db) }
    }

    static func lookUp(_ db: Database, _ presented: PresentedToken) throws -> TokenLookup {
        switch presented {
        case .none: TokenLookup(configured: try hasTokens(db), token: nil)
        case .hash(let hash): TokenLookup(configured: true, token: try token(db, hash: hash))
        }
    }

    // Asked by the server for every request: compiled once per connection.
    private static func token(_ db: Database, hash: String) throws -> AccessToken? {
        try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM tokens WHERE hash = ?"), arguments: [hash]).map(Self.token)
    }

    private static func hasTokens(_ db: Database) throws -> Bool {
        try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM tokens LIMIT 1")) != nil
    }

    private static func token(_ row: Row) throws -> AccessToken {
        let scopeText: String = row["scope"]
        guard let scope = TokenScope(rawValue: scopeText) else {
            throw CMLError("the store holds a token with an unknown scope '\(scopeText)'", hint: "upgrade cml", kind: .damaged)
        }
        var projects: [String] = []
        if case .array(let items) = try JSON.parse(row["projects"] as String) { projects = items.compactMap(\.stringValue) }
        return AccessToken(name: row["name"], scope: scope, projects: projects, createdAt: row["created_at"], revokedAt: row["revoked_at"])
    }
}

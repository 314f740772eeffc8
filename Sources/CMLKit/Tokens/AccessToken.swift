import CLibCrypto

/// What a token lets its holder do on `cml-serve`. Each scope allows everything the ones before it
/// allow: read < write (record runs) < agent (also take and renew queue leases) < admin (also manage
/// tokens). docs/http-api.md has the table of routes by scope.
public enum TokenScope: String, Sendable, CaseIterable, Comparable {
    case read, write, agent, admin

    public func allows(_ needed: TokenScope) -> Bool { self >= needed }

    public static func < (a: TokenScope, b: TokenScope) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }

    public init(parsing text: String) throws(CMLError) {
        guard let scope = TokenScope(rawValue: text) else {
            throw CMLError.usage("unknown scope '\(text.prefix(40))'", hint: "one of \(Self.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self = scope
    }
}

/// A token's record: everything but the token itself, of which the store keeps only the sha256.
public struct AccessToken: Sendable, Equatable {
    public var name: String
    public var scope: TokenScope
    /// The projects it is bound to; empty: every project.
    public var projects: [String]
    public var createdAt: Double
    public var revokedAt: Double?

    public init(name: String, scope: TokenScope, projects: [String], createdAt: Double, revokedAt: Double? = nil) {
        self.name = name
        self.scope = scope
        self.projects = projects
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }

    /// What `cml-serve token ls` prints: never the token or its hash (the store has only the hash).
    public var json: JSON {
        .object([("name", .string(name)), ("scope", .string(scope.rawValue)), ("projects", .array(projects.map(JSON.string))),
                 ("created_at", .string(Clock.rfc3339(createdAt))), ("revoked_at", revokedAt.map { .string(Clock.rfc3339($0)) } ?? .null)])
    }
}

/// Where tokens are kept: the store's database holds each token's record and the sha256 of its secret.
public protocol TokenStore: Sendable {
    /// Records a new token; a name already taken (by a revoked token too) is a conflict.
    func addToken(_ token: AccessToken, hash: String) throws(CMLError)
    /// Every token, revoked ones included, oldest first.
    func tokens() throws(CMLError) -> [AccessToken]
    /// Marks the token revoked as of now, and returns it; an unknown or already revoked name is an error.
    func revokeToken(name: String) throws(CMLError) -> AccessToken
    /// The token whose secret hashes to `hash`, revoked or not.
    func token(hash: String) throws(CMLError) -> AccessToken?
    /// Whether any token was ever created: from then on the server asks every request for one.
    func hasTokens() throws(CMLError) -> Bool
}

/// A token as `cml-serve token create` prints it, the only time its secret is shown.
public struct IssuedToken: Sendable {
    public var token: AccessToken
    public var secret: String

    public var json: JSON {
        .object([("name", .string(token.name)), ("scope", .string(token.scope.rawValue)),
                 ("projects", .array(token.projects.map(JSON.string))), ("token", .string(secret))])
    }
}

public enum TokenSecret {
    /// Every token starts so: secret scanners and people can tell one when they see it.
    public static let prefix = "cml_"

    /// `cml_` and 32 bytes from OpenSSL's CSPRNG (seeded by the kernel's getrandom), base64url without
    /// padding.
    public static func generate() throws(CMLError) -> String {
        var bytes = [UInt8](repeating: 0, count: 32)
        guard RAND_bytes(&bytes, Int32(bytes.count)) == 1 else {
            throw CMLError("cannot make a token: OpenSSL's random generator failed")
        }
        return prefix + base64URL(bytes)
    }

    /// What the store keeps of a token: its sha256 in hex. A token is 256 random bits, so a fast hash is
    /// enough (there is nothing to guess that a slow password hash would protect).
    public static func hash(_ secret: String) -> String { SHA256Hasher.hex(Array(secret.utf8)) }

    private static func base64URL(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        var out = ""
        var index = 0
        while index < bytes.count {
            let chunk = bytes[index..<min(index + 3, bytes.count)]
            var value = 0
            for byte in chunk { value = value << 8 | Int(byte) }
            value <<= 8 * (3 - chunk.count)
            for position in 0...chunk.count { out.append(alphabet[(value >> (18 - 6 * position)) & 63]) }
            index += 3
        }
        return out
    }
}

extension TokenStore {
    /// Creates a token: a fresh secret, of which only the hash is stored.
    public func issueToken(name: String, scope: TokenScope, projects: [String]) throws(CMLError) -> IssuedToken {
        try Self.validate(name: name)
        for project in projects where project.isEmpty {
            throw CMLError.usage("--project must not be empty")
        }
        var unique: [String] = []
        for project in projects where !unique.contains(project) { unique.append(project) }
        let secret = try TokenSecret.generate()
        let token = AccessToken(name: name, scope: scope, projects: unique, createdAt: Clock.now())
        try addToken(token, hash: TokenSecret.hash(secret))
        return IssuedToken(token: token, secret: secret)
    }

    /// A name is what `token revoke` and the records name a token by: 1 to 64 letters, digits, `.`, `_`
    /// or `-`, so that it is safe in a log line and a shell.
    static func validate(name: String) throws(CMLError) {
        guard !name.isEmpty else { throw CMLError.usage("a token's --name must not be empty") }
        guard name.utf8.count <= 64, name.utf8.allSatisfy({ byte in
            (48...57).contains(byte) || (65...90).contains(byte) || (97...122).contains(byte) || byte == 46 || byte == 95 || byte == 45
        }) else {
            throw CMLError.usage("token name '\(name.prefix(64))' is not 1 to 64 letters, digits, '.', '_' or '-'")
        }
    }
}

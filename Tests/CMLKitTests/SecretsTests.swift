import Testing

@testable import CMLKit

/// One rule for secret names, for environment variables and command-line options alike.
struct SecretNameTests {
    @Test func namesWithASecretWordAreSecret() {
        for name in ["OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "GHTOKEN", "DB_PASSWORD", "MYSQL_PASSWD",
                     "GOOGLE_APPLICATION_CREDENTIALS", "SSH_AUTH_SOCK", "api-key", "apiKey", "APIKey", "password", "db.password",
                     "client_secret", "oauth", "gpg-passphrase", "key", "SECRET_KEY_BASE"] {
            #expect(Secrets.isSecretName(name), "\(name)")
        }
    }

    @Test func wordsThatMerelyContainAMarkerAreNot() {
        // Hyperparameters and ordinary settings keep their values.
        for name in ["max_tokens", "MAX_TOKENS", "num-tokens", "tokenizer", "author", "keywords", "keyframes", "lr", "PATH",
                     "HOME", "XAUTHORITY", "monkeypatch"] {
            #expect(!Secrets.isSecretName(name), "\(name)")
        }
    }

    @Test func theEnvironmentIsRedactedByTheSameRule() {
        let redacted = RunEnvironment.redact([("OPENAI_API_KEY", "sk-1"), ("MAX_TOKENS", "512"), ("PATH", "/bin")])
        #expect(redacted.map { "\($0.0)=\($0.1)" } == ["MAX_TOKENS=512", "OPENAI_API_KEY=\(Secrets.redacted)", "PATH=/bin"])
    }

    @Test func secretFilesByName() {
        for path in [".env", ".env.local", "config/.env.production", "server.pem", "tls/server.key", "id_rsa", "home/.ssh/id_rsa.pub",
                     "id_ed25519", ".netrc", "credentials", "aws/credentials.json"] {
            #expect(Secrets.isSecretFile(path), "\(path)")
        }
        for path in ["env.py", "train.py", "keys.txt", "my.env/file", "models/key_model.pt", "netrc.md"] {
            #expect(!Secrets.isSecretFile(path), "\(path)")
        }
    }
}

/// Secret values on command lines: redacted in every form the parameter parser reads, filled back in
/// from the environment.
struct SecretParameterTests {
    private let marker = Secrets.redacted

    @Test func everyFormIsRedactedWhereItIs() {
        let argv = ["python3", "-W", "ignore", "train.py", "--api-key", "sk-live-xyz789", "--password=hunter2", "db.token=abc",
                    "+hf_token=t", "--lr", "0.1", "-p", "5", "--max-tokens", "100", "--use-auth"]
        #expect(SecretParameters.redact(argv) == ["python3", "-W", "ignore", "train.py", "--api-key", marker, "--password=\(marker)",
                                                   "db.token=\(marker)", "+hf_token=\(marker)", "--lr", "0.1", "-p", "5",
                                                   "--max-tokens", "100", "--use-auth"])
        // Recorded parameters are read from the redacted command.
        let params = Dictionary(uniqueKeysWithValues: ParamParser.parse(SecretParameters.redact(argv)).map { ($0.key, $0.value) })
        #expect(params["api-key"] == .string(marker) && params["password"] == .string(marker) && params["lr"] == .double(0.1))
        // A key given twice: both values go.
        #expect(SecretParameters.redact(["./run", "--token", "a", "--token=b"]) == ["./run", "--token", marker, "--token=\(marker)"])
        // Short options have no name to judge; a long name with one dash does.
        #expect(SecretParameters.redact(["./run", "-k", "v", "-password", "p"]) == ["./run", "-k", "v", "-password", marker])
    }

    @Test func fillingTakesEachValueFromItsVariable() throws {
        let recorded = SecretParameters.redact(["./run", "--api-key", "x", "--password=y", "db.token=z", "--lr", "1"])
        #expect(SecretParameters.redactedKeys(recorded) == ["api-key", "password", "db.token"])
        #expect(SecretParameters.variable(for: "api-key") == "CML_SECRET_API_KEY")
        #expect(SecretParameters.variable(for: "db.token") == "CML_SECRET_DB_TOKEN")
        let environment = [("CML_SECRET_API_KEY", "K"), ("CML_SECRET_PASSWORD", "old"), ("CML_SECRET_DB_TOKEN", "T"),
                           ("CML_SECRET_PASSWORD", "P")]
        #expect(try SecretParameters.fill(recorded, from: environment) == ["./run", "--api-key", "K", "--password=P", "db.token=T", "--lr", "1"])
    }

    @Test func aMissingVariableIsAnErrorNamingIt() {
        let recorded = SecretParameters.redact(["./run", "--api-key", "x", "--password=y"])
        #expect(throws: CMLError.self) { try SecretParameters.fill(recorded, from: [("CML_SECRET_API_KEY", "K")]) }
        do {
            _ = try SecretParameters.fill(recorded, from: [])
            Issue.record("a command was filled without its secrets")
        } catch {
            #expect(error.message == "the secret parameters api-key, password are not recorded, and CML_SECRET_API_KEY, "
                    + "CML_SECRET_PASSWORD are not set in the agent's environment")
        }
    }

    @Test func specsNeverHoldSecretValues() throws {
        // Written by hand with the value in it: read back redacted.
        let spec = try RunSpec(json: JSON.parse(#"{"command": ["python", "t.py", "--api-key", "sk-live", "--lr", "1"]}"#))
        #expect(spec.command == ["python", "t.py", "--api-key", marker, "--lr", "1"])
        #expect(!spec.json.serialized.contains("sk-live"))
        #expect(RunSpec(repository: nil, commit: nil, patchBlob: nil, command: ["./run", "--token=abc"]).command == ["./run", "--token=\(marker)"])
        // The queued record is made from it.
        #expect(spec.queuedRun(id: "01a2").params.first { $0.key == "api-key" }?.value == .string(marker))

        var cloned = spec
        #expect(throws: CMLError.self) { try cloned.apply([(key: "api-key", value: "sk-live")]) }
        try cloned.apply([(key: "lr", value: "2")])
        #expect(cloned.command == ["python", "t.py", "--api-key", marker, "--lr", "2"])
    }

    @Test func specsCarryTheFilesLeftOut() throws {
        var spec = RunSpec(repository: "/r", commit: String(repeating: "a", count: 40), patchBlob: nil, command: ["true"])
        spec.leftOut = [LeftOutFile(path: ".env", reason: .secret),
                        LeftOutFile(path: "model.pt", reason: .size, size: 2_000_000, sha256: String(repeating: "c", count: 64))]
        let read = try RunSpec(json: JSON.parse(spec.json.serialized))
        #expect(read == spec)
        let code = read.queuedRun(id: "01a2").code
        #expect(code["left_out"] == .array(spec.leftOut.map(\.json)) && code["dirty"] == .bool(true))
        do {
            _ = try RunSpec(json: JSON.parse(#"{"command": ["true"], "left_out": [{"path": "x", "reason": "why"}]}"#))
            Issue.record("a bad left_out entry was accepted")
        } catch {
            #expect(error.message.hasPrefix("\"left_out\": "))
        }
    }
}

import Foundation
import Glibc
import Testing

/// What a finished command printed and how it exited.
struct CommandResult {
    var status: Int32
    var stdout: Data
    var stderr: String
    var out: String { String(decoding: stdout, as: UTF8.self) }

    /// stdout's JSON lines, each parsed.
    var jsonLines: [[String: Any]] {
        out.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }
}

/// Where `swift build` put the executables: beside the test bundle.
let binDirectory: String = {
    if let override = ProcessInfo.processInfo.environment["CML_BIN_DIR"] { return override }
    let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    return exe.deletingLastPathComponent().path
}()

/// A temporary store and working directory, with helpers to run the built commands against them.
final class Sandbox {
    let root: String
    var store: String { root + "/store" }
    var work: String { root + "/work" }

    init() throws {
        var template = Array("/tmp/cml-cli-XXXXXX".utf8CString)
        root = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        try FileManager.default.createDirectory(atPath: root + "/work", withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["CML_STORE"] = store
        env.removeValue(forKey: "CML_RUN_ID")
        return env
    }

    /// Starts `tool args…` in the sandbox's work directory; stdout and stderr go to files.
    func start(_ tool: String, _ args: [String], env: [String: String] = [:], cwd: String? = nil, stdin: Data? = nil) throws -> RunningCommand {
        try RunningCommand(executable: tool.hasPrefix("/") ? tool : binDirectory + "/" + tool, args: args, env: environment.merging(env) { $1 },
                           cwd: cwd ?? work, stdin: stdin, scratch: root)
    }

    @discardableResult
    func run(_ tool: String, _ args: [String], env: [String: String] = [:], cwd: String? = nil, stdin: Data? = nil) throws -> CommandResult {
        try start(tool, args, env: env, cwd: cwd, stdin: stdin).wait()
    }

    /// `cml-run ls` parsed: newest first.
    func runs() throws -> [[String: Any]] {
        let result = try run("cml-run", ["ls", "--format", "jsonl"])
        #expect(result.status == 0, "\(result.stderr)")
        return result.jsonLines
    }

    func show(_ id: String) throws -> [String: Any] {
        let result = try run("cml-run", ["show", id])
        #expect(result.status == 0, "\(result.stderr)")
        return try #require(result.jsonLines.first)
    }

    /// Starts a process that holds the store database's write lock for `seconds`; it prints "locked" once
    /// it has it.
    func lockStore(seconds: Double) throws -> RunningCommand {
        try write("lock.py", """
            import sqlite3, sys, time
            db = sqlite3.connect(sys.argv[1], isolation_level=None)
            db.execute("BEGIN EXCLUSIVE")
            print("locked", flush=True)
            time.sleep(float(sys.argv[2]))
            db.execute("COMMIT")
            """)
        return try start("/usr/bin/env", ["python3", "lock.py", store + "/cml.db", String(seconds)])
    }

    func write(_ path: String, _ text: String, mode: Int = 0o644) throws {
        let full = path.hasPrefix("/") ? path : work + "/" + path
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: full))
        chmod(full, mode_t(mode))
    }
}

/// A process started by a test, with its output captured in files (pipes could fill up and block it).
final class RunningCommand {
    let process = Process()
    private let outPath: String
    private let errPath: String
    private var inPath: String?

    init(executable: String, args: [String], env: [String: String], cwd: String, stdin: Data?, scratch: String) throws {
        let tag = UUID().uuidString
        outPath = scratch + "/.out-" + tag
        errPath = scratch + "/.err-" + tag
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = args
        process.environment = env
        process.currentDirectoryURL = URL(fileURLWithPath: cwd)
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        if let stdin {
            let path = scratch + "/.in-" + tag
            try stdin.write(to: URL(fileURLWithPath: path))
            process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
            inPath = path
        } else {
            process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
        }
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    var stdoutSoFar: String { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" }

    var stderrSoFar: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }

    var hasExited: Bool { !process.isRunning }

    func wait() throws -> CommandResult {
        process.waitUntilExit()
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        let result = CommandResult(status: status, stdout: try Data(contentsOf: URL(fileURLWithPath: outPath)),
                                   stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
        for path in [outPath, errPath, inPath].compactMap({ $0 }) { try? FileManager.default.removeItem(atPath: path) }
        return result
    }
}

/// Polls until `condition` holds or `timeout` passes.
func waitUntil(timeout: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}

/// Runs `command` with /bin/sh; its output goes to files, so that a process it leaves behind holding
/// them cannot keep the test waiting.
func shell(_ command: String, cwd: String) throws -> CommandResult {
    var env = ProcessInfo.processInfo.environment
    env["GIT_AUTHOR_NAME"] = "t"; env["GIT_AUTHOR_EMAIL"] = "t@example.org"
    env["GIT_COMMITTER_NAME"] = "t"; env["GIT_COMMITTER_EMAIL"] = "t@example.org"
    let scratch = NSTemporaryDirectory()
    return try RunningCommand(executable: "/bin/sh", args: ["-c", command], env: env, cwd: cwd, stdin: nil, scratch: scratch).wait()
}

/// Raw loopback sockets, for what a test must do below HTTP.
enum LoopbackSocket {
    /// A TCP socket connected to 127.0.0.1:`port`.
    static func connect(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if connected != 0 { close(fd) }
        try #require(connected == 0)
        return fd
    }

    /// A socket bound to a free loopback port, not listening (connecting to it is refused), and the port.
    static func bound() throws -> (Int32, UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        if !bound { close(fd) }
        try #require(bound)
        return (fd, UInt16(bigEndian: address.sin_port))
    }
}

import CSupport
import Glibc

/// How a child process ended, with the resources it used.
public struct ChildExit: Sendable {
    /// The exit code, when it exited.
    public var code: Int32?
    /// The signal that terminated it, when one did.
    public var signal: Int32?
    public var cpuUser: Double
    public var cpuSystem: Double
    /// Peak resident set size in bytes.
    public var maxRSS: Int64

    /// The status a shell reports: the code, or 128 + the signal.
    public var shellStatus: Int32 { code ?? (128 + (signal ?? 0)) }
}

/// A child with stdout and stderr connected to pipes, or both to a pseudo-terminal so that it behaves as
/// if run directly on a terminal. stdin is inherited. The child gets its own process group (or session,
/// under a pseudo-terminal) so that signals reach all it starts; but with pipes and a terminal on stdin
/// it stays in cml-run's group, the terminal's foreground job, or reading stdin would stop it (SIGTTIN).
/// A detached child (an agent's) reads /dev/null and always has its own group: the agent's terminal and
/// signals are not its own.
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    /// Descriptors to read the child's output from: [(fd, stream)]. One (the pty master) or two (pipes).
    public let outputs: [(fd: Int32, stream: OutputStream)]
    public let usesTerminal: Bool
    /// The child is in cml-run's own process group (see above): signals go to it alone, and those the
    /// terminal generates have reached it already.
    public let sharesGroup: Bool

    public enum SpawnError: Error {
        case notFound(String)
        case notExecutable(String, String)
        case failed(String)
    }

    /// Starts `argv` with `environment` in `workingDirectory` (ours when nil). With `terminal`, the child
    /// gets a new session whose controlling terminal is a fresh pseudo-terminal sized like ours; otherwise
    /// a new process group and two pipes. `inherited` descriptors (close-on-exec in this process, so that
    /// no other child started meanwhile gets them) stay open in the child under the same numbers.
    public init(argv: [String], environment: [String], terminal: Bool, workingDirectory: String? = nil,
                detached: Bool = false, inherited: [Int32] = []) throws(SpawnError) {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }

        var flags = Self.startWithCleanSignals(&attributes)
        if let workingDirectory { _ = cml_spawn_add_chdir(&actions, workingDirectory) }
        // dup2 onto itself clears close-on-exec in the child only (glibc 2.29 and later).
        for fd in inherited { posix_spawn_file_actions_adddup2(&actions, fd, fd) }
        if detached { posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0) }

        var parentEnds: [(Int32, OutputStream)] = []
        var childEnds: [Int32] = []
        if terminal {
            var master: Int32 = -1
            var slave: Int32 = -1
            var settings = termios()
            var size = winsize()
            let haveSettings = tcgetattr(STDOUT_FILENO, &settings) == 0
            let haveSize = ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0
            var nameBuffer = [CChar](repeating: 0, count: 128)
            let opened = withUnsafeMutablePointer(to: &settings) { s in
                withUnsafeMutablePointer(to: &size) { z in
                    openpty(&master, &slave, &nameBuffer, haveSettings ? s : nil, haveSize ? z : nil)
                }
            }
            guard opened == 0 else { throw .failed("cannot open a pseudo-terminal: \(String(cString: strerror(errno)))") }
            // The child's "\n" reaches us as "\n", not "\r\n": our own terminal adds the "\r" when we print it.
            if tcgetattr(slave, &settings) == 0 {
                settings.c_oflag &= ~tcflag_t(ONLCR)
                tcsetattr(slave, TCSANOW, &settings)
            }
            _ = fcntl(master, F_SETFD, FD_CLOEXEC)
            _ = fcntl(slave, F_SETFD, FD_CLOEXEC)
            let slavePath = nameBuffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            // After setsid() the first terminal the child opens becomes its controlling terminal.
            flags |= cml_spawn_setsid_flag()
            posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, slavePath, O_RDWR, 0)
            posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO)
            parentEnds = [(master, .stdout)]
            childEnds = [slave]  // kept open until the child has it, so the master never sees a hang-up first
        } else {
            if detached || isatty(STDIN_FILENO) == 0 {
                flags |= Int32(POSIX_SPAWN_SETPGROUP)
                posix_spawnattr_setpgroup(&attributes, 0)
            }
            for (target, stream) in [(STDOUT_FILENO, OutputStream.stdout), (STDERR_FILENO, .stderr)] {
                var ends: [Int32] = [-1, -1]
                guard cml_pipe_cloexec(&ends) == 0 else { throw .failed("cannot create a pipe: \(String(cString: strerror(errno)))") }
                posix_spawn_file_actions_adddup2(&actions, ends[1], target)
                parentEnds.append((ends[0], stream))
                childEnds.append(ends[1])
            }
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))

        var cArgs = argv.map { strdup($0) } + [nil]
        var cEnv = environment.map { strdup($0) } + [nil]
        defer {
            for p in cArgs { free(p) }
            for p in cEnv { free(p) }
        }
        var child: pid_t = 0
        let rc = posix_spawnp(&child, argv[0], &actions, &attributes, &cArgs, &cEnv)
        for fd in childEnds { close(fd) }
        guard rc == 0 else {
            for (fd, _) in parentEnds { close(fd) }
            switch rc {
            case ENOENT: throw .notFound(argv[0])
            case EACCES, ENOEXEC, EISDIR: throw .notExecutable(argv[0], String(cString: strerror(rc)))
            default: throw .failed("cannot start \(argv[0]): \(String(cString: strerror(rc)))")
            }
        }
        pid = child
        outputs = parentEnds.map { (fd: $0.0, stream: $0.1) }
        usesTerminal = terminal
        sharesGroup = !terminal && !detached && isatty(STDIN_FILENO) == 1
    }

    /// Sends `signal` to the child's whole process group, or to the child when it shares ours.
    public func signalGroup(_ signal: Int32) {
        if sharesGroup || kill(-pid, signal) != 0 { kill(pid, signal) }
    }

    /// Stops the child's group as Ctrl-Z would. Under a pseudo-terminal the child leads a session of its
    /// own, and the kernel discards SIGTSTP sent to such a group (an orphaned one: no parent in its
    /// session to resume it), so it gets SIGSTOP, which cannot be discarded.
    public func stopGroup() {
        signalGroup(usesTerminal ? SIGSTOP : SIGTSTP)
    }

    /// Copies our terminal's window size to the child's terminal (after SIGWINCH).
    public func copyWindowSize() {
        guard usesTerminal else { return }
        var size = winsize()
        if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0 {
            _ = ioctl(outputs[0].fd, UInt(TIOCSWINSZ), &size)
        }
    }

    /// Waits for the child to end and returns how it ended.
    public func wait() -> ChildExit {
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        let low = status & 0x7F
        let cpu = { (t: timeval) in Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return ChildExit(code: low == 0 ? (status >> 8) & 0xFF : nil, signal: low == 0 ? nil : low,
                         cpuUser: cpu(usage.ru_utime), cpuSystem: cpu(usage.ru_stime),
                         maxRSS: Int64(usage.ru_maxrss) * 1024)
    }
}

extension ChildProcess {
    /// Has a spawned program start as from a shell: with no signal blocked (cml-run blocks the ones it
    /// forwards, and a launcher, such as a test runner or a service manager, may have blocked more) and
    /// SIGPIPE at its default (cml-run ignores it to see EPIPE on its own writes). Returns the spawn flags
    /// this needs.
    static func startWithCleanSignals(_ attributes: inout posix_spawnattr_t) -> Int32 {
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        return Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
    }
}

/// What a short command printed, and how it ended.
public struct CapturedOutput: Sendable {
    public var exit: ChildExit
    public var stdout: String
    public var stderr: String
}

extension ChildProcess {
    /// Runs a short command to its end and collects what it prints. It reads /dev/null and has a process
    /// group of its own, so that a Ctrl-C at the terminal, meant for us, does not stop it halfway.
    public static func capture(_ argv: [String], environment: [String]) throws(SpawnError) -> CapturedOutput {
        let child = try ChildProcess(argv: argv, environment: environment, terminal: false, detached: true)
        var printed: [OutputStream: [UInt8]] = [.stdout: [], .stderr: []]
        // Both pipes are read as they fill: a child blocked writing one would never close the other.
        var open = child.outputs.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !open.isEmpty {
            if poll(&open, nfds_t(open.count), -1) < 0 {
                guard errno == EINTR else { break }
                continue
            }
            for index in open.indices.reversed() where open[index].revents != 0 {
                let fd = open[index].fd
                let count = read(fd, &buffer, buffer.count)
                if count > 0 {
                    let stream = child.outputs.first { $0.fd == fd }!.stream
                    printed[stream, default: []].append(contentsOf: buffer[..<count])
                } else if count == 0 || errno != EINTR {
                    close(fd)
                    open.remove(at: index)
                }
            }
        }
        for entry in open { close(entry.fd) }
        return CapturedOutput(exit: child.wait(), stdout: String(decoding: printed[.stdout] ?? [], as: UTF8.self),
                              stderr: String(decoding: printed[.stderr] ?? [], as: UTF8.self))
    }
}

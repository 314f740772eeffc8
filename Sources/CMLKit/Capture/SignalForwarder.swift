import CSupport
import Foundation
import Glibc
import Synchronization

/// Blocks SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP, SIGCONT and SIGWINCH in every thread and waits for
/// them on one thread with sigwait(2), so no handler runs at an arbitrary point. Termination signals are
/// forwarded to the child's process group (and remembered, so the run ends `aborted`); SIGTSTP (Ctrl-Z)
/// stops the child's group and then cml-run, SIGCONT (`fg`) resumes the group; SIGWINCH resizes the
/// child's terminal. A signal that cml-run's launcher ignored (`cmd &` in a script ignores SIGINT and
/// SIGQUIT, `nohup` SIGHUP) stays ignored, for cml-run and the command alike: blocked, it would be
/// queued for sigwait rather than discarded, and would end a run `aborted` that nothing stopped.
public final class SignalForwarder: Sendable {
    public static let termination: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT]

    private struct State {
        var child: ChildProcess?
        /// The child was reaped: its process id may be reused, so nothing is sent to it any more.
        var reaped = false
        var received: Int32?
        /// Ctrl-Z came before the child existed: stop it as soon as it does.
        var stopPending = false
    }
    private let state = Mutex(State())

    /// The process's forwarder. Touch it first thing in main, before any other thread exists, so that every
    /// thread inherits the mask.
    public static let shared = SignalForwarder()

    private init() {
        var blocked = sigset_t()
        sigemptyset(&blocked)
        for signal in Self.termination + [SIGTSTP] where cml_signal_ignored(signal) == 0 { sigaddset(&blocked, signal) }
        for signal in [SIGWINCH, SIGCONT] { sigaddset(&blocked, signal) }
        pthread_sigmask(SIG_BLOCK, &blocked, nil)
        signal(SIGPIPE, SIG_IGN)
        let waitSet = blocked
        Thread.detachNewThread { [self] in
            var set = waitSet
            while true {
                var info = siginfo_t()
                let received = sigwaitinfo(&set, &info)
                guard received > 0 else { continue }
                // SI_KERNEL (0x80): the terminal sent it (Ctrl-C, Ctrl-Z) to its whole foreground job.
                self.handle(received, fromTerminal: info.si_code == 0x80)
            }
        }
    }

    private func handle(_ signal: Int32, fromTerminal: Bool) {
        let (child, reaped) = state.withLock { state -> (ChildProcess?, Bool) in
            // A signal after the child ended did not stop it.
            if Self.termination.contains(signal) && !state.reaped { state.received = signal }
            if state.child == nil && !state.reaped {
                state.stopPending = signal == SIGTSTP || (state.stopPending && signal != SIGCONT)
            }
            return (state.child, state.reaped)
        }
        // A child in our own group got the terminal's signals already, as the rest of the job did.
        let delivered = fromTerminal && child?.sharesGroup == true
        switch signal {
        case SIGWINCH: child?.copyWindowSize()
        case SIGTSTP:
            if let child {
                if !delivered { child.stopGroup() }
            } else if !reaped {
                return  // stopped by `forward(to:)`, once the child exists
            }
            kill(getpid(), SIGSTOP)
        case SIGCONT:
            child?.signalGroup(SIGCONT)
        default:
            if !delivered { child?.signalGroup(signal) }
            // A stopped process acts on a termination signal only once continued, as `kill %1` does.
            child?.signalGroup(SIGCONT)
        }
    }

    /// From now on, signals go to `child`. A signal that came before the child existed is sent at once.
    public func forward(to child: ChildProcess) {
        let (pending, stop) = state.withLock { state -> (Int32?, Bool) in
            state.child = child
            return (state.received, state.stopPending)
        }
        if let pending { child.signalGroup(pending) }
        if stop {
            child.stopGroup()
            kill(getpid(), SIGSTOP)
        }
    }

    /// The child was reaped: no more signals go to it, and none received from now on counts as stopping it.
    public func reaped() {
        state.withLock { state in
            state.child = nil
            state.reaped = true
        }
    }

    /// Does what SIGTERM to cml-run does, as `cml-run abort` used to send on the run's host only.
    public func abort() {
        handle(SIGTERM, fromTerminal: false)
    }

    /// The last termination signal received, if any.
    public var receivedSignal: Int32? { state.withLock { $0.received } }
}

import CSupport
import Foundation
import Glibc
import Synchronization

/// One thread per output descriptor of the child: each chunk is written through to our own stdout or
/// stderr at once (unless `passThrough` is off, as in an agent), then handed to the recorder. When our
/// stdout is closed (`cml-run … | head`) the pump stops reading, so the child gets SIGPIPE as it would
/// without cml-run.
final class OutputPump: Sendable {
    private struct State {
        var exitedAt: Double?
        var running: Int
    }
    private let state: Mutex<State>
    private let drained = NSCondition()
    /// After the child exits, descendants that still hold the pipe get this long of silence, and this long
    /// in all, before the run is closed.
    static let quietAfterExit = 0.5
    static let maxDrainAfterExit = 5.0

    init(child: ChildProcess, recorder: OutputRecorder, passThrough: Bool) {
        cml_keep_freed_memory()
        state = Mutex(State(exitedAt: nil, running: child.outputs.count))
        for output in child.outputs {
            // Bigger pipe buffers mean fewer wake-ups when the child writes fast.
            if !child.usesTerminal { _ = cml_set_pipe_size(output.fd, 1 << 20) }
            let target = child.usesTerminal || output.stream == .stdout ? STDOUT_FILENO : STDERR_FILENO
            Thread.detachNewThread { [self] in
                self.pump(from: output.fd, stream: output.stream, to: passThrough ? target : nil, recorder: recorder)
            }
        }
    }

    func childExited() {
        state.withLock { $0.exitedAt = Clock.now() }
    }

    func waitUntilDrained() {
        drained.lock()
        while state.withLock({ $0.running }) > 0 { drained.wait() }
        drained.unlock()
    }

    private func pump(from fd: Int32, stream: OutputStream, to target: Int32?, recorder: OutputRecorder) {
        // Small enough to stay in cache from the read, through our stdout, to the log.
        let size = 1 << 18
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        defer {
            buffer.deallocate()
            close(fd)
            drained.lock()
            state.withLock { $0.running -= 1 }
            drained.broadcast()
            drained.unlock()
        }
        var lastData = Clock.now()
        while true {
            var request = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&request, 1, 100)
            if let exitedAt = state.withLock({ $0.exitedAt }) {
                // The child is gone: stop when what it left behind falls quiet, or keeps talking too long.
                let now = Clock.now()
                if now - exitedAt >= Self.maxDrainAfterExit { return }
                if ready == 0 && now - max(lastData, exitedAt) >= Self.quietAfterExit { return }
            }
            if ready == 0 { continue }
            if ready < 0 { if errno == EINTR { continue } else { return } }
            let n = read(fd, buffer, size)
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return  // EIO: the terminal's last writer is gone
            }
            if n == 0 { return }
            lastData = Clock.now()
            let delivered = target.map { writeThrough($0, buffer, n) } ?? true
            recorder.receive(stream, Array(UnsafeRawBufferPointer(start: buffer, count: n)))
            // Our reader went away: stop reading so the child sees a broken pipe (or a hang-up), as it
            // would without cml-run.
            if !delivered { return }
        }
    }

    /// Writes all of it; false when the reader is gone (EPIPE) or the write fails.
    private func writeThrough(_ fd: Int32, _ bytes: UnsafeMutableRawPointer, _ count: Int) -> Bool {
        var offset = 0
        while offset < count {
            let n = write(fd, bytes + offset, count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN {
                    var request = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&request, 1, 1000)
                    continue
                }
                return false
            }
            offset += n
        }
        return true
    }
}

import CSupport
import Foundation
import Glibc
import Synchronization

/// One thread reads all of the child's output descriptors (the pseudo-terminal, or the stdout and stderr
/// pipes): each chunk is written through to our own stdout or stderr at once (unless `passThrough` is
/// off, as in an agent), then handed to the recorder, so the log stores the two streams in the order this
/// thread read them. Two pipes cannot say which of their bytes were written first; what the reader can do
/// is take the streams in the order they became readable (epoll's ready list keeps that order) and read
/// each as soon as it does. So output is stored in the order it was written whenever the command pauses
/// between writing to one stream and the other (it waits, sleeps, computes) long enough for the reader to
/// wake; what it writes to both faster than that is stored a read at a time, each read's bytes together.
/// When our stdout is closed (`cml-run … | head`) the pump stops reading that stream, so the child gets
/// SIGPIPE as it would without cml-run.
final class OutputPump: Sendable {
    private struct State {
        var exitedAt: Double?
        var running = true
    }
    private let state = Mutex(State())
    private let drained = NSCondition()
    /// After the child exits, descendants that still hold the output get this long of silence, and this
    /// long in all, before the run is closed.
    static let quietAfterExit = 0.5
    static let maxDrainAfterExit = 5.0

    private struct Source {
        var fd: Int32
        var stream: OutputStream
        /// Our own descriptor the output passes through to; nil when it is only recorded.
        var target: Int32?
    }

    init(child: ChildProcess, recorder: OutputRecorder, passThrough: Bool) {
        cml_keep_freed_memory()
        let sources = child.outputs.map { output in
            // Bigger pipe buffers mean fewer wake-ups when the child writes fast.
            if !child.usesTerminal { _ = cml_set_pipe_size(output.fd, 1 << 20) }
            let target = child.usesTerminal || output.stream == .stdout ? STDOUT_FILENO : STDERR_FILENO
            return Source(fd: output.fd, stream: output.stream, target: passThrough ? target : nil)
        }
        Thread.detachNewThread { [self] in
            self.pump(sources, recorder: recorder)
            drained.lock()
            state.withLock { $0.running = false }
            drained.broadcast()
            drained.unlock()
        }
    }

    func childExited() {
        state.withLock { $0.exitedAt = Clock.now() }
    }

    func waitUntilDrained() {
        drained.lock()
        while state.withLock({ $0.running }) { drained.wait() }
        drained.unlock()
    }

    private func pump(_ sources: [Source], recorder: OutputRecorder) {
        // Small enough to stay in cache from the read, through our stdout, to the log.
        let size = 1 << 18
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        let queue = cml_readiness_open()
        var open: [Int32: Source] = [:]
        for source in sources {
            _ = fcntl(source.fd, F_SETFL, fcntl(source.fd, F_GETFL) | O_NONBLOCK)
            if queue >= 0 && cml_readiness_watch(queue, source.fd) == 0 {
                open[source.fd] = source
            } else {
                close(source.fd)
            }
        }
        defer {
            buffer.deallocate()
            for fd in open.keys { close(fd) }
            if queue >= 0 { close(queue) }
        }
        // Descriptors that may hold bytes, in the order they became readable; each is read until EAGAIN
        // (the watch is edge-triggered), one chunk at a time in turn, so a flood on one stream does not
        // hold the other back.
        var ready: [Int32] = []
        var lastData = Clock.now()
        var woken = [Int32](repeating: -1, count: 2)
        while !open.isEmpty {
            let count = cml_readiness_wait(queue, &woken, Int32(woken.count), ready.isEmpty ? 100 : 0)
            if count < 0 && errno != EINTR { return }
            for fd in woken.prefix(Int(max(count, 0))) where !ready.contains(fd) { ready.append(fd) }
            if let exitedAt = state.withLock({ $0.exitedAt }) {
                // The child is gone: stop when what it left behind falls quiet, or keeps talking too long.
                let now = Clock.now()
                if now - exitedAt >= Self.maxDrainAfterExit { return }
                if ready.isEmpty && now - max(lastData, exitedAt) >= Self.quietAfterExit { return }
            }
            guard !ready.isEmpty else { continue }
            let fd = ready.removeFirst()
            guard let source = open[fd] else { continue }
            let n = read(fd, buffer, size)
            if n < 0 && (errno == EAGAIN || errno == EINTR) {
                if errno == EINTR { ready.append(fd) }
                continue  // EAGAIN: read to the end; the next bytes wake the queue again
            }
            if n <= 0 {
                // The end (0), or EIO: the terminal's last writer is gone.
                open[fd] = nil
                close(fd)
                continue
            }
            lastData = Clock.now()
            let delivered = source.target.map { writeThrough($0, buffer, n) } ?? true
            recorder.receive(source.stream, Array(UnsafeRawBufferPointer(start: buffer, count: n)))
            if delivered {
                ready.append(fd)  // more may wait: read it again after the others
            } else {
                // Our reader went away: stop reading so the child sees a broken pipe (or a hang-up), as it
                // would without cml-run.
                open[fd] = nil
                close(fd)
            }
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

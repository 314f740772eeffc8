import CSupport
import Glibc

/// Waits for the queues to change, so that an idle agent starts new work at once instead of polling.
public protocol QueueWatcher: AnyObject, Sendable {
    /// Returns when the queues may have changed, when `interrupt()` is called, or after `timeout`
    /// seconds, whichever comes first. A change or an interruption between two waits is not lost: the
    /// next wait returns at once.
    func wait(timeout: Double)
    /// Wakes the waiter (from another thread or a signal thread).
    func interrupt()
}

/// SQLite has no cross-process notification, so the local store rings a doorbell: after each commit that
/// changes what agents may take, it touches `queue.bell` in the store directory (a timestamp update,
/// nothing written), and waiting agents hear it through inotify. Writes to the database itself, such as
/// the metric batches of running runs, change no attributes and wake no one.
enum Doorbell {
    static let fileName = "queue.bell"

    static func ring(storeDirectory: String) {
        let path = storeDirectory + "/" + fileName
        if utimensat(AT_FDCWD, path, nil, 0) == 0 { return }
        // First ring: creating it is an event too.
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        if fd >= 0 { close(fd) }
    }
}

final class DoorbellWatcher: QueueWatcher, @unchecked Sendable {  // descriptors only; read by one waiter
    private let inotify: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32

    init(storeDirectory: String) throws(CMLError) {
        inotify = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard inotify >= 0 else { throw FileSystem.error("cannot watch the store for new work", storeDirectory) }
        // The directory, not the file: the bell may not exist yet.
        guard inotify_add_watch(inotify, storeDirectory, UInt32(IN_ATTRIB | IN_CREATE)) >= 0 else {
            let failure = FileSystem.error("cannot watch the store for new work", storeDirectory)
            close(inotify)
            throw failure
        }
        var ends: [Int32] = [-1, -1]
        guard cml_pipe_cloexec(&ends) == 0 else {
            close(inotify)
            throw FileSystem.error("cannot create a pipe", "wake-up")
        }
        wakeRead = ends[0]
        wakeWrite = ends[1]
        _ = fcntl(wakeRead, F_SETFL, O_NONBLOCK)
        _ = fcntl(wakeWrite, F_SETFL, O_NONBLOCK)
    }

    deinit {
        close(inotify)
        close(wakeRead)
        close(wakeWrite)
    }

    func wait(timeout: Double) {
        var fds = [pollfd(fd: inotify, events: Int16(POLLIN), revents: 0), pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
        let milliseconds = Int32(max(0, min(timeout, 3600)) * 1000)
        while true {
            let ready = poll(&fds, 2, milliseconds)
            if ready < 0 && errno == EINTR { continue }
            break
        }
        drain(wakeRead)
        drain(inotify)
    }

    func interrupt() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)  // a full pipe already holds a wake-up
    }

    /// Events name the file they concern, but any event in the store directory (the bell, rarely a file
    /// SQLite creates) only costs the agent a look at the queues.
    private func drain(_ fd: Int32) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while buffer.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) > 0 {}
    }
}

import CMLKit
import Foundation
import ServiceLifecycle
import Synchronization

/// The long poll behind `GET /api/v1/store/queue-changes`, which wakes remote agents as the store's
/// `QueueWatcher` wakes local ones: a count of the times the served store's queues may have changed
/// (its doorbell rang: a run queued, requeued or moved, an abort asked for, through this server or by a
/// command on its machine). A request that names the count it saw is held until the count moves on, or
/// for at most the seconds it asked for. The count starts at the time it is made, in milliseconds, so
/// that a restarted server never answers a count an agent took for the current one.
final class QueueChanges: Sendable {
    static let longestWait = 60

    private struct State {
        var count: Int
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter = 0
    }

    private let state: Mutex<State>

    /// One per store location, made at the first request: its thread waits on the store's watcher for as
    /// long as the server runs.
    private static let byStore = Mutex<[String: QueueChanges]>([:])

    static func of(_ store: any Store) throws(CMLError) -> QueueChanges {
        try byStore.withLock { (all) throws(CMLError) -> QueueChanges in
            if let changes = all[store.location] { return changes }
            let changes = QueueChanges(watcher: try store.queueWatcher())
            all[store.location] = changes
            return changes
        }
    }

    private init(watcher: any QueueWatcher) {
        state = Mutex(State(count: Int(Clock.now() * 1000)))
        Thread.detachNewThread { [self] in
            while true {
                // Returning on its timeout counts too: a change at most an hour late beats one lost.
                watcher.wait(timeout: 3600)
                wakeAll(counting: true)
            }
        }
    }

    private func wakeAll(counting: Bool) {
        let woken = state.withLock { state in
            if counting { state.count += 1 }
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in woken { waiter.resume() }
    }

    /// The count, once it differs from `after` or `seconds` have passed; at once without `after`, and
    /// once the server begins to shut down (which waits for the requests in progress).
    func next(after: Int?, waiting seconds: Int) async -> Int {
        await withGracefulShutdownHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let waiter = state.withLock { state -> Int? in
                    // A request that comes while the server shuts down (on a kept-alive connection) found the
                    // shutdown's handler run already: it must not wait either.
                    guard let after, after == state.count, seconds > 0, !Task.isShuttingDownGracefully else { return nil }
                    state.nextWaiter += 1
                    state.waiters[state.nextWaiter] = continuation
                    return state.nextWaiter
                }
                guard let waiter else { return continuation.resume() }
                Task {
                    try? await Task.sleep(for: .seconds(seconds))
                    self.state.withLock { $0.waiters.removeValue(forKey: waiter) }?.resume()
                }
            }
        } onGracefulShutdown: {
            self.wakeAll(counting: false)
        }
        return state.withLock { $0.count }
    }
}

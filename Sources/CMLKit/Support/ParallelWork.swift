import CSupport
import Dispatch
import Foundation

/// Runs `count` items on `workers` threads, each taking the next item when done with one (so a large
/// file on one thread does not hold up the others), and returns each item's result in item order.
public enum ParallelWork {
    /// The CPUs this process may use (`taskset` and cgroups' cpusets count).
    public static var availableCPUs: Int { Int(cml_available_cpus()) }

    public static func map<Result: Sendable>(count: Int, workers: Int,
                                             _ body: @Sendable (_ worker: Int, _ item: Int) -> Result) -> [Result] {
        let slots = Slots<Result>(count: count)
        let next = Counter()
        let threads = max(1, min(workers, count))
        DispatchQueue.concurrentPerform(iterations: threads) { worker in
            while let item = next.take(below: count) { slots.set(item, body(worker, item)) }
        }
        return slots.values()
    }

    private final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var value = 0

        func take(below limit: Int) -> Int? {
            lock.lock()
            defer { lock.unlock() }
            guard value < limit else { return nil }
            value += 1
            return value - 1
        }
    }

    /// One slot per item; each is written by exactly one worker, and read after all have finished.
    private final class Slots<Value>: @unchecked Sendable {
        private let storage: UnsafeMutableBufferPointer<Value?>

        init(count: Int) {
            storage = .allocate(capacity: count)
            storage.initialize(repeating: nil)
        }

        deinit {
            storage.deinitialize()
            storage.deallocate()
        }

        func set(_ index: Int, _ value: Value) { storage[index] = value }

        func values() -> [Value] { storage.map { $0! } }
    }
}

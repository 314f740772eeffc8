import Foundation
import Glibc

/// An agent inside another command's process, on a thread of its own: `cml-queue sweep --local N` runs
/// its trials with it, the same agent code as `cml-agent` on a queue of the sweep's own. Its log says
/// only warnings and errors; the command reports the runs itself.
public final class LocalAgent: @unchecked Sendable {  // set once; the agent is thread-safe
    private let agent: Agent
    private let stopped = DispatchSemaphore(value: 0)

    /// Starts it at once on `queue` with `slots` slots. A store on this machine records the runs itself;
    /// with a server, the runs record into this machine's agent spool of it and go up from there, as
    /// `cml-agent --store URL` does.
    public init(store: any Store, queue: String, slots: Int, name: String) throws(CMLError) {
        let cache = getenv("XDG_CACHE_HOME").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
            ?? FileSystem.homeDirectory + "/.cache"
        let configuration = AgentConfiguration(name: name, queues: [queue], slots: slots, workDirectory: cache + "/cml/agent",
                                               heartbeatInterval: 2, leaseSeconds: 20, drainGrace: 0, killGrace: 10)
        let log = AgentLog(name: name, environment: [:], threshold: .warning)
        if let local = store as? SQLiteStore {
            agent = try Agent(configuration: configuration, store: local, log: log, notifier: nil)
        } else {
            agent = try Agent(configuration: configuration, server: store, spool: RunSpool(for: store.location, agent: true), log: log,
                              notifier: nil)
        }
        let agent = self.agent, stopped = self.stopped
        Thread.detachNewThread {
            do throws(CMLError) {
                _ = try agent.run()
            } catch {
                Console.error("cml-queue: error: the local agent stopped: \(error.message)\n")
            }
            stopped.signal()
        }
    }

    /// Stops it and waits until it has: what still runs is requeued (nothing does once a sweep's trials
    /// have ended).
    public func stop() {
        agent.drain(signal: SIGTERM)
        agent.drain(signal: SIGTERM)
        stopped.wait()
    }
}

import Foundation
import Glibc

/// An agent inside another command's process, on a thread of its own: `cml-queue sweep --local N` and
/// `pipeline run --local N` run their trials and steps with it, the same agent code as `cml-agent` on a queue of the sweep's own. Its log says
/// only warnings and errors; the command reports the runs itself.
public final class LocalAgent: @unchecked Sendable {  // set once; the agent is thread-safe
    private let agent: Agent
    private let stopped = DispatchSemaphore(value: 0)
    private let workDirectory: String

    /// Starts it at once on `queue` with `slots` slots. A store on this machine records the runs itself;
    /// with a server, the runs record into this machine's agent spool of it and go up from there, as
    /// `cml-agent --store URL` does.
    public init(store: any Store, queue: String, slots: Int, name: String) throws(CMLError) {
        // Its own directory: an agent removes the run directories its store does not know as abandoned,
        // so one shared with an agent of another store (cml-agent, another --local) would lose runs.
        workDirectory = FileSystem.cacheDirectory + "/cml/local-agents/" + String(name.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "_" })
        let configuration = AgentConfiguration(name: name, queues: [queue], slots: slots, workDirectory: workDirectory,
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
    /// have ended). Its directory (its clones of the code) goes with it.
    public func stop() {
        agent.drain(signal: SIGTERM)
        agent.drain(signal: SIGTERM)
        stopped.wait()
        FileSystem.removeTree(workDirectory)
    }

    /// Runs `body` with an agent of `slots` slots on `queue` beside it when `slots` is given (a sweep's
    /// or a pipeline's `--local`), and stops the agent once `body` is done, whether it threw or not.
    public static func serving<T>(_ slots: Int?, store: any Store, queue: String, name: String,
                                  _ body: () throws(CMLError) -> T) throws(CMLError) -> T {
        let agent = try slots.map { (slots) throws(CMLError) in try LocalAgent(store: store, queue: queue, slots: slots, name: name) }
        defer { agent?.stop() }
        return try body()
    }
}

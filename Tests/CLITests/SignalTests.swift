import Foundation
import Glibc
import Testing

/// Signals reach the child's process group; a killed cml-run loses at most the last second of output.
struct SignalTests {
    /// A child that reports the signal it got, then exits with 128+N as a well-behaved program does.
    static func trapScript(_ name: String, _ number: Int32) -> String {
        "trap 'echo got \(name); kill $p; exit \(128 + number)' \(name); echo ready; sleep 30 & p=$!; wait $p"
    }

    @Test(arguments: [(SIGINT, "INT"), (SIGTERM, "TERM"), (SIGHUP, "HUP")])
    func forwardsTerminationSignals(signal: Int32, name: String) throws {
        let box = try Sandbox()
        let running = try box.start("cml-run", ["--", "sh", "-c", Self.trapScript(name, signal)])
        #expect(waitUntil { running.stdoutSoFar.contains("ready") })
        kill(running.pid, signal)
        let result = try running.wait()
        #expect(result.out == "ready\ngot \(name)\n")
        #expect(result.status == 128 + signal)
        let run = try #require(try box.runs().first)
        #expect(run["status"] as? String == "aborted")
        let id = try #require(run["id"] as? String)
        #expect(try box.run("cml-run", ["log", "--stream", "stdout", id]).out == "ready\ngot \(name)\n")
    }

    @Test func signalReachesGrandchildren() throws {
        let box = try Sandbox()
        // The shell runs python in the background and waits: SIGTERM must reach python itself.
        let script = "python3 -c 'import signal,sys,time; signal.signal(signal.SIGTERM, lambda *a: (print(\"child stopped\", flush=True), sys.exit(5))); print(\"ready\", flush=True); time.sleep(30)' & wait"
        let running = try box.start("cml-run", ["--", "sh", "-c", script])
        #expect(waitUntil { running.stdoutSoFar.contains("ready") })
        kill(running.pid, SIGTERM)
        let result = try running.wait()
        #expect(result.out.contains("child stopped"))
        #expect(try box.runs().first?["status"] as? String == "aborted")
    }

    @Test func killNineLosesAtMostTheLastSecond() throws {
        let box = try Sandbox()
        try box.write("ticker.py", """
            import time
            i = 0
            while True:
                print(f"tick {i} {time.time():.3f} loss: {1 / (i + 1):.4f}", flush=True)
                i += 1
                time.sleep(0.05)
            """)
        let running = try box.start("cml-run", ["--", "python3", "ticker.py"])
        #expect(waitUntil { running.stdoutSoFar.components(separatedBy: "\n").count > 40 })
        kill(running.pid, SIGKILL)
        let killedAt = Date().timeIntervalSince1970
        let finished = try running.wait()
        let run = try #require(try box.runs().first)
        let id = try #require(run["id"] as? String)
        // Its cml-run is gone, so the run is shown as lost, not running forever.
        #expect(run["status"] as? String == "lost")
        let stored = try box.run("cml-run", ["log", id]).out.split(separator: "\n")
        let printed = finished.out.split(separator: "\n")
        #expect(stored.count > 10)
        // What was stored is exactly the beginning of what was printed…
        #expect(Array(printed.prefix(stored.count)) == stored)
        // …and reaches to within a second of the kill.
        let lastTime = try #require(Double(stored.last!.split(separator: " ")[2]))
        #expect(killedAt - lastTime < 1.0, "last stored line was printed \(killedAt - lastTime) s before the kill")
        // Metric points are parsed and stored on the recorder's tick: they too reach within a second.
        let points = try box.run("cml-run", ["metrics", id, "--key", "loss"]).jsonLines
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let lastTimeText = try #require(points.last?["time"] as? String)
        let lastPoint = try #require(formatter.date(from: lastTimeText))
        #expect(killedAt - lastPoint.timeIntervalSince1970 < 1.0)
        #expect(points.count <= stored.count && points.count > 10)
    }
}

/// Job control and terminals, as a shell user meets them.
struct JobControlTests {
    /// The state letter of a process in /proc (R, S, T for stopped, …).
    private func state(of pid: Int32) -> Character? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        return text[text.index(close, offsetBy: 2)]
    }

    @Test func stopAndContinueReachTheChild() throws {
        let box = try Sandbox()
        // The child waits for a file the test writes once it has seen it stopped and continued: a fixed
        // sleep could end before a stop reaches it on a busy machine.
        let go = box.root + "/go"
        let running = try box.start("cml-run", ["--", "sh", "-c", "echo $$; while [ ! -e '\(go)' ]; do sleep 0.05; done; echo finished"])
        #expect(waitUntil { !running.stdoutSoFar.isEmpty })
        let childPID = try #require(Int32(running.stdoutSoFar.split(separator: "\n")[0]))
        kill(running.pid, SIGTSTP)
        #expect(waitUntil { self.state(of: childPID) == "T" && self.state(of: running.pid) == "T" })
        kill(running.pid, SIGCONT)
        #expect(waitUntil { self.state(of: childPID) != "T" })
        FileManager.default.createFile(atPath: go, contents: nil)
        let result = try running.wait()
        #expect(result.status == 0)
        #expect(result.out.hasSuffix("finished\n"))
        #expect(try box.runs().first?["status"] as? String == "completed")
    }

    @Test func childGetsATerminalWhenStdoutIsOne() throws {
        let box = try Sandbox()
        // script(1) gives cml-run a terminal as its stdout, as an interactive shell would.
        let command = "\(binDirectory)/cml-run -- sh -c 'test -t 1 && test -t 2 && echo child-on-tty'"
        let result = try shell("CML_STORE=\(box.store) script -qec \"\(command)\" /dev/null", cwd: box.work)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.out.contains("child-on-tty"))
        let id = try #require(try box.runs().first?["id"] as? String)
        #expect(try box.run("cml-run", ["log", id]).out == "child-on-tty\n")
    }

    /// Runs `command` in a terminal (script(1)) whose keyboard types `keys` after a second. Whatever is
    /// left after 10 s (a child stopped for reading the terminal) is killed, so a failure cannot hang.
    private func inTerminal(_ command: String, typing keys: String, box: Sandbox) throws -> CommandResult {
        let typed = keys.replacingOccurrences(of: "\u{3}", with: "\\003")
        return try shell("""
            (sleep 1; printf '\(typed)'; sleep 2) | CML_STORE=\(box.store) timeout -k 1 10 script -qec "\(command)" /dev/null
            pkill -KILL -f 'marker=\(box.root)'; true
            """, cwd: box.work)
    }

    @Test func childReadsTheTerminalWhenOutputIsPiped() throws {
        let box = try Sandbox()
        let command = "\(binDirectory)/cml-run -- python3 -c 'print(\\\"got\\\", input())' marker=\(box.root) | cat"
        let result = try inTerminal(command, typing: "typed-line\\n", box: box)
        #expect(result.out.contains("got typed-line"), "\(result.out)")
        #expect(try box.runs().first?["status"] as? String == "completed")
    }

    @Test func ctrlCReachesAChildInTheSameGroupOnce() throws {
        let box = try Sandbox()
        try box.write("count.py", """
            import signal, time
            count = 0
            def interrupted(*_):
                global count
                count += 1
            signal.signal(signal.SIGINT, interrupted)
            print("ready", flush=True)
            start = time.time()
            while time.time() - start < 2.5:
                time.sleep(0.05)
            print("interrupts", count, flush=True)
            """)
        let result = try inTerminal("\(binDirectory)/cml-run -- python3 count.py marker=\(box.root) | cat", typing: "\u{3}", box: box)
        #expect(result.out.contains("interrupts 1"), "\(result.out)")
        let run = try #require(try box.runs().first)
        #expect(run["status"] as? String == "aborted")
    }

    @Test func abortReachesWhatALostRunLeftRunning() throws {
        // Issue 13: after kill -9 of cml-run a quiet command ran on, and abort refused the lost run.
        let box = try Sandbox()
        // Python starts cml-run and kills it, as a user's shell would; prints the command's pid.
        try box.write("start.py", """
            import os, signal, subprocess, sys, time
            cml = subprocess.Popen([sys.argv[1], "--", "sh", "-c", "echo started; exec sleep 31.7"],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
            assert cml.stdout.readline() == b"started\\n"
            os.kill(cml.pid, signal.SIGKILL)
            cml.wait()
            """)
        let started = try box.run("/usr/bin/env", ["python3", "start.py", binDirectory + "/cml-run"])
        #expect(started.status == 0, "\(started.stderr)")
        let id = try #require(try box.runs().first?["id"] as? String)
        #expect(try box.show(id)["status"] as? String == "lost")
        let leftover = "ps -eo cmd | grep -x 'sleep 31.7'"
        #expect(try shell(leftover, cwd: box.work).status == 0, "the command ran on")
        let aborted = try box.run("cml-run", ["abort", id])
        #expect(aborted.status == 0, "\(aborted.stderr)")
        #expect(aborted.jsonLines.first?["abort"] as? String == "stopped" && aborted.jsonLines.first?["processes"] as? Int == 1)
        #expect(waitUntil { (try? shell(leftover, cwd: box.work).status) == 1 })
        let record = try box.show(id)
        #expect(record["status"] as? String == "aborted")
        #expect((record["error"] as? String)?.contains("stopped 1 process it left") == true)
        // Nothing is left to stop now.
        let again = try box.run("cml-run", ["abort", id])
        #expect(again.status == 1 && again.stderr.contains("has already ended (aborted)"))
    }
}

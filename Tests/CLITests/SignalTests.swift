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

    @Test func aSignalItsLauncherIgnoresDoesNotAbortTheRun() throws {
        // Issue 13: `cml-run … &` in a script ignores SIGINT, as the shell leaves it to background jobs;
        // the terminal's Ctrl-C still reached cml-run, which had blocked it (a blocked signal is queued,
        // an ignored one discarded), and a command that went on to exit 0 was recorded `aborted`.
        // The script does not `wait`: the test runner starts it with SIGCHLD blocked, where sh's `wait` hangs.
        let box = try Sandbox()
        let launcher = try box.start("/bin/sh", ["-c", "\(binDirectory)/cml-run -- sh -c 'echo ready; sleep 1; echo done' & echo $!"])
        #expect(waitUntil { launcher.stdoutSoFar.contains("ready") })
        let pid = try #require(Int32(launcher.stdoutSoFar.split(separator: "\n")[0]))
        kill(pid, SIGINT)
        #expect(try waitUntil { try box.runs().first?["status"] as? String != "running" })
        #expect(launcher.stdoutSoFar.hasSuffix("done\n"), "\(launcher.stdoutSoFar)")
        let run = try #require(try box.runs().first)
        #expect(run["status"] as? String == "completed")
        #expect(run["exit_code"] as? Int == 0)
        _ = try launcher.wait()
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

    @Test func ctrlZInATerminalStopsACommandThatHasATerminalOfItsOwn() throws {
        // Issue 13: in tmux, Ctrl-Z stopped cml-run but not the command, which leads a session of its own
        // on cml-run's pseudo-terminal, where the kernel discards SIGTSTP. An interactive bash on a
        // pseudo-terminal runs cml-run as its foreground job, as a user's shell would.
        let box = try Sandbox()
        try box.write("ticker.py", """
            import os, sys, time
            print(f"pids {os.getpid()} {os.getppid()}", flush=True)
            i = 0
            while not os.path.exists(sys.argv[1]):
                print(f"step={i}", flush=True)
                i += 1
                time.sleep(0.05)
            print("finished", flush=True)
            """)
        try box.write("shell.py", """
            import json, os, pty, re, select, signal, sys, time
            cml_run, go = sys.argv[1], sys.argv[2]
            shell, terminal = pty.fork()
            if shell == 0:
                os.environ["PS1"] = "prompt$ "
                os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])
            seen = b""
            def read(seconds):
                global seen
                deadline = time.time() + seconds
                while time.time() < deadline:
                    if select.select([terminal], [], [], 0.02)[0]:
                        try:
                            seen += os.read(terminal, 65536)
                        except OSError:
                            return
            def until(condition, timeout=15):
                deadline = time.time() + timeout
                while not condition() and time.time() < deadline:
                    read(0.05)
                return bool(condition())
            def state(pid):
                try:
                    text = open(f"/proc/{pid}/stat").read()
                    return text[text.rindex(")") + 2]
                except OSError:
                    return None
            def last_step():
                return max([int(n) for n in re.findall(rb"step=(\\d+)", seen)] or [-1])
            pids = lambda: re.search(rb"pids (\\d+) (\\d+)", seen)
            until(lambda: b"prompt$ " in seen)
            os.write(terminal, f"{cml_run} -- python3 ticker.py {go}\\n".encode())
            until(lambda: pids() and last_step() >= 3)
            command, cml = (int(n) for n in pids().groups())
            result = {}
            os.write(terminal, b"\\x1a")  # Ctrl-Z
            result["stopped"] = until(lambda: state(command) == "T" and state(cml) == "T", timeout=10)
            until(lambda: b"Stopped" in seen, timeout=5)
            before = last_step()
            read(0.5)
            result["quiet"] = last_step() == before
            os.write(terminal, b"fg\\n")
            result["resumed"] = until(lambda: last_step() > before + 3)
            open(go, "w").close()
            result["finished"] = until(lambda: b"finished" in seen and seen.rstrip().endswith(b"prompt$"))
            for pid in (command, cml, shell):
                if state(pid) is not None:
                    os.kill(pid, signal.SIGKILL)
            os.waitpid(shell, 0)
            print(json.dumps(result))
            """)
        let result = try box.run("/usr/bin/env", ["python3", "shell.py", binDirectory + "/cml-run", box.root + "/go"])
        #expect(result.status == 0, "\(result.stderr)")
        let summary = try #require(result.jsonLines.first, "\(result.out)")
        #expect(summary["stopped"] as? Bool == true, "the command ran on after Ctrl-Z")
        #expect(summary["quiet"] as? Bool == true)
        #expect(summary["resumed"] as? Bool == true)
        #expect(summary["finished"] as? Bool == true)
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

import Foundation
import Glibc
import Testing

/// End-to-end: the built `cml-run` executable, real processes, a real store in a temporary directory.
struct RunCaptureTests {
    @Test func recordsARunCompletely() throws {
        let box = try Sandbox()
        let result = try box.run("cml-run", [
            "--name", "first", "--project", "demo", "--tag", "a", "--tag", "b", "--param", "seed=7",
            "--", "sh", "-c", "echo out; echo 'loss: 0.5'; echo err >&2; echo 'step=2 loss=0.25 acc=0.9'; exit 3",
            "--lr", "0.01", "--epochs=2", "batch=64", "-n", "3",
        ], env: ["API_TOKEN": "hunter2", "PLAIN": "visible"])
        #expect(result.status == 3)
        #expect(result.out == "out\nloss: 0.5\nstep=2 loss=0.25 acc=0.9\n")
        #expect(result.stderr == "err\n")

        let runs = try box.runs()
        #expect(runs.count == 1)
        let id = try #require(runs[0]["id"] as? String)
        let run = try box.show(String(id.prefix(12)))
        #expect(run["name"] as? String == "first")
        #expect(run["project"] as? String == "demo")
        #expect(run["status"] as? String == "failed")
        #expect(run["exit_code"] as? Int == 3)
        #expect(run["tags"] as? [String] == ["a", "b"])
        #expect((run["command"] as? [String])?.first == "sh")
        #expect(run["cwd"] as? String == box.work)
        #expect(run["user"] as? String == String(cString: getpwuid(getuid()).pointee.pw_name))
        #expect((run["started_at"] as? String)?.hasSuffix("Z") == true)
        #expect(run["cpu_user"] is Double && run["max_rss"] is Int)
        let params = try #require(run["params"] as? [String: Any])
        #expect(params["lr"] as? Double == 0.01)
        #expect(params["epochs"] as? Int == 2)
        #expect(params["batch"] as? Int == 64)
        #expect(params["n"] as? Int == 3)
        #expect(params["seed"] as? Int == 7)
        let env = try #require(run["env"] as? [String: String])
        #expect(env["API_TOKEN"] == "<redacted>")
        #expect(env["PLAIN"] == "visible")
        #expect(env["PYTHONUNBUFFERED"] == "1")
        let metrics = try #require(run["metrics"] as? [String: [String: Any]])
        #expect(metrics["loss"]?["last"] as? Double == 0.25)
        #expect(metrics["loss"]?["count"] as? Int == 2)
        #expect(metrics["acc"]?["last_step"] as? Int == 2)

        let points = try box.run("cml-run", ["metrics", id, "--key", "loss"]).jsonLines
        #expect(points.map { $0["step"] as? Int } == [0, 2])
        #expect(points.map { $0["value"] as? Double } == [0.5, 0.25])
        #expect(points.allSatisfy { ($0["time"] as? String)?.hasSuffix("Z") == true })

        let log = try box.run("cml-run", ["log", id])
        #expect(Set(log.out.split(separator: "\n")) == ["out", "loss: 0.5", "err", "step=2 loss=0.25 acc=0.9"])
        #expect(try box.run("cml-run", ["log", "--stream", "stderr", id]).out == "err\n")
    }

    @Test func stdoutAndStderrAreStoredInTheOrderTheCommandWroteThem() throws {
        // Issue 13: the two pipes were read on two threads and stored out of order, and a progress bar's
        // state held back was stored after the line printed next. The command waits after each write
        // until cml-run has read it (its pipe is empty again): the order written is then the order read.
        let box = try Sandbox()
        try box.write("order.py", """
            import fcntl, os, struct, termios, time
            def say(fd, text):
                os.write(fd, text.encode())
                while struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\\0\\0\\0\\0"))[0]:
                    time.sleep(0.001)
            for i in range(20):
                say(2, f"E{i}\\n")
                say(1, f"O{i}\\n")
            say(2, "\\rbar 50%")
            say(1, "between\\n")
            say(2, "\\rbar 100%\\n")
            say(1, "after\\n")
            """)
        let result = try box.run("cml-run", ["--no-tty", "--", "python3", "order.py"])
        #expect(result.status == 0, "\(result.stderr)")
        let id = try #require(try box.runs().first?["id"] as? String)
        let expected = (0..<20).map { "E\($0)\nO\($0)\n" }.joined() + "bar 50%between\nbar 100%\nafter\n"
        #expect(try box.run("cml-run", ["log", id]).out == expected)
    }

    @Test func anEndTheStoreCannotTakeIsRecordedWhenTheStoreIsNextOpened() throws {
        // Issue 13: a command that exited 0 while the store could not be written stayed `lost`.
        let box = try Sandbox()
        try box.write("hold.py", """
            import os, sqlite3, sys, time
            db = sqlite3.connect(sys.argv[1], isolation_level=None)
            db.execute("BEGIN EXCLUSIVE")
            print("locked", flush=True)
            while not os.path.exists(sys.argv[2]):
                time.sleep(0.02)
            db.execute("COMMIT")
            """)
        let go = box.root + "/go", release = box.root + "/release"
        let running = try box.start("cml-run", ["--monitor-interval", "0", "--", "sh", "-c", "echo ready; while [ ! -e '\(go)' ]; do sleep 0.05; done"],
                                    env: ["CML_BUSY_TIMEOUT": "0.5"])
        #expect(waitUntil { running.stdoutSoFar.contains("ready") })
        let holder = try box.start("/usr/bin/env", ["python3", "hold.py", box.store + "/cml.db", release])
        #expect(waitUntil { holder.stdoutSoFar.contains("locked") })
        FileManager.default.createFile(atPath: go, contents: nil)
        let result = try running.wait()
        #expect(result.status == 0)
        #expect(result.stderr.contains("completed (exit status 0), but its end was not recorded: the store \(box.store)/cml.db is locked"), "\(result.stderr)")
        #expect(result.stderr.contains("it is kept, and recorded when the store is next opened"))
        FileManager.default.createFile(atPath: release, contents: nil)
        #expect(try holder.wait().status == 0)
        let run = try #require(try box.runs().first)
        #expect(run["status"] as? String == "completed")
        #expect(run["exit_code"] as? Int == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: box.store).filter { $0.hasPrefix("unrecorded-end.") }.isEmpty)
    }

    /// Whether this machine lets a test mount a small tmpfs in a mount namespace of its own (root, or a
    /// container with CAP_SYS_ADMIN): a real full disk that nothing outside the test sees.
    static let canMountAFullDisk: Bool = {
        let directory = NSTemporaryDirectory() + "/cml-mount-probe-\(getpid())"
        defer { rmdir(directory) }
        guard mkdir(directory, 0o700) == 0 else { return false }
        return (try? shell("unshare --mount --propagation private mount -t tmpfs -o size=1m tmpfs '\(directory)'", cwd: "/"))?.status == 0
    }()

    @Test(.enabled(if: canMountAFullDisk, "mounting a tmpfs in a mount namespace (unshare) is not allowed here"))
    func aRunThatEndsOnAFullDiskIsRecordedOnceThereIsSpaceAgain() throws {
        // Issue 13: a command that exited 0 while the store's disk was full stayed `lost`, also after
        // space was freed. The command itself fills the disk, as a training run's checkpoints may.
        let box = try Sandbox()
        let disk = box.root + "/disk"
        try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: true)
        try box.write("full.sh", """
            mount -t tmpfs -o size=2m tmpfs \(disk) || exit 3
            export CML_STORE=\(disk)/store
            \(binDirectory)/cml-run --monitor-interval 0 -- sh -c 'echo start; dd if=/dev/zero of=\(disk)/fill bs=64k 2>/dev/null; exit 0'
            echo "status $?"
            \(binDirectory)/cml-run ls --format jsonl
            rm \(disk)/fill
            \(binDirectory)/cml-run ls --format jsonl
            ls \(disk)/store
            """)
        let result = try shell("unshare --mount --propagation private sh full.sh", cwd: box.work)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("completed (exit status 0), but its end was not recorded: the disk holding \(disk)/store/cml.db is full"), "\(result.stderr)")
        let lines = result.out.split(separator: "\n").map(String.init)
        #expect(lines.contains("status 0"), "\(result.out)")
        let records = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(records.map { $0["status"] as? String } == ["lost", "completed"], "\(result.out)")
        #expect(records.last?["exit_code"] as? Int == 0)
        #expect(!lines.contains { $0.hasPrefix("unrecorded-end.") })
    }

    @Test func binaryOutputIsStoredByteForByte() throws {
        // Issue 13: a \r in binary output dropped the bytes before it; about half were lost.
        let box = try Sandbox()
        try box.write("make.py", "import random, sys\nrandom.seed(3)\nsys.stdout.buffer.write(bytes(random.getrandbits(8) for _ in range(1_000_000)))\n")
        #expect(try box.run("/usr/bin/env", ["python3", "make.py"]).status == 0)
        let made = try box.run("/usr/bin/env", ["python3", "make.py"]).stdout
        let result = try box.run("cml-run", ["--no-tty", "--", "python3", "make.py"])
        #expect(result.status == 0 && result.stdout == made)
        let id = try #require(try box.runs().first?["id"] as? String)
        #expect(try box.show(id)["log_bytes"] as? Int == made.count)
        #expect(try box.run("cml-run", ["log", "--raw", id]).stdout == made)
    }

    @Test func outputIsStoredExactlyAndProgressIsCollapsed() throws {
        let box = try Sandbox()
        // Bytes that are not UTF-8, a NUL, CRLF line ends, and a progress bar redrawn with \r.
        let script = #"printf '\377\376\000bin\r\nline\n'; for i in 1 2 3 4 5; do printf "\r%d0%%" $i; done; printf '\rdone\n'"#
        let result = try box.run("cml-run", ["--", "sh", "-c", script])
        #expect(result.status == 0)
        let expectedPassthrough: [UInt8] = [0xFF, 0xFE, 0x00] + Array("bin\r\nline\n\r10%\r20%\r30%\r40%\r50%\rdone\n".utf8)
        #expect([UInt8](result.stdout) == expectedPassthrough)
        let id = try #require(try box.runs().first?["id"] as? String)
        let raw = try box.run("cml-run", ["log", "--raw", id])
        #expect([UInt8](raw.stdout) == [0xFF, 0xFE, 0x00] + Array("bin\r\nline\ndone\n".utf8))
        let rendered = try box.run("cml-run", ["log", id])
        #expect([UInt8](rendered.stdout) == [0xFF, 0xFE, 0x00] + Array("bin\r\nline\ndone\n".utf8))
    }

    @Test func largeOutputPassesThroughWhole() throws {
        let box = try Sandbox()
        let result = try box.run("cml-run", ["--", "sh", "-c", "seq 1 200000"])
        #expect(result.status == 0)
        let expected = (1...200_000).map(String.init).joined(separator: "\n") + "\n"
        #expect(result.out == expected)
        let id = try #require(try box.runs().first?["id"] as? String)
        #expect(try box.run("cml-run", ["log", id]).out == expected)
    }

    @Test func pythonModuleLogsThroughTheChannel() throws {
        let box = try Sandbox()
        try box.write("train.py", """
            import cml
            print("recording", cml.enabled())
            for step in range(5):
                cml.log(step=step, loss=1 / (step + 1))
            cml.param("lr", 0.01)
            cml.param(optimizer="adam")
            cml.tag("best")
            """)
        let result = try box.run("cml-run", ["--monitor-interval", "0", "--", "python3", "train.py"])
        #expect(result.status == 0 && result.stderr.isEmpty, "\(result.stderr)")
        #expect(result.out == "recording True\n")
        let id = try #require(try box.runs().first?["id"] as? String)
        let run = try box.show(id)
        let params = try #require(run["params"] as? [String: Any])
        #expect(params["lr"] as? Double == 0.01 && params["optimizer"] as? String == "adam")
        #expect((run["param_sources"] as? [String: String])?["lr"] == "log")
        #expect(run["tags"] as? [String] == ["best"])
        let points = try box.run("cml-run", ["metrics", id, "--key", "loss"]).jsonLines
        #expect(points.map { $0["step"] as? Int } == [0, 1, 2, 3, 4])
        // Outside cml-run the module does nothing, and says so.
        let alone = try shell("PYTHONPATH=\(binDirectory)/../../../python python3 -c 'import cml; cml.log(loss=1); cml.param(a=1); print(cml.enabled())'", cwd: box.work)
        #expect(alone.status == 0 && alone.out == "False\n", "\(alone.stderr)")
    }

    @Test func anyProgramCanWriteTheChannel() throws {
        let box = try Sandbox()
        let script = #"echo '{"step": 7, "acc": 0.5}' >&$CML_LOG_FD; echo 'not json' >&$CML_LOG_FD; echo done"#
        let result = try box.run("cml-run", ["--monitor-interval", "0", "--", "sh", "-c", script])
        #expect(result.status == 0 && result.out == "done\n")
        #expect(result.stderr.contains("line 2 of $CML_LOG_FD was not recorded"))
        let metrics = try #require(try box.runs().first?["metrics"] as? [String: [String: Any]])
        #expect(metrics["acc"]?["last_step"] as? Int == 7)
    }

    @Test func userMetricPatterns() throws {
        let box = try Sandbox()
        let pattern = #"after (?<step>\d+) steps (?<key>\w+) reached (?<value>[0-9.]+)"#
        let result = try box.run("cml-run", ["--monitor-interval", "0", "--metric-pattern", pattern, "--",
                                             "sh", "-c", "echo 'after 5 steps acc reached 0.75'; echo 'loss: 0.5'"])
        #expect(result.status == 0)
        let metrics = try #require(try box.runs().first?["metrics"] as? [String: [String: Any]])
        #expect(metrics["acc"]?["last_step"] as? Int == 5 && metrics["acc"]?["last"] as? Double == 0.75)
        #expect(metrics["loss"]?["last"] as? Double == 0.5)
        let parsed = try box.run("cml-run", ["parse", "--metric-pattern", pattern], stdin: Data("after 2 steps f1 reached 0.5\n".utf8))
        #expect(parsed.jsonLines.first?["key"] as? String == "f1")
        let bad = try box.run("cml-run", ["--metric-pattern", "(\\w+)", "--", "true"])
        #expect(bad.status == 2 && bad.stderr.contains("has no (?<key>"))
        #expect(try box.runs().count == 1)
    }

    @Test func resourcesAreSampledAsSysMetrics() throws {
        let box = try Sandbox()
        let busy = "import time\nx = bytearray(60_000_000)\nt = time.time()\nwhile time.time() - t < 1.2: pass\n"
        // No nvidia-smi on this PATH: no GPU points, and no complaint.
        let result = try box.run("cml-run", ["--monitor-interval", "0.2", "--", "python3", "-c", busy], env: ["PATH": "/usr/bin:/bin"])
        #expect(result.status == 0 && result.stderr.isEmpty, "\(result.stderr)")
        let metrics = try #require(try box.runs().first?["metrics"] as? [String: [String: Any]])
        #expect((metrics["sys/cpu_percent"]?["max"] as? Double ?? 0) > 50)
        #expect((metrics["sys/rss_bytes"]?["max"] as? Double ?? 0) > 60_000_000)
        #expect(!metrics.keys.contains { $0.hasPrefix("sys/gpu") })
    }

    @Test func gpusAreSampledThroughNvidiaSmi() throws {
        let box = try Sandbox()
        // A stand-in that prints what `nvidia-smi --query-gpu=… --format=csv,noheader,nounits` prints.
        try box.write(box.root + "/bin/nvidia-smi", "#!/bin/sh\necho '0, 57, 1234'\necho '1, [N/A], 10'\n", mode: 0o755)
        let result = try box.run("cml-run", ["--monitor-interval", "0.2", "--", "sleep", "0.7"],
                                 env: ["PATH": box.root + "/bin:/usr/bin:/bin"])
        #expect(result.status == 0)
        let metrics = try #require(try box.runs().first?["metrics"] as? [String: [String: Any]])
        #expect(metrics["sys/gpu0/util_percent"]?["last"] as? Double == 57)
        #expect(metrics["sys/gpu0/memory_bytes"]?["last"] as? Double == Double(1234 * 1_048_576))
        #expect(metrics["sys/gpu1/util_percent"] == nil)
    }

    @Test func monitoringOff() throws {
        let box = try Sandbox()
        #expect(try box.run("cml-run", ["--monitor-interval", "0", "--", "sleep", "0.3"]).status == 0)
        let metrics = try #require(try box.runs().first?["metrics"] as? [String: Any])
        #expect(metrics.isEmpty)
        #expect(try box.run("cml-run", ["--monitor-interval", "-1", "--", "true"]).status == 2)
    }

    @Test func aChattyBackgroundProcessDoesNotKeepTheRunOpen() throws {
        let box = try Sandbox()
        // The command exits at once; what it left in the background goes on printing into the pipe.
        let running = try box.start("cml-run", ["--", "sh", "-c", "(while true; do echo bg; sleep 0.05; done) & echo main"])
        let finishedInTime = waitUntil(timeout: 8) { !running.process.isRunning }
        if !finishedInTime { kill(running.pid, SIGKILL) }
        #expect(finishedInTime)
        let result = try running.wait()
        #expect(result.status == 0)
        #expect(result.out.hasPrefix("main\n") || result.out.hasPrefix("bg\nmain\n"))
        #expect(try box.runs().first?["status"] as? String == "completed")
    }

    @Test func aBackgroundWriterDoesNotKeepTheChannelOpen() throws {
        let box = try Sandbox()
        let script = #"(while true; do echo '{"x": 1}' >&$CML_LOG_FD; sleep 0.05; done) >/dev/null 2>&1 & echo started"#
        let running = try box.start("cml-run", ["--monitor-interval", "0", "--", "sh", "-c", script])
        let finishedInTime = waitUntil(timeout: 8) { !running.process.isRunning }
        if !finishedInTime { kill(running.pid, SIGKILL) }
        #expect(finishedInTime)
        #expect(try running.wait().status == 0)
        let metrics = try #require(try box.runs().first?["metrics"] as? [String: [String: Any]])
        #expect((metrics["x"]?["count"] as? Int ?? 0) > 10)
    }

    @Test func childUnderATerminalWhenAsked() throws {
        let box = try Sandbox()
        let result = try box.run("cml-run", ["--tty", "--", "sh", "-c", "test -t 1 && test -t 2 && echo tty || echo notty"])
        #expect(result.out == "tty\n")
        let piped = try box.run("cml-run", ["--", "sh", "-c", "test -t 1 && echo tty || echo notty"])
        #expect(piped.out == "notty\n")
        let id = try #require(try box.runs().last?["id"] as? String)
        #expect(try box.run("cml-run", ["log", id]).out == "tty\n")
    }

    @Test func exitStatusIsTheChildsAndSignalDeathIs128PlusN() throws {
        let box = try Sandbox()
        #expect(try box.run("cml-run", ["--", "true"]).status == 0)
        #expect(try box.run("cml-run", ["--", "sh", "-c", "exit 42"]).status == 42)
        #expect(try box.run("cml-run", ["--", "sh", "-c", "kill -KILL $$"]).status == 137)
        let runs = try box.runs()
        #expect(runs.map { $0["status"] as? String } == ["failed", "failed", "completed"])
        #expect(runs[0]["signal"] as? Int == 9)
    }

    @Test func commandThatDoesNotExist() throws {
        let box = try Sandbox()
        let result = try box.run("cml-run", ["--", "no-such-command-xyz", "--lr", "1"])
        #expect(result.status == 127)
        #expect(result.stderr == "cml-run: error: command not found: no-such-command-xyz\n")
        let run = try #require(try box.runs().first)
        #expect(run["status"] as? String == "failed")
        #expect(run["exit_code"] as? Int == 127)
        let notExecutable = try box.run("cml-run", ["--", "/etc/hostname"])
        #expect(notExecutable.status == 126)
    }

    @Test func usageErrors() throws {
        let box = try Sandbox()
        for arguments in [["--name", "x"], ["--"], ["--name", "x", "--"]] {
            let missing = try box.run("cml-run", arguments)
            #expect(missing.status == 2)
            #expect(missing.stderr.hasPrefix("cml-run: error: no command given after --"), "\(arguments)")
        }
        let unknown = try box.run("cml-run", ["--bogus", "--", "true"])
        #expect(unknown.status == 2)
        #expect(unknown.stderr.contains("--bogus"))
        let badParam = try box.run("cml-run", ["--param", "nokey", "--", "true"])
        #expect(badParam.status == 2)
        #expect(badParam.stderr.contains("--param nokey is not key=value"))
        // None of these touched the store.
        #expect(!FileManager.default.fileExists(atPath: box.store + "/cml.db"))
    }

    @Test func storeThatCannotBeUsed() throws {
        let box = try Sandbox()
        let underProc = try box.run("cml-run", ["--store", "/proc/cml-no/store", "--", "true"])
        #expect(underProc.status == 1)
        #expect(underProc.stderr.hasPrefix("cml-run: error: cannot use the store at /proc/cml-no/store"))
        try box.write(box.root + "/afile", "x")
        let onFile = try box.run("cml-run", ["--store", box.root + "/afile", "--", "true"])
        #expect(onFile.status == 1)
        #expect(onFile.stderr.contains("is not a directory"))
        #expect(try String(contentsOfFile: box.root + "/afile", encoding: .utf8) == "x")
    }

    @Test func corruptDatabase() throws {
        let box = try Sandbox()
        try FileManager.default.createDirectory(atPath: box.store, withIntermediateDirectories: true)
        let garbage = Data(repeating: 0x5A, count: 8192)
        try garbage.write(to: URL(fileURLWithPath: box.store + "/cml.db"))
        let result = try box.run("cml-run", ["--", "echo", "hi"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("is corrupt or not a cml store"))
        #expect(result.stderr.split(separator: "\n").count == 1)
        #expect(result.out.isEmpty)
        #expect(try Data(contentsOf: URL(fileURLWithPath: box.store + "/cml.db")) == garbage)
    }

    @Test func storeLockedByAnotherWriter() throws {
        let box = try Sandbox()
        #expect(try box.run("cml-run", ["--", "true"]).status == 0)
        // Another process holds the write lock for 3 seconds.
        let holder = try box.lockStore(seconds: 3)
        #expect(waitUntil { holder.stdoutSoFar.contains("locked") })
        let blocked = try box.run("cml-run", ["--", "echo", "never"], env: ["CML_BUSY_TIMEOUT": "0.5"])
        #expect(blocked.status == 1)
        #expect(blocked.stderr.contains("is locked by another process"))
        #expect(blocked.out.isEmpty)
        _ = try holder.wait()
        // A writer that waits long enough gets through once the lock is gone.
        #expect(try box.run("cml-run", ["--", "true"], env: ["CML_BUSY_TIMEOUT": "5"]).status == 0)
        #expect(try box.runs().count == 2)
    }

    @Test func storeLockedWhileTheCommandRunsKeepsItsExitStatus() throws {
        let box = try Sandbox()
        // The command ends only once the store is locked: on a busy machine the lock could come late.
        let go = box.root + "/go"
        let running = try box.start("cml-run", ["--", "sh", "-c", "echo started; while [ ! -e '\(go)' ]; do sleep 0.05; done; echo loss=1; exit 7"],
                                    env: ["CML_BUSY_TIMEOUT": "0.3"])
        #expect(waitUntil { running.stdoutSoFar.contains("started") })
        let holder = try box.lockStore(seconds: 5)
        #expect(waitUntil { holder.stdoutSoFar.contains("locked") })
        FileManager.default.createFile(atPath: go, contents: nil)
        let result = try running.wait()
        #expect(result.status == 7)
        #expect(result.out == "started\nloss=1\n")
        #expect(result.stderr.contains("was not recorded"), "\(result.stderr)")
        _ = try holder.wait()
    }

    @Test func tenProcessesOpenABrandNewStoreAtOnce() throws {
        let box = try Sandbox()
        // Ten writers and ten readers at the same instant on a store that does not exist yet.
        let started = try (0..<10).flatMap { i in
            [try box.start("cml-run", ["--", "sh", "-c", "echo run \(i)"]), try box.start("cml-run", ["ls"])]
        }
        let results = try started.map { try $0.wait() }
        #expect(results.allSatisfy { $0.status == 0 }, "\(results.map(\.stderr))")
        #expect(try box.runs().count == 10)
        let version = try shell("python3 -c \"import sqlite3; print(sqlite3.connect('\(box.store)/cml.db').execute('PRAGMA user_version').fetchone()[0])\"", cwd: box.work)
        #expect(version.out == "11\n")
    }

    @Test func readingBack() throws {
        let box = try Sandbox()
        for i in 0..<3 { try box.run("cml-run", ["--project", i == 0 ? "p0" : "p1", "--tag", "t\(i)", "--", "echo", "\(i)"]) }
        #expect(try box.run("cml-run", ["ls", "--project", "p1"]).jsonLines.count == 2)
        #expect(try box.run("cml-run", ["ls", "--tag", "t0"]).jsonLines.count == 1)
        #expect(try box.run("cml-run", ["ls", "--limit", "1"]).jsonLines.count == 1)
        #expect(try box.run("cml-run", ["--store", box.store, "ls", "--limit", "2"], env: ["CML_STORE": "/nonexistent/x"]).jsonLines.count == 2)
        #expect(try box.run("cml-run", ["ls", "--status", "completed"]).jsonLines.count == 3)
        let csv = try box.run("cml-run", ["ls", "--format", "csv"]).out.split(separator: "\n")
        #expect(csv.count == 4 && csv[0].hasPrefix("id,name,status,"))
        let json = try box.run("cml-run", ["ls", "--format", "json"])
        #expect((try JSONSerialization.jsonObject(with: json.stdout) as? [Any])?.count == 3)
        #expect(try box.run("cml-run", ["ls", "--format", "xml"]).status == 2)
        #expect(try box.run("cml-run", ["ls", "--status", "nope"]).status == 2)
        // Runs from stdin: the output of ls is the input of show.
        let listed = try box.run("cml-run", ["ls"]).stdout
        let shown = try box.run("cml-run", ["show"], stdin: listed)
        #expect(shown.jsonLines.count == 3)
        let bad = try box.run("cml-run", ["show"], stdin: Data("{\"id\": \"\(String(repeating: "f", count: 32))\"}\nnot an id\n".utf8))
        #expect(bad.status == 1)
        let garbage = try box.run("cml-run", ["show"], stdin: Data("\nnot an id\n".utf8))
        #expect(garbage.stderr.contains("stdin line 2"))
        let unknown = try box.run("cml-run", ["show", "abcdef"])
        #expect(unknown.status == 1 && unknown.stderr.contains("no run with id abcdef"))
        let noMetric = try box.run("cml-run", ["metrics", "--key", "nope", try #require(try box.runs().first?["id"] as? String)])
        #expect(noMetric.status == 1 && noMetric.stderr.contains("has no metric 'nope'"))
    }

    @Test func followPrintsUntilTheRunEnds() throws {
        let box = try Sandbox()
        let running = try box.start("cml-run", ["--", "sh", "-c", "for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done"])
        var id = ""
        #expect(waitUntil { id = (try? box.runs().first?["id"] as? String) ?? ""; return !id.isEmpty })
        let follow = try box.run("cml-run", ["log", "--follow", id])
        #expect(follow.out == (1...5).map { "line \($0)\n" }.joined())
        let finished = try running.wait()
        #expect(finished.status == 0, "\(finished.stderr)")
    }
}

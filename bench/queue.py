#!/usr/bin/env python3
"""The queue and its agents, each figure against a baseline measured in the same run:

  1. latency from `cml-queue add` to the command starting on an idle agent (median of 20), against
     `cml-run -- CMD` starting the same command directly; once for a command outside a repository and
     once for one in a git repository (the agent clones it from its cache, checks out the commit and
     applies the patch of an uncommitted change);
  2. 1,000 trivial runs queued at once and drained by 2 agents: runs per second, against two
     `cml-run -- CMD` loops of 500 running the same command directly; every run must have run exactly
     once (each appends its run id to a file) and completed at its first attempt.

The command writes the time it started (`date +%s%N`), so the latency is measured to the child's start.
Usage: python3 bench/queue.py [--bin .build/release] [--runs 1000]
"""
import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time

parser = argparse.ArgumentParser()
parser.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", ".build", "release"))
parser.add_argument("--runs", type=int, default=1000)
parser.add_argument("--samples", type=int, default=20)
args = parser.parse_args()
bin_dir = os.path.abspath(args.bin)
scratch = tempfile.mkdtemp(prefix="cml-bench-queue-")
store = os.path.join(scratch, "store")
env = dict(os.environ, CML_STORE=store)
env.pop("NOTIFY_SOCKET", None)


def tool(name):
    return os.path.join(bin_dir, name)


def run(command, **kwargs):
    return subprocess.run(command, env=env, check=True, capture_output=True, text=True, **kwargs)


def agent(name, queue, workdir):
    """An agent with the default heartbeat (5 s): only the store's doorbell makes it start work sooner."""
    process = subprocess.Popen([tool("cml-agent"), "--queue", queue, "--create", "--name", name, "--workdir", workdir],
                               env=env, stderr=subprocess.DEVNULL)
    for _ in range(500):
        listed = [json.loads(line) for line in run([tool("cml-agent"), "ls", "--format", "jsonl"]).stdout.splitlines()]
        if any(a["name"] == name and a["state"] == "idle" for a in listed):
            return process
        time.sleep(0.01)
    raise SystemExit(f"agent {name} did not start")


def started_at(path):
    """Waits for the command to have written its start time (nanoseconds) to `path`."""
    for _ in range(5000):
        try:
            with open(path) as f:
                text = f.read().strip()
            if text:
                return int(text) / 1e9
        except FileNotFoundError:
            pass
        time.sleep(0.001)
    raise SystemExit(f"{path} was never written")


def latency(cwd, slug, label):
    marker = os.path.join(scratch, "started")
    command = ["sh", "-c", f"date +%s%N > {marker}"]
    direct, queued = [], []
    worker = agent("latency-" + slug, "latency-" + slug, os.path.join(scratch, "agent-" + slug))
    for _ in range(args.samples):
        # Interleaved, so that a slower moment of the machine hits both alike.
        for into, invoke in ((direct, [tool("cml-run"), "--"] + command),
                             (queued, [tool("cml-queue"), "add", "latency-" + slug, "--"] + command)):
            if os.path.exists(marker):
                os.unlink(marker)
            begin = time.time()
            subprocess.run(invoke, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            into.append(started_at(marker) - begin)
            time.sleep(0.05)  # the agent records the end before the next sample
    worker.terminate()
    worker.wait()
    d, q = statistics.median(direct) * 1000, statistics.median(queued) * 1000
    print(f"latency to the command's start, {label}, median of {args.samples}: cml-queue add + idle agent {q:.1f} ms, "
          f"cml-run -- CMD {d:.1f} ms (target < 200 ms; ClearML polls every 5 s)")


# A small repository with an uncommitted change and an untracked file: the agent applies a patch.
repo = os.path.join(scratch, "repo")
os.makedirs(repo)
git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org"]
subprocess.run(git + ["init", "-q", "-b", "main"], cwd=repo, check=True)
for i in range(50):
    with open(os.path.join(repo, f"module{i}.py"), "w") as f:
        f.write(f"VALUE = {i}\n" * 100)
subprocess.run(git + ["add", "-A"], cwd=repo, check=True)
subprocess.run(git + ["commit", "-qm", "init"], cwd=repo, check=True)
with open(os.path.join(repo, "module0.py"), "a") as f:
    f.write("EDITED = True\n")
with open(os.path.join(repo, "notes.txt"), "w") as f:
    f.write("untracked\n")
outside = os.path.join(scratch, "outside")
os.makedirs(outside)

latency(outside, "plain", "outside a repository")
latency(repo, "repo", "in a git repository with a patch")

# Throughput: every run appends its id; 1,000 specs in one batch, two idle agents.
n = args.runs
ledger = os.path.join(scratch, "ledger")
command = ["sh", "-c", f"echo $CML_RUN_ID >> {ledger}"]
spec = run([tool("cml-run"), "spec", "--"] + command, cwd=outside).stdout  # (warns: no repository)
workers = [agent(f"drain-{i}", "drain", os.path.join(scratch, f"drain-{i}")) for i in range(2)]
begin = time.time()
queued = run([tool("cml-queue"), "add", "drain"], input=spec * n).stdout.splitlines()
ids = {json.loads(line)["id"] for line in queued}
assert len(ids) == n
database = sqlite3.connect(f"file:{store}/cml.db?mode=ro", uri=True)
while database.execute("SELECT COUNT(*) FROM queue_entries WHERE queue = 'drain' AND state != 'done'").fetchone()[0]:
    time.sleep(0.05)
last_end = database.execute("SELECT MAX(r.ended_at) FROM runs r JOIN queue_entries e ON e.run_id = r.id "
                            "WHERE e.queue = 'drain'").fetchone()[0]
drained = last_end - begin
for worker in workers:
    worker.terminate()
    worker.wait()
statuses = dict(database.execute("SELECT r.status, COUNT(*) FROM runs r JOIN queue_entries e ON e.run_id = r.id "
                                 "WHERE e.queue = 'drain' GROUP BY r.status").fetchall())
starts = database.execute("SELECT COUNT(*) FROM run_attempts a JOIN queue_entries e ON e.run_id = a.run_id "
                          "WHERE e.queue = 'drain'").fetchone()[0]
per_agent = dict(database.execute("SELECT a.agent, COUNT(*) FROM run_attempts a JOIN queue_entries e ON e.run_id = a.run_id "
                                  "WHERE e.queue = 'drain' GROUP BY a.agent").fetchall())
with open(ledger) as f:
    executed = f.read().split()
assert statuses == {"completed": n}, statuses
assert starts == n, f"{starts} starts for {n} runs"
assert sorted(executed) == sorted(ids), "every run executed exactly once"

os.unlink(ledger)
loop = f"for i in $(seq {n // 2}); do {tool('cml-run')} -- sh -c 'echo $CML_RUN_ID >> {ledger}'; done"
begin = time.time()
loops = [subprocess.Popen(["sh", "-c", loop], env=env, cwd=outside, stdout=subprocess.DEVNULL) for _ in range(2)]
for process in loops:
    assert process.wait() == 0
direct = time.time() - begin
with open(ledger) as f:
    assert len(f.read().split()) == 2 * (n // 2)

print(f"{n:,} trivial runs through 2 agents: {n / drained:.0f} runs/s ({drained:.2f} s from cml-queue add to the last end; "
      f"per agent {sorted(per_agent.values())}); all completed, each executed exactly once")
print(f"the same command with 2 loops of cml-run -- CMD: {2 * (n // 2) / direct:.0f} runs/s ({direct:.2f} s)")
shutil.rmtree(scratch)

"""What the benchmarks' commands mark, and the agents they run on. Each command appends `start NS`
first and `end NS` last to a file (`date +%s%N`), so that a gap is measured by the commands' own clock
rather than by when a script looked."""
import json
import os
import subprocess
import time


def take(path):
    """The (kind, nanoseconds) marks written so far, in order; the file is emptied."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = [line.split() for line in f if line.strip()]
    os.remove(path)
    return [(kind, int(ns)) for kind, ns in lines]


def ended(path):
    """How many commands have written their last mark so far."""
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for line in f if line.startswith("end"))


def gaps_ms(marks):
    """Milliseconds from each command's end to the next one's start."""
    starts = [ns for kind, ns in marks if kind == "start"]
    ends = [ns for kind, ns in marks if kind == "end"]
    return [(starts[i + 1] - ends[i]) / 1e6 for i in range(len(starts) - 1)]


def queue_latency_ms(path, add, count):
    """For each of `count` calls of `add(i)`, which queues one marking command for an idle agent: the
    milliseconds from the call to the command's first mark (it is waited for to end first)."""
    latencies = []
    for i in range(count):
        sent = time.time_ns()
        add(i)
        while ended(path) < 1:
            time.sleep(0.002)
        latencies.append((take(path)[0][1] - sent) / 1e6)
    return latencies


def idle_agent(cml_agent, name, queue, workdir, env, cwd=None):
    """A `cml-agent` on `queue`, once `cml-agent ls` shows it idle."""
    process = subprocess.Popen([cml_agent, "--queue", queue, "--create", "--name", name, "--workdir", workdir],
                               env=env, cwd=cwd, stderr=subprocess.DEVNULL)
    for _ in range(1000):
        listed = subprocess.run([cml_agent, "ls", "--format", "jsonl"], env=env, check=True, capture_output=True, text=True).stdout
        if any(agent["name"] == name and agent["state"] == "idle" for agent in map(json.loads, listed.splitlines())):
            return process
        time.sleep(0.01)
    raise SystemExit(f"agent {name} did not start")

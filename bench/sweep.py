#!/usr/bin/env python3
"""cml-queue sweep, each figure beside a baseline measured in the same run:

  1. from a free slot to its next trial's first instruction: one agent with one slot, a sweep with
     --parallel 1 of 21 trivial trials in a git repository (each clones, checks out and starts as any
     queued run); the gap between a trial's last instruction and the next one's first (median of 20),
     beside `cml-queue add` to the first instruction of the same command on an idle agent (median of
     20), the queue's own latency, which the gap contains;
  2. trials per minute for trivial trials through 2 agents of one slot each (--parallel 2), beside the
     same number of runs of the same command queued at once and drained by the same 2 agents;
  3. on a synthetic learning curve, the Branin function plus 5/(step+1) over 27 steps (its least value
     0.397887 at the last step), the best objective found after --trials trials by each strategy this
     build has of random, asha, hyperband and optuna (TPE), with --parallel 4 on this machine (--local 4), and the
     steps all trials ran in all: the early-stopping strategies should reach random's best with clearly
     fewer steps.

Each trial is a shell script that appends `start NS` first and `end NS` last to a file (`date +%s%N`).
Usage: python3 bench/sweep.py [--bin .build/release] [--trials 50] [--step-sleep 0.1]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

import marks

parser = argparse.ArgumentParser()
parser.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", ".build", "release"))
parser.add_argument("--trials", type=int, default=50, help="trials per strategy in row 3")
parser.add_argument("--step-sleep", type=float, default=0.1, help="seconds each step of row 3's curve takes")
parser.add_argument("--rows", default="1,2,3")
args = parser.parse_args()
bin_dir = os.path.abspath(args.bin)
scratch = tempfile.mkdtemp(prefix="cml-bench-sweep-")
store = os.path.join(scratch, "store")
times = os.path.join(scratch, "times")
env = dict(os.environ, CML_STORE=store, TIMES=times, XDG_CACHE_HOME=os.path.join(scratch, "cache"))
env.pop("NOTIFY_SOCKET", None)
# --strategy optuna runs Optuna's command line: $CML_OPTUNA, else the one scripts/test installs, else optuna on PATH.
tests_optuna = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".build", "optuna-venv", "bin", "optuna"))
if not env.get("CML_OPTUNA") and os.path.exists(tests_optuna):
    env["CML_OPTUNA"] = tests_optuna
rows = set(args.rows.split(","))


def tool(name):
    return os.path.join(bin_dir, name)


def run(command, **kwargs):
    return subprocess.run(command, env=env, check=True, capture_output=True, text=True, cwd=repo, **kwargs)


def agent(name, queue):
    return marks.idle_agent(tool("cml-agent"), name, queue, os.path.join(scratch, "agent-" + name), env)


def stop(processes):
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait()


repo = os.path.join(scratch, "repo")
os.makedirs(repo)
with open(os.path.join(repo, "trial.sh"), "w") as f:
    f.write(r"""#!/bin/sh
echo "start $(date +%s%N)" >> "$TIMES"
x1=0; x2=0; steps=1; sleep=0
while [ $# -gt 0 ]; do
  case "$1" in --x1) x1=$2;; --x2) x2=$2;; --steps) steps=$2;; --sleep) sleep=$2;; esac; shift 2
done
awk -v x1="$x1" -v x2="$x2" -v steps="$steps" -v pause="$sleep" 'BEGIN {
  pi = atan2(0, -1); b = 5.1 / (4 * pi * pi); c = 5 / pi; t = 1 / (8 * pi)
  f = (x2 - b * x1 * x1 + c * x1 - 6) ^ 2 + 10 * (1 - t) * cos(x1) + 10
  for (s = 0; s < steps; s++) {
    printf "step=%d loss=%.6f\n", s, f + 5 / (s + 1); fflush()
    if (pause > 0) system("sleep " pause)
  }
}'
echo "end $(date +%s%N)" >> "$TIMES"
""")
subprocess.run("git init -q -b main && git add -A && git -c user.email=b@b -c user.name=b commit -qm bench", shell=True, cwd=repo, check=True)
run([tool("cml-run"), "--name", "base", "--", "sh", "trial.sh", "--x1", "3", "--x2", "2"])
base = json.loads(run([tool("cml-run"), "ls", "--format", "jsonl"]).stdout.splitlines()[0])["id"]
marks.take(times)


def sweep(extra):
    started = time.monotonic()
    out = run([tool("cml-queue"), "sweep", base, "--objective", "loss", "--format", "jsonl"] + extra)
    elapsed = time.monotonic() - started
    sweep_id = json.loads(run([tool("cml-queue"), "sweep", "ls", "--format", "jsonl"]).stdout.splitlines()[0])["id"]
    record = json.loads(run([tool("cml-queue"), "sweep", "show", sweep_id, "--format", "jsonl"]).stdout)
    return out.stdout, elapsed, record


print(f"# bench/sweep.py, {bin_dir}, {time.strftime('%Y-%m-%d %H:%M')}")
if "1" in rows:
    a = agent("a", "one")
    run([tool("cml-queue"), "sweep", base, "--objective", "loss", "--param", "x1=uniform(-5,10)", "--trials", "21",
         "--parallel", "1", "--queue", "one", "--seed", "1"])
    gaps = marks.gaps_ms(marks.take(times))
    queued = marks.queue_latency_ms(times, lambda i: run([tool("cml-queue"), "add", "one", "--", "sh", "trial.sh", "--x1", str(i)]), 20)
    stop([a])
    print(f"| from a free slot to the next trial's first instruction (median of {len(gaps)}) | {statistics.median(gaps):.0f} ms "
          f"| `cml-queue add` to the first instruction on an idle agent: {statistics.median(queued):.0f} ms | < 200 ms |")

if "2" in rows:
    agents = [agent("b1", "two"), agent("b2", "two")]
    count = 60
    _, elapsed, record = sweep(["--param", "x1=uniform(-5,10)", "--trials", str(count), "--parallel", "2", "--queue", "two", "--seed", "2"])
    assert all(t["status"] == "completed" for t in record["trials"]) and len(record["trials"]) == count, record
    marks.take(times)
    specs = run([tool("cml-run"), "clone", base, "--sample", "x1=uniform(-5,10)", "-n", str(count), "--seed", "2"]).stdout
    started = time.monotonic()
    subprocess.run([tool("cml-queue"), "add", "two"], input=specs, env=env, cwd=repo, check=True, capture_output=True, text=True)
    while marks.ended(times) < count:
        time.sleep(0.01)
    drained = time.monotonic() - started
    marks.take(times)
    stop(agents)
    print(f"| trivial trials through 2 agents of one slot (--parallel 2, {count} trials) | {count / elapsed * 60:.0f} trials/min "
          f"| the same {count} runs queued at once, drained by the same agents: {count / drained * 60:.0f} runs/min | — |")

if "3" in rows:
    space = ["--param", "x1=uniform(-5,10)", "--param", "x2=uniform(0,15)", "--param", f"sleep={args.step_sleep}"]
    strategies = [("random", []), ("asha", ["--min-budget", "1", "--max-budget", "27", "--eta", "3"]),
                  ("hyperband", ["--min-budget", "1", "--max-budget", "27", "--eta", "3"]), ("optuna", ["--sampler", "TPESampler"])]
    for name, extra in strategies:
        command = space + ["--trials", str(args.trials), "--parallel", "4", "--local", "4", "--seed", "5", "--strategy", name,
                           "--budget-param", "steps", "--max-budget", "27"] + [e for e in extra if e not in ("--max-budget", "27")]
        try:
            _, elapsed, record = sweep(command)
        except subprocess.CalledProcessError as failure:
            print(f"| {name} | not measured: {failure.stderr.strip().splitlines()[-1] if failure.stderr.strip() else failure} | | |")
            continue
        trials = record["trials"]
        steps = sum((t["steps"] + 1) for t in trials if t.get("steps") is not None)
        best = record["best"]["objective"] if record.get("best") else None
        stopped = sum(1 for t in trials if t["status"] == "stopped")
        print(f"| {name}: best after {len(trials)} trials (least possible 0.397887 + 5/27 = 0.583072) | {best:.4f} "
              f"| steps run in all: {steps} of {len(trials) * 27}; {stopped} stopped early; {elapsed:.0f} s | — |")
shutil.rmtree(scratch, ignore_errors=True)

#!/usr/bin/env python3
"""cml-queue pipeline, each figure beside a baseline measured in the same run:

  1. a fully cached rerun of a 4-step pipeline (prepare snapshots a dataset, two trainings read it and
     keep a model artifact, evaluate reads both models), the whole `cml-queue pipeline run` process,
     median of --repeats, beside `cml-queue stats` (the same tool starting, opening the store and
     answering one query: the floor of any cml-queue command);
  2. the gap between a step's input appearing and its first instruction: a chain of 11 steps, each
     reading the previous one's artifact, run by `--local 1`; the gap between a step's last instruction
     and the next one's first (median of 10), beside `cml-queue add` to the first instruction of a
     marking command (`sh -c` as the steps are) on an idle agent (median of 10), the queue's own latency, which the gap contains.

Each step appends `start NS` first and `end NS` last to a file (`date +%s%N`).
Usage: python3 bench/pipeline.py [--bin .build/release] [--repeats 10]
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
parser.add_argument("--repeats", type=int, default=10)
parser.add_argument("--rows", default="1,2")
args = parser.parse_args()
bin_dir = os.path.abspath(args.bin)
scratch = tempfile.mkdtemp(prefix="cml-bench-pipeline-")
store = os.path.join(scratch, "store")
times = os.path.join(scratch, "times")
env = dict(os.environ, CML_STORE=store, TIMES=times, XDG_CACHE_HOME=os.path.join(scratch, "cache"),
           PATH=bin_dir + ":" + os.environ.get("PATH", "/usr/bin:/bin"))
env.pop("NOTIFY_SOCKET", None)
rows = set(args.rows.split(","))
repo = os.path.join(scratch, "repo")
os.makedirs(repo)


def tool(name):
    return os.path.join(bin_dir, name)


def run(command, **kwargs):
    return subprocess.run(command, env=env, check=True, capture_output=True, text=True, cwd=repo, **kwargs)


def timed(command):
    started = time.monotonic()
    run(command)
    return (time.monotonic() - started) * 1000


def write(name, text, mode=0o644):
    with open(os.path.join(repo, name), "w") as f:
        f.write(text)
    os.chmod(os.path.join(repo, name), mode)


write("mark.sh", '#!/bin/sh\necho "$1 $(date +%s%N)" >> "$TIMES"\n', 0o755)
write("four.yaml", """
steps:
  prepare:
    command: mkdir -p out && seq 1 ${params.rows} > out/rows.txt && cml-data snapshot out --name rows > /dev/null
    params: {rows: 1000}
  train_a:
    command: wc -l < "$CML_INPUT_DATA/rows.txt" > model.txt && echo lr=${params.lr} >> model.txt && cml-log artifact model.txt > /dev/null
    params: {lr: 0.1}
    inputs: {data: prepare.rows}
  train_b:
    command: wc -l < "$CML_INPUT_DATA/rows.txt" > model.txt && echo lr=${params.lr} >> model.txt && cml-log artifact model.txt > /dev/null
    params: {lr: 0.01}
    inputs: {data: prepare.rows}
  evaluate:
    command: cat "$CML_INPUT_A" "$CML_INPUT_B" && echo acc=0.9
    inputs: {a: train_a.model.txt, b: train_b.model.txt}
""")
chain = ["steps:"]
for i in range(11):
    chain.append(f"  s{i}:")
    chain.append(f"    command: ./mark.sh start && echo {i} > out.txt && cml-log artifact out.txt > /dev/null && ./mark.sh end")
    if i > 0:
        chain.append(f"    inputs: {{previous: s{i - 1}.out.txt}}")
write("chain.yaml", "\n".join(chain) + "\n")
subprocess.run("git init -q -b main && git add -A && git -c user.email=b@b -c user.name=b commit -qm bench", shell=True, cwd=repo, check=True)

print(f"# bench/pipeline.py, {bin_dir}, {time.strftime('%Y-%m-%d %H:%M')}")
if "1" in rows:
    run([tool("cml-queue"), "pipeline", "run", "four.yaml", "--local", "2"])
    cached, floor = [], []
    for _ in range(args.repeats):
        cached.append(timed([tool("cml-queue"), "pipeline", "run", "four.yaml", "--local", "2"]))
        floor.append(timed([tool("cml-queue"), "stats"]))
    last = json.loads(run([tool("cml-queue"), "pipeline", "ls", "--format", "jsonl"]).stdout.splitlines()[0])
    assert last["cached"] == 4, last
    print(f"| a fully cached rerun of the 4-step pipeline, the whole process (median of {args.repeats}) | {statistics.median(cached):.0f} ms "
          f"| `cml-queue stats`: {statistics.median(floor):.0f} ms | < 500 ms |")

if "2" in rows:
    marks.take(times)
    run([tool("cml-queue"), "pipeline", "run", "chain.yaml", "--local", "1"])
    gaps = marks.gaps_ms(marks.take(times))
    agent = marks.idle_agent(tool("cml-agent"), "bench", "idle", os.path.join(scratch, "agent"), env, cwd=repo)
    queued = marks.queue_latency_ms(times, lambda i: run([tool("cml-queue"), "add", "idle", "--", "sh", "-c", "./mark.sh start; ./mark.sh end"]), 10)
    agent.terminate()
    agent.wait()
    print(f"| from a step's input appearing to its first instruction (median of {len(gaps)}) | {statistics.median(gaps):.0f} ms "
          f"| `cml-queue add` to the first instruction on an idle agent: {statistics.median(queued):.0f} ms | < 200 ms |")
shutil.rmtree(scratch, ignore_errors=True)

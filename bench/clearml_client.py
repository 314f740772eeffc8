#!/usr/bin/env python3
"""Points per second from ClearML's SDK into cml-serve, through the SDK's own batching path:
`Logger.report_scalar` in a loop (--series series, --iterations iterations each), then `task.close()`,
which waits until every event is sent; timed from the first report to close's return. Beside it, in the
same run, the same SDK in offline mode (`Task.set_offline(True)`: the events go to a local file, no
server), the SDK's own ceiling. Each online run must arrive whole: the script reads the run's metric
summaries back with `cml-run show` and fails when a point is missing.

The SDK is the clearml package of .build/clearml-venv (scripts/test makes it), or --python.

Usage: python3 bench/clearml_client.py [--serve .build/release/cml-serve] [--python PY] [--repeat 3]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
build = os.path.join(here, "..", ".build")
parser = argparse.ArgumentParser()
parser.add_argument("--serve", default=None, help="the cml-serve binary (default: this tree's release build, else its debug build)")
parser.add_argument("--python", default=os.path.join(build, "clearml-venv", "bin", "python3"))
parser.add_argument("--series", type=int, default=10)
parser.add_argument("--iterations", type=int, default=2000)
parser.add_argument("--repeat", type=int, default=3)
args = parser.parse_args()

serve = args.serve or next(p for p in (os.path.join(build, "release", "cml-serve"), os.path.join(build, "debug", "cml-serve"))
                           if os.path.exists(p))
cml_run = os.path.join(os.path.dirname(os.path.abspath(serve)), "cml-run")

# The script a user would write; OFFLINE set: the SDK's offline mode.
SCRIPT = """
import os, sys, time
from clearml import Task
if os.environ.get("OFFLINE"):
    Task.set_offline(True)
task = Task.init(project_name="bench", task_name="points", auto_connect_frameworks=False)
logger = task.get_logger()
series, iterations = int(sys.argv[1]), int(sys.argv[2])
start = time.perf_counter()
for i in range(iterations):
    for s in range(series):
        logger.report_scalar("loss", f"s{s}", 1.0 / (i + 1) + s, iteration=i)
task.close()
print("SECONDS", time.perf_counter() - start, task.id, flush=True)
"""


def run_script(env, work):
    done = subprocess.run([args.python, "-c", SCRIPT, str(args.series), str(args.iterations)], env=env, cwd=work,
                          capture_output=True, text=True, timeout=1800)
    line = next((l for l in done.stdout.splitlines() if l.startswith("SECONDS ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"the SDK's script failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    _, seconds, task = line.split()
    return float(seconds), task


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    root = tempfile.mkdtemp(prefix="cml-bench-clearml-")
    store, work = os.path.join(root, "store"), os.path.join(root, "work")
    os.makedirs(work)
    server = subprocess.Popen([serve, "--listen", "127.0.0.1:0", "--store", store], stdout=subprocess.PIPE, text=True)
    url = server.stdout.readline().strip().split(" on ")[-1]
    points = args.series * args.iterations
    env = dict(os.environ, HOME=os.path.join(root, "home"), CLEARML_API_HOST=url + "/clearml",
               CLEARML_FILES_HOST=url + "/clearml-files", CLEARML_WEB_HOST=url, CLEARML_API_ACCESS_KEY="bench",
               CLEARML_API_SECRET_KEY="bench",
               # Its update check (updates.clear.ml, at each Task.init) refused at once: nothing leaves the machine.
               HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", NO_PROXY="127.0.0.1,localhost")
    # As Tests/CLITests/ClearMLClientTests.swift explains: git detected before the SDK forks its reporter.
    os.makedirs(env["HOME"])
    with open(os.path.join(env["HOME"], "clearml.conf"), "w") as conf:
        conf.write("sdk { development { vcs_repo_detect_async: false } }\n")
    online, offline, server_cpu = [], [], 0.0
    try:
        for _ in range(args.repeat):
            before = cpu_seconds(server.pid)
            seconds, task = run_script(env, work)
            server_cpu += cpu_seconds(server.pid) - before
            shown = json.loads(subprocess.run([cml_run, "show", task, "--store", store], capture_output=True, text=True,
                                              check=True).stdout)
            arrived = sum(m["count"] for key, m in shown["metrics"].items() if key.startswith("loss/"))
            if shown["status"] != "completed" or arrived != points:
                raise SystemExit(f"run {task}: {shown['status']}, {arrived} of {points} points")
            online.append(points / seconds)
            seconds, _ = run_script(dict(env, OFFLINE="1"), work)
            offline.append(points / seconds)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(root, ignore_errors=True)
    print(f"cml-serve: {serve}; {args.series} series x {args.iterations} iterations = {points:,} points per run, "
          f"median of {args.repeat}, runs interleaved")
    print("| what | points/s |")
    print("|---|---|")
    print(f"| SDK -> cml-serve (report_scalar, then close(): every point stored) | {statistics.median(online):,.0f} |")
    print(f"| the same SDK offline (Task.set_offline(True)), same run | {statistics.median(offline):,.0f} |")
    print(f"| ratio | {statistics.median(online) / statistics.median(offline):.2f} |")
    print(f"| cml-serve's CPU time per point, online runs | {server_cpu / (points * args.repeat) * 1e6:.1f} µs |")


main()

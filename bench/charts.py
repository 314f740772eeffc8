#!/usr/bin/env python3
"""How long cml-serve takes to answer chart requests (GET /api/v1/runs/{id}/chart, SVG), best of --repeat:

  1. one chart of a 100,000-point series, and of a 1,000,000-point series (with NaN gaps);
  2. the 1,000,000-point chart smoothed (exponential, 0.6) on a log axis, and zoomed to 1% of its steps;
  3. the ten charts of a run with 10 metrics x 100,000 points, one after another and all at once (as a
     run page asks for them), which is the issue's target: a complete chart page under 1 s;
  4. the floor: SQLite (Python's sqlite3) summing the 1,000,000 points' step, value and time columns in
     one query: reading them and nothing else.

Runs are recorded by cml-run through $CML_LOG_FD from awk. Every answer is checked to be an SVG with at
most twice the plot's width in points per line.
Usage: python3 bench/charts.py [--bin .build/release] [--repeat 5]
"""
import os
import sys

# This folder's queue.py would shadow the standard library's, which concurrent.futures imports.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import concurrent.futures  # noqa: E402
import http.client  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import sqlite3  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", ".build", "release"))
parser.add_argument("--run-bin", help="where cml-run is (default: --bin)")
parser.add_argument("--repeat", type=int, default=5)
args = parser.parse_args()
serve = os.path.abspath(os.path.join(args.bin, "cml-serve"))
cml_run = os.path.abspath(os.path.join(args.run_bin or args.bin, "cml-run"))
scratch = tempfile.mkdtemp(prefix="cml-bench-charts-")
env = dict(os.environ, CML_STORE=os.path.join(scratch, "store"))


def record(name, lines, body):
    program = os.path.join(scratch, name + ".awk")
    with open(program, "w") as f:
        f.write(f"BEGIN {{ for (i = 0; i < {lines}; i++) {{ {body} }} }}\n")
    subprocess.run([cml_run, "--name", name, "--monitor-interval", "0", "--", "sh", "-c", f"awk -f {program} >&$CML_LOG_FD"],
                   check=True, env=env, stdout=subprocess.DEVNULL)


record("hundred-k", 100_000, r'printf "{\"step\": %d, \"loss\": %f}\n", i, 1 / (i + 1) + 0.01 * sin(i / 100)')
record("million", 1_000_000, r'if (i % 100000 == 50000) printf "{\"step\": %d, \"loss\": \"nan\"}\n", i; '
       r'else printf "{\"step\": %d, \"loss\": %f}\n", i, 1 / (i + 1) + 0.01 * sin(i / 100)')
ten = r'printf "{\"step\": %d' + "".join(rf', \"m{k}\": %f' for k in range(10)) + r'}\n", i' \
    + "".join(f", sin(i / {1000 + 100 * k}) + {k}" for k in range(10))
record("ten", 100_000, ten)

server = subprocess.Popen([serve, "--listen", "127.0.0.1:0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
port = int(re.search(r":(\d+)$", server.stdout.readline().strip()).group(1))


def get(path):
    connection = http.client.HTTPConnection("127.0.0.1", port)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    assert response.status == 200 and body.startswith(b"<?xml"), (path, response.status, body[:200])
    plot = [float(v) for v in re.search(rb'data-plot="([^"]+)"', body).group(1).split()]
    for points in re.findall(rb'data-points="([^"]*)"', body):
        assert len(points.split()) <= 2 * (plot[2] - plot[0]), (path, len(points.split()))
    return body


def best(action):
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


chart = "/api/v1/runs/{}/chart?key={}&width=800&height=300"
print(f"one chart, 100,000 points: {best(lambda: get(chart.format('hundred-k', 'loss'))):.0f} ms")
print(f"one chart, 1,000,000 points: {best(lambda: get(chart.format('million', 'loss'))):.0f} ms")
print(f"one chart, 1,000,000 points, smooth=0.6 and log=1: "
      f"{best(lambda: get(chart.format('million', 'loss') + '&smooth=0.6&log=1')):.0f} ms")
print(f"one chart, 1,000,000 points, zoomed to steps 500000-510000: "
      f"{best(lambda: get(chart.format('million', 'loss') + '&from=500000&to=510000')):.0f} ms")
print(f"10 metrics x 100,000 points, one after another: "
      f"{best(lambda: [get(chart.format('ten', f'm{k}')) for k in range(10)]):.0f} ms")
with concurrent.futures.ThreadPoolExecutor(10) as pool:
    print(f"10 metrics x 100,000 points, all at once: "
          f"{best(lambda: list(pool.map(lambda k: get(chart.format('ten', f'm{k}')), range(10)))):.0f} ms (target < 1000 ms)")
database = sqlite3.connect(os.path.join(env["CML_STORE"], "cml.db"))
floor_query = ("SELECT count(*), sum(step), sum(value), sum(time) FROM metric_points WHERE series = "
               "(SELECT s.id FROM metric_series s JOIN runs r ON s.run_id = r.id WHERE r.name = 'million' AND s.key = 'loss')")
assert database.execute(floor_query).fetchone()[0] == 1_000_000
floor = best(lambda: database.execute(floor_query).fetchone())
print(f"floor: SQLite summing the 1,000,000 points' three columns in one query (reading them, nothing else): {floor:.0f} ms")
server.terminate()
server.wait()
shutil.rmtree(scratch)

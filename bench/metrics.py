#!/usr/bin/env python3
"""Metric points per second into one run, each against a floor measured in the same run:

  1. through $CML_LOG_FD: a program writes JSON lines ({"step": i, "loss": x}) to the log channel;
  2. through parsed stdout: the same program prints `step=i loss=x` lines;
  3. the floor: Python's sqlite3 inserting the same number of rows into a table shaped like cml's
     (WITHOUT ROWID, keyed by series and sequence; WAL, synchronous=NORMAL) in one transaction.

The program is awk, so that producing the lines costs little next to storing them.
Usage: python3 bench/metrics.py [--bin .build/release/cml-run] [--points 2000000]
"""
import argparse
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time

parser = argparse.ArgumentParser()
parser.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", ".build", "release", "cml-run"))
parser.add_argument("--points", type=int, default=2_000_000)
args = parser.parse_args()
cml = os.path.abspath(args.bin)
n = args.points
scratch = tempfile.mkdtemp(prefix="cml-bench-metrics-")
env = dict(os.environ, CML_STORE=os.path.join(scratch, "store"))


def timed(command):
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def awk(format_string, redirect=""):
    return f"awk 'BEGIN {{ for (i = 0; i < {n}; i++) printf \"{format_string}\\n\", i, 1 / (i + 1) }}'{redirect}"


channel_program = awk('{\\"step\\": %d, \\"loss\\": %.6f}', " >&$CML_LOG_FD")
stdout_program = awk("step=%d loss=%.6f")
produce = timed(["sh", "-c", awk("step=%d loss=%.6f") + " > /dev/null"])
channel = timed([cml, "--monitor-interval", "0", "--", "sh", "-c", channel_program])
parsed = timed([cml, "--monitor-interval", "0", "--", "sh", "-c", stdout_program])

database = sqlite3.connect(os.path.join(scratch, "floor.db"), isolation_level=None)
database.execute("PRAGMA journal_mode=WAL")
database.execute("PRAGMA synchronous=NORMAL")
database.execute("CREATE TABLE metric_points (series INTEGER NOT NULL, seq INTEGER NOT NULL, step INTEGER NOT NULL, "
                 "value REAL, time REAL NOT NULL, PRIMARY KEY (series, seq)) WITHOUT ROWID")
rows = [(1, i, i, 1 / (i + 1), 1.7e9) for i in range(n)]
start = time.perf_counter()
database.execute("BEGIN")
database.executemany("INSERT INTO metric_points VALUES (?, ?, ?, ?, ?)", rows)
database.execute("COMMIT")
floor = time.perf_counter() - start

check = subprocess.run([cml, "ls", "--format", "jsonl"], env=env, capture_output=True, text=True, check=True).stdout
assert check.count(f'"count":{n}') == 2, "every point must be stored"
print(f"{n:,} points; awk alone prints them in {produce:.2f} s")
print(f"through $CML_LOG_FD: {n / channel / 1e3:.0f} K points/s ({channel:.2f} s; target >= 500 K/s)")
print(f"through parsed stdout: {n / parsed / 1e3:.0f} K points/s ({parsed:.2f} s)")
print(f"raw SQLite batch insert (Python sqlite3, one transaction): {n / floor / 1e3:.0f} K rows/s ({floor:.2f} s)")
print(f"channel / floor: {floor / channel:.2f} (target >= 0.33)")


def peak_memory(points):
    """cml-run's peak resident memory (KB) while `points` points go through the channel."""
    program = f"awk 'BEGIN {{ for (i = 0; i < {points}; i++) printf \"{{\\\"step\\\": %d, \\\"loss\\\": 1}}\\n\", i }}' >&$CML_LOG_FD"
    report = subprocess.run(["/usr/bin/time", "-f", "%M", cml, "--monitor-interval", "0", "--", "sh", "-c", program],
                            env=env, capture_output=True, text=True, check=True)
    return int(report.stderr.strip().splitlines()[-1])


for points in (n, 4 * n):
    print(f"peak memory of cml-run for {points:,} points through the channel: {peak_memory(points) / 1024:.0f} MB")
shutil.rmtree(scratch)

#!/usr/bin/env python3
"""cml-serve under load from other processes on loopback:

  1. small GETs of run records per second (`wrk`, Debian's package, 2 threads, 16 connections);
  2. metric points per second ingested from 16 concurrent writers (each its own run, batches of
     --batch points through the store API, one kept-alive connection each);
  3. the server's peak RSS (VmHWM) after that load.

With --against OTHER (another cml-serve build), every row also measures OTHER, one after the other on
the same machine. Targets on a 2-core machine: 10,000 GETs/s, 500,000 points/s, RSS under 100 MB.
cml-run's own overhead against a server is `bench/cml-run.py --rows server`.

Usage: python3 bench/serve.py [--serve .build/release/cml-serve] [--against OTHER] [--seconds 10]
"""
import os
import sys

# This folder's queue.py would shadow the standard library's, which multiprocessing imports.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--serve", default=os.path.join(os.path.dirname(__file__), "..", ".build", "release", "cml-serve"))
parser.add_argument("--against", help="another cml-serve binary to measure the same way")
parser.add_argument("--seconds", type=float, default=10)
parser.add_argument("--writers", type=int, default=16)
parser.add_argument("--batch", type=int, default=5000)
args = parser.parse_args()
cml_run = os.path.join(os.path.dirname(os.path.abspath(args.serve)), "cml-run")
if not os.path.exists(cml_run):
    cml_run = shutil.which("cml-run") or os.path.join(os.path.dirname(__file__), "..", ".build", "debug", "cml-run")


def start(serve, store):
    server = subprocess.Popen([serve, "--listen", "127.0.0.1:0", "--store", store], stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline().strip()
    return server, line.split(" on ")[-1]


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_record(url, body):
    host, port = url.split("//")[1].split(":")
    connection = http.client.HTTPConnection(host, int(port))
    connection.request("POST", "/api/v1/store/runs", body=body, headers={"Content-Type": "application/json"})
    answer = connection.getresponse()
    data = answer.read()
    assert answer.status == 200, data
    return json.loads(data)["id"]


def writer(url, run_id, batch, seconds, results):
    host, port = url.split("//")[1].split(":")
    connection = http.client.HTTPConnection(host, int(port))
    now = time.time()
    body = json.dumps([{"key": "loss", "step": i, "value": 1.0 / (i + 1), "time": now + i} for i in range(batch)]).encode()
    path = f"/api/v1/store/runs/{run_id}/metrics?source=log"
    sent = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 204, answer.status
        sent += batch
    results.put(sent)


def measure(serve):
    scratch = tempfile.mkdtemp(prefix="cml-bench-serve-")
    store = os.path.join(scratch, "store")
    env = dict(os.environ, CML_STORE=store)
    subprocess.run([cml_run, "--", "true"], check=True, env=env, cwd=scratch, stderr=subprocess.DEVNULL)
    run_id = json.loads(subprocess.run([cml_run, "ls", "--format", "jsonl"], check=True, env=env, capture_output=True).stdout)["id"]
    server, url = start(serve, store)
    try:
        wrk = subprocess.run(["wrk", "-t2", "-c16", f"-d{int(args.seconds)}s", f"{url}/api/v1/runs/{run_id}"],
                             check=True, capture_output=True, text=True).stdout
        gets = float(re.search(r"Requests/sec:\s+([\d.]+)", wrk).group(1))
        # One run per writer, made through the store API from an existing run's wire record.
        host, port = url.split("//")[1].split(":")
        connection = http.client.HTTPConnection(host, int(port))
        connection.request("GET", f"/api/v1/store/runs/{run_id}")
        template = json.loads(connection.getresponse().read())
        runs = []
        for n in range(args.writers):
            record = dict(template, id=f"{run_id[:-4]}{n:04x}", metrics=[])
            runs.append(run_record(url, json.dumps({"run": record, "patch": ""}).encode()))
        results = multiprocessing.Queue()
        workers = [multiprocessing.Process(target=writer, args=(url, r, args.batch, args.seconds, results)) for r in runs]
        start_time = time.perf_counter()
        for w in workers:
            w.start()
        total = sum(results.get() for _ in workers)
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - start_time
        return gets, total / elapsed, peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(scratch, ignore_errors=True)


for serve in [args.serve] + ([args.against] if args.against else []):
    gets, points, rss = measure(os.path.abspath(serve))
    print(f"{os.path.relpath(serve)}: {gets:,.0f} GETs/s of a run record (wrk, 2 threads, 16 connections, {args.seconds:.0f} s; target >= 10,000); "
          f"{points:,.0f} points/s from {args.writers} writers in batches of {args.batch} (target >= 500,000); "
          f"peak RSS {rss:.1f} MB (target < 100 MB)")

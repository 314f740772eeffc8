#!/usr/bin/env python3
"""The real MLflow client logging into cml-serve, beside the same client logging into MLflow's own
server (`mlflow server`, SQLite backend store) in the same run, both on loopback, one after the other:

  1. metric points per second through `MlflowClient.log_batch`, 1000 metrics per call (10 keys of 100
     steps each: the client's own batching path, and the largest batch MLflow's API takes);
  2. metric points per second through `MlflowClient.log_metric`, one request per point;
  3. each server's CPU time per point meanwhile (its process and those below it: MLflow's workers).

Each figure is a single client process sending for --seconds; afterwards the script reads every series
back through the same client and fails unless each holds every point sent; it counts the values read back
otherwise than sent (MLflow's SQL store keeps an infinity as ±1.8e308), and fails when cml-serve has any.

Run it with a Python that has the client (mlflow-skinny is enough: .build/mlflow-venv, which scripts/test
makes). The comparison server needs the full mlflow package: --mlflow names its `mlflow` command, e.g.
from `python3 -m venv .build/mlflow-server-venv && .build/mlflow-server-venv/bin/pip install mlflow`.

Usage: .build/mlflow-venv/bin/python3 bench/mlflow_client.py [--serve .build/release/cml-serve]
           [--mlflow .build/mlflow-server-venv/bin/mlflow] [--seconds 10]
"""
import os
import sys

# This folder's queue.py would shadow the standard library's, which mlflow imports.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import http.client  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

# Before mlflow is imported: no telemetry, and nothing but loopback reachable.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"
os.environ.update(HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", NO_PROXY="127.0.0.1,localhost")
os.environ.pop("MLFLOW_TRACKING_TOKEN", None)

from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
parser = argparse.ArgumentParser()
parser.add_argument("--serve", default=os.path.join(here, "..", ".build", "release", "cml-serve"))
parser.add_argument("--mlflow", default=os.path.join(here, "..", ".build", "mlflow-server-venv", "bin", "mlflow"))
parser.add_argument("--seconds", type=float, default=10)
args = parser.parse_args()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port, path, process, name):
    deadline = time.time() + 120
    while time.time() < deadline:
        if process.poll() is not None:
            sys.exit(f"{name} exited with status {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"{name} did not answer {path} within 120 s")


def tree_cpu_seconds(root):
    """CPU time (user and system) of process `root` and every process below it (MLflow's server workers)."""
    parents, times = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0.0)
        stack.extend(child for child, parent in parents.items() if parent == pid)
    return total


def value(step):
    """Mostly ordinary numbers, and now and then NaN or an infinity, as a diverging run logs them."""
    if step % 997 == 0:
        return float("nan")
    if step % 991 == 0:
        return float("inf") if step % 2 else float("-inf")
    return 1.0 / (step + 1)


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def check(client, run, key, sent, label, changed):
    """Fails unless the series holds `sent` points; counts those whose values came back otherwise."""
    history = client.get_metric_history(run, key)
    if len(history) != sent:
        sys.exit(f"{label}: {key} holds {len(history)} points of {sent} sent")
    for m in history:
        if not same(m.value, value(m.step)):
            changed[0] += 1
            changed[1] = changed[1] or f"step {m.step} sent {value(m.step)}, read back {m.value}"


def measure(url, label, server):
    client = MlflowClient(tracking_uri=url)
    experiment = client.create_experiment(f"bench-{label}-{time.time_ns()}")
    rows = {}
    changed = [0, None]  # how many, and the first

    run = client.create_run(experiment).info.run_id
    keys = [f"batch_{k}" for k in range(10)]
    sent = 0
    cpu = tree_cpu_seconds(server)
    started = time.perf_counter()
    while time.perf_counter() - started < args.seconds:
        now = int(time.time() * 1000)
        base = sent // len(keys)
        client.log_batch(run, metrics=[Metric(key, value(base + i), now, base + i) for i in range(100) for key in keys])
        sent += 1000
    elapsed = time.perf_counter() - started
    rows["log_batch"] = (sent / elapsed, sent, (tree_cpu_seconds(server) - cpu) / sent)
    for key in keys:
        check(client, run, key, sent // len(keys), label, changed)
    client.set_terminated(run)

    run = client.create_run(experiment).info.run_id
    sent = 0
    cpu = tree_cpu_seconds(server)
    started = time.perf_counter()
    while time.perf_counter() - started < args.seconds:
        client.log_metric(run, "single", value(sent), step=sent)
        sent += 1
    elapsed = time.perf_counter() - started
    rows["log_metric"] = (sent / elapsed, sent, (tree_cpu_seconds(server) - cpu) / sent)
    check(client, run, "single", sent, label, changed)
    client.set_terminated(run)
    rows["changed"], rows["example"] = changed
    return rows


def main():
    work = tempfile.mkdtemp(prefix="cml-bench-mlflow-")
    processes = []
    try:
        cml_port = free_port()
        cml = subprocess.Popen([args.serve, "--store", os.path.join(work, "store"), "--listen", f"127.0.0.1:{cml_port}"],
                               stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "cml-serve.log"), "w"))
        processes.append(cml)
        wait_for(cml_port, "/healthz", cml, "cml-serve")

        mlflow_port = free_port()
        env = dict(os.environ)
        mlflow = subprocess.Popen([args.mlflow, "server", "--backend-store-uri", f"sqlite:///{work}/mlflow.db",
                                   "--artifacts-destination", os.path.join(work, "mlflow-artifacts"),
                                   "--host", "127.0.0.1", "--port", str(mlflow_port)],
                                  stdout=open(os.path.join(work, "mlflow.log"), "w"), stderr=subprocess.STDOUT, env=env, cwd=work)
        processes.append(mlflow)
        wait_for(mlflow_port, "/health", mlflow, "mlflow server")

        version = subprocess.run([args.mlflow, "--version"], capture_output=True, text=True).stdout.strip()
        import mlflow as client_module
        print(f"client: mlflow {client_module.__version__}; MLflow's server: {version}, SQLite backend store; "
              f"{args.seconds:g} s per figure, one client process", flush=True)
        ours = measure(f"http://127.0.0.1:{cml_port}", "cml", cml.pid)
        if ours["changed"]:
            sys.exit(f"cml-serve read back {ours['changed']} values otherwise than they were sent")
        theirs = measure(f"http://127.0.0.1:{mlflow_port}", "mlflow", mlflow.pid)
        print()
        print("| what | cml-serve | MLflow's server (SQLite), same run | ratio |")
        print("|---|---|---|---|")
        names = {"log_batch": "points/s through `MlflowClient.log_batch`, 1000 metrics a call",
                 "log_metric": "points/s through `MlflowClient.log_metric`, one a call"}
        for row, name in names.items():
            (rate, sent, _), (other, other_sent, _) = ours[row], theirs[row]
            print(f"| {name} | {rate:,.0f} ({sent:,} points) | {other:,.0f} ({other_sent:,} points) | {rate / other:.2f} |")
        for row, name in names.items():
            mine, others = ours[row][2], theirs[row][2]
            print(f"| server CPU per point, {row} | {mine * 1e6:,.1f} µs | {others * 1e6:,.1f} µs | {others / mine:.1f}× less |")
        print(f"| values read back otherwise than sent (NaN, ±Infinity among them) | {ours['changed']} | {theirs['changed']} | |")
        if theirs["example"]:
            print(f"\nMLflow's server, first value read back otherwise: {theirs['example']}")
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(work, ignore_errors=True)


main()

#!/usr/bin/env python3
"""cml-serve under load from other processes on loopback:

  1. small GETs of run records per second (`wrk`, Debian's package, 2 threads, 16 connections), and
     the server's CPU time per GET beside its CPU time per `GET /healthz` (what any request costs);
  2. metric points per second ingested from 16 concurrent writers (each its own run, batches of
     --batch points through the store API, one kept-alive connection each), and the server's CPU time
     per point meanwhile;
  3. leases per second by 8 agents: --runs runs queued on one queue through the store API, then 8
     processes, each registered as an agent, lease and end each run as finished (as an agent whose
     command is `true` does) until the queue is empty; every run must have been leased exactly once
     and completed at its first attempt, else the script fails;
  4. the server's peak RSS (VmHWM) after that load;
  5. (with --agent-runs N) runs per second by 8 real `cml-agent --store URL --until-empty` processes, each
     with its own spool and work directory, draining N queued runs of `true`: leases, heartbeats, each
     run captured, uploaded and ended as on a worker; every run must complete at its first attempt.

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
parser.add_argument("--agents", type=int, default=8)
parser.add_argument("--runs", type=int, default=2000, help="runs queued for the agents to lease")
parser.add_argument("--agent-runs", type=int, default=0, help="runs of `true` for real cml-agent processes (0: not measured)")
args = parser.parse_args()


def tool(name, serve):
    """A cml tool beside the cml-serve `serve` (the store it makes must be of that build's schema), else
    this tree's release build, else its debug build."""
    build = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".build")
    for folder in (os.path.dirname(os.path.abspath(serve)), os.path.join(build, "release")):
        if os.path.exists(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return os.path.join(build, "debug", name)




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


def connect(url):
    host, port = url.split("//")[1].split(":")
    return http.client.HTTPConnection(host, int(port))


def call(connection, method, path, body=None, expect=200):
    """One request of the store API; the answer's body as JSON (None for an empty one)."""
    connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
    answer = connection.getresponse()
    data = answer.read()
    if answer.status != expect:
        sys.exit(f"{method} {path} answered {answer.status}, not {expect}: {data[:300]!r}")
    return json.loads(data) if data else None


def run_record(url, body):
    return call(connect(url), "POST", "/api/v1/store/runs", body=body)["id"]


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


def agent(url, number, ready, go, results):
    """One agent: registers, then leases runs and ends each as finished until none is left; puts the ids it leased."""
    connection = connect(url)
    now = time.time()
    agent_id = f"bench-agent-{number}-{os.getpid()}"
    call(connection, "POST", "/api/v1/store/agents", json.dumps({
        "id": agent_id, "name": agent_id, "host": "bench", "pid": os.getpid(), "queues": ["bench"], "slots": 1, "gpus": [],
        "state": "idle", "startedAt": now, "heartbeatAt": now, "leaseSeconds": 600, "runs": []}), expect=204)
    ready.put(number)
    go.wait()
    leased = []
    request = json.dumps({"queues": ["bench"], "seconds": 600})
    while True:
        lease = call(connection, "POST", f"/api/v1/store/agents/{agent_id}/lease", request)
        if lease is None:
            break
        leased.append(lease["runID"])
        end = {"lease": lease, "end": {"finished": {"_0": {"status": "completed", "endedAt": time.time(), "exitCode": 0}}}, "logBytes": 0}
        assert call(connection, "POST", "/api/v1/store/leases/end", json.dumps(end)) is True, lease["runID"]
    results.put(leased)


def queue_true(connection, queue, count, spec):
    """Queues `count` runs of `spec` on `queue` through the store API; returns their ids."""
    queued = []
    for first in range(0, count, 500):
        body = json.dumps({"specs": [spec] * min(500, count - first), "priority": 0, "maxAttempts": 1})
        queued += [run["id"] for run in call(connection, "POST", f"/api/v1/store/queues/{queue}/runs", body)["runs"]]
    return queued


def check_completed(connection, queue, queued):
    """Fails unless the server shows every run of `queue` completed at its first attempt."""
    connection.request("GET", "/api/v1/runs")
    listed = [json.loads(line) for line in connection.getresponse().read().decode().splitlines()]
    mine = [run for run in listed if run.get("queue") == queue]
    wrong = [run["id"] for run in mine if run["status"] != "completed" or run["attempt"] != 1]
    if wrong or sorted(run["id"] for run in mine) != sorted(queued):
        sys.exit(f"FAILED: the server does not show every run of {queue} completed at its first attempt: {wrong[:5]}")


def leases(url, scratch, serve):
    """Leases per second by --agents agents draining --runs queued runs; fails unless each was leased once."""
    # A spec as cml-queue makes it, in its wire form, queued --runs times in batches.
    queue_env = dict(os.environ, CML_STORE=url)
    subprocess.run([tool("cml-queue", serve), "add", "template", "--", "true"], check=True, env=queue_env, cwd=scratch,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    connection = connect(url)
    template = call(connection, "GET", "/api/v1/store/queued?queue=template")[0]["id"]
    spec = call(connection, "GET", f"/api/v1/store/runs/{template}/spec")
    call(connection, "POST", "/api/v1/store/queued/remove", json.dumps([template]), expect=204)
    queued = queue_true(connection, "bench", args.runs, spec)
    ready, go, results = multiprocessing.Queue(), multiprocessing.Event(), multiprocessing.Queue()
    agents = [multiprocessing.Process(target=agent, args=(url, n, ready, go, results)) for n in range(args.agents)]
    for a in agents:
        a.start()
    for _ in agents:
        ready.get()
    start_time = time.perf_counter()
    go.set()
    leased = [run for _ in agents for run in results.get()]
    elapsed = time.perf_counter() - start_time
    for a in agents:
        a.join()
        if a.exitcode != 0:
            sys.exit(f"an agent failed (exit status {a.exitcode})")
    # Each run leased once, by the agents' account and by the server's.
    twice = sorted({run for run in leased if leased.count(run) > 1}) if len(leased) != len(set(leased)) else []
    never = set(queued) - set(leased)
    if twice or never or len(leased) != len(queued):
        sys.exit(f"FAILED: {len(leased)} leases of {len(queued)} queued runs; leased more than once: {twice[:5]}; never: {sorted(never)[:5]}")
    check_completed(connection, "bench", queued)
    agent_rate = real_agents(url, scratch, connection, spec, serve) if args.agent_runs else None
    return len(leased) / elapsed, agent_rate


def real_agents(url, scratch, connection, spec, serve):
    """Runs per second by --agents real cml-agent processes draining --agent-runs runs of `true`."""
    queued = queue_true(connection, "agents", args.agent_runs, spec)
    start_time = time.perf_counter()
    agents = []
    for n in range(args.agents):
        home = os.path.join(scratch, f"agent-{n}")
        os.makedirs(home)
        agents.append(subprocess.Popen([tool("cml-agent", serve), "--store", url, "--queue", "agents", "--until-empty", "--name", f"bench-{n}",
                                        "--workdir", os.path.join(home, "work")],
                                       env=dict(os.environ, XDG_CACHE_HOME=os.path.join(home, "cache"), CML_TOKEN=""),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for a in agents:
        if a.wait() != 0:
            sys.exit(f"a cml-agent failed (exit status {a.returncode})")
    elapsed = time.perf_counter() - start_time
    check_completed(connection, "agents", queued)
    return len(queued) / elapsed


def cpu_seconds(pid):
    """The user and system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(pid, url):
    """wrk on `url`: requests per second, and the server's CPU microseconds per request meanwhile."""
    before = cpu_seconds(pid)
    wrk = subprocess.run(["wrk", "-t2", "-c16", f"-d{int(args.seconds)}s", url], check=True, capture_output=True, text=True).stdout
    used = cpu_seconds(pid) - before
    requests = int(re.search(r"(\d+) requests in", wrk).group(1))
    return float(re.search(r"Requests/sec:\s+([\d.]+)", wrk).group(1)), used / requests * 1e6


def measure(serve):
    scratch = tempfile.mkdtemp(prefix="cml-bench-serve-")
    store = os.path.join(scratch, "store")
    env = dict(os.environ, CML_STORE=store)
    cml_run = tool("cml-run", serve)
    subprocess.run([cml_run, "--", "true"], check=True, env=env, cwd=scratch, stderr=subprocess.DEVNULL)
    run_id = json.loads(subprocess.run([cml_run, "ls", "--format", "jsonl"], check=True, env=env, capture_output=True).stdout)["id"]
    server, url = start(serve, store)
    try:
        gets, get_cpu = load(server.pid, f"{url}/api/v1/runs/{run_id}")
        _, health_cpu = load(server.pid, f"{url}/healthz")
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
        cpu_before = cpu_seconds(server.pid)
        start_time = time.perf_counter()
        for w in workers:
            w.start()
        total = sum(results.get() for _ in workers)
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - start_time
        point_cpu = (cpu_seconds(server.pid) - cpu_before) / total * 1e9
        leased, agent_rate = leases(url, scratch, serve)
        return gets, get_cpu, health_cpu, total / elapsed, point_cpu, leased, agent_rate, peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(scratch, ignore_errors=True)


for serve in [args.serve] + ([args.against] if args.against else []):
    gets, get_cpu, health_cpu, points, point_cpu, leased, agent_rate, rss = measure(os.path.abspath(serve))
    print(f"{os.path.relpath(serve)}: {gets:,.0f} GETs/s of a run record (wrk, 2 threads, 16 connections, {args.seconds:.0f} s; target >= 10,000), "
          f"{get_cpu:,.0f} µs of the server's CPU each, {health_cpu:,.0f} µs for GET /healthz; "
          f"{points:,.0f} points/s from {args.writers} writers in batches of {args.batch} (target >= 500,000), "
          f"{point_cpu:,.0f} ns of the server's CPU each; "
          f"{leased:,.0f} leases/s by {args.agents} agents draining {args.runs} runs, each leased once; "
          + (f"{agent_rate:,.1f} runs/s of `true` by {args.agents} cml-agent processes draining {args.agent_runs} runs; " if agent_rate else "") +
          f"peak RSS {rss:.1f} MB (target < 100 MB)")

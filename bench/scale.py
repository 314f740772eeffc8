#!/usr/bin/env python3
"""Issue 4's scale benchmark, on a generated store of 10,000 runs, each with 20 params, 20 metrics and
1,000 points per metric (200 million points), plus one run whose `loss` has 1,000,000 points:

  1. `cml-run ls --where … --sort …` over all runs (all matches printed, and the top 10), against the
     floor of the same filter and sort as one SQL query in Python's sqlite3 on the same database;
  2. `cml-diff` of 100 runs (ids piped from `cml-run ls`), against `cml-run show` of the same 100;
  3. `cml-diff --plot loss` of the 1,000,000-point run, against `cml-run metrics` streaming the same
     points to /dev/null.

The store is generated once (SQL inside SQLite: a few minutes and about 8 GB) and kept in --data.
Usage: python3 bench/scale.py [--bin .build/release] [--data /tmp/cml-bench-scale] [--repeat 5]
       python3 bench/scale.py --runs N --points N --generate-only   (prints the store's path; bench/web.py uses it)
"""
import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import time

parser = argparse.ArgumentParser()
parser.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", ".build", "release"))
parser.add_argument("--data", default="/tmp/cml-bench-scale")
parser.add_argument("--runs", type=int, default=10_000)
parser.add_argument("--points", type=int, default=1_000, help="points per metric")
parser.add_argument("--repeat", type=int, default=5)
parser.add_argument("--generate-only", action="store_true", help="generate the store (unless it is there), print its path, stop")
args = parser.parse_args()
binaries = os.path.abspath(args.bin)
store = os.path.join(args.data, f"store-{args.runs}x{args.points}")
env = dict(os.environ, CML_STORE=store)
PARAMS, METRICS, BIG = 20, 20, 1_000_000


def cml(tool, *arguments, stdin=None):
    return subprocess.run([os.path.join(binaries, tool), *arguments], env=env, input=stdin, capture_output=True, check=True).stdout


def generate():
    """The schema comes from cml itself (a first run creates the store); rows are generated in SQL."""
    os.makedirs(store, exist_ok=True)
    cml("cml-run", "--monitor-interval", "0", "--no-tensorboard", "--", "true")
    db = sqlite3.connect(os.path.join(store, "cml.db"), isolation_level=None)
    db.execute("DELETE FROM runs")
    # Bulk loading: no WAL (it would hold all 8 GB once more), no syncs; WAL again at the end.
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-1000000")
    db.execute("BEGIN")
    db.execute("CREATE TEMP TABLE n(i INTEGER PRIMARY KEY)")
    db.execute(f"WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < {max(args.runs, BIG) - 1}) INSERT INTO n SELECT i FROM c")
    start = 1.79e9
    # Run r: lr = 10^-(1 + r % 4), batch 2^(4 + r % 5), opt adam/sgd, 17 more numeric params.
    db.execute(f"""INSERT INTO runs (id, name, project, status, command, cwd, host, user, pid, started_at, ended_at, exit_code, env, code)
        SELECT printf('%016x%016x', {int(start * 1000)} + i, i), 'run-' || i, 'proj-' || (i % 10),
               CASE WHEN i % 17 = 0 THEN 'failed' ELSE 'completed' END, '["python","train.py"]', '/work', 'bench', 'u', NULL,
               {start} + i * 60, {start} + i * 60 + 30 + i % 600, CASE WHEN i % 17 = 0 THEN 1 ELSE 0 END, '{{}}', '{{"in_repository":false}}'
        FROM n WHERE i < {args.runs}""")
    db.execute("CREATE TEMP TABLE r AS SELECT id, CAST(substr(name, 5) AS INTEGER) AS k FROM runs")
    db.execute("CREATE INDEX temp.r_by_id ON r(id)")
    db.execute("INSERT INTO params (run_id, key, value, number, source) SELECT id, 'lr', CAST(power AS TEXT), power, 'argv' FROM "
               "(SELECT id, CASE k % 4 WHEN 0 THEN 0.1 WHEN 1 THEN 0.01 WHEN 2 THEN 0.001 ELSE 0.0001 END AS power FROM r)")
    db.execute("INSERT INTO params SELECT id, 'batch', CAST(16 << (k % 5) AS TEXT), 16 << (k % 5), 'argv' FROM r")
    db.execute("INSERT INTO params SELECT id, 'opt', CASE k % 2 WHEN 0 THEN '\"adam\"' ELSE '\"sgd\"' END, NULL, 'argv' FROM r")
    for p in range(PARAMS - 3):
        db.execute(f"INSERT INTO params SELECT id, 'p{p:02}', CAST((k * {p + 7}) % 100 AS TEXT), (k * {p + 7}) % 100, 'argv' FROM r")
    # Metric m of run k climbs from 0 towards a ceiling that depends on the run: acc ends in [0.5, 1).
    names = ["acc", "loss"] + [f"m{m:02}" for m in range(METRICS - 2)]
    for index, name in enumerate(names):
        db.execute(f"INSERT INTO metric_series (run_id, key, count, last, min, max, last_step, last_time) "
                   f"SELECT id, '{name}', 0, NULL, NULL, NULL, 0, 0 FROM r")
    db.execute(f"""INSERT INTO metric_points (series, seq, step, value, time)
        SELECT s.id, n.i, n.i,
               CASE WHEN s.key = 'loss' THEN 2.0 / (1 + n.i * (1 + r.k % 7) / 100.0)
                    ELSE (0.5 + (r.k * 7919 % 1000) / 2000.0) * n.i / {args.points - 1} + ((n.i * 31 + r.k) % 13) / 1000.0 END,
               {start} + r.k * 60 + n.i * 0.03
        FROM metric_series s JOIN r ON r.id = s.run_id JOIN n ON n.i < {args.points}
        ORDER BY s.id, n.i""")
    # The 1,000,000-point run, for the plot.
    db.execute(f"""INSERT INTO runs (id, name, project, status, command, cwd, host, user, started_at, ended_at, exit_code, env, code)
        VALUES ('ffffffffffffffff0000000000000000', 'long', 'long', 'completed', '["python","long.py"]', '/work', 'bench', 'u',
                {start}, {start + 3600}, 0, '{{}}', '{{"in_repository":false}}')""")
    db.execute("INSERT INTO metric_series (run_id, key, count, last_step, last_time) VALUES ('ffffffffffffffff0000000000000000', 'loss', 0, 0, 0)")
    big = db.execute("SELECT last_insert_rowid()").fetchone()[0]
    db.execute(f"""INSERT INTO metric_points (series, seq, step, value, time)
        SELECT {big}, i, i, 2.0 / (1 + i / 1000.0) + (i % 97) / 5000.0 + CASE WHEN i = 654321 THEN 3 ELSE 0 END, {start} + i * 0.0036
        FROM n WHERE i < {BIG}""")
    db.execute("""UPDATE metric_series SET (count, last, min, max, last_step, last_time) = (
        SELECT COUNT(*), (SELECT value FROM metric_points p2 WHERE p2.series = metric_series.id ORDER BY seq DESC LIMIT 1),
               MIN(value), MAX(value), MAX(step), MAX(time) FROM metric_points p WHERE p.series = metric_series.id)""")
    db.execute("COMMIT")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("ANALYZE")
    db.close()
    open(os.path.join(store, ".generated"), "w").close()


def best_of(body):
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        body()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


if not os.path.exists(os.path.join(store, ".generated")):
    began = time.perf_counter()
    generate()
    print(f"generated {args.runs:,} runs x {METRICS} metrics x {args.points:,} points in {time.perf_counter() - began:.0f} s")
if args.generate_only:
    print(store)
    raise SystemExit(0)

where = "acc > 0.9 and lr <= 0.01 and status = completed"
matches = len(cml("cml-run", "ls", "--where", where, "--sort", "-acc", "--format", "jsonl").splitlines())
ls_all = best_of(lambda: cml("cml-run", "ls", "--where", where, "--sort", "-acc", "--format", "jsonl"))
ls_top = best_of(lambda: cml("cml-run", "ls", "--where", where, "--sort", "-acc", "--limit", "10", "--format", "jsonl"))
floor_db = sqlite3.connect(os.path.join(store, "cml.db"))
floor_sql = """SELECT r.id FROM runs r
    JOIN metric_series a ON a.run_id = r.id AND a.key = 'acc' JOIN params l ON l.run_id = r.id AND l.key = 'lr'
    WHERE a.last > 0.9 AND l.number <= 0.01 AND r.status = 'completed' ORDER BY a.last DESC"""
assert len(floor_db.execute(floor_sql).fetchall()) == matches
floor = best_of(lambda: floor_db.execute(floor_sql).fetchall())

hundred = cml("cml-run", "ls", "--limit", "100", "--format", "jsonl")
ids = [json.loads(line)["id"] for line in hundred.splitlines()]
diff = best_of(lambda: cml("cml-diff", stdin=hundred))
show = best_of(lambda: cml("cml-run", "show", *ids))

listing = best_of(lambda: cml("cml-run", "ls", "--format", "jsonl"))
projects = best_of(lambda: cml("cml-run", "projects", "--format", "jsonl"))

long_run = "ffffffffffffffff0000000000000000"
plot = best_of(lambda: cml("cml-diff", long_run, "--plot", "loss"))
stream = best_of(lambda: cml("cml-run", "metrics", long_run, "--key", "loss"))

print(f"store: {args.runs:,} runs, {PARAMS} params and {METRICS} metrics each, {args.points:,} points per metric; "
      f"best and median of {args.repeat}")
print(f"ls --where '{where}' --sort -acc ({matches:,} runs printed): {ls_all[0] * 1000:.0f} ms (median {ls_all[1] * 1000:.0f}); "
      f"SQL floor {floor[0] * 1000:.0f} ms; target < 300 ms")
print(f"  the same with --limit 10: {ls_top[0] * 1000:.0f} ms (median {ls_top[1] * 1000:.0f})")
print(f"cml-run ls of all {args.runs:,} runs as JSON lines: {listing[0] * 1000:.0f} ms (median {listing[1] * 1000:.0f}); "
      f"cml-run projects: {projects[0] * 1000:.0f} ms")
print(f"cml-diff of 100 runs: {diff[0] * 1000:.0f} ms (median {diff[1] * 1000:.0f}); cml-run show of the same 100: "
      f"{show[0] * 1000:.0f} ms; target < 500 ms")
print(f"cml-diff --plot loss, 1,000,000 points: {plot[0] * 1000:.0f} ms (median {plot[1] * 1000:.0f}); "
      f"cml-run metrics streaming them: {stream[0] * 1000:.0f} ms; target < 1000 ms")

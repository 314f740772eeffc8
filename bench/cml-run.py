#!/usr/bin/env python3
"""cml-run's costs, each against a baseline measured in the same run (these machines are noisy):

  1. wall time cml-run adds to `true`: median over N interleaved pairs, outside and inside a git repository,
     and in a directory of 60,000 files (the bound of the search for TensorBoard event files);
  2. throughput of a child writing 1 GiB to stdout through cml-run, against the same child through `cat`
     (to /dev/null: a bare pipe; and to a file: a pipe that also stores every byte, as cml-run does);
  3. lines per second of the metric parser (`cml-run parse`) on a million lines of training output;
  4. (row `server`) what `cml-run --store http://…` adds over a local store, against a cml-serve on
     loopback (the run goes to the spool, then up before cml-run exits): median over N interleaved pairs;
     OTHER too, against the same server.

With --against OTHER (another build of cml-run, say an older commit's), every row also times OTHER,
interleaved with the rest, each binary with its own store.

Usage: python3 bench/cml-run.py [--bin .build/release/cml-run] [--against OTHER] [--pairs 30] [--gib 1]
"""
import argparse
import ctypes
import ctypes.util
import os
import random
import shlex
import shutil
import statistics
import subprocess
import tempfile
import time

parser = argparse.ArgumentParser()
parser.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", ".build", "release", "cml-run"))
parser.add_argument("--pairs", type=int, default=30)
parser.add_argument("--gib", type=float, default=1.0)
parser.add_argument("--repeat", type=int, default=3)
parser.add_argument("--against", help="another cml-run binary to time in every row, interleaved")
parser.add_argument("--rows", default="overhead,throughput,parser", help="which of overhead, throughput, parser, server to measure")
parser.add_argument("--serve", help="the cml-serve for the server row (default: beside --bin, else the debug build)")
args = parser.parse_args()
cml = os.path.abspath(args.bin)
scratch = tempfile.mkdtemp(prefix="cml-bench-")
env = dict(os.environ, CML_STORE=os.path.join(scratch, "store"))


def timed(command, env=env, **kwargs):
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, **kwargs)
    return time.perf_counter() - start


other_env = dict(os.environ, CML_STORE=os.path.join(scratch, "other-store"))


def overhead(where):
    subprocess.run([cml, "--", "true"], check=True, env=env, cwd=where)  # the store exists before timing
    if args.against:
        subprocess.run([args.against, "--", "true"], check=True, env=other_env, cwd=where, stderr=subprocess.DEVNULL)
    bare, wrapped, other = [], [], []
    for _ in range(args.pairs):
        bare.append(timed(["true"], cwd=where))
        # stderr: in the big directory each run warns that the TensorBoard search stopped at its limit.
        wrapped.append(timed([cml, "--", "true"], cwd=where, stderr=subprocess.DEVNULL))
        if args.against:
            start = time.perf_counter()
            subprocess.run([args.against, "--", "true"], check=True, env=other_env, cwd=where, stderr=subprocess.DEVNULL)
            other.append(time.perf_counter() - start)
    b, w = statistics.median(bare), statistics.median(wrapped)
    o = statistics.median(other) - b if other else None
    return b * 1e3, w * 1e3, (w - b) * 1e3, (o * 1e3 if o is not None else None)


print(f"cml-run: {cml}")
rows = args.rows.split(",")
if "overhead" in rows:
    outside = os.path.join(scratch, "plain")
    os.makedirs(outside)
    # A clean clone of this repository, then the same with an uncommitted edit (a patch to capture and store).
    clone = os.path.join(scratch, "clone")
    subprocess.run(["git", "clone", "-q", os.path.abspath(os.path.join(os.path.dirname(__file__), "..")), clone], check=True)
    # 60 directories of 1,000 empty files: the end-of-run search for TensorBoard event files stops at 50,000.
    big = os.path.join(scratch, "big")
    for d in range(60):
        os.makedirs(os.path.join(big, f"d{d}"))
        for i in range(1000):
            open(os.path.join(big, f"d{d}", f"{i}.jpg"), "w").close()
    places = [("outside a repository", outside, None, "target <= 15 ms"),
              ("in a clean clone of this repository", clone, None, "target <= 15 ms"),
              ("in that clone with README.md edited", clone, "README.md", "target <= 15 ms"),
              ("in a directory of 60,000 files", big, None, "bounded by the TensorBoard search's 50,000 entries")]
    for label, where, edit, target in places:
        if edit:
            with open(os.path.join(where, edit), "a") as changed:
                changed.write("an uncommitted line\n")
        b, w, added, other = overhead(where)
        print(f"overhead {label}: true {b:.2f} ms, cml-run -- true {w:.2f} ms, added {added:.2f} ms "
              f"(median of {args.pairs} pairs; {target})"
              + (f"; {args.against} adds {other:.2f} ms" if other is not None else ""))

    # What libgit2's own initialisation costs (inside a repository cml-run cannot avoid it), in this process.
    libgit2 = ctypes.CDLL(ctypes.util.find_library("git2"))
    start = time.perf_counter()
    libgit2.git_libgit2_init()
    print(f"libgit2 initialisation alone: {(time.perf_counter() - start) * 1e3:.2f} ms")

if "throughput" in rows:
    size = int(args.gib * (1 << 30))
    line = "epoch 3 | batch 120/500 | an ordinary line of training output without a metric in it"
    producer = f"yes '{line}' | head -c {size}"
    stored = os.path.join(scratch, "cat-output")


    def best(command):
        return min(timed(["sh", "-c", command]) for _ in range(args.repeat))


    # Varied text: timestamped lines of random words (every line has a ':', so every line is parsed), 64 MiB
    # of it repeated; each stored record is compressed on its own, so the repetition does not help.
    random.seed(2)
    vocabulary = "the model data loader worker saving checkpoint warmup cuda memory gradient shard epoch batch".split()
    varied = os.path.join(scratch, "varied.txt")
    with open(varied, "w") as out:
        written = 0
        while written < 64 << 20:
            text = (f"[2026-11-27 10:{random.randrange(60):02d}:{random.randrange(60):02d}] "
                    + " ".join(random.choice(vocabulary) for _ in range(10)) + f" {random.random():.6f}\n")
            out.write(text)
            written += len(text)
    copies = max(1, size // (64 << 20))
    varied_producer = f"for i in $(seq {copies}); do cat {varied}; done"

    mib = size / (1 << 20)
    for label, source in [("repeated line", producer), ("varied text", varied_producer)]:
        cat_null = best(f"{source} | cat > /dev/null")
        cat_file = best(f"{source} | cat > {stored}; rm -f {stored}")
        through = best(f"{cml} -- sh -c {shlex.quote(source)} > /dev/null")
        logs = os.path.join(scratch, "store", "logs")
        newest = max((os.path.join(logs, name) for name in os.listdir(logs)), key=os.path.getmtime)
        print(f"stored log of the last run: {os.path.getsize(newest) / (1 << 20):.1f} MiB for {mib:.0f} MiB of output")
        print(f"throughput of {mib:.0f} MiB of {label} (best of {args.repeat}): cat > /dev/null {mib / cat_null:.0f} MiB/s, "
              f"cat > file {mib / cat_file:.0f} MiB/s, cml-run {mib / through:.0f} MiB/s; "
              f"ratio to cat > /dev/null {cat_null / through:.2f}, to cat > file {cat_file / through:.2f} (target >= 0.5)")
        if args.against:
            other_through = min(timed(["sh", "-c", f"{args.against} -- sh -c {shlex.quote(source)} > /dev/null"], env=other_env)
                                for _ in range(args.repeat))
            print(f"  {args.against}: {mib / other_through:.0f} MiB/s; ratio to cat > /dev/null {cat_null / other_through:.2f}, "
                  f"to cat > file {cat_file / other_through:.2f}")

if "parser" in rows:
    random.seed(1)
    words = "the model data loader worker saving checkpoint warmup cuda memory".split()
    sample = os.path.join(scratch, "output.txt")
    with open(sample, "w") as out:
        for i in range(1_000_000):
            kind = i % 4
            if kind == 0:
                out.write(f"epoch={i // 1000} step={i} loss={random.random():.5f} acc={random.random():.4f}\n")
            elif kind == 1:
                out.write(f"[2026-11-27 10:{i % 60:02d}:{i % 60:02d}] " + " ".join(random.choice(words) for _ in range(8)) + "\n")
            elif kind == 2:
                out.write(f"Iteration {i}, lr: {random.random() * 1e-3:.2e} grad_norm: {random.random() * 5:.3f}\n")
            else:
                out.write(f"{i}/1000000 [00:{i % 60:02d}<00:10, {random.random() * 500:.2f}it/s]\n")
    with open(sample, "rb") as source:
        wc_time = min(timed(["wc", "-l"], stdin=source, stdout=subprocess.DEVNULL) for _ in range(args.repeat) if source.seek(0) == 0)

    # One run each in turn, OTHER's interleaved with ours, so that both see the same moments of the machine.
    def parse_once(binary):
        with open(sample, "rb") as source:
            return timed([binary, "parse"], stdin=source, stdout=subprocess.DEVNULL)


    times = [(parse_once(cml), parse_once(args.against) if args.against else None) for _ in range(3 * args.repeat)]
    parse_time, other_parse = min(t for t, _ in times), (min(o for _, o in times) if args.against else None)
    points = int(subprocess.run(f"{cml} parse < {sample} | wc -l", shell=True, env=env, capture_output=True, text=True).stdout)
    print(f"metric parser on 1,000,000 lines (best of {3 * args.repeat}): {1e6 / parse_time / 1e6:.2f} M lines/s, {points} points "
          f"({parse_time:.3f} s including start-up and JSON output; wc -l takes {wc_time:.3f} s; target >= 1 M lines/s)"
          + (f"; {args.against}: {1e6 / other_parse / 1e6:.2f} M lines/s ({other_parse:.3f} s)" if other_parse else ""))
shutil.rmtree(scratch)

if "server" in rows:
    serve = args.serve or os.path.join(os.path.dirname(cml), "cml-serve")
    if not os.path.exists(serve):
        serve = os.path.join(os.path.dirname(__file__), "..", ".build", "debug", "cml-serve")
    served = dict(os.environ, CML_STORE=os.path.join(scratch, "served"), XDG_CACHE_HOME=os.path.join(scratch, "cache"))
    server = subprocess.Popen([serve, "--listen", "127.0.0.1:0"], env=served, stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip().split(" on ")[-1]
        remote = dict(served, CML_STORE=url)
        plain = os.path.join(scratch, "plain-server")
        os.makedirs(plain, exist_ok=True)
        # OTHER (--against) against the same server, with its own local store and spool.
        other_remote = dict(remote, XDG_CACHE_HOME=os.path.join(scratch, "other-cache"))
        binaries = [(cml, env, remote)] + ([(args.against, other_env, other_remote)] if args.against else [])
        for binary, local_env, remote_env in binaries:
            for e in (local_env, remote_env):
                subprocess.run([binary, "--", "true"], check=True, env=e, cwd=plain)
        times = [([], []) for _ in binaries]
        for _ in range(args.pairs):
            for (binary, local_env, remote_env), (local, over) in zip(binaries, times):
                local.append(timed([binary, "--", "true"], env=local_env, cwd=plain))
                over.append(timed([binary, "--", "true"], env=remote_env, cwd=plain))
        for (binary, _, _), (local, over) in zip(binaries, times):
            l, o = statistics.median(local), statistics.median(over)
            print(f"server: {binary} -- true {l * 1e3:.2f} ms on a local store, {o * 1e3:.2f} ms with --store {url} "
                  f"({os.path.relpath(serve)}), added {(o - l) * 1e3:.2f} ms (median of {args.pairs} pairs; target <= 5 ms)")
    finally:
        server.terminate()
        server.wait()

#!/usr/bin/env python3
"""Issue 15's page benchmark: how long headless Chromium takes to show a complete page of cml-serve's web UI.

  1. the chart page: `/runs/{id}` of a run with 10 metrics x 100,000 points, from the navigation's start
     to the tenth chart's line in the page (the charts are fetched by the page's script after it loads);
  2. the runs page of a store of 10,000 runs (20 params and 20 metrics each): `/`, sorted by a metric,
     filtered with a `--where` expression, 1,000 rows a page, and the last page; from the navigation's
     start to the load event (the page is whole HTML from the server), and the server's part (the
     response's end).

The browser's cache is off, so every page fetches its stylesheet and scripts as on a first visit. Each
figure is the best and the median of --repeat loads; with --against OTHER_CML_SERVE the same pages are
loaded from that server on the same store, alternating, so both see the same machine.

The 10,000 runs come from `bench/scale.py --generate-only` (SQL inside SQLite, 10 points a metric); the
chart run is recorded into the same store by cml-run through $CML_LOG_FD. Both are kept in --data.
Needs chromium, chromium-driver (Debian) and selenium (PyPI), as the browser tests do.
Usage: python3 bench/web.py [--bin .build/release] [--run-bin DIR] [--against OTHER_CML_SERVE] [--repeat 5]
"""
import os
import sys

# This folder's queue.py would shadow the standard library's, which selenium's imports reach.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import re  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
parser = argparse.ArgumentParser()
parser.add_argument("--bin", default=os.path.join(here, "..", ".build", "release"), help="where this build's cml-serve is")
parser.add_argument("--run-bin", help="where cml-run is (default: --bin)")
parser.add_argument("--against", help="another cml-serve to load the same pages from, in the same run")
parser.add_argument("--data", default="/tmp/cml-bench-web")
parser.add_argument("--repeat", type=int, default=5)
args = parser.parse_args()
serves = {"this": os.path.abspath(os.path.join(args.bin, "cml-serve"))}
if args.against:
    serves["against"] = os.path.abspath(args.against)
run_bin = os.path.abspath(args.run_bin or args.bin)

store = subprocess.run([sys.executable, os.path.join(here, "scale.py"), "--bin", run_bin, "--runs", "10000", "--points", "10",
                        "--data", args.data, "--generate-only"], check=True, capture_output=True, text=True).stdout.splitlines()[-1]
env = dict(os.environ, CML_STORE=store)
chart_marker = os.path.join(store, ".chart-run")
if not os.path.exists(chart_marker):
    program = os.path.join(args.data, "ten.awk")
    with open(program, "w") as f:
        f.write("BEGIN { for (i = 0; i < 100000; i++) printf \"{\\\"step\\\": %d" + "".join(f", \\\"m{k}\\\": %f" for k in range(10))
                + "}\\n\", i" + "".join(f", sin(i / {1000 + 100 * k}) + {k}" for k in range(10)) + " }\n")
    subprocess.run([os.path.join(run_bin, "cml-run"), "--name", "ten-charts", "--project", "charts", "--monitor-interval", "0", "--",
                    "sh", "-c", f"awk -f {program} >&$CML_LOG_FD"], check=True, env=env, stdout=subprocess.DEVNULL)
    listed = subprocess.run([os.path.join(run_bin, "cml-run"), "ls", "--project", "charts", "--format", "jsonl"],
                            check=True, env=env, capture_output=True, text=True).stdout
    with open(chart_marker, "w") as f:
        f.write(re.search(r'"id": ?"([0-9a-f]+)"', listed).group(1))
chart_run = open(chart_marker).read().strip()

total = sqlite3.connect(os.path.join(store, "cml.db")).execute("SELECT COUNT(*) FROM runs").fetchone()[0]
last_page = (total + 99) // 100
pages = [
    ("chart page: 10 metrics x 100,000 points, to the 10th chart drawn", f"/runs/{chart_run}", 10),
    (f"runs page of {total:,} runs: /", "/", 50),
    ("  sorted by a metric: /runs?sort=-acc", "/runs?sort=-acc", 50),
    ("  filtered: where acc > 0.9 and lr <= 0.01, sort -acc", "/runs?" + urllib.parse.urlencode({"where": "acc > 0.9 and lr <= 0.01", "sort": "-acc"}), 50),
    ("  1,000 rows a page: /runs?per=1000", "/runs?per=1000", 1000),
    (f"  its last page: /runs?per=100&page={last_page}", f"/runs?per=100&page={last_page}", total - 100 * (last_page - 1)),
]

# Runs before any page script: notes the moment the page holds `expected` drawn chart lines, in the
# page's own clock (0 = the navigation's start).
WATCH_CHARTS = """
window.__chartsDrawn = null;
new MutationObserver(function () {
  if (window.__chartsDrawn === null && document.querySelectorAll('svg.cml-chart path.series').length >= 10)
    window.__chartsDrawn = performance.now();
}).observe(document, { childList: true, subtree: true });
"""


def browser():
    options = webdriver.ChromeOptions()
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000", "--disable-gpu"]:
        options.add_argument(argument)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(60)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH_CHARTS})
    return driver


def start(serve):
    server = subprocess.Popen([serve, "--listen", "127.0.0.1:0", "--store", store], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = int(re.search(r":(\d+)$", server.stdout.readline().strip()).group(1))
    return server, f"http://127.0.0.1:{port}"


def load(driver, base, path, rows):
    """One load of `path`: (ms to complete, ms to the server's last byte)."""
    driver.get(base + path)
    navigation = driver.execute_script("const n = performance.getEntriesByType('navigation')[0]; return [n.responseEnd, n.loadEventEnd];")
    if path.startswith("/runs/"):
        deadline = time.time() + 60
        while driver.execute_script("return window.__chartsDrawn") is None:
            if time.time() > deadline:
                raise SystemExit(f"{path}: the ten charts were not drawn within 60 s")
            time.sleep(0.02)
        return driver.execute_script("return window.__chartsDrawn"), navigation[0]
    shown = driver.execute_script("return document.querySelectorAll('table.runs tbody tr[data-run]').length")
    if shown != rows:
        raise SystemExit(f"{path}: {shown} rows in the table, not {rows}")
    return navigation[1], navigation[0]


servers = {name: start(serve) for name, serve in serves.items()}
driver = browser()
try:
    times = {(name, path): [] for name in serves for _, path, _ in pages}
    for _, path, rows in pages:
        for name in serves:
            load(driver, servers[name][1], path, rows)  # a first load: the store's pages in the OS cache
    for _ in range(args.repeat):
        for _, path, rows in pages:
            for name in serves:
                times[(name, path)].append(load(driver, servers[name][1], path, rows))
finally:
    driver.quit()
    for server, _ in servers.values():
        server.terminate()
        server.wait(10)

print(f"store: {store}; best (median) of {args.repeat} loads in headless Chromium, cache off; target < 1,000 ms each")
for label, path, _ in pages:
    line = label
    for name in serves:
        complete = [t[0] for t in times[(name, path)]]
        server_part = [t[1] for t in times[(name, path)]]
        line += (f" | {name}: {min(complete):.0f} ms ({statistics.median(complete):.0f}), "
                 f"server's answer {min(server_part):.0f} ms")
    print(line)

#!/usr/bin/env python3
"""The web UI of cml-serve in a real browser: headless Chromium driven by selenium, against the built
cml-serve serving real stores that the built cml-run and cml-log fill. Each check looks at what a
person sees (the text of cells, messages, where a caret points) and saves screenshots in --out.

Usage: python3 Tests/Browser/web_ui.py --bin .build/debug --out DIR [--only NAME…]
Exits 0 when every check passes; otherwise prints each failure and exits 1. Run by CLITests'
BrowserTests, so `scripts/test` runs it. Needs chromium, chromium-driver (Debian) and selenium (PyPI).
"""
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

import harness
from harness import IMAGE, SCRIPT, Store, check, not_pwned, options, run_checks, shot, wait

args = options(1200)


def rows(driver):
    """The runs table as a person reads it: one dict per run, column name to cell text."""
    keys = [th.get_attribute("data-key") for th in driver.find_elements(By.CSS_SELECTOR, "table.runs thead th[data-key]")]
    table = []
    for tr in driver.find_elements(By.CSS_SELECTOR, "table.runs tbody tr[data-run]"):
        cells = [td.text for td in tr.find_elements(By.CSS_SELECTOR, "td[data-col]")]
        table.append(dict(zip(keys, cells)))
    return table


def post(driver, fields):
    """POSTs a form to /runs/actions from the page's own script context (same origin), as a page's
    form would; returns the final status after redirects."""
    return driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/runs/actions', {method: 'POST', body: new URLSearchParams(arguments[0]), credentials: 'same-origin'})
          .then(r => done(r.status)).catch(e => done(String(e)));
        """, fields)


def fill(store):
    """Runs in two projects with known parameters and metrics, one whose every text is markup, and one to delete."""
    store.write("train.py", """
import sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
final = float(args["--final"])
for epoch in range(3):
    print(f"epoch {epoch} loss: {1 - final * (epoch + 1) / 3:.4f} acc: {final * (epoch + 1) / 3:.4f}")
""")
    for name, project, lr, final in [("v-a", "vision", "0.1", "0.91"), ("v-b", "vision", "0.01", "0.95"),
                                     ("v-c", "vision", "0.001", "0.8"), ("n-a", "nlp", "0.1", "0.6"), ("n-b", "nlp", "0.05", "0.7")]:
        store.cml("cml-run", "--name", name, "--project", project, "--tag", "sweep", "--", "python3", "train.py", "--lr", lr, "--final", final)
    store.write("evil.txt", "bytes\n")
    store.write("evil.py", f"""
import subprocess, sys
print({SCRIPT!r})
print({IMAGE!r})
subprocess.run([{os.path.join(harness.BIN, 'cml-log')!r}, "artifact", "evil.txt", "--name", {SCRIPT + IMAGE!r}], check=True,
               stdout=subprocess.DEVNULL)
""")
    store.cml("cml-run", "--name", SCRIPT, "--project", "vision", "--tag", SCRIPT, "--tag", IMAGE, "--",
              "python3", "evil.py", "--note", IMAGE, "--html", SCRIPT)
    store.cml("cml-run", "--name", "doomed", "--project", "nlp", "--", "sh", "-c", "echo acc: 0.1")


# The checks. Each takes the shared store (filled by `fill`), its server's URL and a browser.

def table_values(store, url, driver):
    driver.get(url + "/runs?columns=name,status,lr,acc,acc.max,tags&project=vision")
    shot(driver, "runs-values")
    table = {row["name"]: row for row in rows(driver)}
    check(set(table) == {"v-a", "v-b", "v-c", SCRIPT}, f"the vision runs, not {sorted(table)}")
    check(table["v-b"] == {"name": "v-b", "status": "completed", "lr": "0.01", "acc": "0.95", "acc.max": "0.95", "tags": "sweep"},
          f"run v-b's row: {table['v-b']}")
    check(table["v-c"]["lr"] == "0.001" and table["v-c"]["acc"] == "0.8", f"run v-c's row: {table['v-c']}")
    # The default page: every project, grouped, its headings counting their runs.
    driver.get(url + "/")
    shot(driver, "runs-default")
    groups = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "tr.group th")]
    check(groups == ["nlp · 3 runs", "vision · 4 runs"], f"the project headings: {groups}")
    names = [row["name"] for row in rows(driver)]
    check(len(names) == 7 and names.index("v-a") > names.index("n-a"), f"runs grouped by project: {names}")


def filtering(store, url, driver):
    driver.get(url + "/runs?columns=name,acc")
    box = driver.find_element(By.ID, "where")
    box.send_keys("acc > 0.85 and lr <= 0.1")
    box.send_keys(Keys.ENTER)
    wait(driver, lambda d: "where=" in d.current_url, "the filter in the URL")
    shot(driver, "runs-filtered")
    names = sorted(row["name"] for row in rows(driver))
    check(names == ["v-a", "v-b"], f"runs with acc > 0.85 and lr <= 0.1: {names}")
    query = urllib.parse.parse_qs(urllib.parse.urlparse(driver.current_url).query)
    check(query["where"] == ["acc > 0.85 and lr <= 0.1"], f"the URL holds the filter: {driver.current_url}")
    # The URL is the view: opened afresh, it shows the same runs.
    driver.get(driver.current_url)
    check(sorted(row["name"] for row in rows(driver)) == ["v-a", "v-b"], "the same view from its URL")
    # Status and project select as cml-run ls --status and --project do.
    driver.get(url + "/runs?columns=name")
    Select(driver.find_element(By.ID, "project")).select_by_visible_text("nlp")
    driver.find_element(By.CSS_SELECTOR, "form.query button[type=submit]").click()
    wait(driver, lambda d: "project=nlp" in d.current_url, "the project in the URL")
    check(sorted(row["name"] for row in rows(driver)) == ["doomed", "n-a", "n-b"], f"nlp's runs: {rows(driver)}")


def filter_errors(store, url, driver):
    driver.get(url + "/runs")
    box = driver.find_element(By.ID, "where")
    box.send_keys("acc >> 1")
    box.send_keys(Keys.ENTER)
    error = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".filter-error"), "the filter's error")[0]
    shot(driver, "filter-error")
    message = error.find_element(By.CSS_SELECTOR, ".message").text
    check("at character 6" in message, f"the error names the position: {message}")
    check(error.find_element(By.TAG_NAME, "mark").text == ">", "the second > is marked")
    caret = error.find_element(By.CSS_SELECTOR, ".caret").text
    check(caret.index("^") == 5, f"the caret is under character 6: {caret!r}")
    check(not driver.find_elements(By.CSS_SELECTOR, "table.runs"), "no table for a bad filter")
    check(driver.find_element(By.ID, "where").get_attribute("value") == "acc >> 1", "the filter is kept for editing")
    # A key no run has: the error points at the key.
    driver.get(url + "/runs?where=" + urllib.parse.quote("acc > 0.5 and nokey = 1"))
    error = driver.find_element(By.CSS_SELECTOR, ".filter-error")
    check("character 15" in error.text and error.find_element(By.TAG_NAME, "mark").text == "n", f"an unknown key: {error.text}")


def sorting(store, url, driver):
    driver.get(url + "/runs?group=none&columns=name,acc&tag=sweep")
    header = driver.find_element(By.CSS_SELECTOR, "th[data-key=acc] a")
    header.click()
    wait(driver, lambda d: "sort=acc" in d.current_url, "sort=acc in the URL")
    values = [float(row["acc"]) for row in rows(driver)]
    check(values == sorted(values) and len(values) == 5, f"ascending by acc: {values}")
    check(driver.find_element(By.CSS_SELECTOR, "th[data-key=acc]").get_attribute("aria-sort") == "ascending", "aria-sort ascending")
    driver.find_element(By.CSS_SELECTOR, "th[data-key=acc] a").click()
    wait(driver, lambda d: "sort=-acc" in d.current_url, "sort=-acc in the URL")
    values = [float(row["acc"]) for row in rows(driver)]
    check(values == sorted(values, reverse=True), f"descending by acc: {values}")
    shot(driver, "runs-sorted")


def paging(store, url, driver):
    driver.get(url + "/runs?group=none&columns=name&per=3")
    first = [row["name"] for row in rows(driver)]
    check(len(first) == 3, f"3 runs a page: {first}")
    driver.find_element(By.CSS_SELECTOR, "a[rel=next]").click()
    wait(driver, lambda d: "page=2" in d.current_url, "page 2")
    second = [row["name"] for row in rows(driver)]
    check(len(second) == 3 and not set(first) & set(second), f"page 2 has the next runs: {first} then {second}")
    check("Runs 4–6" in driver.find_element(By.CSS_SELECTOR, "nav.pager").text, "the pager says which runs")


def injection(store, url, driver):
    evil = store.run_named(SCRIPT)
    pages = [url + "/runs?columns=name,tags,note,html,command&project=vision", url + "/runs/" + evil["id"],
             url + "/compare?ids=" + evil["id"], url + "/runs?where=" + urllib.parse.quote(SCRIPT + IMAGE)]
    for index, page in enumerate(pages):
        driver.get(page)
        # The script's own work (live rows) has time to run too.
        time.sleep(0.5)
        shot(driver, f"injection-{index}")
        not_pwned(driver)
        check(not driver.find_elements(By.CSS_SELECTOR, "img[src=x], main script"), f"markup from user text in {page}")
    driver.get(pages[0])
    row = next(row for row in rows(driver) if row["name"] == SCRIPT)
    check(row["note"] == IMAGE and row["html"] == SCRIPT, f"params shown as text: {row}")
    check(SCRIPT in row["tags"] and IMAGE in row["tags"], f"tags shown as text: {row}")
    driver.get(pages[1])
    text = driver.find_element(By.TAG_NAME, "main").text
    for shown in [SCRIPT, IMAGE, SCRIPT + IMAGE]:
        check(shown in text, f"{shown} shown literally on the run page")
    console = driver.find_element(By.CSS_SELECTOR, "pre.console").text
    check(console.splitlines() == [SCRIPT, IMAGE], f"the console output, as printed: {console!r}")
    check(driver.title == SCRIPT + " · cml", f"the title as text: {driver.title}")


def live_rows(store, url, driver):
    store.write("live.py", """
import os, sys, time
print("acc: 0.25", flush=True)
while not os.path.exists("go-1"): time.sleep(0.05)
print("acc: 0.75", flush=True)
while not os.path.exists("go-2"): time.sleep(0.05)
""")
    process = subprocess.Popen([os.path.join(harness.BIN, "cml-run"), "--name", "live", "--project", "live", "--", "python3", "live.py"],
                               cwd=store.work, env=store.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while time.time() < deadline and not any(run.get("name") == "live" and run.get("metrics") for run in store.runs()):
            time.sleep(0.1)
        driver.get(url + "/runs?project=live&columns=name,status,acc")
        check(rows(driver) == [{"name": "live", "status": "running", "acc": "0.25"}], f"the live run at first: {rows(driver)}")
        shot(driver, "live-1")
        driver.execute_script("window.__stayed = true")
        open(os.path.join(store.work, "go-1"), "w").close()
        wait(driver, lambda d: rows(d)[0]["acc"] == "0.75", "the new acc in the row")
        check(driver.execute_script("return window.__stayed") is True, "updated in place, not by reloading the page")
        shot(driver, "live-2")
        open(os.path.join(store.work, "go-2"), "w").close()
        wait(driver, lambda d: rows(d)[0]["status"] == "completed", "the row's status turning completed")
        check("status-completed" in driver.find_element(By.CSS_SELECTOR, "td.status").get_attribute("class"), "the status's colour follows")
        shot(driver, "live-3")
    finally:
        process.wait(20)


def csrf(store, url, driver):
    target = store.run_named("n-a")["id"]
    driver.get(url + "/")
    token = driver.find_element(By.CSS_SELECTOR, "input[name=csrf]").get_attribute("value")
    check(len(token) == 64, "the page carries a CSRF token")
    check(post(driver, {"id": target, "action": "tag", "tag": "forged", "return": "/"}) == 403, "a POST without the CSRF token is refused")
    check(post(driver, {"id": target, "action": "tag", "tag": "forged", "return": "/", "csrf": "0" * 64}) == 403,
          "a POST with another token is refused")
    check("forged" not in store.run_named("n-a")["tags"], "nothing was tagged")
    # A page of another origin posting a form: refused, though the browser sends the cookie (same site).
    evil = tempfile.mkdtemp(prefix="cml-web-evil-")
    with open(os.path.join(evil, "index.html"), "w") as f:
        f.write(f"""<form method=post action="{url}/runs/actions"><input name=id value="{target}"><input name=action value=tag>
            <input name=tag value=forged><input name=return value=/></form><script>document.forms[0].submit()</script>""")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=evil, **k)
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        driver.get(f"http://127.0.0.1:{other.server_address[1]}/index.html")
        wait(driver, lambda d: d.current_url.startswith(url), "the forged form's answer")
        shot(driver, "csrf-refused")
        check("may not post" in driver.find_element(By.TAG_NAME, "body").text, "the other origin's form is refused")
    finally:
        other.shutdown()
        shutil.rmtree(evil)
    check("forged" not in store.run_named("n-a")["tags"], "nothing was tagged by the other origin")
    # The page's own form, as a person uses it: tick, type, press.
    driver.get(url + "/runs?project=nlp&columns=name,tags")
    driver.find_element(By.CSS_SELECTOR, f"input[name=id][value='{target}']").click()
    driver.find_element(By.ID, "action-tag").send_keys("good")
    driver.find_element(By.CSS_SELECTOR, "button[value=tag]").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".notice"), "the notice")
    check("Tagged 1 run with good" in driver.find_element(By.CSS_SELECTOR, ".notice").text, "the notice says what was done")
    check("good" in store.run_named("n-a")["tags"], "the run is tagged")
    check(next(row for row in rows(driver) if row["name"] == "n-a")["tags"] == "good,sweep", f"the row shows it: {rows(driver)}")


def actions(store, url, driver):
    driver.get(url + "/runs?project=nlp&columns=name")
    ids = {row.get_attribute("data-run"): row for row in driver.find_elements(By.CSS_SELECTOR, "tr[data-run]")}
    a, b = store.run_named("n-a")["id"], store.run_named("n-b")["id"]
    for run in (a, b):
        driver.find_element(By.CSS_SELECTOR, f"input[name=id][value='{run}']").click()
    driver.find_element(By.CSS_SELECTOR, "button[value=compare]").click()
    wait(driver, lambda d: "/compare" in d.current_url, "the compare page")
    shot(driver, "compare")
    listed = driver.find_element(By.CSS_SELECTOR, "ul.compare").text
    check("n-a" in listed and "n-b" in listed and len(ids) == 3, f"the runs to compare: {listed}")
    driver.get(url + "/runs?project=nlp&columns=name")
    doomed = store.run_named("doomed")["id"]
    driver.find_element(By.CSS_SELECTOR, f"input[name=id][value='{doomed}']").click()
    driver.find_element(By.CSS_SELECTOR, "button[value=delete]").click()
    wait(driver, lambda d: d.find_elements(By.XPATH, "//h1[contains(., 'Delete 1 run')]"), "the question before deleting")
    shot(driver, "delete-confirm")
    check(any(run["id"] == doomed for run in store.runs()), "nothing deleted before the answer")
    driver.find_element(By.CSS_SELECTOR, "button.danger").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".notice"), "the notice")
    check("Deleted 1 run" in driver.find_element(By.CSS_SELECTOR, ".notice").text, "the notice")
    check(not any(run["id"] == doomed for run in store.runs()), "the run is deleted")
    check("doomed" not in [row["name"] for row in rows(driver)], "and gone from the table")


def abort(store, url, driver):
    process = subprocess.Popen([os.path.join(harness.BIN, "cml-run"), "--name", "stoppable", "--project", "stop", "--", "sleep", "120"],
                               cwd=store.work, env=store.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while time.time() < deadline and not any(run.get("name") == "stoppable" for run in store.runs()):
            time.sleep(0.1)
        driver.get(url + "/runs?project=stop&columns=name,status")
        check(rows(driver) == [{"name": "stoppable", "status": "running"}], f"the run to stop: {rows(driver)}")
        driver.find_element(By.CSS_SELECTOR, "tr[data-run] input[name=id]").click()
        driver.find_element(By.CSS_SELECTOR, "button[value=abort]").click()
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".notice"), "the notice")
        check("stopping" in driver.find_element(By.CSS_SELECTOR, ".notice").text, driver.find_element(By.CSS_SELECTOR, ".notice").text)
        wait(driver, lambda d: rows(d)[0]["status"] == "aborted", "the row's status turning aborted")
        shot(driver, "aborted")
        check(process.wait(20) != 0, "cml-run stopped its command")
    finally:
        if process.poll() is None:
            process.kill()


def keyboard(store, url, driver):
    driver.get(url + "/")
    ActionChains(driver).send_keys(Keys.TAB).perform()
    active = driver.switch_to.active_element
    check(active.text == "Skip to content", f"the first Tab reaches the skip link, not {active.tag_name} {active.text!r}")
    shot(driver, "keyboard-skip")
    active.send_keys(Keys.ENTER)
    check(driver.switch_to.active_element.get_attribute("id") == "main", "Enter on the skip link moves to the content")
    driver.switch_to.active_element.send_keys(Keys.TAB)
    check(driver.switch_to.active_element.get_attribute("id") == "where", "then Tab reaches the filter")
    # A sort header and a run link are reached by Tab and followed by Enter.
    headers = driver.find_elements(By.CSS_SELECTOR, "th[data-key] a")
    check(headers and all(h.get_attribute("href") for h in headers), "every header is a link")
    for page in [url + "/", url + "/runs/" + store.run_named("v-a")["id"], url + "/compare"]:
        driver.get(page)
        unlabelled = driver.execute_script("""
            return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea, button'))
              .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !(e.tagName == 'BUTTON' && e.textContent.trim()))
              .map(e => e.outerHTML);""")
        check(unlabelled == [], f"controls without a label on {page}: {unlabelled}")


def run_page(store, url, driver):
    run = store.run_named("v-b")
    driver.get(url + "/runs?columns=name,acc&project=vision")
    driver.find_element(By.LINK_TEXT, "v-b").click()
    wait(driver, lambda d: "/runs/" + run["id"] in d.current_url, "the run's page")
    shot(driver, "run-page")
    overview = {tr.find_element(By.TAG_NAME, "th").text: tr.find_element(By.TAG_NAME, "td").text
                for tr in driver.find_elements(By.CSS_SELECTOR, "table.kv[aria-label=Overview] tr")}
    check(overview["Command"] == "python3 train.py --lr 0.01 --final 0.95", f"the command: {overview}")
    check(overview["Exit code"] == "0" and overview["Project"] == "vision", f"the overview: {overview}")
    check("epoch 2 loss: 0.0500 acc: 0.9500" in driver.find_element(By.CSS_SELECTOR, "pre.console").text, "the console output")


def mlflow_link(store, url, driver):
    """The link MLflow's client prints for a run (`View run … at URL/#/experiments/ID/runs/RUN`) opens its page."""
    run = store.run_named("v-b")
    driver.get(url + "/#/experiments/0/runs/" + run["id"])
    wait(driver, lambda d: d.current_url.endswith("/runs/" + run["id"]), "the run's page from MLflow's link")
    check(driver.find_elements(By.CSS_SELECTOR, "table.kv[aria-label=Overview]"), "the run's page is shown")


def tokens(store, url, driver):
    """A store with tokens: every page asks for a login; scopes and projects apply as for the API."""
    guarded = Store("tokens")
    try:
        guarded.cml("cml-run", "--name", "mine", "--project", "a", "--", "sh", "-c", "echo acc: 0.5")
        guarded.cml("cml-run", "--name", "theirs", "--project", "b", "--", "sh", "-c", "echo acc: 0.6")
        token = lambda *options: json.loads(guarded.cml("cml-serve", "token", "create", *options).stdout)["token"]
        reader, writer, bound = token("--name", "reader", "--scope", "read"), token("--name", "writer", "--scope", "write"), \
            token("--name", "only-a", "--scope", "write", "--project", "a")
        site = guarded.serve()
        driver.get(site + "/runs?columns=name")
        wait(driver, lambda d: "/login" in d.current_url, "the login page")
        check(urllib.parse.parse_qs(urllib.parse.urlparse(driver.current_url).query)["next"] == ["/runs?columns=name"], driver.current_url)
        shot(driver, "login")
        not_pwned(driver)

        def log_in(secret):
            driver.find_element(By.ID, "token").send_keys(secret)
            driver.find_element(By.ID, "token").send_keys(Keys.ENTER)

        log_in("cml_wrong")
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".notice.error"), "the refusal")
        check("does not know that token" in driver.find_element(By.CSS_SELECTOR, ".notice.error").text, "a wrong token is refused")
        log_in(reader)
        wait(driver, lambda d: "/runs?columns=name" in d.current_url, "the page asked for")
        shot(driver, "login-reader")
        check(sorted(row["name"] for row in rows(driver)) == ["mine", "theirs"], f"a reader sees the runs: {rows(driver)}")
        check(driver.execute_script("return document.cookie") == "", "the session cookie is HttpOnly")
        check(not driver.find_elements(By.CSS_SELECTOR, "button[value=tag]"), "no write buttons for a read token")
        mine = guarded.run_named("mine")["id"]
        token_field = driver.find_element(By.CSS_SELECTOR, "input[name=csrf]").get_attribute("value")
        check(post(driver, {"id": mine, "action": "tag", "tag": "x", "return": "/", "csrf": token_field}) == 403,
              "a read token may not tag, even with the CSRF token")
        check(guarded.run_named("mine")["tags"] == [], "nothing tagged by a reader")
        # The API's reads take the session (the pages' script uses them); its writes never do.
        status = driver.execute_async_script("""const done = arguments[arguments.length - 1];
            fetch('/api/v1/runs').then(r => done(r.status))""")
        check(status == 200, f"the API's GET with the session: {status}")
        status = driver.execute_async_script("""const done = arguments[arguments.length - 1];
            fetch('/api/v1/store/runs/' + arguments[0] + '/tags', {method: 'POST', body: '{"add":["x"],"remove":[]}'}).then(r => done(r.status))""", mine)
        check(status == 401, f"the store API's POST with only the session: {status}")
        driver.find_element(By.XPATH, "//button[.='Log out']").click()
        wait(driver, lambda d: "/login" in d.current_url, "the login page after logging out")
        driver.get(site + "/")
        check("/login" in driver.current_url, "logged out: the pages ask again")
        log_in(writer)
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "table.runs"), "the runs page")
        driver.find_element(By.CSS_SELECTOR, f"input[name=id][value='{mine}']").click()
        driver.find_element(By.ID, "action-tag").send_keys("checked")
        driver.find_element(By.CSS_SELECTOR, "button[value=tag]").click()
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".notice"), "the notice")
        check(guarded.run_named("mine")["tags"] == ["checked"], "a write token tags")
        driver.find_element(By.XPATH, "//button[.='Log out']").click()
        wait(driver, lambda d: "/login" in d.current_url, "the login page")
        log_in(bound)
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "table.runs"), "the runs page")
        check([row["name"] for row in rows(driver)] == ["mine"], f"a token bound to project a sees its runs only: {rows(driver)}")
        driver.get(site + "/runs/" + guarded.run_named("theirs")["id"])
        check("Not found" in driver.find_element(By.TAG_NAME, "h1").text, "another project's run is not found")
        shot(driver, "login-bound")
        guarded.cml("cml-serve", "token", "revoke", "only-a")
        driver.get(site + "/")
        check("/login" in driver.current_url, "a revoked token's session ends at once")
    finally:
        guarded.close()


CHECKS = [table_values, filtering, filter_errors, sorting, paging, injection, run_page, mlflow_link, keyboard, live_rows, abort, csrf, actions, tokens]


run_checks(args, Store("shared"), fill, CHECKS)

#!/usr/bin/env python3
"""The datasets and queues pages of cml-serve in a real browser: headless Chromium driven by selenium,
against the built cml-serve serving a store that the built cml-data, cml-run, cml-queue and cml-agent
fill. Each check looks at what a person sees and uses the pages' own controls (the keyboard among
them); screenshots go to --out.

Usage: python3 Tests/Browser/data_queue.py --bin .build/debug --out DIR [--only NAME…]
Exits 0 when every check passes; otherwise prints each failure and exits 1. Run by CLITests'
WebDataQueueTests. Needs chromium, chromium-driver (Debian) and selenium (PyPI).
"""
import json
import os
import time

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

import harness
from harness import IMAGE, SCRIPT, Store, check, not_pwned, options, run_checks, shot, wait

args = options(900)
# Dataset and queue names cannot hold markup (letters, digits and a few signs: checked below).


def cells(row):
    return [cell.text for cell in row.find_elements(By.CSS_SELECTOR, "th, td")]


def notice(driver):
    """The page's notice, or "" while there is none; a page that reloads between finding the notice and
    reading it (the queue page refreshes itself) has none yet, and the wait asks again."""
    found = driver.find_elements(By.CSS_SELECTOR, ".notice")
    try:
        return found[0].text if found else ""
    except StaleElementReferenceException:
        return ""


def tab_to(driver, matches, what, limit=200):
    """Presses Tab from the top of the page until the focused element `matches`: it is reachable by keyboard."""
    driver.find_element(By.TAG_NAME, "body").click()
    driver.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
    for _ in range(limit):
        driver.switch_to.active_element.send_keys(Keys.TAB)
        if matches(driver.switch_to.active_element):
            return driver.switch_to.active_element
    raise AssertionError(f"{what} is not reached with Tab")


def fill(store):
    """Two versions of mnist (one file name and one message markup), and a run that reads mnist@2 and
    makes feats@1 from it; queues gpu and cpu with waiting runs, and busy, whose run an agent named in
    markup runs."""
    store.write("data/a.txt", "alpha\n")
    store.write("data/b.txt", "bravo\n")
    store.write(f"data/{SCRIPT}.txt", "tricky\n")
    store.write(f"data/{IMAGE[:20]}.txt", "trickier\n")
    store.cml("cml-data", "snapshot", "data", "--name", "mnist", "-m", SCRIPT)
    store.write("data/a.txt", "alpha, longer now\n")
    os.remove(os.path.join(store.work, "data/b.txt"))
    store.write("data/c.txt", "charlie\n")
    store.cml("cml-data", "snapshot", "data", "--name", "mnist", "-m", IMAGE)
    store.write("out/f.txt", "features\n")
    data = os.path.join(harness.BIN, "cml-data")
    store.cml("cml-run", "--name", SCRIPT, "--", "sh", "-c", f"'{data}' get mnist@2 >/dev/null && '{data}' snapshot out --name feats --parent mnist@2")
    for bad in [SCRIPT, "a<b"]:
        check(store.cml("cml-data", "snapshot", "data", "--name", bad, check=False).returncode != 0, "a dataset name cannot hold markup")
        check(store.cml("cml-queue", "add", bad, "--", "true", check=False).returncode != 0, "a queue name cannot hold markup")
    store.cml("cml-queue", "add", "gpu", "--name", SCRIPT, "--priority", "3", "--", "sh", "-c", "echo acc: 0.5")
    store.cml("cml-queue", "add", "gpu", "--name", IMAGE, "--", "sh", "-c", "echo acc: 0.6")
    store.cml("cml-queue", "add", "cpu", "--name", "cpu-run", "--", "true")
    store.cml("cml-queue", "add", "busy", "--name", "long", "--", "sleep", "120")
    store.start("cml-agent", "--queue", "busy", "--name", IMAGE, "--heartbeat", "0.2", "--lease", "2",
                "--workdir", os.path.join(store.root, "agent"))
    deadline = time.time() + 30
    while time.time() < deadline and not any(run["status"] == "running" for run in store.jsonl("cml-queue", "ls", "busy")):
        time.sleep(0.2)


def datasets(store, url, driver):
    versions = store.jsonl("cml-data", "ls")
    driver.get(url + "/")
    driver.find_element(By.LINK_TEXT, "Datasets").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "table.datasets"), "the datasets table")
    rows = {row.get_attribute("data-dataset"): cells(row) for row in driver.find_elements(By.CSS_SELECTOR, "table.datasets tbody tr")}
    check(sorted(rows) == ["feats", "mnist"], f"the datasets: {rows}")
    m2 = next(v for v in versions if v["dataset"] == "mnist" and v["version"] == 2)
    check(rows["mnist"][:3] == ["mnist", "mnist@2", "2"] and rows["mnist"][3] == f"{m2['files']:,}", f"mnist's row: {rows['mnist']}")
    check(rows["mnist"][7] == IMAGE, f"the message, as text: {rows['mnist']}")
    not_pwned(driver)
    shot(driver, "datasets")
    driver.find_element(By.LINK_TEXT, "mnist").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "svg.lineage"), "the lineage graph")
    nodes = driver.find_elements(By.CSS_SELECTOR, "svg.lineage .node")
    edges = driver.find_elements(By.CSS_SELECTOR, "svg.lineage path.edge")
    check(len(nodes) == 4 and len(edges) == 4, f"3 versions and the run, 4 arrows: {len(nodes)} nodes, {len(edges)} edges")
    labels = [n.find_element(By.CSS_SELECTOR, "text.label").text for n in nodes]
    made_by = next(v for v in versions if v["dataset"] == "feats")["run"]
    check(sorted(labels[:3]) == ["feats@1", "mnist@1", "mnist@2"] and made_by.startswith(labels[3].removeprefix("run ")),
          f"node labels: {labels}")
    # Every node is drawn inside the picture and none overlaps another.
    boxes = [n.find_element(By.TAG_NAME, "rect").rect for n in nodes]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            check(a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"] or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"],
                  f"nodes overlap: {a} {b}")
    versions_table = [cells(row) for row in driver.find_elements(By.CSS_SELECTOR, "table.versions tbody tr")]
    check([row[1] for row in versions_table] == ["mnist@2", "mnist@1"] and versions_table[1][7] == SCRIPT, f"versions: {versions_table}")
    not_pwned(driver)
    shot(driver, "dataset-lineage")
    # The graph's nodes are links, reached with Tab: Enter on the run's opens the run.
    run_node = tab_to(driver, lambda e: (e.get_attribute("data-node") or "").startswith("r:"), "the run's node")
    run_node.send_keys(Keys.ENTER)
    wait(driver, lambda d: "/runs/" in d.current_url, "the run's page")
    not_pwned(driver)
    driver.back()
    wait(driver, lambda d: d.find_elements(By.ID, "diff-from"), "the dataset page again")
    # The diff, through the form.
    Select(driver.find_element(By.ID, "diff-from")).select_by_visible_text("mnist@1")
    Select(driver.find_element(By.ID, "diff-to")).select_by_visible_text("mnist@2")
    driver.find_element(By.XPATH, "//button[.='Show the changes']").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "table.changes"), "the changes")
    shown = {row.find_elements(By.TAG_NAME, "td")[1].text: row.find_elements(By.TAG_NAME, "td")[0].text
             for row in driver.find_elements(By.CSS_SELECTOR, "table.changes tbody tr")}
    expected = {change["path"]: change["change"] for change in store.jsonl("cml-data", "diff", "mnist@1", "mnist@2")}
    check(shown == expected, f"the diff page shows {shown}, cml-data diff {expected}")
    shot(driver, "dataset-diff")
    # A version's files: the markup file name is text, and a name downloads the file.
    driver.get(url + "/datasets/mnist/1")
    paths = [row.get_attribute("data-path") for row in driver.find_elements(By.CSS_SELECTOR, "table.files tbody tr")]
    expected = [entry["path"] for entry in store.jsonl("cml-data", "show", "mnist@1")]
    check(paths == expected, f"files {paths}, cml-data show {expected}")
    link = driver.find_element(By.LINK_TEXT, SCRIPT + ".txt")
    body = driver.execute_async_script("const done = arguments[1]; fetch(arguments[0]).then(r => r.text()).then(done)", link.get_attribute("href"))
    check(body == "tricky\n", f"the file's content: {body!r}")
    not_pwned(driver)
    shot(driver, "dataset-files")


def queue_rows(driver, table):
    return {row.get_attribute("data-run"): row for row in driver.find_elements(By.CSS_SELECTOR, f"table.{table} tbody tr")}


def queues(store, url, driver):
    driver.get(url + "/")
    driver.find_element(By.LINK_TEXT, "Queues").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "table.queues"), "the queues table")
    stats = {row["queue"]: row for row in store.jsonl("cml-queue", "stats")}
    for row in driver.find_elements(By.CSS_SELECTOR, "table.queues tbody tr"):
        name, depth, running, _, agents = cells(row)
        stat = stats[name]
        check((int(depth), int(running), int(agents)) == (stat["depth"], stat["running"], stat["agents"]), f"{name}: {cells(row)} vs {stat}")
    check(set(stats) == {"busy", "cpu", "gpu"}, f"queues: {stats}")
    entries = queue_rows(driver, "entries")
    listed = {run["id"]: run for run in store.jsonl("cml-queue", "ls")}
    check(set(entries) == set(listed), f"the page lists {set(entries)}, cml-queue ls {set(listed)}")
    names = {cells(row)[1] for row in entries.values()}
    check(SCRIPT in names and IMAGE in names, f"names as text: {names}")
    agent_rows = [cells(row) for row in driver.find_elements(By.CSS_SELECTOR, "table.agents tbody tr")]
    check(any(row[0] == IMAGE and row[1] == "busy" and row[7].endswith(" ago") for row in agent_rows), f"the agent: {agent_rows}")
    not_pwned(driver)
    shot(driver, "queues")
    # The numbers stay current while the page is open: a run queued meanwhile shows in cpu's depth.
    depth = lambda d: d.find_element(By.CSS_SELECTOR, "table.queues tr[data-queue=cpu] td[data-col=depth]").text
    before = int(depth(driver))
    store.cml("cml-queue", "add", "cpu", "--name", "late", "--", "true")
    wait(driver, lambda d: depth(d) == str(before + 1), "cpu's depth to go up without a reload")
    # Move a waiting run to cpu with the keyboard: Tab to its queue choice, pick cpu, Tab to Move, Enter.
    target = next(id for id, run in listed.items() if run.get("name") == SCRIPT)
    select = tab_to(driver, lambda e: e.get_attribute("id") == f"move-{target}", "the move choice")
    check(driver.find_element(By.CSS_SELECTOR, f"label[for='move-{target}']").get_attribute("textContent").startswith("Move run"), "the choice has a label")
    Select(select).select_by_visible_text("cpu")
    driver.switch_to.active_element.send_keys(Keys.TAB)
    check(driver.switch_to.active_element.text == "Move", "Tab goes on to Move")
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    wait(driver, lambda d: "Moved run" in notice(d), "the move's notice")
    check([run["id"] for run in store.jsonl("cml-queue", "ls", "cpu")].count(target) == 1, "cml-queue ls cpu shows the moved run")
    shot(driver, "queues-moved")
    # Abort the running run with its button; the agent stops it, and it can be queued again.
    long = next(id for id, run in listed.items() if run.get("name") == "long")
    queue_rows(driver, "entries")[long].find_element(By.CSS_SELECTOR, "button[value=abort]").click()
    wait(driver, lambda d: "to stop run" in notice(d), "the abort's notice")
    check(IMAGE in notice(driver), f"the agent's name, as text: {notice(driver)}")
    deadline = time.time() + 20
    while time.time() < deadline and json.loads(store.cml("cml-run", "show", long).stdout)["status"] != "aborted":
        time.sleep(0.2)
    driver.get(url + "/queues")
    ended = queue_rows(driver, "ended")
    check(long in ended, f"the aborted run is listed as ended: {list(ended)}")
    Select(ended[long].find_element(By.TAG_NAME, "select")).select_by_visible_text("gpu")
    ended[long].find_element(By.CSS_SELECTOR, "button[value=requeue]").click()
    wait(driver, lambda d: "again on gpu" in notice(d), "the requeue's notice")
    again = [run for run in store.jsonl("cml-queue", "ls", "gpu") if run.get("name") == "long"]
    check(len(again) == 1 and again[0]["id"] != long, f"a copy of the run waits on gpu: {again}")
    not_pwned(driver)
    shot(driver, "queues-requeued")
    # A refused action says why on the page, and changes nothing: this page still offers to abort a run
    # that cml-run abort stopped meanwhile.
    driver.get(url + "/queues")
    button = queue_rows(driver, "entries")[target].find_element(By.CSS_SELECTOR, "button[value=abort]")
    store.cml("cml-run", "abort", target)
    before = store.jsonl("cml-queue", "ls")
    page = driver.find_element(By.TAG_NAME, "html")
    button.click()
    wait(driver, lambda d: staleness(page) and notice(d), "the refusal's notice")
    check(notice(driver).startswith("Nothing was done: run ") and "has already ended (aborted)" in notice(driver), f"the notice: {notice(driver)}")
    check(store.jsonl("cml-queue", "ls") == before, "nothing changed")
    check(target not in queue_rows(driver, "entries") and target in queue_rows(driver, "ended"), "the run is listed as ended")
    not_pwned(driver)
    shot(driver, "queues-refused")


def staleness(element):
    try:
        element.tag_name
        return False
    except Exception:
        return True


CHECKS = [datasets, queues]


run_checks(args, Store("dq"), fill, CHECKS)

#!/usr/bin/env python3
"""A run's page in a real browser: headless Chromium driven by selenium, against the built cml-serve
serving a store that the built cml-run and cml-log fill. Checks what a person sees: a running run's
console growing line by line, a search's lines, the patch's colours, the environment, images by step,
and that markup stored in every kind of user text stays text. Saves screenshots in --out.

Usage: python3 Tests/Browser/run_page.py --bin .build/debug --out DIR [--only NAME…]
Exits 0 when every check passes; otherwise prints each failure and exits 1. Run by CLITests'
WebRunPageTests. Needs chromium, chromium-driver (Debian) and selenium (PyPI).
"""
import os
import subprocess
import time

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

import harness
from harness import IMAGE, SCRIPT, Store, check, not_pwned, options, run_checks, shot, wait

args = options(900)
SVG = ('<svg xmlns="http://www.w3.org/2000/svg" width="120" height="60"><script>window.__pwned=3</script>'
       '<rect width="120" height="60" fill="{}"/></svg>')


def fill(store):
    """A run in a git work tree whose patch, console, environment, image and file names hold markup."""
    for command in [["git", "init", "-q", "-b", "main"], ["git", "config", "user.email", "t@t"], ["git", "config", "user.name", "t"]]:
        subprocess.run(command, cwd=store.work, check=True)
    store.write("train.py", "a\nb\nc\n")
    subprocess.run("git add -A && git commit -qm init", shell=True, cwd=store.work, check=True)
    store.write("train.py", f"a\nc\n{SCRIPT}\n")
    store.write(IMAGE + ".txt", IMAGE + "\n")  # a name cannot hold the / of </script>
    for step, colour in [(1, "red"), (2, "green"), (3, "blue")]:
        with open(os.path.join(store.root, f"step{step}.svg"), "w") as f:
            f.write(SVG.format(colour))
    log = os.path.join(harness.BIN, "cml-log")
    images = "; ".join(f"'{log}' image '{store.root}/step{step}.svg' --name 'samples {IMAGE}' --step {step} >/dev/null"
                       for step in [1, 2, 3])
    store.cml("cml-run", "--name", "evil", "--", "sh", "-c", f"echo '{SCRIPT}'; echo '{IMAGE}'; {images}", env={"EVIL": SCRIPT + IMAGE})


# The checks. Each takes the store, its server's URL and a browser.

def running(store, name, script, ready=lambda run: True):
    """Starts `cml-run --name NAME -- sh -c SCRIPT` in the background; the process, and the run's record
    once the store has it and `ready(record)` holds (within 20 s)."""
    process = subprocess.Popen([os.path.join(harness.BIN, "cml-run"), "--name", name, "--", "sh", "-c", script],
                               cwd=store.work, env=store.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            run = store.run_named(name)
            if ready(run):
                return process, run
        except StopIteration:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"run {name} did not start within 20 s")


def live_tail(store, url, driver):
    """A running run's new lines appear, as text, while the page is open; the page follows the bottom."""
    process, run = running(store, "ticking", f"for i in $(seq 1 40); do echo \"tick $i {SCRIPT}\"; sleep 0.3; done")
    try:
        driver.get(url + "/runs/" + run["id"])
        console = driver.find_element(By.CSS_SELECTOR, "pre.console")
        first = len(console.text.splitlines())
        check(first < 30, f"the page was read early in the run: {first} lines")
        wait(driver, lambda d: len(console.text.splitlines()) >= first + 5, "new lines in the console")
        shot(driver, "live-tail")
        wait(driver, lambda d: "tick 40" in console.text, "the run's last line", seconds=30)
        wait(driver, lambda d: d.find_element(By.ID, "console-live").text == "The run has ended.", "the tail to notice the end")
        lines = console.text.splitlines()
        check(lines == [f"tick {i} {SCRIPT}" for i in range(1, 41)], f"every line once, in order, as text: {lines}")
        not_pwned(driver)
    finally:
        process.wait(30)


def live_chart(store, url, driver):
    """A running run's chart draws its new points while the page is open (every 5 s), without a reload."""
    process, run = running(store, "charting", "for i in $(seq 1 80); do echo \"loss: $i\"; sleep 0.25; done",
                           ready=lambda run: "loss" in run.get("metrics", {}))
    try:
        driver.get(url + "/runs/" + run["id"])

        def drawn(d):
            paths = d.find_elements(By.CSS_SELECTOR, "#main figure.chart svg.cml-chart path.series")
            return len(paths[0].get_attribute("data-points").split()) if paths else 0

        first = wait(driver, drawn, "the loss chart")
        check(first < 60, f"the page was read early in the run: {first} points")
        wait(driver, lambda d: drawn(d) >= first + 10, "the chart redrawn with new points", seconds=20)
        check(driver.current_url.endswith(run["id"]), "the page was not reloaded")
        shot(driver, "live-chart", driver.find_element(By.ID, "charts"))
        not_pwned(driver)
    finally:
        process.wait(30)


def follows_the_bottom(store, url, driver):
    """A console longer than its box stays scrolled to its end as lines arrive, unless scrolled up."""
    process, run = running(store, "long-live", "seq 1 200; for i in $(seq 1 30); do echo \"more $i\"; sleep 0.3; done")
    try:
        time.sleep(0.5)
        driver.get(url + "/runs/" + run["id"] + "#console")
        console = driver.find_element(By.CSS_SELECTOR, "pre.console")
        at_end = "return arguments[0].scrollHeight - arguments[0].scrollTop - arguments[0].clientHeight < 30"
        before = len(console.text.splitlines())
        wait(driver, lambda d: len(console.text.splitlines()) >= before + 3, "new lines")
        check(driver.execute_script(at_end, console), "the console follows its end")
        driver.execute_script("arguments[0].scrollTop = 0", console)
        count = len(console.text.splitlines())
        wait(driver, lambda d: len(console.text.splitlines()) >= count + 2, "more lines")
        check(driver.execute_script("return arguments[0].scrollTop", console) == 0, "scrolled up, the reader stays where they are")
    finally:
        process.wait(30)


def search(store, url, driver):
    run = store.run_named("ticking")
    driver.get(url + "/runs/" + run["id"])
    box = driver.find_element(By.ID, "console-q")
    check(driver.find_element(By.CSS_SELECTOR, "label[for=console-q]").text == "Search the output", "the search box's label")
    box.send_keys("TICK 1")
    box.send_keys(Keys.ENTER)
    wait(driver, lambda d: "q=TICK+1" in d.current_url, "the search in the URL")
    shot(driver, "search")
    found = [(tr.find_element(By.TAG_NAME, "th").text, tr.find_element(By.TAG_NAME, "code").text)
             for tr in driver.find_elements(By.CSS_SELECTOR, "table.matches tbody tr")]
    expected = [(str(i), f"tick {i} {SCRIPT}") for i in [1] + list(range(10, 20))]
    check(found == expected, f"the lines holding 'tick 1', any case, with their numbers: {found}")
    check(driver.find_element(By.ID, "console-matches").text.startswith("11 lines match"), "the count")
    # Match case: none.
    driver.find_element(By.CSS_SELECTOR, "input[name=case]").click()
    driver.find_element(By.CSS_SELECTOR, "form.console-search button").click()
    wait(driver, lambda d: "case=1" in d.current_url, "case in the URL")
    check(driver.find_element(By.ID, "console-matches").text.startswith("0 lines match"), "no line holds 'TICK 1'")
    not_pwned(driver)


def injection_and_code(store, url, driver):
    run = store.run_named("evil")
    driver.get(url + "/runs/" + run["id"])
    time.sleep(0.5)
    not_pwned(driver)
    check(not driver.find_elements(By.CSS_SELECTOR, "img[src=x], main script"), "markup from user text")
    console = driver.find_element(By.CSS_SELECTOR, "pre.console").text
    check(console.splitlines() == [SCRIPT, IMAGE], f"the console as printed: {console!r}")
    # The patch: removed and added lines in their colours, the new file's markup name as text.
    patch = driver.find_element(By.CSS_SELECTOR, "pre.patch")
    added = [span.text for span in patch.find_elements(By.CSS_SELECTOR, ".d-add")]
    removed = [span.text for span in patch.find_elements(By.CSS_SELECTOR, ".d-del")]
    check("+" + SCRIPT in added and "+" + IMAGE in added and removed == ["-b"], f"added {added}, removed {removed}")
    colours = {cls: driver.execute_script("return getComputedStyle(arguments[0]).color", patch.find_element(By.CSS_SELECTOR, "." + cls))
               for cls in ["d-add", "d-del", "d-ctx"]}
    check(len(set(colours.values())) == 3, f"added, removed and context lines in three colours: {colours}")
    headers = [span.text for span in patch.find_elements(By.CSS_SELECTOR, ".d-file")]
    # git quotes a name holding a quote: "a/\"><img …".
    check(any("<img src=x onerror=" in header and ".txt" in header for header in headers), f"the file's name as text: {headers}")
    # The environment: collapsed, then opened by keyboard.
    details = driver.find_element(By.CSS_SELECTOR, "details.environment")
    check(details.get_attribute("open") is None, "the environment starts collapsed")
    summary = details.find_element(By.TAG_NAME, "summary")
    summary.send_keys(Keys.ENTER)
    wait(driver, lambda d: details.get_attribute("open") is not None, "the environment opened")
    env = {tr.find_element(By.TAG_NAME, "th").text: tr.find_element(By.TAG_NAME, "td").text
           for tr in details.find_elements(By.CSS_SELECTOR, "tr")}
    check(env.get("EVIL") == SCRIPT + IMAGE, f"the variable as text: {env.get('EVIL')!r}")
    # The contents' links go to their sections.
    driver.find_element(By.CSS_SELECTOR, "nav.toc a[href='#code']").click()
    wait(driver, lambda d: d.current_url.endswith("#code"), "the Code link")
    shot(driver, "run-page-whole", whole=True)
    not_pwned(driver)


def images(store, url, driver):
    run = store.run_named("evil")
    driver.get(url + "/runs/" + run["id"] + "#images")
    figure = driver.find_element(By.CSS_SELECTOR, ".image-steps")
    check(figure.find_element(By.TAG_NAME, "h3").text == "samples " + IMAGE, "the image's name as text")
    img = figure.find_element(By.TAG_NAME, "img")
    wait(driver, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) == 120, "the SVG drawn")
    check(figure.find_element(By.TAG_NAME, "figcaption").text == "step 3", "the last step first")
    first = img.get_attribute("src")
    # The slider, by keyboard: one step back shows step 2.
    slider = figure.find_element(By.CSS_SELECTOR, "input[type=range]")
    slider.send_keys(Keys.ARROW_LEFT)
    wait(driver, lambda d: figure.find_element(By.TAG_NAME, "figcaption").text == "step 2", "step 2 on the slider")
    check(img.get_attribute("src") != first, "another image for step 2")
    wait(driver, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) == 120, "step 2 drawn")
    shot(driver, "images")
    not_pwned(driver)
    # Opened on its own, the SVG's script does not run on this origin.
    driver.get(first)
    time.sleep(0.3)
    check(driver.execute_script("return window.__pwned") is None, "the SVG's script ran when opened on its own")


CHECKS = [live_tail, live_chart, follows_the_bottom, search, injection_and_code, images]


run_checks(args, Store("run-page"), fill, CHECKS)

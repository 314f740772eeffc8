#!/usr/bin/env python3
"""The compare page of cml-serve (/compare?ids=…) in a real browser: headless Chromium driven by selenium,
against the built cml-serve on a store the built cml-run fills, in a git repository. Checks what a person
sees: a line per run in each overlaid chart, the legend naming what differs, the toggle hiding the rows
that are the same, the code diff, the scatter, keyboard use and labels, and that markup stored in a run's
name, parameters and patch is shown as text, never run. Screenshots go to --out.

Usage: python3 Tests/Browser/compare_page.py --bin .build/debug --out DIR
Exits 0 when every check passes; otherwise prints each failure and exits 1. Run by CLITests'
WebComparePageTests. Needs chromium, chromium-driver (Debian) and selenium (PyPI).
"""
import os

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from harness import IMAGE, SCRIPT, Store, check, not_pwned, options, run_checks, shot, wait

args = options(900)
GIT = dict(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.org")


def fill(store):
    """Three runs of a sweep over lr and batch, and one whose name, parameters and patch are markup."""
    store.write("train.py", """
import sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
final = float(args["--final"])
for epoch in range(5):
    print(f"epoch {epoch} loss: {1 - final * (epoch + 1) / 5:.4f} acc: {final * (epoch + 1) / 5:.4f}")
""")
    store.sh("git init -q -b main && git add -A && git commit -qm init")
    for name, lr, batch, final in [("a", "0.1", "64", "0.9"), ("b", "0.01", "64", "0.95"), ("c", "0.1", "32", "0.8")]:
        store.cml("cml-run", "--name", name, "--", "python3", "train.py", "--lr", lr, "--batch", batch, "--final", final)
    store.write("train.py", open(os.path.join(store.work, "train.py")).read() + f"print({SCRIPT!r})\n# {IMAGE}\n")
    store.cml("cml-run", "--name", SCRIPT, "--", "python3", "train.py", "--lr", "0.001", "--batch", "64", "--final", "0.5",
              "--note", IMAGE, "--html", SCRIPT)


def charts_drawn(driver):
    boxes = driver.find_elements(By.CSS_SELECTOR, "[data-cml-chart]")
    return boxes and all(box.find_elements(By.CSS_SELECTOR, "svg.cml-chart") for box in boxes)


def lines_in(driver, key):
    figure = driver.find_element(By.XPATH, f"//figure[figcaption[text()='{key}']]")
    return len(figure.find_elements(By.CSS_SELECTOR, "svg.cml-chart path.series"))


def visible_rows(driver):
    return [row for row in driver.find_elements(By.CSS_SELECTOR, "table.compare-table tbody tr") if row.is_displayed()]


NAMES = ["a", "b", "c", SCRIPT]


def compared(store, url):
    """The ids of the runs `fill` made, and their compare page."""
    ids = [store.run_named(name)["id"] for name in NAMES]
    return ids, url + "/compare?ids=" + ",".join(ids)


def overlay(store, url, driver):
    ids, page = compared(store, url)
    driver.get(page)
    wait(driver, charts_drawn, "every chart drawn")
    for key in ["acc", "loss"]:
        check(lines_in(driver, key) == len(ids), f"{key}: {lines_in(driver, key)} lines for {len(ids)} runs")
    # Hovering the plot names each run's nearest point.
    driver.execute_script("arguments[0].scrollIntoView()", driver.find_element(By.ID, "charts"))
    plot = driver.find_element(By.XPATH, "//figure[figcaption[text()='acc']]//div[contains(@class, 'cml-chart-plot')]")
    ActionChains(driver).move_to_element(plot).perform()
    tip = driver.find_element(By.XPATH, "//figure[figcaption[text()='acc']]//div[contains(@class, 'cml-chart-tip')]")
    wait(driver, lambda d: tip.is_displayed() and "lr=0.01" in tip.text, "the tooltip naming the runs")
    shot(driver, "compare-charts")


def legend(store, url, driver):
    ids, page = compared(store, url)
    driver.get(page)
    items = driver.find_elements(By.CSS_SELECTOR, "ul.compare.legend li")
    check(len(items) == len(ids), f"{len(items)} legend entries")
    labels = [item.find_element(By.CSS_SELECTOR, ".label").text for item in items]
    check(labels[:3] == ["batch=64 final=0.9 lr=0.1", "batch=64 final=0.95 lr=0.01", "batch=32 final=0.8 lr=0.1"], f"legend labels {labels}")
    check(SCRIPT in labels[3] and IMAGE in labels[3], f"the markup parameters shown as text: {labels[3]}")
    check(all(item.find_element(By.CSS_SELECTOR, "svg.swatch path").get_attribute("stroke") for item in items), "a swatch per run")
    shot(driver, "compare-top")
    not_pwned(driver)


def hide_same(store, url, driver):
    _, page = compared(store, url)
    driver.get(page)
    toggle = driver.find_element(By.ID, "hide-same")
    check(toggle.is_selected(), "only what differs, at first")
    differing = visible_rows(driver)
    check(differing and all(row.get_attribute("class") == "differs" for row in differing), "the rows shown differ")
    keys = [row.get_attribute("data-key") for row in differing]
    check("lr" in keys and "batch" in keys and "acc" in keys and "project" not in keys, f"rows shown: {keys}")
    shot(driver, "compare-table-differs", driver.find_element(By.ID, "table"))
    # By keyboard: Tab reaches the toggle, space clears it, and every row shows.
    driver.find_element(By.TAG_NAME, "body").click()
    for _ in range(200):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        if driver.switch_to.active_element.get_attribute("id") == "hide-same":
            break
    check(driver.switch_to.active_element.get_attribute("id") == "hide-same", "Tab reaches the toggle")
    ActionChains(driver).send_keys(Keys.SPACE).perform()
    every = visible_rows(driver)
    check(not toggle.is_selected() and len(every) > len(differing), f"{len(every)} rows after clearing the toggle")
    check("project" in [row.get_attribute("data-key") for row in every], "the same rows show")
    cells = {row.get_attribute("data-key"): [td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in every}
    check(cells["lr"] == ["0.1", "0.01", "0.1", "0.001"], f"lr row {cells['lr']}")
    check(cells["name"][3] == SCRIPT, f"the name as text: {cells['name']}")
    shot(driver, "compare-table-all", driver.find_element(By.ID, "table"))
    not_pwned(driver)


def code(store, url, driver):
    ids, page = compared(store, url)
    driver.get(page)
    Select(driver.find_element(By.ID, "code-a")).select_by_value(ids[0])
    Select(driver.find_element(By.ID, "code-b")).select_by_value(ids[3])
    driver.find_element(By.XPATH, "//button[text()='Compare code']").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "pre.patch"), "the code diff")
    added = [span.text for span in driver.find_elements(By.CSS_SELECTOR, "pre.patch span.d-add")]
    check(any(SCRIPT in line for line in added) and any(IMAGE in line for line in added), f"added lines {added}")
    # One line a line: no blank line between them.
    spans = driver.find_elements(By.CSS_SELECTOR, "pre.patch span")
    check(spans[1].location["y"] - spans[0].location["y"] < 24, "diff lines are not double-spaced")
    colour = driver.execute_script("return getComputedStyle(document.querySelector('pre.patch span.d-add')).backgroundColor")
    check(colour not in ("", "rgba(0, 0, 0, 0)"), f"added lines are coloured: {colour}")
    shot(driver, "compare-code", driver.find_element(By.ID, "code"))
    not_pwned(driver)


def scatter(store, url, driver):
    ids, page = compared(store, url)
    driver.get(page + "&x=lr&y=acc#scatter")
    dots = driver.find_elements(By.CSS_SELECTOR, "svg.scatter circle.dot")
    check(len(dots) == len(ids), f"{len(dots)} dots for {len(ids)} runs")
    titles = [dot.find_element(By.TAG_NAME, "title").get_attribute("textContent") for dot in dots]
    check(any(SCRIPT in title for title in titles), f"the run's name in its dot's title, as text: {titles}")
    check("(log scale)" in driver.find_element(By.CSS_SELECTOR, "svg.scatter").text, "lr over decades on a log axis")
    shot(driver, "compare-scatter", driver.find_element(By.ID, "scatter"))
    not_pwned(driver)


def labels(store, url, driver):
    _, page = compared(store, url)
    driver.get(page)
    unlabelled = driver.execute_script("""
        return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea, button'))
          .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !(e.tagName == 'BUTTON' && e.textContent.trim()))
          .map(e => e.outerHTML);""")
    check(unlabelled == [], f"controls without a label: {unlabelled}")


def from_the_runs_page(store, url, driver):
    ids, page = compared(store, url)
    driver.get(url + "/runs?columns=name")
    for run in ids[:2]:
        driver.find_element(By.CSS_SELECTOR, f"input[name=id][value='{run}']").click()
    driver.find_element(By.CSS_SELECTOR, "button[value=compare]").click()
    wait(driver, lambda d: "/compare" in d.current_url and d.find_elements(By.CSS_SELECTOR, "ul.compare.legend"), "the compare page")
    entries = [li.get_attribute("data-run") for li in driver.find_elements(By.CSS_SELECTOR, "ul.compare.legend li")]
    check(sorted(entries) == sorted(ids[:2]), f"the two runs ticked: {entries}")


def many(store, url, driver):
    ids, page = compared(store, url)
    # Fourteen runs: the charts leave their legend to the page, the tooltip names the twelve
    # lines nearest the pointer and counts the rest.
    for index in range(14):
        store.cml("cml-run", "--name", f"m{index}", "--project", "many", "--param", f"seed={index}", "--",
                  "sh", "-c", f"echo 'acc: 0.{index + 10}'; echo 'acc: 0.{index + 30}'")
    many_ids = [store.run_named(f"m{index}")["id"] for index in range(14)]
    driver.get(url + "/compare?ids=" + ",".join(many_ids))
    wait(driver, charts_drawn, "every chart drawn")
    check(lines_in(driver, "acc") == 14, f"{lines_in(driver, 'acc')} lines for 14 runs")
    svg = driver.find_element(By.CSS_SELECTOR, "svg.cml-chart")
    texts = [text.get_attribute("textContent") for text in svg.find_elements(By.CSS_SELECTOR, "text")]
    check(not any("seed=" in text for text in texts), f"no legend in the chart past ten runs: {texts}")
    check(len(driver.find_elements(By.CSS_SELECTOR, "ul.compare.legend li")) == 14, "the page's legend names every run")
    plot = driver.find_element(By.CSS_SELECTOR, "div.cml-chart-plot")
    driver.execute_script("arguments[0].scrollIntoView()", plot)
    ActionChains(driver).move_to_element(plot).perform()
    tip = driver.find_element(By.CSS_SELECTOR, "div.cml-chart-tip")
    wait(driver, lambda d: tip.is_displayed() and "more lines" in tip.text, "the tooltip of many lines")
    rows = tip.find_elements(By.CSS_SELECTOR, ".cml-chart-tip-row")
    check(len(rows) == 13 and rows[-1].text == "… and 2 more lines", f"tooltip rows: {[row.text for row in rows]}")
    shot(driver, "compare-many")
    not_pwned(driver)


run_checks(args, Store("compare", env=GIT), fill, [overlay, legend, hide_same, code, scatter, labels, from_the_runs_page, many])

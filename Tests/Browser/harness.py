"""What the browser tests share: their options, a store filled through the built commands and served by
the built cml-serve, headless Chromium (Debian's chromium and chromium-driver, selenium from PyPI), and
checks that fail saying what the page shows. Each test script imports it from its own folder."""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

# What the injection checks store in every kind of user text; a script that ran would set window.__pwned.
SCRIPT = "<script>window.__pwned=1</script>"
IMAGE = '"><img src=x onerror="window.__pwned=2">'

# Set by `options`: where the built executables are, where screenshots go.
BIN = None
OUT = None


def options(seconds):
    """The scripts' options (--bin, --out, --only). Nothing may hang a test suite: the script is ended
    after `seconds`."""
    global BIN, OUT
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True, help="where the built cml executables are")
    parser.add_argument("--out", required=True, help="where screenshots go")
    parser.add_argument("--only", nargs="*", help="run only these checks")
    args = parser.parse_args()
    BIN = os.path.abspath(args.bin)
    OUT = os.path.abspath(args.out)
    os.makedirs(OUT, exist_ok=True)
    signal.alarm(seconds)
    return args


class Store:
    """A temporary store and working directory, filled through the built commands."""

    def __init__(self, name, env=None):
        self.root = tempfile.mkdtemp(prefix=f"cml-web-{name}-")
        self.path = os.path.join(self.root, "store")
        self.work = os.path.join(self.root, "work")
        os.makedirs(self.work)
        self.env = dict(os.environ, CML_STORE=self.path, **(env or {}))
        self.env.pop("CML_RUN_ID", None)
        self.processes = []

    def cml(self, tool, *arguments, check=True, env=None):
        done = subprocess.run([os.path.join(BIN, tool), *arguments], cwd=self.work, env=dict(self.env, **(env or {})),
                              capture_output=True, text=True)
        if check and done.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(arguments)} exited {done.returncode}: {done.stderr}")
        return done

    def jsonl(self, tool, *arguments):
        return [json.loads(line) for line in self.cml(tool, *arguments, "--format", "jsonl").stdout.splitlines()]

    def sh(self, command):
        subprocess.run(command, shell=True, cwd=self.work, env=self.env, check=True, capture_output=True)

    def write(self, path, text):
        full = os.path.join(self.work, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)

    def runs(self):
        return self.jsonl("cml-run", "ls")

    def run_named(self, name):
        return next(run for run in self.runs() if run.get("name") == name)

    def start(self, tool, *arguments):
        process = subprocess.Popen([os.path.join(BIN, tool), *arguments], cwd=self.work, env=self.env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.processes.append(process)
        return process

    def serve(self):
        """Starts cml-serve on the store; its URL."""
        process = self.start("cml-serve", "--listen", "127.0.0.1:0")
        line = process.stdout.readline()
        if " on http://" not in line:
            process.kill()
            raise AssertionError(f"cml-serve did not say where it listens: {line} {process.stderr.read()}")
        return line.strip().split(" on ")[-1]

    def close(self):
        for process in self.processes:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def browser():
    options = webdriver.ChromeOptions()
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000", "--disable-gpu"]:
        options.add_argument(argument)
    options.binary_location = "/usr/bin/chromium"
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


def shot(driver, name, element=None, whole=False):
    """A screenshot in OUT: of the window, from `element` down, or of the whole page (the window made
    as tall as the document)."""
    if element is not None:
        driver.execute_script("arguments[0].scrollIntoView()", element)
    if whole:
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, min(max(height, 1000), 12000))
    driver.save_screenshot(os.path.join(OUT, name + ".png"))
    if whole:
        driver.set_window_size(1400, 1000)


def wait(driver, condition, what, seconds=20):
    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.1).until(lambda d: condition(d))
    except TimeoutException:
        raise AssertionError(f"waited {seconds} s for {what}; the page shows: {driver.find_element(By.TAG_NAME, 'body').text[:800]}")


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def not_pwned(driver):
    check(driver.execute_script("return window.__pwned") is None, f"a script injected into {driver.current_url} ran")
    for entry in driver.get_log("browser"):
        # Our own pages never need what the Content-Security-Policy forbids: a violation means markup got through.
        check("Content Security Policy" not in entry["message"], f"CSP violation on {driver.current_url}: {entry['message']}")


def run_checks(args, store, fill, checks):
    """Fills `store`, serves it, and runs each check (`check(store, url, driver)`, those of --only),
    going on after a failure; a failed check leaves a screenshot. Exits non-zero when any failed."""
    failures = []
    driver = None
    try:
        fill(store)
        url = store.serve()
        driver = browser()
        for test in checks:
            if args.only and test.__name__ not in args.only:
                continue
            try:
                test(store, url, driver)
                print(f"ok   {test.__name__}", flush=True)
            except Exception:
                failures.append(test.__name__)
                print(f"FAIL {test.__name__}\n{traceback.format_exc()}", flush=True)
                try:
                    shot(driver, "failed-" + test.__name__)
                except Exception:
                    pass
    finally:
        if driver:
            driver.quit()
        store.close()
    print(f"screenshots in {OUT}")
    if failures:
        print(f"{len(failures)} check(s) failed: {', '.join(failures)}")
        sys.exit(1)

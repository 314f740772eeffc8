#!/usr/bin/env python3
"""The chart script (/static/cml-chart.HASH.js) in headless Chromium against a real cml-serve.

Usage: chart_browser.py SERVER_URL SCRIPT_PATH RUN_CHART_PATH OVERLAY_CHART_PATH KEY OUTPUT_DIR [PAGE_CHART_PATH]

With PAGE_CHART_PATH (a chart path ending in `key=m`, for a run with metrics m0 … m9), it also times a
page of those ten charts, from the script's start to the last chart drawn (reported, not checked).

The page is the server's /healthz (so that the script and the charts are same-origin) with two chart
elements put in it: one run's chart of a 1,000,000-point series, and several runs overlaid under a key
that holds a <script>. It checks what a person sees and does: lines drawn, the tooltip on hover and on
the arrow keys, a drag that zooms into real detail, a double click that zooms out, the log scale,
smoothing and x-axis controls, the legend, and that nothing injected ran. Screenshots go to OUTPUT_DIR.
Prints one line per check; exits non-zero at the first failure.
"""
import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

server, script_path, run_chart, overlay_chart, key, output = sys.argv[1:7]
page_chart = sys.argv[7] if len(sys.argv) > 7 else None
os.makedirs(output, exist_ok=True)

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1000"):
    options.add_argument(argument)
driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver"))


def check(condition, what):
    if not condition:
        driver.save_screenshot(os.path.join(output, "failure.png"))
        print("FAIL: " + what, flush=True)
        driver.quit()
        sys.exit(1)
    print("ok: " + what, flush=True)


def wait_for(predicate, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception:  # the element is being replaced
            pass
        time.sleep(0.05)
    check(False, "timed out waiting for " + what)


def chart(box):
    """The chart's root attributes and drawn points, as the page holds them now."""
    return driver.execute_script("""
        const svg = document.querySelector(arguments[0] + ' svg.cml-chart');
        if (!svg) return null;
        return {
          domain: svg.getAttribute('data-x-domain').split(' ').map(Number),
          plot: svg.getAttribute('data-plot').split(' ').map(Number),
          unit: svg.getAttribute('data-x-unit'),
          lines: Array.from(svg.querySelectorAll('path.series')).map(p => (p.getAttribute('data-points') || '').split(' ').length),
          steps: Array.from(svg.querySelectorAll('path.series')).map(p => (p.getAttribute('data-points') || '').split(' ').map(e => +e.split(',')[2])),
          texts: Array.from(svg.querySelectorAll('text')).map(t => t.textContent),
          titles: Array.from(svg.querySelectorAll('title')).map(t => t.textContent),
          width: svg.getBoundingClientRect().width,
          requests: performance.getEntriesByType('resource').map(e => e.name).filter(n => n.includes('chart?') || n.includes('/chart?')),
        };
    """, box)


driver.get(server + "/healthz")
driver.execute_script("""
    window.__pwned = undefined;
    document.body.replaceChildren();
    for (const [id, url] of [['one', arguments[0]], ['two', arguments[1]]]) {
      const box = document.createElement('section');
      box.id = id;
      box.setAttribute('data-cml-chart', url);
      box.style.width = '1000px';
      box.style.margin = '12px';
      document.body.append(box);
    }
    const script = document.createElement('script');
    script.src = arguments[2];
    document.body.append(script);
""", run_chart, overlay_chart, script_path)

first = wait_for(lambda: chart("#one"), "the run's chart")
check(len(first["lines"]) == 1, "one line in the run's chart")
plot_width = first["plot"][2] - first["plot"][0]
check(1000 < first["lines"][0] <= 2 * plot_width, f"{first['lines'][0]} points drawn for a {plot_width:.0f} px plot")
check(first["width"] >= 900, "the chart takes the element's width")
labels = driver.execute_script("""
    return Array.from(document.querySelectorAll('#one input, #one select')).map(c =>
      (document.querySelector('label[for="' + c.id + '"]') || {}).textContent || '');
""")
check(all(label.strip() for label in labels) and len(labels) == 3, f"every control has a label: {labels}")

# Hover: the crosshair and a tooltip with the nearest point's step, value and time.
svg = driver.find_element(By.CSS_SELECTOR, "#one svg.cml-chart")
scale = first["width"] / float(svg.get_attribute("width"))


def offset(px, py):
    """Selenium's offsets are from the element's centre; px, py are the SVG's own coordinates."""
    size = svg.size
    return px * scale - size["width"] / 2, py * scale - size["height"] / 2


middle_y = (first["plot"][1] + first["plot"][3]) / 2
ActionChains(driver).move_to_element_with_offset(svg, *offset((first["plot"][0] + first["plot"][2]) / 2, middle_y)).perform()
tip = wait_for(lambda: driver.find_element(By.CSS_SELECTOR, "#one .cml-chart-tip").is_displayed()
               and driver.find_element(By.CSS_SELECTOR, "#one .cml-chart-tip").text, "the tooltip")
check("step " in tip and "value " in tip and "UTC" in tip, f"the tooltip names step, value and time: {tip!r}")
check(driver.execute_script("return document.querySelectorAll('#one .cml-chart-overlay line, #one .cml-chart-overlay circle').length") == 2,
      "a crosshair and a ring on the nearest point")
driver.save_screenshot(os.path.join(output, "chart-hover.png"))

# Drag from 40% to 60% of the plot: the server is asked for that range and draws its own detail.
left, right = first["plot"][0], first["plot"][2]
start_x, end_x = left + 0.4 * (right - left), left + 0.6 * (right - left)
before = sum(1 for step in first["steps"][0] if first["domain"][0] + 0.4 * (first["domain"][1] - first["domain"][0]) <= step
             <= first["domain"][0] + 0.6 * (first["domain"][1] - first["domain"][0]))
ActionChains(driver).move_to_element_with_offset(svg, *offset(start_x, middle_y)).click_and_hold() \
    .move_by_offset((end_x - start_x) * scale, 0).release().perform()
zoomed = wait_for(lambda: (c := chart("#one")) and c["domain"] != first["domain"] and c, "the zoomed chart")
span = first["domain"][1] - first["domain"][0]
check(abs(zoomed["domain"][0] - (first["domain"][0] + 0.4 * span)) < 0.01 * span
      and abs(zoomed["domain"][1] - (first["domain"][0] + 0.6 * span)) < 0.01 * span,
      f"the zoom spans the dragged range: {zoomed['domain']} of {first['domain']}")
check(all(zoomed["domain"][0] <= step <= zoomed["domain"][1] for step in zoomed["steps"][0]), "only points in the range")
check(zoomed["lines"][0] > 3 * before, f"real detail: {zoomed['lines'][0]} points where {before} were drawn")
check(not driver.find_element(By.CSS_SELECTOR, "#one button").get_attribute("disabled"), "the reset button is enabled")
driver.save_screenshot(os.path.join(output, "chart-zoomed.png"))

# Double click zooms out.
svg = driver.find_element(By.CSS_SELECTOR, "#one svg.cml-chart")
ActionChains(driver).double_click(svg).perform()
wait_for(lambda: chart("#one")["domain"] == first["domain"], "the whole range again")
check(True, "a double click zooms out")

# Keyboard: the arrow keys move the crosshair from point to point.
plot = driver.find_element(By.CSS_SELECTOR, "#one .cml-chart-plot")
plot.send_keys(Keys.HOME)
tip_home = wait_for(lambda: driver.find_element(By.CSS_SELECTOR, "#one .cml-chart-tip").text, "the tooltip at Home")
plot.send_keys(Keys.ARROW_RIGHT)
tip_next = wait_for(lambda: (t := driver.find_element(By.CSS_SELECTOR, "#one .cml-chart-tip").text) != tip_home and t, "the next point")
check(tip_home.startswith("step 0 ") and tip_next.startswith("step "), f"keys read points: {tip_home!r} then {tip_next!r}")
plot.send_keys(Keys.ESCAPE)

# The controls: log scale, smoothing, the x axis.
driver.find_element(By.CSS_SELECTOR, "#one label[for$='-log']").click()
wait_for(lambda: any("log=1" in request for request in chart("#one")["requests"]), "a log-scale request")
check(True, "the log-scale checkbox asks for log=1")
driver.execute_script("""
    const range = document.querySelector('#one input[type=range]');
    range.value = '0.6';
    range.dispatchEvent(new Event('input'));
""")
smoothed = wait_for(lambda: (c := chart("#one")) and any("exponential moving average, weight 0.6" in t for t in c["texts"]) and c,
                    "the smoothed chart")
check(driver.find_element(By.CSS_SELECTOR, "#one output").text == "0.6", "the slider shows its weight")
driver.save_screenshot(os.path.join(output, "chart-log-smoothed.png"))
select = driver.find_element(By.CSS_SELECTOR, "#one select")
select.send_keys("elapsed")
wait_for(lambda: chart("#one")["unit"] == "elapsed", "the elapsed-time axis")
check(True, "the x-axis select redraws by elapsed time")

# The overlay: one line per run, a legend entry per run, the key shown as text and nothing run.
overlay = wait_for(lambda: chart("#two"), "the overlaid chart")
check(len(overlay["lines"]) == 2, "two runs overlaid")
check("lr=0.1" in overlay["texts"] and "lr=0.5" in overlay["texts"], f"the legend names what differs: {overlay['texts']}")
check(key in overlay["titles"], "the key is shown as text")
check(driver.execute_script("return window.__pwned === undefined && document.querySelectorAll('script').length === 1"),
      "nothing injected ran or became a script element")
driver.execute_script("document.querySelector('#two').scrollIntoView()")
driver.save_screenshot(os.path.join(output, "chart-overlay.png"))

if page_chart:
    # A page of ten charts, as a run page with ten metrics shows them: from the script's start to the
    # tenth chart in the page.
    driver.get(server + "/healthz")
    driver.execute_script("""
        document.body.replaceChildren();
        for (let k = 0; k < 10; k++) {
          const box = document.createElement('section');
          box.setAttribute('data-cml-chart', arguments[0] + k);
          box.style.width = '1000px';
          document.body.append(box);
        }
        window.__drawn = null;
        new MutationObserver(() => {
          if (window.__drawn === null && document.querySelectorAll('svg.cml-chart').length === 10) window.__drawn = performance.now();
        }).observe(document.body, { childList: true, subtree: true });
        window.__started = performance.now();
        const script = document.createElement('script');
        script.src = arguments[1];
        document.body.append(script);
    """, page_chart, script_path)
    wait_for(lambda: driver.execute_script("return document.querySelectorAll('svg.cml-chart path.series').length") == 10,
             "ten charts")
    elapsed = driver.execute_script("return window.__drawn - window.__started")
    print(f"chart page timing: ten charts of 100,000 points each, asked for and in the page in {elapsed:.0f} ms", flush=True)
    driver.save_screenshot(os.path.join(output, "chart-page.png"))

    # The run page itself: one chart per metric, each drawn with its line, under the "Scalars" group.
    driver.get(server + "/runs/ten")
    wait_for(lambda: driver.execute_script("return document.querySelectorAll('#main svg.cml-chart path.series').length") == 10,
             "the run page's ten charts")
    check(driver.execute_script("return Array.from(document.querySelectorAll('#main figure.chart figcaption')).map(c => c.textContent).join(',')")
          == ",".join(f"m{k}" for k in range(10)), "the run page names each chart by its metric")
    check(driver.execute_script("return window.__pwned === undefined"), "nothing injected ran on the run page")
    driver.execute_script("document.querySelector('#charts').scrollIntoView()")
    driver.save_screenshot(os.path.join(output, "run-page-charts.png"))
driver.quit()
print("all chart checks passed")

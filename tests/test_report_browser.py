"""The HTML report in a real browser: headless Chromium (Debian's chromium and
chromium-driver, driven by selenium) opens, from a file:// URL and with no
network, a report made from a real sample-leak run (a server with the hook,
real requests, real SIGUSR2 snapshots), and checks that the charts are
drawn, that the suspect's path is on the page, that a tree opens on a
click, and that the page's own Content-Security-Policy let its style and
script run while nothing else loaded. A report built from hostile names
runs none of them.

Without chromium, chromedriver or selenium the tests skip and say why
(scripts/install-browser installs the first two); with
MEMDIAG_REQUIRE_BROWSER=1, as CI sets, they fail instead. The screenshot
and the page are saved under $MEMDIAG_TEST_ARTIFACTS (default
$TMPDIR/memdiag-test-artifacts), printed when the test runs.
"""

import os
import shutil
import tempfile

import pytest

from conftest import kill_pid, memdiag
from test_report import EVIL_TYPE, write_hostile_snapshots

# Flags that work as root, in a container, with no display and no network.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--window-size=1200,1600")
WAIT = 60     # seconds: a bound on waiting for the page, not a pause


def find_browser():
    """((chromium, chromedriver), '') or (None, why not)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None, "selenium is not installed (it is in the test extras: pip install -e '.[test]')"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        return None, ("chromium or chromedriver is not installed (scripts/install-browser "
                      "installs Debian's chromium and chromium-driver)")
    return (chromium, driver), ""


def descendants(pid):
    """Pids of every process below pid (from /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    found, why = find_browser()
    if not found:
        if os.environ.get("MEMDIAG_REQUIRE_BROWSER"):
            pytest.fail(f"MEMDIAG_REQUIRE_BROWSER is set but {why}")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    chromium, chromedriver = found
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    saved = {k: os.environ.get(k) for k in ("SE_OFFLINE", "SE_AVOID_STATS")}
    os.environ.update(SE_OFFLINE="true", SE_AVOID_STATS="true")   # selenium's own lookups
    service = Service(executable_path=chromedriver)
    try:
        driver = webdriver.Chrome(service=service, options=options)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    pids = [service.process.pid] + descendants(service.process.pid)
    try:
        yield driver
    finally:
        pids += descendants(service.process.pid)
        driver.quit()
        for pid in reversed(pids):        # what quit() left running, by pid
            if os.path.exists(f"/proc/{pid}"):
                kill_pid(pid)


@pytest.fixture(scope="module")
def artifacts():
    d = os.environ.get("MEMDIAG_TEST_ARTIFACTS") or os.path.join(tempfile.gettempdir(),
                                                                 "memdiag-test-artifacts")
    os.makedirs(d, exist_ok=True)
    return d


def open_page(driver, path):
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get_log("browser")                           # drop what earlier pages logged
    driver.get(path.as_uri())
    WebDriverWait(driver, WAIT).until(
        lambda d: d.execute_script("return document.readyState") == "complete")


def csp_violations(driver):
    return [e["message"] for e in driver.get_log("browser")
            if "Content Security Policy" in e["message"] or "Refused to" in e["message"]]


def test_report_of_a_real_leak_in_chromium(sample, browser, tmp_path, artifacts, capsys):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    t = sample("captcha_leak.py")
    paths = []
    for n in (200, 300, 300):
        t.load("/captcha", n)
        paths.append(t.snapshot())
    out = tmp_path / "report.html"
    memdiag("report", *paths, "-o", out, check=0)
    d = browser
    open_page(d, out)

    # The charts are drawn: three SVG charts with a size, and one Python-heap
    # column per snapshot with a non-empty box.
    charts = d.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert len(charts) == 3
    for c in charts:
        assert c.is_displayed() and c.size["width"] > 0 and c.size["height"] > 0
    boxes = d.execute_script(
        "return Array.from(document.querySelectorAll('svg.chart rect.c-heap:not(.key)'))"
        ".map(function (r) { var b = r.getBBox(); return [b.width, b.height]; });")
    assert len(boxes) == 3 and all(w > 0 and h > 0 for w, h in boxes), boxes
    bars = d.find_elements(By.CSS_SELECTOR, "svg.chart rect.c-bytes")
    assert bars and all(b.size["width"] > 0 for b in bars)

    # The suspect's path, as text on the page.
    body = d.find_element(By.TAG_NAME, "body").text
    assert "ccap.timer.timer['reg_ary']" in body
    assert "ccap.cap.CAP" in body

    # The tree: the CAPs the list holds are listed, what each CAP holds is
    # hidden until their row is clicked.
    card = d.find_element(By.ID, "suspect-1")
    held = card.find_element(By.CSS_SELECTOR, "details.container > ul > li > details")
    assert "ccap.cap.CAP" in held.find_element(By.TAG_NAME, "summary").text
    assert held.get_attribute("open") is None
    inner = held.find_elements(By.CSS_SELECTOR, ":scope > ul > li")
    assert inner and not any(li.is_displayed() for li in inner)
    held.find_element(By.TAG_NAME, "summary").click()
    WebDriverWait(d, WAIT).until(lambda _: all(li.is_displayed() for li in inner))
    steps = {li.text.split()[0] for li in inner}
    assert {".image", ".style", ".text"} <= steps, steps

    # The style sheet and the script ran under the page's policy (their
    # hashes match); nothing else was asked for, nothing was refused.
    assert d.execute_script("return getComputedStyle(document.querySelector('.verdict'))"
                            ".borderLeftWidth") == "4px"
    d.find_element(By.CSS_SELECTOR, "#tree-tools [data-open='1']").click()
    assert d.execute_script("return Array.from(document.querySelectorAll('#suspects details'))"
                            ".every(function (e) { return e.open; })")
    assert d.execute_script("return performance.getEntriesByType('resource').length") == 0
    assert csp_violations(d) == []

    # The artifact: the whole page, trees open, and the page itself.
    height = d.execute_script("return document.documentElement.scrollHeight")
    d.set_window_size(1200, min(height + 40, 8000))
    shot = os.path.join(artifacts, "report-browser.png")
    assert d.save_screenshot(shot)
    shutil.copy(out, os.path.join(artifacts, "report-browser.html"))
    d.set_window_size(1200, 1600)
    with capsys.disabled():
        print(f"\nbrowser test artifacts: {shot} and report-browser.html beside it")


def test_hostile_names_run_nothing_in_chromium(browser, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    paths = write_hostile_snapshots(tmp_path)
    out = tmp_path / "evil.html"
    memdiag("report", *paths, "-o", out, check=0)
    d = browser
    open_page(d, out)
    assert d.execute_script("return window.__pwned === undefined")
    assert d.title.startswith("memdiag report")
    with pytest.raises(NoAlertPresentException):
        d.switch_to.alert.text
    assert d.find_elements(By.TAG_NAME, "iframe") == []
    assert d.find_elements(By.TAG_NAME, "img") == []
    assert EVIL_TYPE in d.find_element(By.TAG_NAME, "body").text
    assert csp_violations(d) == []

"""The compliance pages in a real headless Chromium against a real `bentoml serve` on 127.0.0.1.

Needs Debian's /usr/bin/chromium and /usr/bin/chromedriver (scripts/test-system-deps-browser.sh)
and selenium; skips with the reason otherwise.  Saves the record page as a screenshot in the test's
temporary folder; with ABETA_README_SCREENSHOT=1 it regenerates the README's docs/img/record-page.png
(the only way a test writes a tracked file, and only when asked).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from tests.serving.conftest import KEYS, Server
from tests.serving.test_compliance_pages import seed

pytestmark = pytest.mark.slow
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "record-page.png"

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        "chromium/chromedriver not installed at /usr/bin: run scripts/test-system-deps-browser.sh",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install selenium)")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    d = tmp_path_factory.mktemp("browser")
    seeded = seed(d)
    srv = Server(seeded["bundle"], seeded["db"], d / "server.log")
    try:
        srv.wait_ready()
        yield srv, seeded
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = tmp_path_factory.mktemp("chrome-profile")
    downloads = tmp_path_factory.mktemp("downloads")
    opts = Options()
    opts.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1366,1800",
        "--force-device-scale-factor=1",
    ):
        opts.add_argument(flag)
    opts.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    drv = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    drv.set_page_load_timeout(30)
    drv.downloads = downloads
    try:
        yield drv
    finally:
        drv.quit()


def _wait(predicate, timeout: float = 10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_review_flow_in_a_real_browser(live, browser, tmp_path):
    from selenium.webdriver.common.by import By

    srv, seeded = live
    base = srv.url + "/compliance"
    # no session -> login page
    browser.get(base + "/")
    assert browser.current_url.endswith("/compliance/login")
    # a trader key is refused
    browser.find_element(By.ID, "api_key").send_keys(KEYS["trader"])
    browser.find_element(By.ID, "login").click()
    _wait(lambda: "may not open the compliance pages" in browser.page_source)
    assert browser.get_cookie("abeta_session") is None
    # compliance key -> records list
    browser.get(base + "/login")
    browser.find_element(By.ID, "api_key").send_keys(KEYS["compliance"])
    browser.find_element(By.ID, "login").click()
    _wait(lambda: browser.find_elements(By.ID, "records"))
    cookie = browser.get_cookie("abeta_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert KEYS["compliance"] not in browser.current_url
    rows = browser.find_elements(By.CSS_SELECTOR, "#records tbody tr")
    assert len(rows) == 6
    # filter by asset and model version through the form
    browser.find_element(By.ID, "symbol").send_keys("ETHUSDT")
    browser.find_element(By.ID, "model_version").send_keys("test-1")
    browser.find_element(By.ID, "apply").click()
    _wait(lambda: "symbol=ETHUSDT" in browser.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "#records tbody tr")
    assert [r.find_element(By.CSS_SELECTOR, "td").text for r in rows] == ["4", "3", "1"]
    # export link of the filtered set downloads a CSV with those rows
    browser.find_element(By.ID, "export-csv").click()
    csv_file = _wait(lambda: [p for p in browser.downloads.glob("*.csv")])[0]
    _wait(lambda: csv_file.read_text().count("\n") >= 4)
    assert csv_file.read_text().splitlines()[0].startswith("seq,")
    # open the first forecast record
    rid = seeded["calls"][0]["request_id"]
    browser.find_element(By.CSS_SELECTOR, f'a[href$="/records/{rid}"]').click()
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "canvas.waterfall[data-rendered]"))
    canvases = browser.find_elements(By.CSS_SELECTOR, "canvas.waterfall")
    assert len(canvases) == 2
    for c in canvases:
        assert c.get_attribute("data-error") is None
        assert c.size["width"] > 200 and c.size["height"] > 100
        # Chart.js registered a chart on the canvas with baseline ... forecast bars
        labels = browser.execute_script("return Chart.getChart(arguments[0]).data.labels", c)
        assert labels[0] == "baseline" and labels[-1] == "forecast"
        drawn = browser.execute_script(
            "var c=arguments[0], d=c.getContext('2d').getImageData(0,0,c.width,c.height).data, n=0;"
            "for (var i=3;i<d.length;i+=4) if (d[i]>0) n++; return n;",
            c,
        )
        assert drawn > 1000  # pixels actually painted
    # verify the chain from the panel
    browser.find_element(By.LINK_TEXT, "Chain verification").click()
    browser.find_element(By.ID, "verify-btn").click()
    result = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#verify-result[data-ok='true']"))
    assert "6 records verified" in result[0].text
    # the record page now reports the chain status; save the screenshot
    browser.get(f"{base}/records/{rid}")
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "canvas.waterfall[data-rendered]"))
    assert "Intact" in browser.find_element(By.ID, "chain-status").text
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1366, min(max(height + 40, 900), 3000))
    time.sleep(0.3)
    shot = (
        README_SCREENSHOT
        if os.environ.get("ABETA_README_SCREENSHOT") == "1"
        else tmp_path / "record-page.png"
    )
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000


def test_tampered_log_shows_broken_on_the_verification_panel(live, browser, tmp_path):
    from selenium.webdriver.common.by import By

    srv, seeded = live
    base = srv.url + "/compliance"
    db = Path(seeded["db"])
    con = sqlite3.connect(db)
    try:
        triggers = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='trigger'")]
        for t in triggers:
            con.execute(f'DROP TRIGGER "{t}"')
        con.execute("UPDATE audit_records SET caller = 'someone-else' WHERE seq = 3")
        con.commit()
    finally:
        con.close()
    browser.get(base + "/verify")
    if "login" in browser.current_url:
        browser.find_element(By.ID, "api_key").send_keys(KEYS["compliance"])
        browser.find_element(By.ID, "login").click()
        browser.get(base + "/verify")
    browser.find_element(By.ID, "verify-btn").click()
    result = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#verify-result[data-ok='false']"))[0]
    assert "Chain BROKEN" in result.text and "seq 3" in result.text and "modified" in result.text
    rid = seeded["calls"][2]["request_id"]
    browser.get(f"{base}/records/{rid}")
    assert "does NOT match" in browser.find_element(By.ID, "own-hash").text
    assert "broken at or before this record" in browser.find_element(By.ID, "chain-status").text
    shutil.copy(db, tmp_path / "tampered.db")  # keep the evidence for a failing run

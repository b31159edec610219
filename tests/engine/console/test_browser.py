"""The console in a real headless browser (Debian's chromium and chromium-driver, through
selenium, nothing downloaded) against a live worker on the embedded broker: the login, each page
with the worker's data, the session cookie's flags as the browser sees them, a forged POST refused,
an erasure through the form, and no token in the worker's log. Screenshots of every page are saved
under ``tests/artifacts/console/`` (the path is printed)."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from microseg.engine.settings import Settings
from microseg.engine.startup import packaged_rules_dir
from microseg.engine.tools.produce import produce_file

from tests.engine.console.topics import own_topics

pytestmark = [pytest.mark.broker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "tests" / "artifacts" / "console"
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = Path("/usr/bin/chromium")
API = "api-5d2e9b-console-browser-admin"
READ = "read-c81f07-console-browser-reader"


def _browser() -> Any:
    if not (CHROMEDRIVER.exists() and CHROMIUM.exists()):
        message = "the browser test needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    os.environ["SE_OFFLINE"] = "true"  # selenium must never try to download a browser or a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1200", "--lang=en-US"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # script errors and CSP violations
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def _page_errors(driver: Any) -> list[str]:
    """The browser console's errors since the last call (a script error, a blocked resource, a CSP
    violation), the expected 401/403 answers of the refusals and the plain-text refusal pages' favicon aside."""
    return [
        entry["message"] for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and not re.search(r"status of 40[13]|/favicon\.ico ", entry["message"])
    ]


def _until(check: Any, timeout: float = 120.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{what} not met in {timeout}s")


def _candidates(root: Path) -> None:
    shutil.copytree(packaged_rules_dir(), root / "starter")
    wider = root / "wider"
    shutil.copytree(packaged_rules_dir(), wider)
    (wider / "console_extra.yaml").write_text("version: 1\nsegments:\n  - id: two_orders\n    when: purchases_total >= 2\n")
    broken = root / "broken"
    broken.mkdir()
    (broken / "rules.yaml").write_text("version: 1\nsegments:\n  - id: oops\n    when: purchases_total >= >= 1\n")


def _shot(driver: Any, name: str) -> Path:
    assert not _page_errors(driver), name
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def _click(driver: Any, css: str) -> None:
    """Click and wait for the next page to replace this one (a form post and its redirect)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    element = driver.find_element(By.CSS_SELECTOR, css)
    element.click()
    WebDriverWait(driver, 20).until(expected_conditions.staleness_of(element))
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")


def _login(driver: Any, token: str) -> None:
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    _click(driver, "#login")


def _drawn(driver: Any) -> int:
    return int(driver.execute_script("return document.querySelectorAll('[data-drawn] canvas').length"))


def test_the_console_in_a_browser_on_a_live_worker(broker: str, workers: Any, unique_topics: dict[str, str], sample_journeys: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    candidates = tmp_path / "candidates"
    _candidates(candidates)
    env = {
        **unique_topics, "MICROSEG_API_TOKEN": API, "MICROSEG_READ_TOKEN": READ, "MICROSEG_CONSOLE_SNAPSHOT_S": "1",
        "MICROSEG_CONSOLE_CANDIDATES_DIR": str(candidates), "MICROSEG_PARTITIONS": "2",
        # the journeys are January's: a tick at the wall clock would move every customer on while the
        # pages are read, and a population read a moment before its members would not match them
        "MICROSEG_TICKS": "false",
    }
    own_topics(env)
    settings = Settings(**{k.removeprefix("MICROSEG_").lower(): v for k, v in env.items()}, broker=broker)
    worker = workers(env)
    worker.wait_assigned()
    _until(lambda: (worker.health() or {}).get("ready"), what="partitions ready")
    lines = sample_journeys.read_bytes().splitlines(keepends=True)
    halves = [tmp_path / "first.jsonl", tmp_path / "second.jsonl"]
    halves[0].write_bytes(b"".join(lines[: len(lines) // 2]))
    halves[1].write_bytes(b"".join(lines[len(lines) // 2 :]))

    def total() -> int:
        return sum(worker.get("/segments")["segments"].values())

    produce_file(settings, broker, halves[0])
    first = _until(total, what="first half processed")
    time.sleep(3)  # a few population snapshots between the halves
    produce_file(settings, broker, halves[1])
    events = len(lines)
    _until(lambda: sum(orjson.loads(b"[" + b",".join(re.findall(rb"^microseg_events_processed_total\{[^}]*\} ([0-9.e+]+)$", _metrics(worker), re.M)) + b"]")) >= events * 0.9, what="most events processed")
    time.sleep(3)
    populations = worker.get("/segments")["segments"]
    assert first > 0
    biggest = max(populations, key=lambda s: populations[s])

    driver = _browser()
    base = f"http://127.0.0.1:{worker.port}/console"
    try:
        # no session: every page sends the browser to the login, and a wrong token is refused there
        driver.get(f"{base}/segments")
        assert "/console/login" in driver.current_url
        _login(driver, "not-a-valid-token-0000")
        assert driver.find_element(By.ID, "login-error").is_displayed()
        _shot(driver, "login-refused")
        _login(driver, READ)
        assert driver.current_url.endswith("/console/segments"), driver.current_url
        session = driver.get_cookie("microseg_console")
        assert session and session["httpOnly"] is True and session["sameSite"] == "Strict" and session["path"] == "/console"
        assert "microseg_console=" not in driver.execute_script("return document.cookie")  # no script can read it
        assert READ not in session["value"]
        driver.get(f"{base}/segments?token={READ}")  # a token in the URL: refused, session or not, and never logged
        assert "never in the URL" in driver.find_element(By.TAG_NAME, "body").text
        driver.get(f"{base}/segments")

        # segments: every segment with the worker's population, and the chart over the snapshots
        rows = {r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")[1].text for r in driver.find_elements(By.CSS_SELECTOR, "#segments tbody tr")}
        assert set(rows) == set(populations)
        _until(lambda: _drawn(driver) >= 1, 10, "segments chart")
        _shot(driver, "segments")

        driver.get(f"{base}/segments/{biggest}")
        assert driver.find_element(By.ID, "population").text.replace(",", "") == str(worker.get("/segments")["segments"][biggest])
        members = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "#members a")]
        assert members and len(set(members)) == len(members) <= 25
        _until(lambda: _drawn(driver) >= 3, 10, "segment charts")
        assert len(driver.execute_script("return JSON.parse(document.getElementById('population-chart').textContent).x")) >= 3
        _shot(driver, "segment")

        _click(driver, "#members a")
        customer = members[0]
        assert driver.current_url.endswith(f"/console/customers/{customer}")
        why = driver.find_elements(By.CSS_SELECTOR, "#why tbody tr")
        assert any(biggest in r.text and "yes" in r.text for r in why)
        assert not driver.find_elements(By.ID, "erase-form")  # a read session is not offered erasure
        _shot(driver, "customer")

        # a forged POST (no CSRF token, or a wrong one) from the page's own origin is refused
        forged = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "Promise.all([fetch(arguments[0], {method: 'POST', body: new URLSearchParams({csrf: 'wrong'})}),"
            " fetch(arguments[0], {method: 'POST'})]).then(rs => done(rs.map(r => r.status)));",
            f"/console/customers/{customer}/erase",
        )
        assert forged == [403, 403]

        driver.get(f"{base}/rules?candidate=broken")
        problems = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#problems li")]
        assert problems and all(re.search(r"rules\.yaml:\d+:\d+: ", p) for p in problems), problems
        driver.get(f"{base}/rules?candidate=wider")
        diff = {r.find_elements(By.TAG_NAME, "td")[0].text: [td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in driver.find_elements(By.CSS_SELECTOR, "#diff tbody tr")}
        assert diff["two_orders"][1] == "added" and diff["two_orders"][3].isdigit()
        assert diff[biggest][1] == "same" and diff[biggest][3] == diff[biggest][2]  # same rule, same size on live state
        assert not driver.find_elements(By.ID, "publish-form")
        _shot(driver, "rules")

        driver.get(f"{base}/messages")
        assert driver.find_elements(By.CSS_SELECTOR, "#messages tbody tr")
        _shot(driver, "messages")

        driver.get(f"{base}/ops")
        assert driver.find_element(By.ID, "readiness").text == "Ready"
        assert [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#lag tbody td")]
        _shot(driver, "ops")

        # the API token's session may erase, through the form and its CSRF token
        _click(driver, "header form button")
        assert "/console/login" in driver.current_url
        driver.get(f"{base}/customers/{customer}")
        _login(driver, API)
        assert driver.current_url.endswith(f"/console/customers/{customer}")
        _click(driver, "#erase-form button")
        assert "outcome accepted" in driver.find_element(By.ID, "message").text
        _until(lambda: _status(worker, customer) == 404, 60, "customer erased")

        # publish, see it in force and in the history, roll back: all through the forms
        starter = worker.health()["rules_version"]
        driver.get(f"{base}/rules?candidate=starter")
        _click(driver, "#publish-form button")
        assert driver.find_element(By.TAG_NAME, "h1").text == "Published"
        driver.get(f"{base}/rules?candidate=wider")
        _click(driver, "#publish-form button")
        wider = re.search(r"rules (\w+) published", driver.find_element(By.ID, "message").text)[1]  # type: ignore[index]
        _until(lambda: (worker.health() or {}).get("rules_version") == wider, 60, "the published rules in force")
        driver.get(f"{base}/rules")
        history = [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in driver.find_elements(By.CSS_SELECTOR, "#history tbody tr")]
        assert [(h[1], h[2].removesuffix(" (current)")) for h in history] == [("publish", wider), ("publish", starter)]
        _shot(driver, "rules-history")
        from selenium.webdriver.support.ui import Select

        Select(driver.find_element(By.ID, "rollback-version")).select_by_value(starter)
        _click(driver, "#rollback-form button")
        assert driver.find_element(By.TAG_NAME, "h1").text == "Rolled back"
        _until(lambda: (worker.health() or {}).get("rules_version") == starter, 60, "the rolled-back rules in force")
    finally:
        driver.quit()

    log = worker.log_path.read_text()
    assert API not in log and READ not in log


def _metrics(worker: Any) -> bytes:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5) as response:
        return response.read()


def _status(worker: Any, customer: str) -> int:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{worker.port}/customers/{customer}", headers={"Authorization": f"Bearer {API}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code

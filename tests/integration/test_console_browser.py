"""The web console in a real browser: headless Debian chromium, driven by selenium, against `scalespace serve`.

The page asks for the token once and keeps it in sessionStorage; it follows a
job from running to succeeded, shows its pictures and report, downloads its
artifacts through blob: URLs, draws a sweep's nights with their regressions,
and cancels and retries a job - and no URL the browser asks for holds the token.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from service_infra import ApiServer, free_port, interrupt, wait_for

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
TOKEN = "console-token-7f3a9c1e5b"
SAMPLE = {"kind": "sample", "process": "vp", "data": "digits", "n": 4, "steps": 10, "seed": 3}
EVALUATE = {"kind": "evaluate", "process": "vp", "data": "digits", "n": 8, "eval_steps": 3, "checks": ["forward"],
            "data_limit": 32}
LONG = {"kind": "sample", "process": "vp", "data": "digits", "n": 4, "steps": 1000, "seed": 4}

needs_browser = pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                                   reason="needs Debian's chromium and chromium-driver (scripts/bootstrap.sh installs them)")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER), log_output=str(tmp_path / "driver.log")))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """`scalespace serve` with a token: the API, one worker and an embedded Redis."""
    port, out = free_port(), tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCALESPACE_", "AWS_"))}
    env.update(SCALESPACE_API_TOKEN=TOKEN, SCALESPACE_HEARTBEAT_FILE=str(tmp_path / "hb"),
               SCALESPACE_WORKER_SHUTDOWN_TIMEOUT_S="5", PYTHONUNBUFFERED="1")
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "scalespace.cli", "serve", "--port", str(port), "--out", str(out)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        wait_for(lambda: httpx.get(f"{base}/v1/ready", timeout=2).status_code == 200, 120, "serve to be ready",
                 every_s=0.2)
        yield base
    finally:
        interrupt(proc)


class Api:
    """The JSON API with the token, for what the test does beside the browser."""

    def __init__(self, base: str, token: str | None):
        import httpx

        self.http = httpx.Client(base_url=base, timeout=30,
                                 headers={"Authorization": f"Bearer {token}"} if token else {})

    def submit(self, spec: dict[str, Any], lane: str = "interactive") -> dict[str, Any]:
        r = self.http.post("/v1/jobs", json={"spec": spec, "lane": lane})
        assert r.status_code == 201, r.text
        return r.json()

    def job(self, job_id: str) -> dict[str, Any]:
        return self.http.get(f"/v1/jobs/{job_id}").json()

    def wait(self, job_id: str, timeout_s: float = 300) -> dict[str, Any]:
        ended = ("succeeded", "failed", "cancelled", "expired")
        return wait_for(lambda: (j := self.job(job_id))["state"] in ended and j, timeout_s, f"job {job_id} to end",
                        every_s=0.3)


def js(driver: Any, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def until(driver: Any, check: Any, timeout_s: float, what: str) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.1,
                             ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: check(d))
    except TimeoutException:
        status = js(driver, "var s = document.getElementById('status-line'); return s ? s.textContent : ''")
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (page status: {status!r})") from None


def text_of(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text.strip() if found else ""


def row_state(driver: Any, job_id: str) -> str:
    return text_of(driver, f'tr[data-job-id="{job_id}"] td.state')


def requested(driver: Any) -> list[tuple[str, dict[str, str]]]:
    """Every request the page made, with its headers: the resource timing entries (no headers) and the
    browser's network log of the session."""
    names = js(driver, "return performance.getEntriesByType('navigation').concat("
                       "performance.getEntriesByType('resource')).map(function (e) { return e.name; })")
    out: list[tuple[str, dict[str, str]]] = [(n, {}) for n in names]
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            out.append((msg["params"]["request"]["url"], msg["params"]["request"].get("headers", {})))
    return out


def open_in_new_tab(driver: Any, link: Any, want: str, script: str = "return null") -> tuple[str, Any]:
    """Click a link that opens a tab; return that tab's text once it holds `want` and what `script` returns
    there, back on the console's tab."""
    main = driver.current_window_handle
    before = set(driver.window_handles)
    link.click()
    until(driver, lambda d: len(set(d.window_handles) - before) == 1, 30, "a new tab")
    (tab,) = set(driver.window_handles) - before
    driver.switch_to.window(tab)
    try:
        text = until(driver, lambda d: want in (t := d.find_element("tag name", "body").text) and t, 30,
                     f"the new tab to show {want!r}")
        assert driver.current_url.startswith("blob:"), driver.current_url
        got = js(driver, script)
    finally:
        driver.close()
        driver.switch_to.window(main)
    return text, got


@needs_browser
def test_the_console_follows_jobs_shows_results_and_sweeps_and_cancels(served, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    api, d = Api(served, TOKEN), browser
    d.get(f"{served}/ui")
    # the page asks for the token once (the API refused the first call without one)
    until(d, lambda d: d.find_element(By.ID, "token-panel").is_displayed(), 30, "the token prompt")
    d.find_element(By.ID, "token-input").send_keys(TOKEN)
    d.find_element(By.ID, "token-save").click()
    until(d, lambda d: text_of(d, "#jobs-count") == "0 jobs", 30, "the empty job list")
    assert js(d, "return sessionStorage.getItem('scalespace.token')") == TOKEN
    assert text_of(d, "#auth-status") == "token set for this tab"

    # a job submitted elsewhere shows up, running, then succeeded, with its progress
    job = api.submit(SAMPLE)
    until(d, lambda d: row_state(d, job["id"]) == "running", 180, "the new job's row to say running")
    until(d, lambda d: row_state(d, job["id"]) == "succeeded", 240, "the job's row to say succeeded")
    assert text_of(d, f'tr[data-job-id="{job["id"]}"] td.progress').endswith("10/10")
    done = api.job(job["id"])
    assert done["state"] == "succeeded"

    # filters: the list asks the API for that state, kind or lane only
    Select(d.find_element(By.ID, "filter-state")).select_by_value("failed")
    until(d, lambda d: text_of(d, "#jobs-count") == "0 jobs", 30, "the failed filter")
    Select(d.find_element(By.ID, "filter-state")).select_by_value("succeeded")
    Select(d.find_element(By.ID, "filter-kind")).select_by_value("sample")
    Select(d.find_element(By.ID, "filter-lane")).select_by_value("interactive")
    until(d, lambda d: row_state(d, job["id"]) == "succeeded" and text_of(d, "#jobs-count") == "1 job", 30,
          "the job under matching filters")
    Select(d.find_element(By.ID, "filter-lane")).select_by_value("batch")
    until(d, lambda d: text_of(d, "#jobs-count") == "0 jobs", 30, "the batch filter")
    for name in ("filter-state", "filter-kind", "filter-lane"):
        Select(d.find_element(By.ID, name)).select_by_value("")

    # its page: the picture, timings, the artifacts with their sizes, one viewed and one downloaded
    until(d, lambda d: row_state(d, job["id"]) == "succeeded", 30, "the unfiltered list")
    d.find_element(By.CSS_SELECTOR, f'tr[data-job-id="{job["id"]}"] td.id a').click()
    until(d, lambda d: text_of(d, "#job-state") == "succeeded", 30, "the job page")
    img = until(d, lambda d: js(d, "var i = document.querySelector('img.picture[data-name=\"grid.png\"]');"
                                   "return i && i.complete && i.naturalWidth > 0 ? i : null"), 30, "grid.png to show")
    assert img.get_attribute("src").startswith("blob:")
    assert text_of(d, "dd.timing-run-time").endswith(" s") and text_of(d, "dd.timing-attempts") == "1"
    sizes = {r.get_attribute("data-name"): int(r.find_element(By.CSS_SELECTOR, "td.size").get_attribute("data-bytes") or -1)
             for r in d.find_elements(By.CSS_SELECTOR, "tr.artifact-row")}
    assert sizes.keys() >= {"samples.npz", "grid.png", "manifest.json"}
    assert all(sizes[a["name"]] == a["bytes"] for a in done["artifacts"] if a["bytes"] is not None)
    d.find_element(By.CSS_SELECTOR, 'a.view[data-name="manifest.json"]').click()
    viewed = until(d, lambda d: text_of(d, "#artifact-view"), 30, "manifest.json's text")
    manifest = json.loads(viewed)
    grid = next(a for a in done["artifacts"] if a["name"] == "grid.png")
    assert manifest["job_id"] == job["id"] and any(a["sha256"] == grid["sha256"] for a in manifest["artifacts"])
    d.find_element(By.CSS_SELECTOR, 'a.download[data-name="samples.npz"]').click()
    got = until(d, lambda d: js(d, "return document.querySelector('a.download[data-name=\"samples.npz\"]')"
                                   ".dataset.fetchedBytes"), 30, "samples.npz to download")
    assert int(got) == sizes["samples.npz"]
    assert d.find_element(By.CSS_SELECTOR, 'a.download[data-name="samples.npz"]').get_attribute("href").startswith("blob:")
    assert d.find_element(By.ID, "cancel-btn").get_attribute("disabled") is not None  # nothing to cancel or retry
    assert d.find_element(By.ID, "retry-btn").get_attribute("disabled") is not None

    # an evaluate job: every plot shown, and its report opens in the browser
    ev = api.wait(api.submit(EVALUATE)["id"])
    assert ev["state"] == "succeeded", ev["error"]
    d.get(f"{served}/ui#/job/{ev['id']}")
    pngs = [a["name"] for a in ev["artifacts"] if a["name"].endswith(".png")]
    assert pngs
    until(d, lambda d: js(d, "var i = Array.from(document.querySelectorAll('img.picture'));"
                             "return i.length === arguments[0] && i.every(function (x) { return x.naturalWidth > 0; })",
                          len(pngs)), 30, "every plot of the evaluate job")
    report = until(d, lambda d: (a := d.find_elements(By.CSS_SELECTOR, 'a.report-link[data-name="report.html"]'))
                   and a[0].get_attribute("data-ready") and a[0], 30, "the report link")
    text, _ = open_in_new_tab(d, report, "F1")
    assert "vp" in text and "digits" in text

    # two nights of a sweep: a plot per figure and cell, the regression flagged, reports and child jobs linked
    sweep = {"kind": "sweep", "name": "console", "processes": ["vp"], "data": ["digits"],
             "template": {"kind": "sample", "n": 4, "steps": 5, "seed": 1}, "directions": {"n_samples": "higher"}}
    first = api.wait(api.submit(sweep, lane="nightly")["id"])
    second = api.wait(api.submit({**sweep, "template": {**sweep["template"], "n": 2}}, lane="nightly")["id"])
    assert first["state"] == second["state"] == "succeeded", (first["error"], second["error"])
    history = api.http.get("/v1/sweeps/console/history").json()
    flagged = sum(len(r["regressions"]) for r in history["runs"])
    assert ("vp/digits/oracle", "quality.n_samples") in {(r["key"], r["figure"]) for r in history["runs"][1]["regressions"]}
    d.get(f"{served}/ui#/job/{second['id']}")
    until(d, lambda d: d.find_elements(By.ID, "sweep-link"), 30, "the sweep job's page").pop().click()
    until(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#sweep-runs tr.sweep-run")) == 2, 30, "both nights")
    assert [r.get_attribute("data-job-id") for r in d.find_elements(By.CSS_SELECTOR, "#sweep-runs tr.sweep-run")] == [
        first["id"], second["id"]]
    plot = d.find_element(By.CSS_SELECTOR, '.plot[data-key="vp/digits/oracle"][data-figure="quality.n_samples"]')
    assert "flagged" in plot.get_attribute("class") and "regression" in plot.text
    assert len(plot.find_elements(By.CSS_SELECTOR, "circle")) == 2
    assert len(plot.find_elements(By.CSS_SELECTOR, "polyline")) == 1
    assert len(d.find_elements(By.CSS_SELECTOR, "#plots circle.regression")) == flagged >= 1
    assert d.find_elements(By.CSS_SELECTOR, '.plot[data-figure="quality.fd"]')
    d.find_element(By.ID, "figure-filter").send_keys("n_samples")
    until(d, lambda d: {p.get_attribute("data-figure") for p in d.find_elements(By.CSS_SELECTOR, ".plot")} == {
        "quality.n_samples"}, 10, "the figure filter")
    report = until(d, lambda d: (a := d.find_elements(By.CSS_SELECTOR, f'tr[data-job-id="{second["id"]}"] a.report-link'))
                   and a[0].get_attribute("data-ready") and a[0], 30, "the second night's report link")
    text, margin = open_in_new_tab(d, report, "Sweep console", "return getComputedStyle(document.body).marginTop")
    assert f"compared with {first['id']}" in text and "quality.n_samples" in text
    assert margin == "32px"  # the report's own style sheet applies (2em; a browser's default is 8px)
    child = d.find_element(By.CSS_SELECTOR, f'tr[data-job-id="{second["id"]}"] a.child-link')
    child.click()
    until(d, lambda d: text_of(d, "#job-id") == f"{second['id']}.c000" and text_of(d, "#job-state") == "succeeded", 30,
          "the child job's page")

    # cancel a long job from its page, retry it, cancel it again
    long = api.submit(LONG)
    d.get(f"{served}/ui#/job/{long['id']}")
    until(d, lambda d: text_of(d, "#job-state") == "running", 180, "the long job to run")
    cancel = d.find_element(By.ID, "cancel-btn")
    assert cancel.is_enabled() and not d.find_element(By.ID, "retry-btn").is_enabled()
    cancel.click()
    until(d, lambda d: text_of(d, "#job-state") == "cancelled", 60, "the job to say cancelled")
    stopped = api.job(long["id"])
    assert stopped["state"] == "cancelled" and stopped["stopped_step"] is not None and stopped["stopped_step"] < 1000
    until(d, lambda d: d.find_element(By.ID, "retry-btn").is_enabled(), 10, "the retry button")
    d.find_element(By.ID, "retry-btn").click()
    until(d, lambda d: text_of(d, "#job-state") in ("queued", "running"), 30, "the retried job to be back")
    assert api.job(long["id"])["state"] in ("queued", "running")
    until(d, lambda d: d.find_element(By.ID, "cancel-btn").is_enabled(), 30, "the cancel button")
    d.find_element(By.ID, "cancel-btn").click()
    until(d, lambda d: text_of(d, "#job-state") == "cancelled", 120, "the retried job to be cancelled")

    # the token went only in headers: in no URL the browser requested, and it is in this tab's sessionStorage
    d.get(f"{served}/ui#/jobs")
    until(d, lambda d: row_state(d, long["id"]) == "cancelled", 30, "the list again (no new token prompt)")
    seen = requested(d)
    urls = [u for u, _ in seen]
    names = js(d, "return performance.getEntries().map(function (e) { return e.name; })")  # every kind of entry
    assert not [n for n in names + urls if TOKEN in n]
    assert TOKEN not in d.current_url
    assert any(u.startswith("blob:") for u in urls)
    # the API calls carried it as a header (all but the first, made before the page knew it)
    sent = [h.get("Authorization") for u, h in seen if u.startswith(f"{served}/v1/") and h]
    assert sent.count(f"Bearer {TOKEN}") >= len(sent) - 1 >= 10 and set(sent) <= {f"Bearer {TOKEN}", None}, sent
    # offline: every network request went to the service itself (the rest are blob: and data: URLs)
    assert not [u for u in urls if u.startswith(("http:", "https:", "ws:", "wss:")) and not u.startswith(served)]
    assert js(d, "return sessionStorage.getItem('scalespace.token')") == TOKEN
    assert not d.find_element(By.ID, "token-panel").is_displayed()


@needs_browser
def test_without_a_configured_token_the_console_asks_for_none(tmp_path, browser):
    """An API with no SCALESPACE_API_TOKEN (loopback only): the page lists jobs at once, no prompt."""
    from selenium.webdriver.common.by import By

    from scalespace.config import Settings
    from scalespace.scheduler.api import create_app
    from scalespace.scheduler.serve import start_embedded_redis

    redis = start_embedded_redis(tmp_path / "redis")  # a Redis of its own: no other test's jobs in the list
    settings = Settings(redis_url=f"unix://{redis.socket_file}", results_dir=str(tmp_path / "results"), api_token=None)
    try:
        with ApiServer(create_app(settings)) as server:
            api = Api(server.url, None)
            job = api.submit(SAMPLE)  # no worker: it waits in its lane
            browser.get(f"{server.url}/ui")
            until(browser, lambda d: row_state(d, job["id"]) == "queued", 30, "the queued job")
            assert text_of(browser, f'tr[data-job-id="{job["id"]}"] td.queue') == "#1"
            assert not browser.find_element(By.ID, "token-panel").is_displayed()
            assert text_of(browser, "#auth-status") == "no token"
            assert js(browser, "return sessionStorage.getItem('scalespace.token')") is None
            api.http.delete(f"/v1/jobs/{job['id']}")
            until(browser, lambda d: row_state(d, job["id"]) == "cancelled", 30, "the cancel to show")
    finally:
        redis.shutdown()


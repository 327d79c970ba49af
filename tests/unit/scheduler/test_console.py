"""The web console at /ui: a static page served without a token, shipped whole in the package (no external URL),
and the sweep history endpoint it draws its plots from (behind the token)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

TOKEN = "unit-token"  # as in tests/unit/conftest.py
ROOT = Path(__file__).resolve().parents[3]
CONSOLE = ROOT / "scheduler" / "console"
#: an XML namespace is a name, not a place: the browser never fetches it
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def test_the_page_and_its_assets_need_no_token_and_have_their_types(api):
    no_auth = {"Authorization": ""}
    page = api.get("/ui", headers=no_auth)
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert 'src="ui/console.js"' in page.text and 'href="ui/console.css"' in page.text
    js = api.get("/ui/console.js", headers=no_auth)
    assert js.status_code == 200 and js.headers["content-type"] == "text/javascript; charset=utf-8"
    assert js.headers["x-content-type-options"] == "nosniff" and "Authorization" in js.text
    css = api.get("/ui/console.css", headers=no_auth)
    assert css.status_code == 200 and css.headers["content-type"] == "text/css; charset=utf-8"
    # the data stays behind the token
    assert api.get("/v1/jobs", headers=no_auth).status_code == 401


def test_only_the_shipped_files_are_served(api):
    no_auth = {"Authorization": ""}
    for path in ("/ui/nope.js", "/ui/__init__.py", "/ui/index.html", "/ui/..%2Fapi.py", "/ui/%2e%2e"):
        r = api.get(path, headers=no_auth)
        assert r.status_code == 404 and "import" not in r.text, (path, r.status_code, r.text[:200])
    slash = api.get("/ui/", headers=no_auth, follow_redirects=False)
    assert slash.status_code == 307 and slash.headers["location"] == "../ui"


def test_the_index_links_the_console(api):
    root = api.get("/", headers={"Authorization": ""}).json()
    assert root["console"] == "/ui" and "/ui" in root["auth"]


def test_no_asset_loads_anything_from_elsewhere():
    files = sorted(p for p in CONSOLE.iterdir() if p.suffix in (".html", ".js", ".css"))
    assert {p.name for p in files} == {"index.html", "console.js", "console.css"}
    for p in files:
        text = p.read_text().replace(SVG_NAMESPACE, "")
        assert not re.search(r"https?://", text), f"{p.name} names an external URL"
        assert not re.search(r"""(src|href)\s*=\s*["']//|@import|fonts\.|cdn""", text, re.I), p.name
        assert not re.search(r"(?<![\w.])url\(", text), f"{p.name} loads a url(...)"  # CSS url(), not createObjectURL(
    html = (CONSOLE / "index.html").read_text()
    assert re.findall(r"""(?:src|href)="([^"#]+)\"""", html) == ["data:,", "ui/console.css", "ui/console.js"]


def test_the_package_data_ships_every_console_file():
    """pyproject.toml lists the package and globs matching every file of the console (else the wheel lacks them)."""
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "scalespace.scheduler.console" in conf["packages"]
    globs = conf["package-data"]["scalespace.scheduler.console"]
    for p in CONSOLE.iterdir():
        if p.is_file() and p.suffix != ".py":
            assert any(p.match(g) for g in globs), f"{p.name} is not in the package data"


def test_the_filters_offer_the_api_s_states_kinds_and_lanes():
    from scalespace.config import LANES
    from scalespace.jobs.specs import KINDS
    from scalespace.scheduler.jobstore import STATES

    js = (CONSOLE / "console.js").read_text()

    def listed(name: str) -> list[str]:
        m = re.search(rf"var {name} = \[([^\]]*)\];", js)
        assert m, name
        return re.findall(r'"([^"]+)"', m.group(1))

    assert listed("STATES") == list(STATES) and listed("KINDS") == list(KINDS) and listed("LANES") == list(LANES)


def test_the_token_stays_out_of_urls():
    """The script sends the token as a header only: no query parameter, no form that a browser would submit."""
    js = (CONSOLE / "console.js").read_text()
    assert 'headers.Authorization = "Bearer " + token()' in js and "sessionStorage" in js
    assert not re.search(r"[?&](token|access_token|auth)=", js) and "localStorage" not in js
    assert "<form" not in (CONSOLE / "index.html").read_text()


def _committed_sweep(store, name: str, job_id: str, fd: float, passed: bool, previous: tuple | None) -> dict:
    """A sweep run as the sweep job leaves it: its report (JSON and HTML), its manifest, its place in the history."""
    from scalespace.jobs.specs import parse_spec
    from scalespace.jobs.sweep import REPORT_HTML, REPORT_JSON, _remember
    from scalespace.jobs.sweep_report import build_report, render_html

    spec = parse_spec({"kind": "sweep", "name": name, "processes": ["vp", "ve"], "data": ["digits"],
                       "template": {"kind": "sample", "n": 2, "steps": 5}})
    results = [{"key": "vp/digits/oracle", "job_id": f"{job_id}.c000", "kind": "sample", "state": "succeeded",
                "summary": {"quality": {"fd": fd}, "checks": {"ok": passed}}},
               {"key": "ve/digits/oracle", "job_id": f"{job_id}.c001", "kind": "sample", "state": "succeeded",
                "summary": {"quality": {"fd": 3.0}}}]
    report = build_report(spec, job_id, results, *(previous or (None, None)))
    refs = [store.put_json("jobs", job_id, REPORT_JSON, report),
            store.put("jobs", job_id, REPORT_HTML, render_html(report).encode())]
    store.put_json("jobs", job_id, "manifest.json", {"job_id": job_id, "artifacts": [
        {"name": n, "path": n, "sha256": r.sha256, "bytes": r.bytes} for n, r in zip((REPORT_JSON, REPORT_HTML), refs)]})
    _remember(store, name, job_id)
    return report


def test_the_sweep_history_needs_the_token_and_lists_each_night(api, settings):
    from scalespace.storage import LocalStore

    store = LocalStore(settings.results_dir)
    first = _committed_sweep(store, "nightly", "sweep-night-1", fd=2.0, passed=True, previous=None)
    _committed_sweep(store, "nightly", "sweep-night-2", fd=2.5, passed=False, previous=("sweep-night-1", first))
    _committed_sweep(store, "other", "sweep-other-1", fd=9.0, passed=True, previous=None)

    assert api.get("/v1/sweeps/nightly/history", headers={"Authorization": ""}).status_code == 401
    assert api.get("/v1/sweeps/nightly/history", headers={"Authorization": "Bearer nope"}).status_code == 401
    bad = api.get("/v1/sweeps/..bad/history")
    assert bad.status_code == 422 and bad.json()["field"] == "name"
    assert api.get("/v1/sweeps/never-ran/history").json() == {"name": "never-ran", "runs": []}

    hist = api.get("/v1/sweeps/nightly/history").json()
    assert hist["name"] == "nightly" and [r["job_id"] for r in hist["runs"]] == ["sweep-night-1", "sweep-night-2"]
    one, two = hist["runs"]
    assert one["has_report"] and one["state"] == "succeeded" and one["compared_with"] is None and one["regressions"] == []
    assert one["report_url"].endswith("/v1/jobs/sweep-night-1/artifacts/sweep-report.html")
    assert {c["key"]: c["figures"] for c in one["children"]} == {
        "vp/digits/oracle": {"quality.fd": 2.0, "checks.ok": True}, "ve/digits/oracle": {"quality.fd": 3.0}}
    assert [c["job_id"] for c in two["children"]] == ["sweep-night-2.c000", "sweep-night-2.c001"]
    # fd went up by 25 % (lower is better) and a passing check stopped passing: two regressions on one cell
    assert two["compared_with"] == "sweep-night-1"
    assert sorted((r["key"], r["figure"]) for r in two["regressions"]) == [
        ("vp/digits/oracle", "checks.ok"), ("vp/digits/oracle", "quality.fd")]
    assert two["counts"] == {"regression": 2, "same": 1}
    fd = next(c for c in two["comparisons"] if c["figure"] == "quality.fd" and c["key"] == "vp/digits/oracle")
    assert fd["previous"] == 2.0 and fd["current"] == 2.5 and fd["direction"] == "lower"
    assert abs(fd["relative_change"] - 0.25) < 1e-12
    assert [r["job_id"] for r in api.get("/v1/sweeps/nightly/history?limit=1").json()["runs"]] == ["sweep-night-2"]
    assert api.get("/v1/sweeps/nightly/history?limit=0").status_code == 422


def test_a_sweep_without_a_report_yet_shows_as_a_run_of_its_own(api, settings):
    spec = {"kind": "sweep", "name": "pending", "processes": ["vp"], "data": ["digits"],
            "template": {"kind": "sample", "n": 2, "steps": 5}}
    job = api.post("/v1/jobs", json={"spec": spec, "lane": "nightly"}).json()
    api.post("/v1/jobs", json={"spec": {**spec, "name": "elsewhere"}, "lane": "nightly"})
    runs = api.get("/v1/sweeps/pending/history").json()["runs"]
    assert [(r["job_id"], r["state"], r["has_report"], r["report_url"]) for r in runs] == [
        (job["id"], "queued", False, None)]


def test_the_history_is_in_the_openapi_document(api):
    doc = api.get("/openapi.json").json()
    op = doc["paths"]["/v1/sweeps/{name}/history"]["get"]
    assert "401" in op["responses"] and op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/SweepHistory")
    assert "/ui" not in doc["paths"] and "/ui/{name}" not in doc["paths"]

"""The sweep job: the grid, the embedded runner, and the report that flags regressions against the previous sweep."""

from __future__ import annotations

import json

import pytest

from scalespace import ScalespaceError
from scalespace.jobs import parse_spec, run_job
from scalespace.jobs.sweep import plan_sweep, previous_report
from scalespace.jobs.sweep_report import build_report, compare, figures, render_html
from scalespace.storage import LocalStore

SWEEP = {"kind": "sweep", "name": "unit", "processes": ["vp", "ve"], "data": ["digits"],
         "template": {"kind": "sample", "n": 4, "steps": 6}}


def test_plan_is_the_grid_in_order():
    children = plan_sweep(parse_spec({**SWEEP, "models": ["oracle", "m1"]}))
    assert [c.key for c in children] == ["vp/digits/oracle", "vp/digits/m1", "ve/digits/oracle", "ve/digits/m1"]
    assert children[1].spec == {"kind": "sample", "n": 4, "steps": 6, "process": "vp", "data": "digits", "model": "m1"}
    train = plan_sweep(parse_spec({**SWEEP, "template": {"kind": "train"}}))
    assert [c.key for c in train] == ["vp/digits/-", "ve/digits/-"] and "model" not in train[0].spec


@pytest.mark.parametrize("change, message", [
    ({"template": {"kind": "sample", "n": "x"}}, "template.n:"),
    ({"processes": ["vp", "warp"]}, "processes:"),
    ({"template": {"kind": "sweep"}}, "template: kind must be one of"),
    ({"template": {"kind": "sample", "process": "vp"}}, "comes from the sweep's 'processes'"),
    ({"name": "../up"}, "invalid sweep name"),
    ({"processes": ["vp", "vp"]}, "list it once"),
])
def test_bad_sweeps_name_the_field(change, message):
    with pytest.raises(ScalespaceError, match=None) as e:
        plan_sweep(parse_spec({**SWEEP, **change}))
    assert message in str(e.value)


def test_figures_and_comparisons():
    spec = parse_spec({**SWEEP, "directions": {"spread": "higher"}})
    assert figures({"quality": {"fid": 3.0, "ok": True}, "ids": [1, 2], "name": "x", "nan": float("nan")}) == \
        {"quality.fid": 3.0, "quality.ok": True}
    assert compare("quality.fid", 10.0, 10.2, spec)["status"] == "same"          # within 5 %
    assert compare("quality.fid", 10.0, 12.0, spec)["status"] == "regression"    # lower is better
    assert compare("quality.fid", 10.0, 8.0, spec)["status"] == "improved"
    assert compare("checks.F3a.passed", True, False, spec)["status"] == "regression"
    assert compare("throughput.per_second", 10.0, 5.0, spec)["status"] == "regression"
    assert compare("misc.count", 10.0, 20.0, spec)["status"] == "changed"        # no known direction
    assert compare("spread", 1.0, 0.5, spec)["status"] == "regression"           # the spec's direction
    assert compare("new.one", None, 1.0, spec)["status"] == "new"


def test_report_flags_a_child_that_stopped_succeeding_and_escapes_html():
    spec = parse_spec(SWEEP)
    before = build_report(spec, "s1", [{"key": "vp/digits/oracle", "job_id": "s1.c000", "kind": "sample",
                                        "state": "succeeded", "error": None, "summary": {"fid": 1.0}}], None, None)
    after = build_report(spec, "s2", [{"key": "vp/digits/oracle", "job_id": "s2.c000", "kind": "sample",
                                       "state": "failed", "error": "<boom>", "summary": None}], "s1", before)
    assert [r["figure"] for r in after["regressions"]] == ["state"]
    page = render_html(after)
    assert "&lt;boom&gt;" in page and "<boom>" not in page and "Regressions: 1" in page


def test_embedded_sweep_runs_children_and_compares_with_the_last_one(tmp_path):
    store = LocalStore(tmp_path)
    spec = {**SWEEP, "models": ["oracle", "ghost"]}  # 'ghost' has no checkpoint: its children fail, the sweep goes on
    first = run_job(spec, store, job_id="sweep-a")
    assert first["summary"] == {"name": "unit", "children": 4, "succeeded": 2, "failed": 2, "regressions": 0,
                                "compared_with": None}
    assert store.manifest("sweep-a.c000") is not None and store.manifest("sweep-a.c001") is None
    second = run_job(spec, store, job_id="sweep-b")
    assert second["summary"]["compared_with"] == "sweep-a" and second["summary"]["regressions"] == 0
    report = json.loads(store.get("jobs", "sweep-b", "sweep-report.json"))
    assert report["counts"].get("same", 0) > 0 and set(report["counts"]) <= {"same"}
    assert previous_report(store, "unit", exclude="sweep-b")[0] == "sweep-a"
    assert (tmp_path / "sweep-b" / "sweep-report.html").read_text().startswith("<!doctype html>")
